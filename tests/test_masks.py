"""Masks: the statistical model, lowering of masks to GEMM operands, attention pruning, traces."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Attention, Conv2d, Linear
from sparsesim.mapping.lower import gemm_operands, lower
from sparsesim.rules.nm import conformant_mask
from sparsesim.sparsity.masks import LayerMasks, SparsityModel, check_masks
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.workload.network import Workload


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(3, 9), st.integers(3, 9), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 2), st.integers(0, 2), st.booleans(), st.integers(0, 2**31))
def test_lowered_masks_compute_the_convolution(n, g, cg, mg, h, w, r, s, stride, pad, ceil, seed):
    """Fill the masks with integers: the lowered GEMMs must compute the real convolution."""
    rng = np.random.default_rng(seed)
    layer = Conv2d("c", n=n, c=cg * g, h=h, w=w, m=mg * g, r=r, s=s, stride=stride,
                   padding=pad, groups=g, ceil_mode=ceil)
    x = rng.integers(-3, 4, (n, cg * g, h, w))
    k = rng.integers(-3, 4, (mg * g, cg, r, s))
    [ops] = gemm_operands(layer, LayerMasks({"w": k}, x))
    out = np.einsum("gmk,gkn->gmn", ops.a.astype(int), ops.w.astype(int))
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad + r + stride), (pad, pad + s + stride)))
    for o in range(mg * g):
        grp = o // mg
        for i in range(layer.e):
            for j in range(layer.f):
                win = xp[:, grp * cg:(grp + 1) * cg, i * stride:i * stride + r,
                         j * stride:j * stride + s]
                expect = (win * k[o]).sum(axis=(1, 2, 3))
                rows = np.arange(n) * layer.e * layer.f + i * layer.f + j
                np.testing.assert_array_equal(out[grp, rows, o % mg], expect)


def test_model_densities_are_exact_and_seeded():
    layer = Conv2d("c", c=16, h=10, w=10, m=32, r=3, s=3, padding=1)
    model = SparsityModel(weight_density=0.25, act_density=0.5, seed=7)
    masks = model.masks(layer, index=3)
    assert masks.weights["w"].sum() == round(0.25 * 32 * 16 * 9)
    assert 0.4 < masks.inputs.mean() < 0.6
    again = model.masks(layer, index=3)
    np.testing.assert_array_equal(masks.inputs, again.inputs)
    assert model.masks(layer, index=0).inputs is None  # the network input stays dense
    assert not np.array_equal(model.masks(layer, index=4).weights["w"], masks.weights["w"])


def test_per_channel_spread():
    layer = Linear("fc", in_features=400, out_features=8, tokens=2000)
    masks = SparsityModel(act_density=0.3, act_channel_std=0.2, seed=1).masks(layer, 1)
    per_channel = masks.inputs.mean(axis=0)
    assert abs(per_channel.mean() - 0.3) < 0.03 and 0.15 < per_channel.std() < 0.25


def test_nm_weight_masks_are_conformant():
    layer = Linear("fc", in_features=10, out_features=6)
    w = SparsityModel(weight_nm=(2, 4)).masks(layer, 1).weights["w"]
    assert (w[:, :8].reshape(6, 2, 4).sum(axis=2) == 2).all() and (w[:, 8:].sum(axis=1) == 2).all()
    m = conformant_mask((3, 2, 3, 3), 1, 8, (1, 2, 3), rng=np.random.default_rng(0))
    assert (m.reshape(3, 18)[:, :16].reshape(3, 2, 8).sum(axis=2) == 1).all()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"weight_density": 1.5}, "weight_density"), ({"act_density": -0.1}, "act_density"),
    ({"token_keep": 0}, "token_keep"), ({"act_density": 0.5, "act_channel_std": 0.6},
                                        "act_channel_std"),
    ({"weight_nm": (5, 4)}, "weight_nm"), ({"weight_nm": (2, 4), "weight_density": 0.5},
                                           "weight_nm")])
def test_bad_model_fields(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        SparsityModel(**kwargs)
    assert err.value.field == field


def test_mask_shape_mismatch_names_layer_expected_and_got():
    layer = Linear("fc", in_features=4, out_features=3)
    with pytest.raises(SparsesimError) as err:
        check_masks(layer, LayerMasks({"w": np.ones((4, 3), bool)}))
    assert err.value.layer == "fc" and "expected (3, 4)" in str(err.value) and "(4, 3)" in str(
        err.value)


def test_attention_pruning_shrinks_the_gemms():
    att = Attention("a", l=128, e=256, heads=8, causal=True)
    shaped = SparsityModel(token_keep=0.5, head_keep=0.75, kv_keep=0.25).shape(att)
    shapes = {g.name: (g.m, g.k, g.n, g.count) for g in lower(shaped)}
    assert shapes["q"] == (64, 256, 6 * 32, 1)
    assert shapes["qk"] == (64, 32, 16, 6)
    assert shapes["pv"] == (64, 16, 32, 6)
    assert shapes["o"] == (64, 6 * 32, 256, 1)
    assert shaped.dense_macs == sum(g.dense_macs for g in lower(shaped))


def test_causal_probabilities_are_skippable_zeros():
    att = Attention("a", l=6, e=8, heads=2, causal=True)
    pv = [o for o in gemm_operands(att, None) if o.gemm.name == "pv"][0]
    assert pv.a.sum() == 6 * 7 // 2  # lower triangle with the diagonal
    decode = Attention("d", l=1, e=8, heads=2, kv_len=5, causal=True)
    pv = [o for o in gemm_operands(decode, None) if o.gemm.name == "pv"][0]
    assert pv.a.all()


def test_trace_round_trip_gives_identical_results(tmp_path):
    wl = Workload("tiny", (Conv2d("c1", c=3, h=12, w=12, m=8, r=3, s=3, padding=1),
                           Conv2d("c2", c=8, h=12, w=12, m=8, r=3, s=3, padding=1, groups=2),
                           Attention("att", l=16, e=32, heads=4),
                           Linear("fc", in_features=32, out_features=10, tokens=16)))
    model = SparsityModel(weight_density=0.3, act_density=0.6, seed=3)
    arch = with_overrides(load_arch("default"), {"pe.kind": "skip", "pe.sync": "row"})
    direct = simulate(wl, arch, sparsity=model).df
    masks = {layer.name: model.masks(layer, i) for i, layer in enumerate(wl.layers)}
    Trace(wl, masks, {"method": "random"}).save(tmp_path / "t.npz")
    loaded = load_trace(tmp_path / "t.npz")
    assert loaded.meta == {"method": "random"}
    from_trace = simulate(wl, arch, trace=loaded).df
    assert from_trace.equals(direct)


def test_bad_trace_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SparsesimError, match="cannot read trace"):
        load_trace(bad)
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(SparsesimError, match="no manifest"):
        load_trace(tmp_path / "x.npz")
    wl = Workload("w", (Linear("fc", in_features=4, out_features=3),))
    with pytest.raises(SparsesimError) as err:
        Trace(wl, {"fc": LayerMasks({"w": np.ones((4, 3), bool)})})
    assert err.value.layer == "fc"


def test_nm_masks_of_a_reduction_shorter_than_one_group():
    rng = np.random.default_rng(0)
    mask = conformant_mask((3, 5), 2, 4, (0,), rng=rng)  # K = 3 < M = 4: one short group per column
    assert (mask.sum(axis=0) == 2).all()
    mask = conformant_mask((7, 5), 2, 4, (0,), rng=rng)  # a whole group, then a short one of 3
    assert (mask[:4].sum(axis=0) == 2).all() and (mask[4:].sum(axis=0) == 2).all()
