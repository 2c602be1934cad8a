"""A training step keeps attention's structural zeros (issue 15 item 4, loose end a): the
gradient of a score is zero wherever P is (causal future keys, keys top-k dropped), so
``QKᵀ``'s ``dO`` (``dS``) carries P's mask into ``dQ = dS·K`` and ``dKᵀ = Qᵀ·dS``, and
``PV``'s ``dP = dO·Vᵀ`` is needed only where P is non-zero. Expected effectual MACs are
counted here by hand: every backward score GEMM does ``d`` products per kept (query, key)."""

import numpy as np
import pytest

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.engine.training import Training, backward_operands
from sparsesim.mapping.lower import gemm_operands
from sparsesim.pe.kinds import compute
from sparsesim.pe.reference import run_skip_reference
from sparsesim.sparsity.masks import LayerMasks, SparsityModel
from sparsesim.arch.array import ArrayConfig
from sparsesim.arch.config import Arch
from sparsesim.arch.pe import PeConfig
from sparsesim.workload.layers import Attention
from sparsesim.workload.network import Workload

L, HEADS, D = 32, 2, 32
SCORE_BACKWARD = ("qk.dx", "qk.dw", "pv.dx", "pv.dw")


def skip(**over):
    return with_overrides(load_arch("default"), {"memory.ideal": True, "pe.kind": "skip",
                                                 "pe.operand": "both", "pe.sync": "pe", **over})


def step(causal, sparsity=None, arch=None):
    att = Attention("att", l=L, e=HEADS * D, heads=HEADS, causal=causal)
    df = simulate(Workload("net", (att,)), arch or skip(), sparsity=sparsity,
                  training=Training(input_gradient=True)).df
    return df.set_index("gemm")


def test_causal_backward_computes_only_the_visible_scores():
    rows = step(causal=True)
    visible = L * (L + 1) // 2  # query i sees keys 0..i
    for name in SCORE_BACKWARD:
        assert rows.loc[name, "effectual_macs"] == HEADS * D * visible, name
        assert rows.loc[name, "dense_macs"] == HEADS * L * L * D, name


def test_top_k_backward_computes_only_the_kept_scores():
    k = 5
    rows = step(causal=False, sparsity=SparsityModel(attn_top_k=k))
    for name in SCORE_BACKWARD:
        assert rows.loc[name, "effectual_macs"] == HEADS * D * L * k, name
    # dQ = dS·K on os: each PE row streams its query's k kept scores (one 32×32 fold per
    # head): k steps plus the fold's fill and drain, against L dense
    assert rows.loc["qk.dx", "cycles"] == HEADS * (k + 32 + 32 - 2)


def test_nothing_masked_nothing_changes():
    rows = step(causal=False)
    dense = step(causal=False, arch=skip(**{"pe.kind": "dense"}))
    for name in SCORE_BACKWARD:
        assert rows.loc[name, "effectual_macs"] == HEADS * L * L * D
        assert rows.loc[name, "cycles"] == dense.loc[name, "cycles"]


def test_dense_pes_still_compute_every_backward_product():
    rows = step(causal=True, arch=skip(**{"pe.kind": "dense"}))
    full = step(causal=False, arch=skip(**{"pe.kind": "dense"}))
    for name in SCORE_BACKWARD:
        assert rows.loc[name, "cycles"] == full.loc[name, "cycles"]


def test_pruned_output_gradients_meet_the_causal_mask():
    # a pruned dO of QKᵀ (gradient pruning) AND the causal mask: the products kept are those
    # of scores both visible and kept; counted here from the two masks directly.
    att = Attention("att", l=6, e=8, heads=2, causal=True)
    [qk] = [o for o in gemm_operands(att, LayerMasks()) if o.gemm.name == "qk"]
    grad = np.random.default_rng(4).random((qk.gemm.count, 6, 6)) < 0.6
    dx, dw = backward_operands(qk, grad)
    needed = grad & att.causal_mask()[None]
    d = att.head_dim
    arch = Arch(array=ArrayConfig(4, 4, "os"), pe=PeConfig(kind="skip", operand="both",
                                                           sync="pe"))
    assert compute(dx, arch).effectual_macs == int(needed.sum()) * d
    assert compute(dw, arch).effectual_macs == int(needed.sum()) * d
    # the engine against the cycle-stepped reference, instance by instance
    for ops in (dx, dw):
        ref = sum(sum(run_skip_reference(*ops.instance(i), "os", 4, 4, "both", "pe",
                                         ops.o_mask(i)).fold_cycles)
                  for i in range(ops.gemm.count))
        assert compute(ops, arch).compute_cycles == ref


@pytest.mark.parametrize("kv_heads", [None, 1])
def test_pv_input_gradient_output_mask_is_p(kv_heads):
    att = Attention("att", l=8, e=16, heads=2, kv_heads=kv_heads, causal=True)
    rng = np.random.default_rng(7)
    p = rng.random(att.activation_shapes()["p"]) < 0.5
    ops = {o.gemm.name: o for o in gemm_operands(att, LayerMasks(activations={"p": p}))}
    dx, _ = backward_operands(ops["pv"], None)
    assert dx.o is not None
    np.testing.assert_array_equal(dx.o, ops["pv"].a)  # dP needed where P (AND causal) is
    kept = int((p & att.causal_mask()).sum())
    assert compute(dx, skip()).effectual_macs == kept * att.head_dim
    dqk, _ = backward_operands(ops["qk"], None)
    assert compute(dqk, skip()).effectual_macs == kept * att.head_dim
    small = Arch(array=ArrayConfig(4, 4, "os"), pe=PeConfig(kind="skip", operand="both",
                                                            sync="pe"))
    ref = sum(sum(run_skip_reference(*dx.instance(i), "os", 4, 4, "both", "pe",
                                     dx.o_mask(i)).fold_cycles) for i in range(dx.gemm.count))
    assert compute(dx, small).compute_cycles == ref
