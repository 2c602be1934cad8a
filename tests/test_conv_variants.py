"""Conv variants (per-axis stride and padding, 'same', padding modes, dilation, 1-D, 3-D,
transposed) as one Conv2d layer with parameters: closed-form MACs and lowered GEMM shapes by
hand, the im2col lowering checked against PyTorch's own convolutions and a loop-by-loop numpy
im2col, dense cycles equal to the plain GEMM of the same lowered shape, the feature-map
footprint equal to the pixels im2col reads, and the TOML fields validated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.mapping.conv import Im2col, im2col_matrix
from sparsesim.mapping.lower import gemm_operands, lower
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Conv2d, MatMul
from sparsesim.files import parse_toml
from sparsesim.workload.network import Workload, workload_from_dict

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _gemm(layer):
    [g] = lower(layer)
    return (g.m, g.k, g.n, g.count)


# --- closed forms by hand ----------------------------------------------------------------------


def test_per_axis_stride_inception_style():
    # Inception-v3 style 7×1 kernel, stride (2, 1), padding (3, 0).
    conv = Conv2d("c", c=8, h=17, w=17, m=16, r=7, s=1, stride=(2, 1), padding=(3, 0))
    # e = floor((17 + 6 - 7)/2) + 1 = 9; f = floor((17 - 1)/1) + 1 = 17
    assert (conv.e, conv.f) == (9, 17)
    assert conv.dense_macs == 16 * 8 * 7 * 1 * 9 * 17
    assert _gemm(conv) == (9 * 17, 8 * 7, 16, 1)


def test_asymmetric_padding_tf_style():
    # TF 'SAME' for stride 2 on an even input pads one more after: 8 → 4 with [0, 1].
    conv = Conv2d("c", c=3, h=8, w=8, m=4, r=3, s=3, stride=2, padding=((0, 1), (0, 1)))
    assert (conv.e, conv.f) == (4, 4)  # floor((8 + 1 - 3)/2) + 1
    assert conv.padding == ((0, 1), (0, 1))
    assert conv.dense_macs == 4 * 3 * 9 * 16


def test_same_padding_even_kernel_pads_after():
    # PyTorch: total = dilation·(k − 1) = 3 → 1 before, 2 after; the output keeps the size.
    conv = Conv2d("c", c=2, h=10, w=9, m=3, r=4, s=3, padding="same")
    assert conv.padding == ((1, 2), 1)
    assert (conv.e, conv.f) == (10, 9)
    assert conv.dense_macs == 3 * 2 * 12 * 90


def test_dilation_deeplab_style():
    # DeepLab ASPP 3×3 at rate 6, padding 6: span 13, the size is kept.
    conv = Conv2d("aspp", c=16, h=33, w=33, m=8, r=3, s=3, padding=6, dilation=6)
    assert (conv.e, conv.f) == (33, 33)
    assert conv.dense_macs == 8 * 16 * 9 * 33 * 33
    assert _gemm(conv) == (33 * 33, 16 * 9, 8, 1)
    # without padding: (33 − 13) + 1 = 21
    assert Conv2d("v", c=1, h=33, w=33, m=1, r=3, s=3, dilation=6).e == 21


def test_one_d_conv_pads_only_its_width():
    conv = Conv2d("c1d", n=2, c=4, h=1, w=50, m=6, r=1, s=5, padding=(0, 2), stride=(1, 3))
    assert (conv.e, conv.f) == (1, 17)  # floor((50 + 4 - 5)/3) + 1
    assert _gemm(conv) == (2 * 17, 4 * 5, 6, 1)


def test_three_d_conv():
    # C3D-like 3×3×3, padding 1, stride (1, 2, 2) on an 8×16×16 clip.
    conv = Conv2d("c3d", n=1, c=3, d=8, h=16, w=16, m=8, t=3, r=3, s=3, padding=1,
                  stride=(1, 2, 2))
    assert (conv.z, conv.e, conv.f) == (8, 8, 8)
    assert conv.dense_macs == 8 * 3 * 27 * 8 * 8 * 8
    assert _gemm(conv) == (8 * 8 * 8, 3 * 27, 8, 1)
    assert conv.input_shape == (1, 3, 8, 16, 16)
    assert conv.weight_shapes() == {"w": (8, 3, 3, 3, 3)}
    assert conv.storage(8, 8, 8).input_bits == 8 * 3 * 8 * 16 * 16


def test_transposed_conv_closed_form():
    # DCGAN-style 4×4, stride 2, padding 1: 8 → (8−1)·2 − 2 + 4 = 16.
    conv = Conv2d("up", n=2, c=16, h=8, w=8, m=8, r=4, s=4, stride=2, padding=1,
                  transposed=True)
    assert (conv.e, conv.f) == (16, 16)
    # MACs of the direct conv over the zero-inserted input: every output reads 4×4 taps.
    assert conv.dense_macs == 2 * 8 * 16 * 16 * 16 * 16
    assert _gemm(conv) == (2 * 16 * 16, 16 * 16, 8, 1)
    # output_padding adds one row/column: (5−1)·2 − 2 + 3 + 1 = 10
    op = Conv2d("op", c=1, h=5, w=5, m=1, r=3, s=3, stride=2, padding=1, output_padding=1,
                transposed=True)
    assert (op.e, op.f) == (10, 10)


def test_plain_conv_spelled_per_axis_is_the_same_layer():
    plain = Conv2d("c", c=3, h=9, w=9, m=4, r=3, s=3, stride=2, padding=1)
    spelled = Conv2d("c", c=3, h=9, w=9, m=4, r=3, s=3, stride=[2, 2], padding=[[1, 1], 1],
                     dilation=(1, 1))
    assert spelled == plain and hash(spelled) == hash(plain)
    assert plain.stride == 2 and plain.padding == 1


# --- the lowering against PyTorch's convolutions -----------------------------------------------


def _direct_weight(layer: Conv2d, w: np.ndarray) -> np.ndarray:
    """PyTorch's weight as the lowered GEMM's W per group: ``[groups, c/g·taps, m/g]``."""
    g = layer.groups
    return w.reshape(g, layer.m // g, -1).transpose(0, 2, 1)


def _lowered_output(layer: Conv2d, x: np.ndarray, w_direct: np.ndarray) -> np.ndarray:
    """The GEMM on values: im2col(x) · W per group, back to ``[n, m, (z,) e, f]``."""
    a = im2col_matrix(x, layer)  # [g, n·pixels, c/g·taps]
    out = np.einsum("gpk,gkm->pgm", a, _direct_weight(layer, w_direct))
    spatial = (layer.z, layer.e, layer.f) if layer.spatial_dims == 3 else (layer.e, layer.f)
    out = out.reshape(layer.n, *spatial, layer.m)
    return np.moveaxis(out, -1, 1)


CASES = [
    # (layer kwargs, how PyTorch computes it)
    (dict(c=4, h=11, w=9, m=6, r=3, s=2, stride=(2, 1), padding=(1, 0), groups=2),
     lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 0), groups=2)),
    (dict(c=3, h=12, w=12, m=4, r=3, s=3, padding=4, dilation=(2, 3)),
     lambda x, w: F.conv2d(x, w, padding=4, dilation=(2, 3))),
    (dict(c=2, h=10, w=9, m=3, r=4, s=3, padding="same", dilation=2),
     lambda x, w: F.conv2d(x, w, padding="same", dilation=2)),
    (dict(c=2, h=8, w=8, m=3, r=3, s=3, stride=2, padding=((0, 1), (2, 0))),
     lambda x, w: F.conv2d(F.pad(x, (2, 0, 0, 1)), w, stride=2)),
    (dict(c=2, h=7, w=6, m=2, r=3, s=3, padding=(2, 1), padding_mode="reflect"),
     lambda x, w: F.conv2d(F.pad(x, (1, 1, 2, 2), mode="reflect"), w)),
    (dict(c=2, h=7, w=6, m=2, r=3, s=3, padding=2, padding_mode="replicate", stride=2),
     lambda x, w: F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), w, stride=2)),
    (dict(c=2, h=5, w=6, m=2, r=3, s=3, padding=(1, 3), padding_mode="circular"),
     lambda x, w: F.conv2d(F.pad(x, (3, 3, 1, 1), mode="circular"), w)),
    (dict(c=3, h=1, w=20, m=4, r=1, s=5, padding=(0, 2), stride=(1, 2)),
     lambda x, w: F.conv1d(x[:, :, 0], w[:, :, 0], padding=2, stride=2)[:, :, None]),
    (dict(c=2, d=5, h=6, w=7, m=3, t=3, r=2, s=3, stride=(2, 1, 2), padding=(1, 0, 1),
          dilation=(1, 2, 1)),
     lambda x, w: F.conv3d(x, w, stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1))),
]


@pytest.mark.parametrize(("kwargs", "reference"), CASES)
def test_im2col_gemm_equals_pytorch(kwargs, reference):
    layer = Conv2d("x", n=2, **kwargs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(layer.input_shape)
    w = rng.standard_normal(layer.weight_shapes()["w"])
    want = reference(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    got = _lowered_output(layer, x, w)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kw", "torch_call"), [
    (dict(c=4, h=5, w=4, m=6, r=4, s=3, stride=2, padding=1, groups=2),
     dict(stride=2, padding=1)),
    (dict(c=3, h=4, w=5, m=2, r=3, s=2, stride=(3, 2), padding=(2, 0), output_padding=(1, 1),
          dilation=(1, 2)),
     dict(stride=(3, 2), padding=(2, 0), output_padding=(1, 1), dilation=(1, 2))),
    (dict(c=2, d=3, h=4, w=3, m=2, t=2, r=3, s=2, stride=2, padding=(0, 1, 1)),
     dict(stride=2, padding=(0, 1, 1))),
])
def test_transposed_conv_is_the_direct_conv_over_the_zero_inserted_input(kw, torch_call):
    """The lowering's GEMM, with PyTorch's ``[c, m/g, k…]`` weight regrouped and flipped into
    the direct conv's ``[m, c/g, k…]``, gives conv_transpose's output exactly."""
    layer = Conv2d("t", n=2, transposed=True, **kw)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(layer.input_shape)
    g, dims = layer.groups, layer.spatial_dims
    kernel = layer.weight_shapes()["w"][2:]
    wt = rng.standard_normal((layer.c, layer.m // g, *kernel))  # PyTorch's layout
    direct = wt.reshape(g, layer.c // g, layer.m // g, *kernel).swapaxes(1, 2)
    direct = np.flip(direct, axis=tuple(range(3, 3 + dims))).reshape(layer.m, layer.c // g,
                                                                     *kernel)
    fn = F.conv_transpose3d if dims == 3 else F.conv_transpose2d
    want = fn(torch.from_numpy(x), torch.from_numpy(wt), groups=g, **torch_call).numpy()
    got = _lowered_output(layer, x, direct)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_transposed_inserted_zeros_are_structural_zeros_of_a():
    """A dense input's im2col has zeros exactly where a tap reads an inserted zero or the
    padding: stride 2, 3×3, padding 1 on 3×3 → 5×5; output (0, 0) reads the zero-inserted
    map at rows/cols -1, 0, 1 → real pixel 0 only at offset 0 (tap 1)."""
    layer = Conv2d("t", c=1, h=3, w=3, m=1, r=3, s=3, stride=2, padding=1, transposed=True)
    a = im2col_matrix(np.ones(layer.input_shape, dtype=bool), layer)[0]
    assert a.shape == (25, 9)
    assert a[0].reshape(3, 3).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    # output (1, 1) reads zero-inserted rows 0..2 → real at 0 and 2 (taps 0 and 2)
    assert a[6].reshape(3, 3).astype(int).tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 1]]
    # per output pixel the real products are the scatter count: 3·3 inputs × 9 taps, less
    # those landing in the cropped border (padding 1)
    scatter = sum(1 for y in range(3) for x in range(3) for i in range(3) for j in range(3)
                  if 0 <= 2 * y - 1 + i < 5 and 0 <= 2 * x - 1 + j < 5)
    assert int(a.sum()) == scatter


# --- masks: a dilated conv's input mask lands in the right im2col columns -----------------------


def _loop_im2col(x: np.ndarray, conv: Conv2d, stride, pads, dilation) -> np.ndarray:
    """Textbook im2col, one element at a time (zero padding, 2-D, groups), from the raw
    parameters (not the layer's own geometry)."""
    (ph0, ph1), (pw0, pw1) = pads
    sh, sw = stride
    dh, dw = dilation
    g, cg = conv.groups, conv.c // conv.groups
    e = (conv.h + ph0 + ph1 - dh * (conv.r - 1) - 1) // sh + 1
    f = (conv.w + pw0 + pw1 - dw * (conv.s - 1) - 1) // sw + 1
    out = np.zeros((g, conv.n * e * f, cg * conv.r * conv.s), dtype=x.dtype)
    for gi in range(g):
        for n in range(conv.n):
            for oy in range(e):
                for ox in range(f):
                    row = (n * e + oy) * f + ox
                    for ci in range(cg):
                        for i in range(conv.r):
                            for j in range(conv.s):
                                y, xx = oy * sh - ph0 + i * dh, ox * sw - pw0 + j * dw
                                if 0 <= y < conv.h and 0 <= xx < conv.w:
                                    col = (ci * conv.r + i) * conv.s + j
                                    out[gi, row, col] = x[n, gi * cg + ci, y, xx]
    return out


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_dilated_masks_lower_to_the_right_im2col_columns(data):
    g = data.draw(st.sampled_from([1, 2]))
    small = st.integers(0, 2)
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)))
    pads = ((data.draw(small), data.draw(small)), (data.draw(small),) * 2)
    dilation = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    conv = Conv2d("d", n=data.draw(st.integers(1, 2)), c=2 * g, h=data.draw(st.integers(7, 12)),
                  w=data.draw(st.integers(7, 12)), m=2 * g, r=data.draw(st.integers(1, 3)),
                  s=data.draw(st.integers(1, 3)), stride=stride, padding=pads,
                  dilation=dilation, groups=g)
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    x = rng.random(conv.input_shape) < 0.5
    want = _loop_im2col(x, conv, stride, pads, dilation)
    [ops] = gemm_operands(conv, LayerMasks(inputs=x))
    assert ops.a is not None and ops.a.shape == want.shape
    np.testing.assert_array_equal(ops.a, want)


# --- the feature-map footprint follows the geometry --------------------------------------------


LAYERS = [Conv2d("c", n=2, **kw) for kw, _ in CASES] + [
    Conv2d("t", n=2, c=2, h=4, w=5, m=2, r=3, s=3, stride=(2, 3), padding=1, transposed=True),
]


@pytest.mark.parametrize("conv", LAYERS, ids=lambda c: repr(c)[:60])
def test_footprint_is_the_pixels_im2col_reads(conv):
    """Each input pixel numbered 1…; the pixels a block of output rows touches (memory's
    feature-map region) are the numbers its im2col rows hold."""
    spatial = conv.input_shape[2:]
    ids = np.arange(1, math.prod(spatial) + 1).reshape(spatial)
    x = np.broadcast_to(ids, conv.input_shape).copy()
    a = im2col_matrix(x, conv)[0]  # every channel reads the same pixels
    rows = a.shape[0]
    for m0, m1 in ((0, rows), (0, max(1, rows // 3)), (rows // 2, rows)):
        planes = dict(Im2col(conv).planes(m0, m1))
        per_image = rows // conv.n
        for n in range(conv.n):
            lo, hi = max(m0, n * per_image), min(m1, (n + 1) * per_image)
            want = set(np.unique(a[lo:hi])) - {0} if lo < hi else set()
            plane = planes.get(n)
            got = set() if plane is None else set(ids[plane].tolist())
            assert got == want


# --- dense cycles: the variant runs as the plain GEMM of its lowered shape ----------------------


def _ideal(dataflow: str):
    return with_overrides(load_arch("default"), {"memory.ideal": True,
                                                 "array.dataflow": dataflow})


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_dense_cycles_equal_the_plain_gemm(dataflow):
    variants = [Conv2d("v", **kw) for kw, _ in CASES if "groups" not in kw] + [
        Conv2d("t", c=16, h=8, w=8, m=8, r=4, s=4, stride=2, padding=1, transposed=True)]
    arch = _ideal(dataflow)
    for conv in variants:
        m, k, n, count = _gemm(conv)
        assert count == 1
        got = simulate(Workload("w", (conv,)), arch).df
        ref = simulate(Workload("g", (MatMul("g", m=m, k=k, n=n),)), arch).df
        assert int(got["cycles"].sum()) == int(ref["cycles"].sum())
        assert int(got["dense_macs"].sum()) == conv.dense_macs == m * k * n


def test_skipping_pe_skips_the_inserted_zeros():
    """A dense input on an A-skipping array: the transposed conv's effectual MACs are the
    products on real input pixels (the structural zeros are skipped), fewer than its dense
    MACs; a dense PE computes them all."""
    conv = Conv2d("t", c=4, h=6, w=6, m=4, r=3, s=3, stride=2, padding=1, transposed=True)
    x = np.ones(conv.input_shape, dtype=bool)
    trace = Trace(Workload("w", (conv,)), {"t": LayerMasks(inputs=x)}, {})
    skip = with_overrides(_ideal("os"), {"pe.kind": "skip", "pe.operand": "A",
                                         "pe.sync": "pe"})
    df = simulate(trace=trace, arch=skip).df
    real = int(im2col_matrix(x, conv).sum()) * conv.m  # groups = 1
    assert int(df["effectual_macs"].sum()) == real < conv.dense_macs
    dense = simulate(trace=trace, arch=_ideal("os")).df
    assert int(dense["cycles"].sum()) > int(df["cycles"].sum())


# --- TOML fields --------------------------------------------------------------------------------


def parse_workload(text: str, file: str) -> Workload:
    return workload_from_dict(parse_toml(text, file=file), file=file)


def _toml(fields: str) -> str:
    return f"""
[network]
name = "t"
[[layer]]
name = "conv"
op = "conv2d"
c = 4
h = 9
w = 9
m = 4
r = 3
s = 3
{fields}
"""


def test_toml_fields():
    wl = parse_workload(_toml('stride = [2, 1]\npadding = [[0, 1], 1]\ndilation = 2\n'
                              'padding_mode = "reflect"'), file="t.toml")
    [conv] = wl.layers
    assert conv.stride == (2, 1) and conv.padding == ((0, 1), 1) and conv.dilation == 2
    assert (conv.e, conv.f) == (3, 7)  # floor((9+1−5)/2)+1, floor((9+2−5)/1)+1
    t = parse_workload(_toml("transposed = true\nstride = 2\noutput_padding = 1"), file="t.toml")
    assert (t.layers[0].e, t.layers[0].f) == (20, 20)  # (9−1)·2 + 3 + 1


@pytest.mark.parametrize(("fields", "field"), [
    ("stride = [2, 1, 1]", "stride"),
    ("stride = 0", "stride"),
    ("dilation = [1, 0]", "dilation"),
    ("padding = [1]", "padding"),
    ("padding = [[1, 2, 3], 1]", "padding"),
    ("padding = -1", "padding"),
    ('padding = "full"', "padding"),
    ('padding = "same"\nstride = 2', "padding"),
    ('padding_mode = "mirror"', "padding_mode"),
    ('padding_mode = "reflect"\npadding = 9', "padding"),
    ('padding_mode = "reflect"\ntransposed = true', "padding_mode"),
    ("output_padding = 1", "output_padding"),
    ("transposed = true\nstride = 2\noutput_padding = 2", "output_padding"),
    ("transposed = 1", "transposed"),
    ("t = 0", "t"),
    ("dilation = 5", "h"),
])
def test_toml_bad_values_name_the_field(fields, field):
    with pytest.raises(SparsesimError) as err:
        parse_workload(_toml(fields), file="t.toml")
    assert err.value.field == field and err.value.layer == "conv"
    assert err.value.file == "t.toml"
    assert "\n" not in str(err.value)


def test_trace_round_trip_keeps_the_geometry(tmp_path):
    from sparsesim.sparsity.trace import load_trace

    conv = Conv2d("v", c=2, d=4, h=5, w=6, m=2, t=3, r=3, s=2, stride=(1, 2, 1),
                  padding=(1, (0, 1), 0), dilation=(2, 1, 1))
    up = Conv2d("u", c=2, h=5, w=6, m=2, r=3, s=3, stride=2, transposed=True, output_padding=1)
    trace = Trace(Workload("w", (conv, up)), {}, {})
    path = tmp_path / "t.npz"
    trace.save(path)
    back = load_trace(path)
    assert back.workload.layers == (conv, up)
