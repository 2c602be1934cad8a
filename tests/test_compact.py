"""Structured pruning compacts the network along its graph (issue 15, item 1).

Expected shapes are derived by hand from which filters/channels the masks prune (the channel
groups of an add are the intersection of the paths' pruned sets; a depthwise chain loses
what its expand conv or itself loses); dense cycles from SCALE-Sim's os formula
(DESIGN.md §3: folds · (K + Ra + Ca − 2)), not from the code under test.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.api import simulate
from sparsesim.errors import SparsesimError
from sparsesim.mapping.lower import lower
from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.prune.compact import compact
from sparsesim.prune.front import score_weights, weight_masks
from sparsesim.prune.synthetic import synthetic_weights
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.workload.network import load_workload, workload_from_dict

# a: conv 3→8 · e: 1x1 expand 8→16 (reads a) · d: 3x3 depthwise 16 · p: 1x1 project 16→8 ·
# add(p, a) · fc: flatten 8·4·4 → 10 (the network output)
TOY = {
    "network": {"name": "toy"},
    "defaults": {"n": 1},
    "layer": [
        {"name": "a", "op": "conv2d", "c": 3, "h": 4, "w": 4, "m": 8, "r": 1, "s": 1},
        {"name": "e", "op": "conv2d", "c": 8, "h": 4, "w": 4, "m": 16, "r": 1, "s": 1},
        {"name": "d", "op": "conv2d", "c": 16, "h": 4, "w": 4, "m": 16, "r": 3, "s": 3,
         "padding": 1, "groups": 16},
        {"name": "p", "op": "conv2d", "c": 16, "h": 4, "w": 4, "m": 8, "r": 1, "s": 1},
        {"name": "add", "op": "add", "input": ["p", "a"]},
        {"name": "fc", "op": "linear", "in_features": 128, "out_features": 10},
    ],
}


def toy():
    return workload_from_dict(TOY, file="toy.toml")


def filter_masks(wl, dead: dict[str, set[int]]) -> dict[str, dict[str, np.ndarray]]:
    """Keep-masks with the given filters pruned (all weights of the row)."""
    out = {}
    for name, rows in dead.items():
        shape = wl.layer(name).weight_shapes()["w"]
        m = np.ones(shape, dtype=bool)
        m[sorted(rows)] = False
        out[name] = {"w": m}
    return out


def shapes(wl) -> dict[str, tuple[int, int]]:
    return {x.name: (x.in_channels, x.out_channels) for x in wl.layers}


# --- the graph ---------------------------------------------------------------------------


def test_graph_of_toy_and_block_references() -> None:
    g = toy().graph
    assert g is not None
    assert [n.inputs for n in g.nodes] == [("@input",), ("a",), ("e",), ("d",), ("p", "a"),
                                           ("add",)]
    assert g.outputs == ("fc",)
    bert = load_workload("bert_base_seq128").graph
    assert bert is not None
    # "@block" is the previous repetition's output; short names stay in their repetition
    assert bert.node("encoder.1.attention").inputs == ("encoder.0.output_norm",)
    assert bert.node("encoder.1.attention_res").inputs == ("encoder.1.attention",
                                                           "encoder.0.output_norm")
    assert bert.node("encoder.0.attention").inputs == ("@input",)


def test_every_builtin_declares_its_graph() -> None:
    for name in ("resnet18", "resnet50", "mobilenet_v2", "vgg16", "bert_base_seq128",
                 "vit_b16", "smollm2_135m_decode", "llama2_7b_block_prefill"):
        wl = load_workload(name)
        assert wl.graph is not None, name
    r50 = load_workload("resnet50").graph
    assert r50 is not None
    assert r50.node("layer2.0.downsample").inputs == ("layer1.2.add",)
    assert r50.node("layer2.1.add").inputs == ("layer2.1.conv3", "layer2.0.add")
    assert sum(n.op == "add" for n in r50.nodes) == 16  # 3 + 4 + 6 + 3 bottlenecks
    mb = load_workload("mobilenet_v2").graph
    assert mb is not None
    assert sum(n.op == "add" for n in mb.nodes) == 10  # stride-1 blocks with c_in == c_out


@pytest.mark.parametrize("edit, field", [
    (lambda t: t["layer"][1].update(input="nope"), "input"),
    (lambda t: t["layer"][3].update(input="a"), "input"),  # 8 channels into a 16-channel conv
    (lambda t: t["layer"][4].update(input=["p"]), "input"),  # an add of one input
    (lambda t: t["layer"][4].update(extra=1), "extra"),
    (lambda t: t["layer"][1].update(input="@block"), "input"),  # outside a block
])
def test_bad_graph_is_one_error(edit, field) -> None:
    import copy

    data = copy.deepcopy(TOY)
    edit(data)
    with pytest.raises(SparsesimError) as err:
        workload_from_dict(data, file="toy.toml")
    assert err.value.field == field and err.value.file == "toy.toml"


# --- the toy net by hand ----------------------------------------------------------------


def test_depthwise_chain_loses_what_its_expand_loses() -> None:
    wl = toy()
    c = compact(wl, filter_masks(wl, {"e": {0, 1, 2}}))
    # e: 3 of 16 filters gone; d passes them (13 channels); p reads 13
    assert shapes(c.workload) == {"a": (3, 8), "e": (8, 13), "d": (13, 13), "p": (13, 8),
                                  "fc": (128, 10)}
    d = c.workload.layer("d")
    assert isinstance(d, Conv2d) and d.groups == 13
    assert c.layers["d"]["channels_removed"] == 3
    # p reads the constant through a padded depthwise conv: not constant at the borders,
    # so it folds as a bias map
    assert c.layers["p"]["folded"] == {"from": "d", "channels": 3, "bias": "map"}
    assert "e" not in c.masks  # what is left of e is all kept


def test_add_keeps_a_channel_unless_both_paths_remove_it() -> None:
    wl = toy()
    c = compact(wl, filter_masks(wl, {"p": {3, 5}, "a": {5, 6}}))
    # only channel 5 is pruned on both paths of the add
    assert shapes(c.workload) == {"a": (3, 7), "e": (7, 16), "d": (16, 16), "p": (16, 7),
                                  "fc": (7 * 16, 10)}
    assert c.layers["p"]["pruned_kept"] == {"add with an unpruned path": 1}
    assert c.layers["a"]["pruned_kept"] == {"add with an unpruned path": 1}
    # the kept pruned filters stay as zero rows: p keeps 3 of its 7 rows, a keeps 6
    assert np.flatnonzero(~c.masks["p"]["w"].reshape(7, -1).any(1)).tolist() == [3]
    assert np.flatnonzero(~c.masks["a"]["w"].reshape(7, -1).any(1)).tolist() == [5]
    assert c.layers["e"]["folded"] == {"from": "a", "channels": 1, "bias": "scalar"}
    assert c.layers["fc"]["folded"] == {"from": "add", "channels": 1, "bias": "scalar"}


def test_network_output_never_shrinks_and_unknown_graph_removes_nothing() -> None:
    wl = toy()
    c = compact(wl, filter_masks(wl, {"fc": {0, 1}}))
    assert c.workload.layer("fc").out_channels == 10
    assert c.layers["fc"]["pruned_kept"] == {"network output": 2}
    blind = replace(wl, graph=None)
    c = compact(blind, filter_masks(blind, {"e": {0}, "a": {1}}))
    assert shapes(c.workload) == shapes(wl)
    assert c.summary["graph"] == "unknown"
    assert c.layers["e"]["pruned_kept"] == {"graph unknown": 1}


def test_channel_pruning_drops_inputs_and_unread_filters() -> None:
    wl = toy()
    m_e = np.ones((16, 8, 1, 1), dtype=bool)
    m_e[:, 4] = False  # e no longer reads channel 4 of the add
    m_fc = np.ones((10, 128), dtype=bool)
    m_fc[:, 4 * 16:5 * 16] = False  # fc no longer reads channel 4 either
    m_fc[:, 7 * 16] = False  # and one feature of channel 7 (a local drop only)
    c = compact(wl, {"e": {"w": m_e}, "fc": {"w": m_fc}})
    # channel 4 has no reader left: a and p stop computing it; fc drops 16 + 1 features
    assert shapes(c.workload) == {"a": (3, 7), "e": (7, 16), "d": (16, 16), "p": (16, 7),
                                  "fc": (128 - 17, 10)}
    assert c.kept_inputs["fc"].size == 111 and 7 * 16 not in c.kept_inputs["fc"]
    # with e still reading channel 4, only fc's own inputs go
    c = compact(wl, {"fc": {"w": m_fc}})
    assert shapes(c.workload)["a"] == (3, 8) and shapes(c.workload)["fc"] == (111, 10)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, 7)), st.sets(st.integers(0, 7)), st.sets(st.integers(0, 15)),
       st.sets(st.integers(0, 15)))
def test_toy_shapes_in_closed_form(dead_a, dead_p, dead_e, dead_d) -> None:
    wl = toy()
    dead = {k: v for k, v in {"a": dead_a, "p": dead_p, "e": dead_e, "d": dead_d}.items() if v}
    c = compact(wl, filter_masks(wl, dead))
    stream = max(1, 8 - len(dead_a & dead_p))  # the add's channels pruned on both paths go
    # a constant in e or d is constant at p's input; a p with every filter pruned reads none
    # of them; every tensor keeps at least one channel, every layer one input
    mid = 1 if len(dead_p) == 8 else max(1, 16 - len(dead_e | dead_d))
    a_in = 1 if len(dead_a) == 8 else 3
    e_in = 1 if len(dead_e) == 16 else stream
    assert shapes(c.workload) == {"a": (a_in, stream), "e": (e_in, mid), "d": (mid, mid),
                                  "p": (mid, stream), "fc": (16 * stream, 10)}
    assert c.workload.dense_macs <= wl.dense_macs


# --- built-in networks ------------------------------------------------------------------


def _dead(masks, name):
    m = masks[name]["w"]
    return set(np.flatnonzero(~m.reshape(m.shape[0], -1).any(axis=1)).tolist())


def _os_compute_cycles(gemm_m: int, k: int, n: int, rows: int = 32, cols: int = 32) -> int:
    return math.ceil(gemm_m / rows) * math.ceil(n / cols) * (k + rows + cols - 2)


def test_resnet50_half_the_filters_by_hand() -> None:
    wl = load_workload("resnet50")
    spec = PruneSpec(criterion="random", granularity="filter", sparsity=0.5)
    masks = weight_masks(wl, spec, score_weights(wl, spec, synthetic_weights(wl, seed=0)))
    trace = prune_workload(wl, spec)
    # By hand: inside a bottleneck, conv1 and conv2 keep their unpruned filters and the next
    # conv reads just those; a stage's stream (conv3s, downsample, the adds) loses the
    # channels pruned in every conv3 and the downsample; the stem loses its pruned filters
    # (both its readers are plain convs); fc keeps its 1000 outputs.
    expect: dict[str, tuple[int, int]] = {}
    stem = 64 - len(_dead(masks, "conv1"))
    expect["conv1"] = (3, stem)
    stream = stem
    blocks = {1: 3, 2: 4, 3: 6, 4: 3}
    for stage, count in blocks.items():
        width = wl.layer(f"layer{stage}.0.conv3").out_channels
        gone = _dead(masks, f"layer{stage}.0.downsample")
        for b in range(count):
            gone &= _dead(masks, f"layer{stage}.{b}.conv3")
        out = width - len(gone)
        for b in range(count):
            p = f"layer{stage}.{b}."
            c1 = wl.layer(p + "conv1").out_channels - len(_dead(masks, p + "conv1"))
            c2 = wl.layer(p + "conv2").out_channels - len(_dead(masks, p + "conv2"))
            expect[p + "conv1"] = (stream if b == 0 else out, c1)
            expect[p + "conv2"] = (c1, c2)
            expect[p + "conv3"] = (c2, out)
        expect[f"layer{stage}.0.downsample"] = (stream, out)
        stream = out
    expect["fc"] = (stream, 1000)
    assert shapes(trace.workload) == expect
    # the GEMMs of the thinner network: M = E·F, K = c·r·s, N = m
    for layer in trace.workload.layers:
        (g,) = lower(layer)
        c, m = expect[layer.name]
        if isinstance(layer, Conv2d):
            assert (g.m, g.k, g.n) == (layer.e * layer.f, c * layer.r * layer.s, m)
        else:
            assert isinstance(layer, Linear) and (g.m, g.k, g.n) == (1, c, m)
    closed = sum(_os_compute_cycles(g.m, g.k, g.n) for x in trace.workload.layers
                 for g in lower(x))
    dense = sum(_os_compute_cycles(g.m, g.k, g.n) for x in wl.layers for g in lower(x))
    assert dense == 5_198_904  # issue 15: the dense (and formerly the pruned) figure
    got = simulate(trace.workload, trace=trace).layers["compute_cycles"].sum()
    assert got == closed < 0.5 * dense
    assert closed == 2_474_922  # the lost branch measured ~2,473,912


def test_keep_shape_reproduces_the_masked_numbers() -> None:
    wl = load_workload("resnet18")
    spec = PruneSpec(granularity="filter", sparsity=0.5, compact=False)
    trace = prune_workload(wl, spec)
    assert trace.workload.layers == wl.layers
    masks = weight_masks(wl, spec, score_weights(wl, spec, synthetic_weights(wl, seed=0)))
    assert all(np.array_equal(trace.masks[n].weights["w"], masks[n]["w"]) for n in masks)
    assert trace.meta["compaction"]["compacted"] is False
    dense = simulate(wl).totals
    kept = simulate(wl, trace=trace).totals
    assert kept["cycles"] == dense["cycles"]
    small = simulate(wl, trace=prune_workload(wl, replace(spec, compact=True))).totals
    assert small["cycles"] < dense["cycles"]


def test_transformer_ffn_compacts_residual_stream_does_not() -> None:
    wl = load_workload("bert_base_seq128")
    trace = prune_workload(wl, PruneSpec(granularity="filter", sparsity=0.5))
    inter, out = trace.workload.layer("encoder.0.intermediate"), trace.workload.layer(
        "encoder.0.output")
    assert (inter.in_channels, inter.out_channels) == (768, 1536)  # GELU(bias) folded
    assert (out.in_channels, out.out_channels) == (1536, 768)  # the stream: LayerNorm, attention
    meta = trace.meta["layers"]["encoder.0.output"]
    assert sum(meta["pruned_kept"].values()) == 384  # half of 768, all kept (pinned)
    assert set(meta["pruned_kept"]) <= {"channel-mixing layernorm",
                                        "add with an attention or matmul output"}
    assert meta["folded"] == {"from": "encoder.0.intermediate", "channels": 1536,
                              "bias": "scalar"}


def test_head_keep_shape_masks_the_same_heads() -> None:
    wl = load_workload("minilm_l6_seq128")
    small = prune_workload(wl, PruneSpec(granularity="head", sparsity=0.5))
    kept = prune_workload(wl, PruneSpec(granularity="head", sparsity=0.5, compact=False))
    assert kept.workload.layers == wl.layers
    name = "encoder.0.attention"
    heads = small.meta["layers"][name]["kept_heads"]
    q = kept.masks[name].weights["q"]
    assert q.shape == (384, 384)
    rows = np.flatnonzero(q.any(axis=1))
    assert rows.tolist() == [h * 32 + i for h in heads for i in range(32)]
    assert np.array_equal(kept.masks[name].weights["o"].any(axis=0), q.any(axis=1))


def test_keep_shape_refused_where_nothing_compacts() -> None:
    with pytest.raises(SparsesimError) as err:
        PruneSpec(granularity="unstructured", compact=False)
    assert err.value.field == "compact"
    cli = subprocess.run([sys.executable, "-m", "sparsesim.cli", "prune", "-w", "resnet18",
                          "--granularity", "token", "--keep-shape", "-o", "/tmp/never.npz"],
                         capture_output=True, text=True)
    assert cli.returncode == 2 and "--keep-shape" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
