"""Lowering: layers → GEMMs → folds on a systolic array, and the dense timing of a fold.

Every layer becomes GEMMs ``O[M×N] = A[M×K] · W[K×N]`` (DESIGN.md §2): conv by im2col per
group, linear as is, attention as Q/K/V/O projections plus per-(batch, head) ``QKᵀ`` and
``PV`` whose both operands are activations.

A dataflow is one object: which GEMM dimension it lays on the array rows, which on the
columns, which it streams in time, and whether a stationary operand is preloaded first. The
dense timing of a fold follows SCALE-Sim v3 (``compute/systolic_compute_*.py``), checked
against its output in the tests::

    folds       = ceil(Sr / rows) · ceil(Sc / cols)     (column folds outer, row folds inner)
    fold cycles = T + rows + cols − 2 (+ rows to preload the stationary operand: ws, is)

A partial fold costs a full fold: the skewed wavefront crosses the whole physical array.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import LAYER_TYPES, Attention, Conv2d, Layer, Linear, MatMul
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.names import DataflowName, check_complete
from sparsesim.units import ceil_div


class OperandKind(str, Enum):
    """What a GEMM operand holds: stored weights or run-time activations."""

    WEIGHT = "weight"
    ACTIVATION = "activation"


@dataclass(frozen=True, slots=True)
class Gemm:
    """``count`` identical, independent GEMMs ``O[m×n] = A[m×k] · W[k×n]`` run one after another.

    ``count`` covers conv groups and attention's (batch × head) score GEMMs; ``w_kind`` says
    whether the K×N operand is a weight (A is always an activation). ``phase`` is
    ``forward`` or ``backward`` (a training step's gradient GEMMs, :mod:`sparsesim.engine.training`).
    """

    layer: str
    name: str
    m: int
    k: int
    n: int
    count: int = 1
    w_kind: OperandKind = OperandKind.WEIGHT
    phase: str = "forward"

    @property
    def dense_macs(self) -> int:
        return self.count * self.m * self.k * self.n

    def dim(self, axis: str) -> int:
        """The size of GEMM axis ``'m'``, ``'k'`` or ``'n'``."""
        return {"m": self.m, "k": self.k, "n": self.n}[axis]


@dataclass(frozen=True, slots=True)
class Dataflow:
    """A mapping of GEMM axes onto the array: rows, columns, and the stream (time)."""

    name: DataflowName
    row_axis: str
    col_axis: str
    stream_axis: str
    preload: bool

    def spatial(self, gemm: Gemm) -> tuple[int, int, int]:
        """``(Sr, Sc, T)``: extents laid on rows and columns, and streamed in time."""
        return gemm.dim(self.row_axis), gemm.dim(self.col_axis), gemm.dim(self.stream_axis)

    def overhead_cycles(self, rows: int, cols: int) -> int:
        """Fill and drain of one fold (cycles), plus the stationary preload if any."""
        return rows + cols - 2 + (rows if self.preload else 0)


DATAFLOWS: Mapping[DataflowName, Dataflow] = MappingProxyType({
    # output stationary: PE (r, c) accumulates O[m, n]; A flows right, W flows down.
    DataflowName.OS: Dataflow(DataflowName.OS, row_axis="m", col_axis="n", stream_axis="k",
                              preload=False),
    # weight stationary: PE (r, c) holds W[k, n]; A flows right, partial sums flow down.
    DataflowName.WS: Dataflow(DataflowName.WS, row_axis="k", col_axis="n", stream_axis="m",
                              preload=True),
    # input stationary: PE (r, c) holds A[m, k]; W flows right, partial sums flow down.
    DataflowName.IS: Dataflow(DataflowName.IS, row_axis="k", col_axis="m", stream_axis="n",
                              preload=True),
})
check_complete(DATAFLOWS, DataflowName, "dataflow")


@dataclass(frozen=True, slots=True)
class FoldPlan:
    """How one GEMM folds onto a ``rows × cols`` array, and its dense compute cycles."""

    gemm: Gemm
    dataflow: Dataflow
    rows: int
    cols: int

    @property
    def extents(self) -> tuple[int, int, int]:
        return self.dataflow.spatial(self.gemm)

    @property
    def row_folds(self) -> int:
        return ceil_div(self.extents[0], self.rows)

    @property
    def col_folds(self) -> int:
        return ceil_div(self.extents[1], self.cols)

    @property
    def folds(self) -> int:
        """Folds of one GEMM instance (multiply by ``gemm.count`` for all instances)."""
        return self.row_folds * self.col_folds

    @property
    def fold_cycles(self) -> int:
        return self.extents[2] + self.dataflow.overhead_cycles(self.rows, self.cols)

    @property
    def compute_cycles(self) -> int:
        """Dense compute cycles of all ``count`` instances, run back to back."""
        return self.gemm.count * self.folds * self.fold_cycles


def plan(gemm: Gemm, dataflow: str | Dataflow, rows: int, cols: int) -> FoldPlan:
    df = DATAFLOWS[DataflowName(dataflow)] if isinstance(dataflow, str) else dataflow
    return FoldPlan(gemm, df, rows, cols)


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


@dataclass(frozen=True)
class Im2col:
    """The A operand of a convolution is the im2col view of its input feature map.

    Memory moves the feature map, not its im2col copy (where each input pixel appears up to
    ``r·s`` times): an A tile's DRAM and SRAM footprint is the input region its output pixels
    and channels touch. ``inputs`` is the ``[n, c, h, w]`` mask (``None``: dense).
    """

    layer: Conv2d
    inputs: np.ndarray | None = None

    def planes(self, m0: int, m1: int) -> tuple[tuple[int, np.ndarray], ...]:
        """Per image ``n``, the ``[h, w]`` mask of input pixels output pixels ``m0:m1`` read."""
        return _touched(self.layer, m0, m1)

    def group_rows(self, k0: int, k1: int, *, owned: bool = False) -> np.ndarray:
        """``[groups, channels]``: the input channels im2col columns ``k0:k1`` read, per group
        (``owned``: only those whose first column is among them, so that blocks of columns
        share out the channels without overlap)."""
        conv = self.layer
        window, cg = conv.r * conv.s, conv.c // conv.groups
        if owned:
            within = np.arange(-(-k0 // window), -(-k1 // window))
        else:
            within = np.arange(k0 // window, (k1 - 1) // window + 1)
        return np.arange(conv.groups)[:, None] * cg + within[None, :]


@lru_cache(maxsize=1 << 14)
def _touched(conv: Conv2d, m0: int, m1: int) -> tuple[tuple[int, np.ndarray], ...]:
    """Per image, the input pixels that output pixels ``m0:m1`` (row-major n, e, f) read.
    Cached: every group and every K block of a layer reads the same pixels."""
    e, f, st, p = conv.e, conv.f, conv.stride, conv.padding
    touched: dict[int, np.ndarray] = {}
    for row in range(m0 // f, (m1 - 1) // f + 1):  # output rows (n, e) the pixels cover
        n, out_y = divmod(row, e)
        first = max(m0, row * f) - row * f
        last = min(m1 - 1, row * f + f - 1) - row * f
        plane = touched.setdefault(n, np.zeros((conv.h, conv.w), dtype=bool))
        y0 = out_y * st - p
        # the window columns of each output pixel: gaps between them when stride > s
        xs = (np.arange(first, last + 1)[:, None] * st - p + np.arange(conv.s)[None, :]).ravel()
        xs = xs[(xs >= 0) & (xs < conv.w)]
        plane[max(0, y0):max(0, y0 + conv.r), xs] = True
    for plane in touched.values():
        plane.flags.writeable = False
    return tuple(sorted(touched.items()))


@dataclass(frozen=True)
class ConvView:
    """Which operand of a GEMM is a convolution's im2col matrix (``[pixels, window]``).

    The forward conv reads it as A; a training step's weight gradient reads its transpose as
    A (``transposed``: ``[window, pixels]``) and the input gradient writes it as O (col2im
    adds the windows back into the feature map). Memory moves the feature-map regions: an A
    tile reads all the pixels its windows touch (halos again), an O tile writes the pixels
    no earlier tile touched (each input pixel's gradient once; overlaps summed on chip).
    """

    im2col: Im2col
    operand: str = "A"
    transposed: bool = False
    memo: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, compare=False, repr=False)
    """Tile sizes of every conv group at once, keyed by tile and format: the groups of a
    layer read the same pixels, so a tile is sized for all of them in one pass."""


@dataclass(frozen=True)
class GemmOperands:
    """A GEMM with the non-zero patterns of its operands.

    ``a`` is ``[count, M, K]`` (one mask per instance) or ``[M, K]`` (shared by all), ``w`` the
    same with ``[K, N]``; ``None`` means dense (all ones). ``view`` marks a convolution's
    im2col operand, whose memory traffic is the feature map's.
    """

    gemm: Gemm
    a: np.ndarray | None = None
    w: np.ndarray | None = None
    view: ConvView | None = None

    def masks(self, i: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both operand masks of instance ``i`` (``None``: dense)."""
        return (_pick(self.a, i), _pick(self.w, i))

    def instance(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Both operand masks of instance ``i``, dense ones filled in."""
        g = self.gemm
        a, w = self.masks(i)
        return (np.ones((g.m, g.k), dtype=bool) if a is None else a,
                np.ones((g.k, g.n), dtype=bool) if w is None else w)

    def total(self, per_instance: Callable[[np.ndarray, np.ndarray], int]) -> int:
        """``per_instance(a, w)`` summed over all instances (computed once when shared)."""
        if self.shared:
            return self.gemm.count * per_instance(*self.instance(0))
        return sum(per_instance(*self.instance(i)) for i in range(self.gemm.count))

    @property
    def shared(self) -> bool:
        """All instances have the same masks (compute once, multiply by ``count``)."""
        return all(x is None or x.ndim == 2 for x in (self.a, self.w))


def _pick(mask: np.ndarray | None, i: int) -> np.ndarray | None:
    return mask if mask is None or mask.ndim == 2 else mask[i]


def _im2col(inputs: np.ndarray, layer: Conv2d) -> np.ndarray:
    """``[n, c, h, w]`` → ``[groups, n·e·f, c/g·r·s]`` with padding zeros, K ordered (c, r, s)."""
    e, f, st, p = layer.e, layer.f, layer.stride, layer.padding
    # ceil_mode outputs may read past the input (SCALE-Sim reads nothing there): zeros.
    extra_h = max(0, (e - 1) * st + layer.r - (layer.h + 2 * p))
    extra_w = max(0, (f - 1) * st + layer.s - (layer.w + 2 * p))
    x = np.pad(inputs, ((0, 0), (0, 0), (p, p + extra_h), (p, p + extra_w)))
    win = sliding_window_view(x, (layer.r, layer.s), axis=(2, 3))[:, :, ::st, ::st][:, :, :e, :f]
    g, cg = layer.groups, layer.c // layer.groups
    win = win.reshape(layer.n, g, cg, e, f, layer.r, layer.s)
    cols = win.transpose(1, 0, 3, 4, 2, 5, 6)  # [g, n, e, f, cg, r, s]
    return np.ascontiguousarray(cols).reshape(g, layer.n * e * f, cg * layer.r * layer.s)


def _causal_probabilities(layer: Attention) -> np.ndarray:
    """``P[i, j]`` is non-zero iff query i (position kv − l + i) may see key j."""
    queries = np.arange(layer.l)[:, None] + (layer.keys - layer.l)
    return np.arange(layer.keys)[None, :] <= queries


def _conv_operands(layer: Conv2d, gemms: list[Gemm], m: LayerMasks) -> list[GemmOperands]:
    [g] = gemms
    a = None if m.inputs is None else _im2col(m.inputs, layer)
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
