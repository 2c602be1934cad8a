"""Closed forms of DESIGN.md §2 on hand-computed cases, and lowering that adds up to them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Attention, Conv2d, Linear, MatMul
from sparsesim.mapping.gemm import OperandKind
from sparsesim.mapping.lower import lower


def test_conv_hand_computed():
    # ResNet conv1: 224×224×3, 64 filters 7×7, stride 2, padding 3 → 112×112 output.
    conv = Conv2d("conv1", c=3, h=224, w=224, m=64, r=7, s=7, stride=2, padding=3)
    assert (conv.e, conv.f) == (112, 112)
    assert conv.dense_macs == 64 * 3 * 7 * 7 * 112 * 112 == 118_013_952
    # The seed's storage 32×(MCRS + CHW + MEF) at 32-bit operands.
    st_ = conv.storage(32, 32, 32)
    assert st_.total_bits == 32 * (64 * 3 * 49 + 3 * 224 * 224 + 64 * 112 * 112)
    assert st_.weight_bits == 32 * 9408


def test_conv_batch_strided_grouped():
    conv = Conv2d("g", n=2, c=8, h=9, w=7, m=12, r=3, s=2, stride=2, padding=0, groups=4)
    # e = floor((9-3)/2)+1 = 4 ; f = floor((7-2)/2)+1 = 3
    assert (conv.e, conv.f) == (4, 3)
    assert conv.dense_macs == 2 * 12 * 2 * 3 * 2 * 4 * 3 == 3456
    [g] = lower(conv)
    assert (g.m, g.k, g.n, g.count) == (2 * 4 * 3, 2 * 3 * 2, 3, 4)


def test_depthwise_conv():
    dw = Conv2d("dw", c=32, h=112, w=112, m=32, r=3, s=3, padding=1, groups=32)
    assert dw.dense_macs == 32 * 3 * 3 * 112 * 112
    assert dw.weights == 32 * 9
    [g] = lower(dw)
    assert (g.m, g.k, g.n, g.count) == (112 * 112, 9, 1, 32)


def test_ceil_mode_matches_scalesim_rule():
    # SCALE-Sim: ceil((H - R + s)/s); H=10, R=3, s=2 → ceil(9/2) = 5 (PyTorch floor gives 4).
    assert Conv2d("a", c=1, h=10, w=10, m=1, r=3, s=3, stride=2, ceil_mode=True).e == 5
    assert Conv2d("b", c=1, h=10, w=10, m=1, r=3, s=3, stride=2).e == 4


def test_params_include_bias_and_norm():
    conv = Conv2d("c", c=4, h=8, w=8, m=6, r=3, s=3, bias=True, norm=True)
    assert conv.params == 6 * 4 * 9 + 6 + 12
    fc = Linear("fc", in_features=2048, out_features=1000, bias=True)
    assert fc.params == 2_049_000


def test_linear_hand_computed():
    fc = Linear("fc", in_features=768, out_features=3072, tokens=128)
    assert fc.dense_macs == 128 * 768 * 3072
    assert fc.storage(8, 4, 16).total_bits == 768 * 3072 * 4 + 128 * 768 * 8 + 128 * 3072 * 16


def test_attention_closed_form_bert_layer():
    att = Attention("a", b=1, l=128, e=768, heads=12)
    assert att.dense_macs == 4 * 128 * 768**2 + 2 * 128**2 * 768 == 327_155_712


def test_attention_decode_and_gqa():
    dec = Attention("d", b=2, l=1, e=4096, heads=32, kv_len=2048)
    assert dec.dense_macs == 4 * 2 * 4096**2 + 2 * 2 * 1 * 2048 * 4096
    # GQA: 9 heads of 64, 3 KV heads → K/V projections 576 → 192.
    gqa = Attention("g", l=1, e=576, heads=9, kv_heads=3, kv_len=100)
    assert gqa.dense_macs == 2 * 576 * 576 + 2 * 576 * 192 + 2 * 100 * 576
    shapes = {g.name: (g.m, g.k, g.n, g.count) for g in lower(gqa)}
    assert shapes["k"] == (1, 576, 192, 1)
    # The 3 query heads of each K/V head are stacked: one score GEMM per K/V head.
    assert shapes["qk"] == (3, 64, 100, 3)
    assert shapes["pv"] == (3, 100, 64, 3)
    # Cached K/V (kv_len − l entries of e_kv each, for K and V) count as inputs.
    assert gqa.storage(8, 8, 8).input_bits == 8 * (576 + 2 * 99 * 192)


def test_attention_score_gemms_are_activation_activation():
    kinds = {g.name: g.w_kind for g in lower(Attention("a", l=4, e=8, heads=2))}
    assert kinds["qk"] is kinds["pv"] is OperandKind.ACTIVATION
    assert kinds["q"] is OperandKind.WEIGHT


def test_matmul():
    mm = MatMul("mm", m=3, k=5, n=7, weights_operand=False)
    assert mm.dense_macs == 105 and mm.params == 0
    assert mm.storage(8, 8, 8).total_bits == 8 * (15 + 35 + 21)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(c=0, h=8, w=8, m=4, r=3, s=3), "c"),
        (dict(c=3, h=8, w=8, m=4, r=3, s=3, groups=2), "c"),
        (dict(c=4, h=8, w=8, m=6, r=3, s=3, groups=4), "m"),
        (dict(c=4, h=2, w=8, m=4, r=3, s=3), "h"),
        (dict(c=4, h=8, w=8, m=4, r=3, s=3, padding=-1), "padding"),
        (dict(c=4.0, h=8, w=8, m=4, r=3, s=3), "c"),
    ],
)
def test_conv_rejects_bad_fields(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        Conv2d("bad", **kwargs)
    assert err.value.field == field and err.value.layer == "bad"


dims = st.integers(1, 40)


@given(n=st.integers(1, 3), g=st.integers(1, 4), cg=st.integers(1, 6), mg=st.integers(1, 6),
       h=dims, w=dims, r=st.integers(1, 5), s=st.integers(1, 5), stride=st.integers(1, 3),
       pad=st.integers(0, 2))
def test_conv_lowering_adds_up(n, g, cg, mg, h, w, r, s, stride, pad):
    if h + 2 * pad < r or w + 2 * pad < s:
        return
    conv = Conv2d("c", n=n, c=cg * g, h=h, w=w, m=mg * g, r=r, s=s, stride=stride,
                  padding=pad, groups=g)
    assert sum(x.dense_macs for x in lower(conv)) == conv.dense_macs


@given(b=st.integers(1, 3), l=st.integers(1, 64), hd=st.integers(1, 16),
       heads=st.sampled_from([1, 2, 4, 8]), group=st.sampled_from([1, 2, 4]),
       kv=st.one_of(st.none(), st.integers(1, 128)))
def test_attention_lowering_adds_up(b, l, hd, heads, group, kv):
    kv_heads = max(heads // group, 1)
    att = Attention("a", b=b, l=l, e=hd * heads, heads=heads, kv_len=kv, kv_heads=kv_heads)
    assert sum(x.dense_macs for x in lower(att)) == att.dense_macs
    if kv_heads == heads:
        keys = l if kv is None else kv
        e = hd * heads
        assert att.dense_macs == 4 * b * l * e * e + 2 * b * l * keys * e
