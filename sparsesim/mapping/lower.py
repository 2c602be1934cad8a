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
    # im2col per group: rows are the n·e·f output pixels, K the c/g·r·s window.
    g = layer.groups
    return [Gemm(layer.name, "conv", m=layer.n * layer.e * layer.f,
                 k=(layer.c // g) * layer.r * layer.s, n=layer.m // g, count=g)]


def _lower_linear(layer: Linear) -> list[Gemm]:
    return [Gemm(layer.name, "fc", m=layer.tokens, k=layer.in_features, n=layer.out_features)]


def _lower_matmul(layer: MatMul) -> list[Gemm]:
    kind = OperandKind.WEIGHT if layer.weights_operand else OperandKind.ACTIVATION
    return [Gemm(layer.name, "matmul", m=layer.m, k=layer.k, n=layer.n, w_kind=kind)]


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


def _causal_probabilities(layer: Attention) -> np.ndarray:
    """``P[i, j]`` is non-zero iff query i (position kv − l + i) may see key j."""
    queries = np.arange(layer.l)[:, None] + (layer.keys - layer.l)
    return np.arange(layer.keys)[None, :] <= queries


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
    [g] = gemms
    return [GemmOperands(g, m.inputs, m.weights.get("w"))]


def _attention_operands(layer: Attention, gemms: list[Gemm], m: LayerMasks
                        ) -> list[GemmOperands]:
    wt = m.weights
    x = None if m.inputs is None else m.inputs.reshape(layer.b * layer.l, layer.e)
    t = {name: (None if name not in wt else wt[name].T) for name in ("q", "k", "v", "o")}
    p = _causal_probabilities(layer) if layer.causal else None
    ops: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {
        "q": (x, t["q"]), "k": (x, t["k"]), "v": (x, t["v"]), "o": (None, t["o"])}
    for group, pa in zip(score_groups(layer), stack_query_rows(p, layer), strict=True):
        ops[f"qk{group.suffix}"] = (None, None)
        ops[f"pv{group.suffix}"] = (pa, None)
    return [GemmOperands(g, *ops[g.name]) for g in gemms]


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
