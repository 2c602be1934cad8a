"""The pruning front-end on numpy weights: criteria, granularity, scope, shapes, schedules.

Hand-computed cases for each criterion; hypothesis properties for N:M conformance and the
achieved sparsity (``round(s·n)`` removed, as ``torch.nn.utils.prune`` counts).
"""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.rules.keep import prune_count
from sparsesim.rules.nm import check_conformant
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Attention, Conv2d, Linear, MatMul
from sparsesim.mapping.lower import gemm_operands
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.prune import (
    ActPrune,
    LayerStats,
    PruneSpec,
    dynamic_threshold_mask,
    imp_levels,
    iterative_levels,
    keep_masks,
    lowest,
    nm_activation_mask,
    prune_heads,
    prune_kv,
    prune_tokens,
    prune_workload,
    run_schedule,
    score,
    sequential_consumers,
    slim_channels,
    slim_workload,
    synthetic_weights,
    topk_mask,
)
from sparsesim.prune.structure import choose_heads
from sparsesim.workload.network import Workload, load_workload

FC = Linear("fc", in_features=4, out_features=1)


def _keep(criterion, w, sparsity=0.5, layer=FC, **kw):
    stats = LayerStats(**{k: {"w": v} for k, v in kw.items()})
    s = score(criterion, layer, "w", np.asarray(w, dtype=np.float32), stats=stats)
    spec = PruneSpec(criterion, sparsity=sparsity)
    [m] = keep_masks([(layer, "w", s)], spec)
    return m


# --- criteria, each on a hand-computed case ---------------------------------------------------

def test_magnitude_prunes_smallest_absolute_values():
    np.testing.assert_array_equal(_keep("magnitude", [[0.5, -2.0, 0.1, 3.0]]),
                                  [[False, True, False, True]])


def test_random_is_seeded_uniform_scores():
    w = np.ones((3, 5), np.float32)
    a = score("random", FC, "w", w, rng=np.random.default_rng(4))
    b = score("random", FC, "w", w, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.random.default_rng(4).random((3, 5), dtype=np.float32))


def test_taylor_scores_abs_gradient_times_weight():
    # |g·w| = [4, 2, 3, 0.4]: the two lowest (0.4 and 2) go.
    np.testing.assert_array_equal(
        _keep("taylor", [[1, 2, 3, 4]], grads=np.array([[4, 1, 1, 0.1]])),
        [[True, False, True, False]])


def test_fisher_scores_half_fisher_times_weight_squared():
    # ½·F·w² = [0.5, 2, 0.45, 0.125]: 0.125 and 0.45 go.
    w = np.array([[1, 2, 3, 0.5]], np.float32)
    f = np.array([[1, 1, 0.1, 1]], np.float32)
    np.testing.assert_allclose(score("fisher", FC, "w", w, stats=LayerStats(fisher={"w": f})),
                               [[0.5, 2, 0.45, 0.125]])
    np.testing.assert_array_equal(_keep("fisher", w, fisher=f), [[True, True, False, False]])


def test_wanda_compares_within_each_output_row():
    layer = Linear("fc", in_features=4, out_features=2)
    w = np.array([[1, 1, 1, 1], [4, 0.2, 3, 100]], np.float32)
    norms = np.array([1, 10, 1, 0.1], np.float32)
    s = score("wanda", layer, "w", w, stats=LayerStats(act_norms={"w": norms}))
    np.testing.assert_allclose(s, [[1, 10, 1, 0.1], [4, 2, 3, 10]])
    [row] = keep_masks([(layer, "w", s)], PruneSpec("wanda", sparsity=0.5, compare="row"))
    # row 0: 0.1 and the first 1 (ties: lower index first) go; row 1: 2 and 3 go.
    np.testing.assert_array_equal(row, [[False, True, True, False], [True, False, False, True]])
    [whole] = keep_masks([(layer, "w", s)], PruneSpec("wanda", sparsity=0.5, compare="tensor"))
    assert whole[0].sum() == 1 and whole[1].sum() == 3  # per tensor: rows end up unequal


def test_wanda_broadcasts_channel_norms_over_conv_taps_and_groups():
    conv = Conv2d("c", c=4, h=5, w=5, m=4, r=3, s=3, groups=2)
    w = np.ones((4, 2, 3, 3), np.float32)
    s = score("wanda", conv, "w", w, stats=LayerStats(act_norms={"w": np.array([1, 2, 3, 4.])}))
    np.testing.assert_allclose(s[:, :, 0, 0], [[1, 2], [1, 2], [3, 4], [3, 4]])
    assert (s == s[:, :, :1, :1]).all()


def test_data_criteria_without_statistics_name_what_is_missing():
    with pytest.raises(SparsesimError) as err:
        prune_workload(load_workload("resnet18"), PruneSpec("taylor"))
    assert err.value.layer == "conv1" and err.value.field == "grads.w"
    assert "resnet18.toml" in str(err.value)


# --- rounding, ties, exact counts -------------------------------------------------------------

def test_counts_round_like_torch_prune():
    assert prune_count(10, 0.25) == 2 and prune_count(10, 0.35) == 4  # round half to even
    assert prune_count(7, 0.8) == 6


def test_lowest_breaks_ties_by_position():
    np.testing.assert_array_equal(lowest(np.array([1.0, 0, 1, 0, 1]), 3),
                                  [True, True, False, True, False])


shapes = st.sampled_from([
    Linear("fc", in_features=13, out_features=7), Linear("fc", in_features=4, out_features=9),
    Conv2d("c", c=6, h=6, w=6, m=5, r=3, s=3), Conv2d("dw", c=4, h=6, w=6, m=4, r=3, s=3,
                                                      groups=4),
    MatMul("mm", m=3, k=10, n=6)])


@given(shapes, st.floats(0, 0.99), st.sampled_from(["unstructured", "filter", "channel",
                                                    "block"]), st.integers(0, 2**16))
def test_achieved_sparsity_is_the_rounded_target(layer, sparsity, granularity, seed):
    w = synthetic_weights(Workload("t", (layer,)), seed=seed)[layer.name]["w"]
    spec = PruneSpec("magnitude", granularity, sparsity, block=2)
    [keep] = keep_masks([(layer, "w", np.abs(w))], spec)
    assert keep.shape == w.shape
    view = keep.T if isinstance(layer, MatMul) else keep.reshape(keep.shape[0], -1)
    rows, k = view.shape
    if granularity == "unstructured":
        assert (~keep).sum() == prune_count(keep.size, sparsity)
    elif granularity == "filter":
        assert (~view.any(axis=1)).sum() == prune_count(rows, sparsity)
        assert set(view.sum(axis=1)) <= {0, k}
    elif granularity == "channel":
        width = 9 if isinstance(layer, Conv2d) else 1
        per = view.reshape(rows, k // width, width)
        assert (~per.any(axis=(0, 2))).sum() == prune_count(k // width, sparsity)
    else:
        blocks = math.ceil(rows / 2) * math.ceil(k / 2)
        pad = np.zeros((math.ceil(rows / 2) * 2, math.ceil(k / 2) * 2), bool)
        pad[:rows, :k] = view
        gone = ~pad.reshape(pad.shape[0] // 2, 2, pad.shape[1] // 2, 2).any(axis=(1, 3))
        assert gone.sum() == prune_count(blocks, sparsity)


@given(shapes, st.floats(0, 0.99), st.integers(0, 2**16))
def test_row_comparison_prunes_every_row_equally(layer, sparsity, seed):
    w = synthetic_weights(Workload("t", (layer,)), seed=seed)[layer.name]["w"]
    [keep] = keep_masks([(layer, "w", np.abs(w))], PruneSpec(sparsity=sparsity, compare="row"))
    view = keep.T if isinstance(layer, MatMul) else keep.reshape(keep.shape[0], -1)
    assert ((~view).sum(axis=1) == prune_count(view.shape[1], sparsity)).all()


@given(shapes, st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**16))
def test_nm_masks_are_conformant_in_every_group(layer, n, m, seed):
    n = min(n, m)
    w = synthetic_weights(Workload("t", (layer,)), seed=seed)[layer.name]["w"]
    [keep] = keep_masks([(layer, "w", np.abs(w))], PruneSpec(granularity="nm", nm=(n, m)))
    view = keep.T if isinstance(layer, MatMul) else keep.reshape(keep.shape[0], -1)
    k = view.shape[1]
    for g0 in range(0, k, m):  # every group keeps exactly min(n, its length)
        assert (view[:, g0:g0 + m].sum(axis=1) == min(n, len(range(g0, min(k, g0 + m))))).all()
    for ops in gemm_operands(layer, LayerMasks({"w": keep})):  # what the nm PE checks
        for i in range(ops.gemm.count if ops.w is not None and ops.w.ndim == 3 else 1):
            check_conformant(ops.instance(i)[1], n, m, tensor="W", layer=layer.name)


def test_nm_keeps_the_largest_of_each_group():
    w = np.array([[0.1, 5, -3, 0.2, 9, 1, 2, 8, 7]], np.float32)
    [keep] = keep_masks([(Linear("fc", 9, 1), "w", np.abs(w))], PruneSpec(granularity="nm"))
    np.testing.assert_array_equal(keep, [[False, True, True, False, True, False, False, True,
                                          True]])


def test_already_pruned_weights_stay_pruned():
    w = np.array([[5.0, 4, 3, 2, 1, 0.5]])
    prior = np.array([[False, True, True, True, True, True]])
    [keep] = keep_masks([(Linear("fc", 6, 1), "w", np.abs(w))], PruneSpec(sparsity=0.5),
                        [prior])
    np.testing.assert_array_equal(keep, [[False, True, True, True, False, False]])


# --- scope ------------------------------------------------------------------------------------

def test_global_and_per_layer_scope_differ_as_they_should():
    wl = Workload("two", (Linear("wide", in_features=1024, out_features=64),
                          Linear("narrow", in_features=16, out_features=64)))
    local = prune_workload(wl, PruneSpec(sparsity=0.6))
    glob = prune_workload(wl, PruneSpec(sparsity=0.6, scope="global"))
    per = {k: v["weight_sparsity"] for k, v in local.meta["layers"].items()}
    assert per == pytest.approx({"wide": 0.6, "narrow": 0.6}, abs=1 / 1024)
    g = {k: v["weight_sparsity"] for k, v in glob.meta["layers"].items()}
    # Kaiming scale: the wide layer's weights are 8x smaller, so a global ranking takes them.
    assert g["wide"] > 0.6 > g["narrow"]
    assert glob.meta["weight_sparsity"] == pytest.approx(0.6, abs=1 / (64 * 1040))
    w = synthetic_weights(wl)
    thresh = np.sort(np.abs(np.concatenate([w["wide"]["w"].ravel(), w["narrow"]["w"].ravel()]))
                     )[prune_count(64 * 1040, 0.6) - 1]
    for name in ("wide", "narrow"):  # one threshold over both tensors
        kept = np.abs(w[name]["w"])[glob.masks[name].weights["w"]]
        assert kept.min() > thresh


def test_global_structured_scope_stays_within_one_unit():
    wl = load_workload("resnet18")
    tr = prune_workload(wl, PruneSpec(granularity="filter", sparsity=0.3, scope="global"))
    biggest = max(math.prod(m.weights["w"].shape[1:]) for m in tr.masks.values())
    total = sum(m.weights["w"].size for m in tr.masks.values())
    assert abs(tr.meta["weight_sparsity"] * total - prune_count(total, 0.3)) <= biggest


def test_spec_rejects_meaningless_combinations():
    for kwargs, field in (({"granularity": "nm", "scope": "global"}, "scope"),
                          ({"granularity": "filter", "compare": "row"}, "compare"),
                          ({"sparsity": 1.0}, "sparsity"), ({"nm": (5, 4)}, "nm"),
                          ({"criterion": "l2"}, "criterion"), ({"granularity": "x"},
                                                               "granularity")):
        with pytest.raises(SparsesimError) as err:
            PruneSpec(**kwargs)
        assert err.value.field == field


# --- shape granularities ----------------------------------------------------------------------

def test_head_pruning_keeps_the_best_heads_and_shrinks_the_layer():
    att = Attention("a", l=8, e=16, heads=4)
    scores = {t: np.ones(s) for t, s in (("q", (16, 16)), ("k", (16, 16)), ("v", (16, 16)),
                                         ("o", (16, 16)))}
    scores["q"][8:12] = 0  # head 2 is the least important
    wl, info = prune_heads(Workload("w", (att,)), {"a": scores}, 0.25)
    assert wl.layers[0].heads_kept == 3 and info["a"]["kept_heads"] == [0, 1, 3]


def test_grouped_kv_heads_are_kept_group_packed():
    att = Attention("a", l=4, e=36, heads=6, kv_heads=3)  # groups {0,1} {2,3} {4,5}
    kept = choose_heads(att, np.array([5, 4, 9, 0, 1, 1.0]), 0.5)
    assert kept.tolist() == [0, 1, 2]  # group 0 (mean 4.5) whole, then group 1's best head
    assert replace(att, heads_kept=3).active_kv_heads == 2


def test_token_pruning_cascades_through_later_layers():
    wl = load_workload("minilm_l6_seq128")
    pruned, info = prune_tokens(wl, 0.25)
    atts = [x for x in pruned.layers if isinstance(x, Attention)]
    assert [a.l for a in atts] == [128, 96, 72, 54, 40, 30]
    fcs = {x.name: x.tokens for x in pruned.layers if isinstance(x, Linear)}
    assert fcs["encoder.0.intermediate"] == 96 and fcs["encoder.5.output"] == 22
    assert info["encoder.5.attention"] == {"tokens": 30, "tokens_kept": 22}
    some, _ = prune_tokens(wl, 0.5, token_layers=[2])
    assert [x.l for x in some.layers if isinstance(x, Attention)] == [128] * 3 + [64] * 3
    dynamic, _ = prune_tokens(wl, 0.0, keep_ratios={"encoder.0.attention": 0.5})
    assert [x.l for x in dynamic.layers if isinstance(x, Attention)] == [128] + [64] * 5
    assert simulate(dynamic, "default").totals["dense_macs"] < wl.dense_macs


def test_token_pruning_leaves_other_streams_alone():
    wl = load_workload("vit_b16")
    pruned, _ = prune_tokens(wl, 0.5, token_layers=[0])
    for a, b in zip(wl.layers, pruned.layers):
        if isinstance(a, Linear) and a.tokens not in (197,):
            assert a == b  # the one-token classifier keeps its shape
    assert isinstance(pruned.layers[0], Conv2d) and pruned.layers[0] == wl.layers[0]


def test_kv_pruning_shrinks_the_keys():
    wl = load_workload("smollm2_135m_decode")
    pruned, info = prune_kv(wl, 0.75)
    att = [x for x in pruned.layers if isinstance(x, Attention)][0]
    assert att.kv_len == 512 and att.l == 1
    trace = prune_workload(wl, PruneSpec(granularity="kv", sparsity=0.75))
    assert trace.meta["layers"]["layers.0.self_attn"] == {"kv": 2048, "kv_kept": 512}


def test_head_trace_stores_the_reduced_shapes(tmp_path):
    trace = prune_workload(load_workload("bert_base_seq128"),
                           PruneSpec(granularity="head", sparsity=0.5))
    trace.save(tmp_path / "h.npz")
    from sparsesim.sparsity.trace import load_trace

    loaded = load_trace(tmp_path / "h.npz")
    att = loaded.workload.layers[0]
    assert isinstance(att, Attention) and att.heads_kept == 6
    assert loaded.meta["layers"][att.name]["heads_kept"] == 6


# --- network slimming --------------------------------------------------------------------------

def test_slimming_threshold_is_global_and_cascades():
    wl = Workload("chain", (Conv2d("c1", c=3, h=8, w=8, m=4, r=3, s=3, padding=1),
                            Conv2d("dw", c=4, h=8, w=8, m=4, r=3, s=3, padding=1, groups=4),
                            Conv2d("c2", c=4, h=8, w=8, m=6, r=3, s=3, padding=1),
                            Linear("fc", in_features=6 * 64, out_features=10)))
    gammas = {"c1": np.array([0.9, 0.01, 0.5, 0.02]),
              "c2": np.array([0.03, 0.8, 0.7, 0.6, 0.04, 0.9])}
    kept = slim_channels(gammas, amount=0.4)  # 4 of 10 go: 0.01 0.02 0.03 0.04
    assert kept["c1"].tolist() == [0, 2] and kept["c2"].tolist() == [1, 2, 3, 5]
    assert {k: v.tolist() for k, v in slim_channels(gammas, threshold=0.045).items()} == {
        k: v.tolist() for k, v in kept.items()}
    consumers = {"c1": ["dw"], "dw": ["c2"], "c2": ["fc"]}
    slim, info = slim_workload(wl, {"c1": kept["c1"], "c2": kept["c2"]}, consumers)
    c1, dw, c2, fc = slim.layers
    assert (c1.m, dw.c, dw.m, dw.groups, c2.c, c2.m, fc.in_features) == (2, 2, 2, 2, 2, 4, 256)
    assert info["fc"]["in_channels_kept"] == 4


def test_sequential_consumers_follow_a_plain_chain():
    wl = load_workload("vgg16")
    cons = sequential_consumers(wl)
    assert cons[wl.layers[0].name] == [wl.layers[1].name] and len(cons) == 13


# --- activations -------------------------------------------------------------------------------

def test_activation_pruning_masks():
    x = np.array([[0.1, -3, 2, 0.5, 0, 4], [1, 1, 1, 1, 1, 1.0]])
    np.testing.assert_array_equal(topk_mask(x, 0.5), [[False, True, True, False, False, True],
                                                      [False, False, False, True, True, True]])
    assert dynamic_threshold_mask(x, 0.5).sum() == 6
    nm = nm_activation_mask(np.arange(24.0).reshape(2, 6, 2), 1, 3, axis=1)
    assert (nm.reshape(2, 2, 3, 2).sum(axis=2) == 1).all()
    assert ActPrune.parse("nm:2:4").nm == (2, 4) and ActPrune.parse("topk:0.3").value == 0.3
    with pytest.raises(SparsesimError):
        ActPrune.parse("median:1")


def test_activation_density_models_are_drawn_with_their_seed(tmp_path):
    from sparsesim.sparsity.masks import ActivationModel
    from sparsesim.sparsity.trace import load_trace

    wl = load_workload("resnet18")
    models = {layer.name: ActivationModel(0.4, None, i) for i, layer in enumerate(wl.layers)}
    trace = prune_workload(wl, PruneSpec(sparsity=0.5), act_models=models)
    trace.save(tmp_path / "t.npz")
    loaded = load_trace(tmp_path / "t.npz")
    for name, m in trace.masks.items():
        np.testing.assert_array_equal(m.inputs, loaded.masks[name].inputs)
    assert 0.38 < loaded.masks["layer1.0.conv1"].inputs.mean() < 0.42


# --- schedules ---------------------------------------------------------------------------------

def test_schedule_levels():
    assert imp_levels(3) == pytest.approx((0.2, 0.36, 0.488))
    lv = iterative_levels(0.9, 4)
    assert lv[-1] == pytest.approx(0.9) and list(lv) == sorted(lv)
    assert iterative_levels(0.8, 4, kind="linear") == pytest.approx((0.2, 0.4, 0.6, 0.8))


def test_run_schedule_walks_levels_with_rewind_and_training():
    calls = []
    recs = run_schedule((0.2, 0.36), prune_to=lambda s: calls.append(("prune", s)) or s,
                        rewind=lambda: calls.append("rewind"),
                        train=lambda: calls.append("train"), evaluate=lambda: 0.5)
    assert calls == [("prune", 0.2), "rewind", "train", ("prune", 0.36), "rewind", "train"]
    assert recs[1] == {"level": 0.36, "sparsity": 0.36, "accuracy": 0.5}


def test_imp_on_numpy_weights_prunes_a_fifth_of_the_remainder_each_round():
    layer = Linear("fc", in_features=50, out_features=20)
    w = synthetic_weights(Workload("t", (layer,)))["fc"]["w"]
    keep = np.ones_like(w, bool)
    for target in imp_levels(4):
        [keep] = keep_masks([(layer, "w", np.abs(w))], PruneSpec(sparsity=target), [keep])
        assert (~keep).sum() == prune_count(w.size, target)


# --- synthetic weights and the whole path --------------------------------------------------------

@pytest.mark.parametrize("dist", ["normal", "uniform", "laplace"])
def test_synthetic_weights_are_seeded_and_kaiming_scaled(dist):
    wl = Workload("t", (Linear("fc", in_features=2000, out_features=300),))
    w = synthetic_weights(wl, distribution=dist, seed=3)["fc"]["w"]
    assert w.dtype == np.float32 and w.std() == pytest.approx(math.sqrt(2 / 2000), rel=0.02)
    np.testing.assert_array_equal(w, synthetic_weights(wl, distribution=dist, seed=3)["fc"]["w"])


# One workload per kind of layer (conv, depthwise, MHA + FFN, GQA decode + lm_head); the
# ResNet-50 benchmark (analysis/prune_bench.py) covers size.
@pytest.mark.parametrize(("name", "spec"), [
    ("resnet18", PruneSpec(sparsity=0.7)), ("mobilenet_v2", PruneSpec("random", "nm", nm=(1, 4))),
    ("minilm_l6_seq128", PruneSpec(sparsity=0.7)),
    ("minilm_l6_seq128", PruneSpec("random", "nm", nm=(1, 4))),
    ("smollm2_135m_decode", PruneSpec("random", "nm", nm=(1, 4)))])
def test_every_kind_of_shipped_workload_prunes(name, spec):
    tr = prune_workload(load_workload(name), spec)
    assert tr.meta["method"]["criterion"] == spec.criterion
    assert tr.meta["weight_sparsity"] == pytest.approx(
        0.7 if spec.granularity == "unstructured" else 0.75, abs=2e-3)


def test_nm_trace_runs_on_nm_pes():
    wl = load_workload("resnet18")
    trace = prune_workload(wl, PruneSpec(granularity="nm", nm=(2, 4)))
    arch = with_overrides(load_arch("default"), {"pe.kind": "nm"})
    dense = simulate(wl, "default").totals["cycles"]
    assert simulate(wl, arch, trace=trace).totals["cycles"] < dense
