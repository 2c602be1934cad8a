"""Attention-internal masks and shape pruning must agree (issue 15 item 4, loose end b).

A trace stores its layers after head, token and KV pruning, so its Q, K, V, P and O-input
masks must have the pruned shapes (``Attention.activation_shapes``, computed here by hand):
masks of the unpruned layer are refused in one line naming the layer and the field, in a
trace built in code and in a file edited to disagree; a sweep point that asks for head,
token, KV or attention pruning on top of a trace is refused (it was silently ignored); the
synthetic front-end draws its P masks on the pruned layer."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from sparsesim.errors import SparsesimError
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.sweep import run_point
from sparsesim.workload.layers import Attention
from sparsesim.workload.network import Workload

FULL = Attention("att", l=8, e=32, heads=4, causal=True)  # 4 heads of 8


def dense_internals(layer):
    return {k: np.ones(s, bool) for k, s in layer.activation_shapes().items()}


# pruned layer, the first internal mask that disagrees, the shape it should have by hand
CASES = {
    "heads": (replace(FULL, heads_kept=2), "q", (1, 2, 8, 8)),
    "tokens": (replace(FULL, l=5), "q", (1, 4, 5, 8)),
    "kv": (replace(FULL, kv_len=6), "k", (1, 4, 6, 8)),
}


@pytest.mark.parametrize("case", CASES)
def test_unpruned_internal_masks_on_a_pruned_layer_are_one_error(case):
    layer, field, expected = CASES[case]
    with pytest.raises(SparsesimError) as err:
        Trace(Workload("net", (layer,)), {"att": LayerMasks(activations=dense_internals(FULL))})
    msg = str(err.value)
    assert "\n" not in msg
    assert "'att'" in msg and f"activations.{field}" in msg and str(expected) in msg
    # masks of the pruned shapes are accepted
    Trace(Workload("net", (layer,)), {"att": LayerMasks(activations=dense_internals(layer))})
    assert layer.activation_shapes()[field] == expected


def test_a_trace_file_edited_to_prune_heads_is_refused(tmp_path):
    Trace(Workload("net", (FULL,)), {"att": LayerMasks(activations=dense_internals(FULL))}
          ).save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(arrays["manifest"].tobytes().decode())
    manifest["layers"][0]["heads_kept"] = 2  # the layer now says 2 heads, the masks 4
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "edited.npz", **arrays)
    with pytest.raises(SparsesimError) as err:
        load_trace(tmp_path / "edited.npz")
    msg = str(err.value)
    assert "\n" not in msg and "edited.npz" in msg and "'att'" in msg
    assert "activations.q" in msg and "(1, 2, 8, 8)" in msg


@pytest.mark.parametrize("field,value", [("head_keep", 0.5), ("token_keep", 0.5),
                                         ("kv_keep", 0.5), ("attn_top_k", 2)])
def test_a_sweep_point_cannot_prune_a_trace_again(tmp_path, field, value):
    path = tmp_path / "t.npz"
    Trace(Workload("net", (FULL,)), {"att": LayerMasks(activations=dense_internals(FULL))}
          ).save(path)
    alone = run_point({"trace": str(path), "pe.kind": "skip"})
    assert alone["status"] == "ok"
    row = run_point({"trace": str(path), "pe.kind": "skip", f"sparsity.{field}": value})
    assert row["status"] == "error"
    assert f"sparsity.{field}" in row["error"] and "\n" not in row["error"]


def test_synthetic_prune_draws_p_on_the_pruned_layer(tmp_path):
    # minilm_l6_seq128: 12 heads of 32 over 128 tokens; KV pruning 0.5 keeps 64 keys
    out = tmp_path / "kv.npz"
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "prune", "-w",
                           "minilm_l6_seq128", "--granularity", "kv", "--sparsity", "0.5",
                           "--attn-top-k", "16", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    trace = load_trace(out)
    attention = [x for x in trace.workload.layers if x.op == "attention"]
    assert attention
    for layer in attention:
        p = trace.masks[layer.name].activations["p"]
        assert p.shape == (1, 12, 128, 64)
        assert (p.sum(axis=-1) == 16).all()  # top-16 of the 64 kept keys, every query row
