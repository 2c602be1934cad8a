"""A gated FFN (SwiGLU: down(act(gate) · up)) compacts where *either* projection's filter is
dead and writes zero; a dead filter with a bias writes a constant, which gates nothing.

Expected shapes by hand from the pruned filter sets; the Llama count from the masks.
"""

from __future__ import annotations

import numpy as np

from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.prune.compact import compact
from sparsesim.workload.network import load_workload, workload_from_dict


def glu(bias: bool):
    return workload_from_dict({
        "network": {"name": "glu"},
        "layer": [
            {"name": "gate", "op": "linear", "in_features": 8, "out_features": 6,
             "bias": bias, "input": "@input"},
            {"name": "up", "op": "linear", "in_features": 8, "out_features": 6,
             "input": "@input"},
            {"name": "act_mul", "op": "mul", "input": ["gate", "up"]},
            {"name": "down", "op": "linear", "in_features": 6, "out_features": 8},
        ]}, file="glu.toml")


def dead_rows(wl, dead):
    out = {}
    for name, rows in dead.items():
        m = np.ones(wl.layer(name).weight_shapes()["w"], dtype=bool)
        m[sorted(rows)] = False
        out[name] = {"w": m}
    return out


def shapes(wl):
    return {x.name: (x.in_channels, x.out_channels) for x in wl.layers}


def test_one_zero_path_zeroes_the_product():
    wl = glu(bias=False)
    c = compact(wl, dead_rows(wl, {"gate": {0, 1}, "up": {1, 2}}))
    # channels 0, 1, 2 are 0 · x = 0: gone from gate, up and down's input; 3 of 6 stay
    assert shapes(c.workload) == {"gate": (8, 3), "up": (8, 3), "down": (3, 8)}
    assert c.layers["down"]["folded"] == {"from": "act_mul", "channels": 3, "bias": "scalar"}


def test_a_biased_dead_filter_is_a_constant_and_gates_nothing():
    wl = glu(bias=True)
    c = compact(wl, dead_rows(wl, {"gate": {0, 1}, "up": {1, 2}}))
    # gate's dead filter 0 writes its bias: b · up[0] still varies, so channel 0 stays;
    # 1 and 2 are zero through up (no bias)
    assert shapes(c.workload) == {"gate": (8, 4), "up": (8, 4), "down": (4, 8)}
    assert c.layers["gate"]["pruned_kept"] == {"mul with an unpruned path": 1}


def test_llama_ffn_keeps_only_channels_alive_in_both_projections():
    wl = load_workload("llama2_7b_block_prefill")
    spec = PruneSpec("magnitude", granularity="filter", sparsity=0.5)
    masks = prune_workload(wl, PruneSpec("magnitude", granularity="filter", sparsity=0.5,
                                         compact=False)).masks
    alive = [masks[n].weights["w"].any(axis=1) for n in ("mlp.gate_proj", "mlp.up_proj")]
    both = int((alive[0] & alive[1]).sum())
    got = shapes(prune_workload(wl, spec).workload)
    assert got["mlp.gate_proj"] == got["mlp.up_proj"] == (4096, both)
    assert got["mlp.down_proj"] == (both, 4096)
    assert 2600 < both < 2900  # about a quarter of 11,008 (two independent halves)
