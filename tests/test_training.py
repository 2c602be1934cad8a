"""Training steps: backward GEMM shapes and masks, gradient pruning, the weight update."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.pe.kinds import compute
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Attention, Conv2d, Linear
from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm, GemmOperands
from sparsesim.sparsity.masks import LayerMasks, SparsityModel
from sparsesim.pe.reference import run_skip_reference
from sparsesim.sparsity.trace import Trace
from sparsesim.engine.training import GradientModel, Training, backward_operands
from sparsesim.workload.network import Workload

SMALL = Workload("small", (
    Conv2d("c1", c=3, h=9, w=7, m=5, r=3, s=3, stride=2, padding=1),
    Conv2d("dw", c=5, h=5, w=4, m=5, r=3, s=3, padding=1, groups=5),
    Linear("fc", in_features=6, out_features=4, tokens=3),
    Attention("att", l=4, e=8, heads=2),
))


def arch(**over):
    return with_overrides(load_arch("default"), {"memory.ideal": True, **over})


def test_dense_training_step_is_three_forward_passes_by_hand():
    # Forward MACs by hand: c1 outputs 5×4 pixels (ceil((9+2-3)/2)+1, ceil((7+2-3)/2)+1),
    # 3·3·3 window, 5 filters; dw 5·4 pixels × 9 × 5 channels; fc 3·6·4; attention
    # 4·l·e² + 2·l²·e with l=4, e=8.
    forward = {"c1": 5 * 4 * 27 * 5, "dw": 5 * 4 * 9 * 5, "fc": 3 * 6 * 4,
               "att": 4 * 4 * 8 * 8 + 2 * 4 * 4 * 8}
    df = simulate(SMALL, arch(), training=Training(input_gradient=True)).df
    by = df.groupby(["layer", "phase"])["dense_macs"].sum()
    for layer, macs in forward.items():
        assert by[(layer, "forward")] == macs
        assert by[(layer, "backward")] == 2 * macs
    assert df["dense_macs"].sum() == 3 * sum(forward.values())
    # a training step needs no gradient of the network's input: c1's dA is not computed
    plain = simulate(SMALL, arch(), training=Training()).df
    assert set(plain[plain.layer == "c1"]["gemm"]) == {"conv", "conv.dw", "update"}
    assert plain["dense_macs"].sum() == 3 * sum(forward.values()) - forward["c1"]


def test_backward_gemms_have_the_transposed_shapes_and_dense_timing():
    df = simulate(SMALL, arch(**{"array.rows": 4, "array.cols": 8}),
                  training=Training(input_gradient=True)).df
    fwd = df[df.phase == "forward"].set_index(["layer", "gemm"])
    for row in df[df.phase == "backward"].itertuples():
        base, which = row.gemm.rsplit(".", 1)
        f = fwd.loc[(row.layer, base)]
        want = (f.M, f.N, f.K) if which == "dx" else (f.K, f.M, f.N)
        assert (row.M, row.K, row.N) == want
        p = plan(Gemm(row.layer, row.gemm, *want, count=row.count), "os", 4, 8)
        assert row.cycles == p.compute_cycles  # ideal memory: SCALE-Sim's dense fold rule


def test_a_zero_gradient_row_is_skipped_in_both_backward_gemms():
    rng = np.random.default_rng(3)
    m, k, n = 12, 10, 9
    a = rng.random((m, k)) < 0.6
    w = rng.random((k, n)) < 0.5
    dy = rng.random((m, n)) < 0.7
    dy[4] = False  # output row 4 (a pixel or token) has no gradient at all
    ops = GemmOperands(Gemm("l", "g", m, k, n), a, w)
    dx, dw = backward_operands(ops, dy[None])
    skip = arch(**{"pe.kind": "skip", "pe.operand": "both", "pe.sync": "pe",
                   "array.rows": 4, "array.cols": 4})
    # dA = dO·Wᵀ: row 4 of dA has no effectual product; dW = Aᵀ·dO: k index 4 has none.
    rx, rw = compute(dx, skip), compute(dw, skip)
    assert rx.effectual_macs == int(dy.sum(axis=0) @ w.T.sum(axis=1))
    assert rw.effectual_macs == int(a.T.sum(axis=0) @ dy.sum(axis=1))
    assert rx.effectual_macs <= (m - 1) * n * k
    for ops_b, res in ((dx, rx), (dw, rw)):
        a_b, w_b = ops_b.instance(0)
        ref = run_skip_reference(a_b.astype(float), w_b.astype(float), "os", 4, 4, "both", "pe")
        assert res.compute_cycles == ref.cycles


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 20), count=st.integers(1, 3),
       density=st.floats(0.05, 1.0), structure=st.sampled_from(["unstructured", "row",
                                                               "channel"]))
def test_gradient_masks_keep_what_their_structure_says(m, n, count, density, structure):
    g = Gemm("l", "g", m, 5, n, count=count)
    mask = GradientModel(density, structure).draw(g, 0)
    if density == 1:
        assert mask is None
        return
    assert mask.shape == (count, m, n)
    # torch.nn.utils.prune's count: round(sparsity · total) removed, half to even; top-k keeps 1
    keep = max(1, n - round((1 - density) * n))
    if structure == "unstructured":
        total = count * m * n
        assert mask.sum() == total - round((1 - density) * total)
    elif structure == "row":
        assert (mask.sum(axis=2) == keep).all()
    else:  # whole channels: every column all kept or all pruned
        cols = mask.any(axis=1)
        assert (mask == cols[:, None, :]).all() and (cols.sum(axis=1) == keep).all()


def test_nm_gradients_conform_along_the_channels():
    mask = GradientModel(structure="nm", nm=(1, 4)).draw(Gemm("l", "g", 6, 3, 10), 7)
    padded = np.zeros((1, 6, 12), dtype=bool)
    padded[..., :10] = mask
    assert (padded.reshape(1, 6, 3, 4).sum(axis=-1) <= 1).all()
    assert mask.sum() == 6 * 3


def test_pruned_gradients_shrink_backward_work_not_forward():
    model = SparsityModel(weight_density=0.5, act_density=0.5, seed=1)
    skip = arch(**{"pe.kind": "skip", "pe.sync": "pe"})
    dense_g = simulate(SMALL, skip, sparsity=model, training=Training()).df
    pruned = simulate(SMALL, skip, sparsity=model,
                      training=Training(GradientModel(0.3, "row"))).df
    fwd = lambda df: df[df.phase == "forward"]
    back = lambda df: df[(df.phase == "backward") & (df["count"] > 0)]
    assert fwd(pruned)["cycles"].tolist() == fwd(dense_g)["cycles"].tolist()
    assert back(pruned)["effectual_macs"].sum() < 0.5 * back(dense_g)["effectual_macs"].sum()
    assert back(pruned)["cycles"].sum() < back(dense_g)["cycles"].sum()
    online = pruned[pruned.gemm == "online_topk"]
    assert len(online) == len(pruned[pruned.gemm.str.endswith(".dw")])
    assert (online["energy_online_pj"] > 0).all()


@pytest.mark.parametrize("optimizer, states", [("sgd", 0), ("momentum", 1), ("adam", 2)])
def test_weight_update_traffic_is_the_closed_form(optimizer, states):
    layer = Linear("fc", in_features=64, out_features=32, tokens=4)
    w = np.zeros((32, 64), dtype=bool)
    w[:, ::4] = True  # 512 kept weights
    trace = Trace(Workload("one", (layer,)), {"fc": LayerMasks({"w": w})})
    df = simulate(trace=trace, arch=arch(), training=Training(optimizer=optimizer)).df
    [up] = df[df.phase == "update"].itertuples()
    # int8 weights and gradients, fp32 optimizer state: read w, dW, state; write w, state
    assert up.elements == 512 and up.kind == "update" and up.M == up.K == up.N == 0
    assert up.dram_read_bytes == 512 * (1 + 1 + 4 * states)
    assert up.dram_write_bytes == 512 * (1 + 4 * states)
    assert up.cycles == math.ceil(512 / 32)  # ideal memory: the 32-lane vector unit
    real = with_overrides(load_arch("default"), {})
    [up] = simulate(trace=trace, arch=real, training=Training(optimizer=optimizer)).df.query(
        "phase == 'update'").itertuples()
    moved = up.dram_read_bytes + up.dram_write_bytes
    assert up.cycles == max(16, math.ceil(moved / 16)) + 100  # 16 B/cycle, 100 cycles latency
    assert up.compute_cycles == 16 and up.stall_cycles == up.cycles - 16


def test_conv_weight_gradient_reads_the_feature_map_once():
    # 1×1 conv: the weight gradient's Aᵀ tiles are whole feature-map regions, read once,
    # and the input gradient writes the feature map's size, not an im2col copy.
    conv = Conv2d("pw", c=64, h=8, w=8, m=32, r=1, s=1)
    step = Training(input_gradient=True)
    df = simulate(Workload("pw", (conv,)), arch(), training=step).df
    rows = df.set_index("gemm")
    assert rows.loc["conv.dw", "dram_read_data_bytes_a"] == 64 * 8 * 8
    assert rows.loc["conv.dx", "dram_write_data_bytes_o"] == 64 * 8 * 8
    three = Conv2d("c3", c=64, h=8, w=8, m=32, r=3, s=3, padding=1)
    rows = simulate(Workload("c3", (three,)), arch(**{"memory.burst_bytes": 1}),
                    training=step).df.set_index("gemm")
    im2col = 8 * 8 * 64 * 9
    assert 64 * 64 <= rows.loc["conv.dw", "dram_read_data_bytes_a"] < im2col / 2
    # col2im: each input pixel's gradient is written once (halo sums stay on chip)
    assert rows.loc["conv.dx", "dram_write_data_bytes_o"] == 64 * 64


def test_nm_units_run_backward_gemms_without_rejecting_transposed_weights():
    model = SparsityModel(weight_nm=(2, 4), seed=0)
    nm = arch(**{"pe.kind": "nm"})
    step = Training(input_gradient=True)
    df = simulate(Workload("fc", (Linear("fc", 16, 12, tokens=8),)), nm, sparsity=model,
                  training=step).df.set_index("gemm")
    dense = simulate(Workload("fc", (Linear("fc", 16, 12, tokens=8),)), arch(),
                     training=step).df.set_index("gemm")
    assert df.loc["fc", "cycles"] < dense.loc["fc", "cycles"]  # forward: K halved
    assert df.loc["fc.dx", "cycles"] == dense.loc["fc.dx", "cycles"]  # Wᵀ is N:M along N


def test_training_needs_activation_data_in_a_trace():
    layers = (Linear("a", 8, 8, tokens=2), Linear("b", 8, 8, tokens=2))
    trace = Trace(Workload("two", layers), {"b": LayerMasks({"w": np.ones((8, 8), bool)})})
    simulate(trace=trace, arch=arch())  # inference is fine
    with pytest.raises(SparsesimError, match="activation data") as err:
        simulate(trace=trace, arch=arch(), training=Training())
    assert err.value.field == "inputs"


@pytest.mark.parametrize("kwargs, field", [
    ({"optimizer": "lion"}, "optimizer"), ({"state_bits": 0}, "state_bits")])
def test_bad_training_options_name_their_field(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        Training(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("kwargs, field", [
    ({"density": 0.0}, "grad_density"), ({"structure": "block"}, "grad_structure"),
    ({"structure": "nm"}, "grad_nm"), ({"structure": "nm", "nm": (2, 4), "density": 0.5},
                                       "grad_nm")])
def test_bad_gradient_models_name_their_field(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        GradientModel(**kwargs)
    assert err.value.field == field
