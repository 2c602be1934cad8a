"""Lowering: every layer type becomes GEMMs, and its masks their operand masks.

One registry entry per layer type (:data:`LOWERINGS`, DESIGN.md §2): conv by im2col per
group (:mod:`sparsesim.mapping.conv`), linear as is, attention as Q/K/V/O projections plus
the score GEMMs ``QKᵀ`` and ``PV`` whose both operands are activations. The GEMMs fold onto
the array by :mod:`sparsesim.mapping.dataflows`.

**Grouped K/V (GQA/MQA): one score GEMM per K/V head.** The ``g = heads / kv_heads`` query
heads of a group read the same K and V, so their queries are stacked: one ``QKᵀ``
(``[g·l × d]·[d × kv]``) and one ``PV`` (``[g·l × kv]·[kv × d]``) per (batch, K/V head),
``count = b · K/V heads``, query head ``j`` of a group on rows ``j·l … (j+1)·l − 1``
(:func:`score_groups`, :func:`stack_query_rows`). Multi-head
attention is ``g = 1``: one GEMM per (batch, head), as before. The reuse rule follows from
this and from the memory model, not from a factor: a GEMM instance fetches each K/V tile it
needs, and the folds of the stacked rows that use the same tile find it resident while the
SRAM holds it (the LRU buffers and tile footprints of :mod:`sparsesim.memory` decide what is
re-read when it does not). With buffers that hold a tile, K/V DRAM reads are exactly
``kv_heads / heads`` of multi-head's (MQA: ``1 / heads``). The stacking also fills more
array rows in decode (``m = g`` instead of 1), which is what a GQA decode kernel does
(FlashDecoding-style grouping of the query heads of a K/V head).

*Partial groups.* Head pruning keeps heads group-packed (:mod:`sparsesim.prune.structure`),
so only the last group can be incomplete (``heads_kept mod g`` heads). Its heads fall back
to one GEMM per (batch, head) of ``l`` rows, named ``qk_partial`` and ``pv_partial``: each
re-reads the group's K/V, as multi-head does (a design that stacks an incomplete group
would read it once; the fallback keeps one fixed group shape per layer).

**Attention's internal operands carry masks** (``LayerMasks.activations``, keyed by
:class:`~sparsesim.names.AttnOperand`; a missing one is dense). ``QKᵀ`` runs on
(Q, Kᵀ): instance (batch, K/V head) stacks its group's query masks as A and takes its K/V
head's ``Kᵀ`` as W (:func:`instance_heads`). ``PV`` runs on (P AND causal, V). The O
projection's A is ``o_in``. The causal mask is also ``QKᵀ``'s *output* mask
(:attr:`~sparsesim.mapping.gemm.GemmOperands.o`): a future score is not needed (softmax
zeroes it), so its products are not effectual and a skipping PE does not compute them
(:mod:`sparsesim.pe.kinds`); a dense PE computes the full score matrix. A measured P (e.g.
top-k of the probabilities) is *not* an output mask of ``QKᵀ``: every score must be
computed to choose the top-k; only the structural, input-independent causal mask is known
before the scores are. In a training step the masks stay: the gradient of a score
(``QKᵀ``'s ``dO``, ``dS``) is zero wherever P is (future and pruned keys:
``GemmOperands.o_grad`` = PV's A), and ``PV``'s ``dP`` is needed only where P is non-zero
(``GemmOperands.a_zero_grad``); :mod:`sparsesim.engine.training`.

*KV-cache appends.* The K and V projections' outputs (``b·l`` rows of ``kv_heads · d``) are
written to DRAM like every GEMM's output: in decode that write is the append of the new
token's keys and values to the KV cache, ``2 · kv_heads · d · o_bits / 8`` bytes per token
per layer (in whole bursts per output tile), in the ``k`` and ``v`` rows'
``dram_write_*_o`` columns. It is not counted a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.mapping.conv import ConvView, Im2col, im2col_matrix
from sparsesim.mapping.gemm import Gemm, GemmOperands, OperandKind
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.workload.layers import LAYER_TYPES, Attention, Conv2d, Layer, Linear, MatMul


# --- layers → GEMMs ---------------------------------------------------------------------------


def _lower_conv(layer: Conv2d) -> list[Gemm]:
    # im2col per group: rows are the n·z·e·f output pixels, K the c/g·t·r·s window.
    g = layer.groups
    return [Gemm(layer.name, "conv", m=layer.n * layer.pixels, k=(layer.c // g) * layer.taps,
                 n=layer.m // g, count=g)]


def _lower_linear(layer: Linear) -> list[Gemm]:
    return [Gemm(layer.name, "fc", m=layer.tokens, k=layer.in_features, n=layer.out_features)]


def _lower_matmul(layer: MatMul) -> list[Gemm]:
    kind = OperandKind.WEIGHT if layer.weights_operand else OperandKind.ACTIVATION
    return [Gemm(layer.name, "matmul", m=layer.m, k=layer.k, n=layer.n, count=layer.count,
                 w_kind=kind)]


@dataclass(frozen=True, slots=True)
class ScoreGroup:
    """One pair of score GEMMs: ``heads`` query heads per instance (stacked rows) and
    ``instances`` (batch × K/V heads) of them; ``suffix`` names the GEMMs (``qk{suffix}``)."""

    suffix: str
    heads: int
    instances: int


def score_groups(layer: Attention) -> tuple[ScoreGroup, ...]:
    """The stacked full groups (``g`` heads per K/V head), then a partial group's heads one by
    one (``heads_kept mod g`` of them); groups with no instance are left out."""
    g = layer.group_size
    full, partial = divmod(layer.active_heads, g)
    groups = (ScoreGroup("", g, layer.b * full), ScoreGroup("_partial", 1, layer.b * partial))
    return tuple(x for x in groups if x.instances)


def stack_query_rows(mask: np.ndarray | None, layer: Attention) -> list[np.ndarray | None]:
    """A query-side mask shared by every (batch, head) (``[l, X]``, e.g. the causal ``P``) as
    the A masks of :func:`score_groups`' GEMMs, in that order: a stacked instance holds its
    group's heads on consecutive rows, so the mask repeats once per stacked head."""
    if mask is None:
        return [None for _ in score_groups(layer)]
    return [np.tile(mask, (x.heads, 1)) for x in score_groups(layer)]


def _lower_attention(layer: Attention) -> list[Gemm]:
    tokens, e, d = layer.b * layer.l, layer.e, layer.head_dim
    act = OperandKind.ACTIVATION
    scores = []
    for x in score_groups(layer):
        rows = x.heads * layer.l
        scores += [
            Gemm(layer.name, f"qk{x.suffix}", m=rows, k=d, n=layer.keys, count=x.instances,
                 w_kind=act),
            Gemm(layer.name, f"pv{x.suffix}", m=rows, k=layer.keys, n=d, count=x.instances,
                 w_kind=act),
        ]
    return [
        Gemm(layer.name, "q", m=tokens, k=e, n=layer.inner),
        Gemm(layer.name, "k", m=tokens, k=e, n=layer.e_kv),
        Gemm(layer.name, "v", m=tokens, k=e, n=layer.e_kv),
        *scores,
        Gemm(layer.name, "o", m=tokens, k=layer.inner, n=e),
    ]


# --- operand masks of the lowered GEMMs ---------------------------------------------------------


def _conv_operands(layer: Conv2d, gemms: list[Gemm], m: LayerMasks) -> list[GemmOperands]:
    [g] = gemms
    a = None if m.inputs is None else im2col_matrix(m.inputs, layer)
    w = None
    if "w" in m.weights:
        mg = layer.m // layer.groups
        w = m.weights["w"].reshape(layer.groups, mg, g.k).transpose(0, 2, 1)
    return [GemmOperands(g, a, w, ConvView(Im2col(layer, m.inputs)))]


def _linear_operands(layer: Linear, gemms: list[Gemm], m: LayerMasks) -> list[GemmOperands]:
    [g] = gemms
    return [GemmOperands(g, m.inputs, None if "w" not in m.weights else m.weights["w"].T)]


def _matmul_operands(layer: MatMul, gemms: list[Gemm], m: LayerMasks) -> list[GemmOperands]:
    [g] = gemms  # B: the weight mask, or an activation B's measured mask
    b = m.weights.get("w") if layer.weights_operand else m.activations.get("b")
    return [GemmOperands(g, m.inputs, b, o=m.activations.get("o"))]


def instance_heads(layer: Attention, group: ScoreGroup) -> list[tuple[int, int, range]]:
    """``(batch, K/V head, query heads)`` of each instance of ``group``'s score GEMMs, in
    instance order (batch outer): a full group's ``g`` heads share K/V head ``j``; a partial
    group's instances are its heads one by one, all on the last K/V head."""
    g = layer.group_size
    full = layer.active_heads // g
    if group.heads == g and group.suffix == "":
        return [(b, j, range(j * g, (j + 1) * g)) for b in range(layer.b) for j in range(full)]
    partial = layer.active_heads - full * g
    return [(b, full, range(full * g + t, full * g + t + 1))
            for b in range(layer.b) for t in range(partial)]


def _query_side(mask: np.ndarray | None, layer: Attention, group: ScoreGroup,
                shared_stacked: np.ndarray | None) -> np.ndarray | None:
    """The A masks of ``group``'s instances: a measured ``[b, heads, l, X]`` mask stacked per
    instance (``[count, g·l, X]``, AND the structural mask ``shared_stacked`` — the causal P
    stacked as :func:`stack_query_rows` does), or the structural mask alone (shared by every
    instance), or dense (``None``)."""
    if mask is None:
        return shared_stacked
    rows = [mask[b, list(heads)].reshape(len(heads) * layer.l, mask.shape[-1])
            for b, _, heads in instance_heads(layer, group)]
    out = np.stack(rows)
    return out if shared_stacked is None else out & shared_stacked[None]


def _key_side(mask: np.ndarray | None, layer: Attention, group: ScoreGroup,
              transpose: bool) -> np.ndarray | None:
    """The W masks of ``group``'s instances from a ``[b, kv_heads, kv, d]`` mask: ``Kᵀ``
    (``[count, d, kv]``, ``transpose``) or ``V`` (``[count, kv, d]``); ``None``: dense."""
    if mask is None:
        return None
    mats = [mask[b, j] for b, j, _ in instance_heads(layer, group)]
    return np.stack([m.T for m in mats] if transpose else mats)


def _attention_operands(layer: Attention, gemms: list[Gemm], m: LayerMasks
                        ) -> list[GemmOperands]:
    """Projections on the input and weight masks; ``QKᵀ`` on (Q, Kᵀ) with the causal mask
    as its output mask (future scores are not needed: softmax zeroes them); ``PV`` on
    (P AND causal, V); the O projection on ``o_in``. A missing internal mask is dense."""
    wt, act = m.weights, m.activations
    x = None if m.inputs is None else m.inputs.reshape(layer.b * layer.l, layer.e)
    t = {name: (None if name not in wt else wt[name].T) for name in ("q", "k", "v", "o")}
    o_in = act.get("o_in")
    o_in = None if o_in is None else o_in.reshape(layer.b * layer.l, layer.inner)
    causal = layer.causal_mask()
    ops: dict[str, GemmOperands] = {}
    by_name = {g.name: g for g in gemms}
    for name, a, w in (("q", x, t["q"]), ("k", x, t["k"]), ("v", x, t["v"]),
                       ("o", o_in, t["o"])):
        ops[name] = GemmOperands(by_name[name], a, w)
    for group, stacked in zip(score_groups(layer), stack_query_rows(causal, layer),
                              strict=True):
        qk, pv = by_name[f"qk{group.suffix}"], by_name[f"pv{group.suffix}"]
        p = _query_side(act.get("p"), layer, group, stacked)
        ops[qk.name] = GemmOperands(
            qk, _query_side(act.get("q"), layer, group, None),
            _key_side(act.get("k"), layer, group, transpose=True), o=stacked, o_grad=p)
        ops[pv.name] = GemmOperands(
            pv, p, _key_side(act.get("v"), layer, group, transpose=False), a_zero_grad=True)
    return [ops[g.name] for g in gemms]


@dataclass(frozen=True, slots=True)
class Lowering:
    """How one layer type becomes GEMMs, and its masks the GEMMs' operand masks."""

    gemms: Callable[[Any], list[Gemm]]
    operands: Callable[[Any, list[Gemm], LayerMasks], list[GemmOperands]]


LOWERINGS: Mapping[type, Lowering] = MappingProxyType({
    Conv2d: Lowering(_lower_conv, _conv_operands),
    Linear: Lowering(_lower_linear, _linear_operands),
    MatMul: Lowering(_lower_matmul, _matmul_operands),
    Attention: Lowering(_lower_attention, _attention_operands),
})
if set(LOWERINGS) != set(LAYER_TYPES.values()):  # a layer type without its lowering
    raise RuntimeError(f"lowerings {sorted(t.__name__ for t in LOWERINGS)} do not match the "
                       f"layer types {sorted(LAYER_TYPES)}")


def _lowering(layer: Layer) -> Lowering:
    try:
        return LOWERINGS[type(layer)]
    except KeyError:
        raise SparsesimError(f"no lowering for layer type {type(layer).__name__!r}",
                             layer=getattr(layer, "name", None)) from None


def lower(layer: Layer) -> list[Gemm]:
    """The GEMMs a layer runs, in execution order."""
    return _lowering(layer).gemms(layer)


def gemm_operands(layer: Layer, masks: LayerMasks | None) -> list[GemmOperands]:
    """The lowered GEMMs of ``layer`` with their operand masks (``None`` masks: all dense)."""
    lowering = _lowering(layer)
    return lowering.operands(layer, lowering.gemms(layer), masks or LayerMasks())
