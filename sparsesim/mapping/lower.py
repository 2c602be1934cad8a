"""Lowering: every layer type becomes GEMMs, and its masks their operand masks.

One registry entry per layer type (:data:`LOWERINGS`, DESIGN.md §2): conv by im2col per
group (:mod:`sparsesim.mapping.conv`), linear as is, attention as Q/K/V/O projections plus
per-(batch, head) ``QKᵀ`` and ``PV`` whose both operands are activations. The GEMMs fold onto
the array by :mod:`sparsesim.mapping.dataflows`.
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


def _lower_attention(layer: Attention) -> list[Gemm]:
    tokens, e, d = layer.b * layer.l, layer.e, layer.head_dim
    act = OperandKind.ACTIVATION
    heads = layer.b * layer.active_heads
    return [
        Gemm(layer.name, "q", m=tokens, k=e, n=layer.inner),
        Gemm(layer.name, "k", m=tokens, k=e, n=layer.e_kv),
        Gemm(layer.name, "v", m=tokens, k=e, n=layer.e_kv),
        Gemm(layer.name, "qk", m=layer.l, k=d, n=layer.keys, count=heads, w_kind=act),
        Gemm(layer.name, "pv", m=layer.l, k=layer.keys, n=d, count=heads, w_kind=act),
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
    ops = {"q": (x, t["q"]), "k": (x, t["k"]), "v": (x, t["v"]), "qk": (None, None),
           "pv": (p, None), "o": (None, t["o"])}
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
