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

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sparsesim.layers import Attention, Conv2d, Layer, Linear, MatMul
from sparsesim.units import ceil_div


class OperandKind(str, Enum):
    """What a GEMM operand holds: stored weights or run-time activations."""

    WEIGHT = "weight"
    ACTIVATION = "activation"


@dataclass(frozen=True, slots=True)
class Gemm:
    """``count`` identical, independent GEMMs ``O[m×n] = A[m×k] · W[k×n]`` run one after another.

    ``count`` covers conv groups and attention's (batch × head) score GEMMs; ``w_kind`` says
    whether the K×N operand is a weight (A is always an activation).
    """

    layer: str
    name: str
    m: int
    k: int
    n: int
    count: int = 1
    w_kind: OperandKind = OperandKind.WEIGHT

    @property
    def dense_macs(self) -> int:
        return self.count * self.m * self.k * self.n

    def dim(self, axis: str) -> int:
        """The size of GEMM axis ``'m'``, ``'k'`` or ``'n'``."""
        return {"m": self.m, "k": self.k, "n": self.n}[axis]


@dataclass(frozen=True, slots=True)
class Dataflow:
    """A mapping of GEMM axes onto the array: rows, columns, and the stream (time)."""

    name: str
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


DATAFLOWS: dict[str, Dataflow] = {
    # output stationary: PE (r, c) accumulates O[m, n]; A flows right, W flows down.
    "os": Dataflow("os", row_axis="m", col_axis="n", stream_axis="k", preload=False),
    # weight stationary: PE (r, c) holds W[k, n]; A flows right, partial sums flow down.
    "ws": Dataflow("ws", row_axis="k", col_axis="n", stream_axis="m", preload=True),
    # input stationary: PE (r, c) holds A[m, k]; W flows right, partial sums flow down.
    "is": Dataflow("is", row_axis="k", col_axis="m", stream_axis="n", preload=True),
}


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
    df = DATAFLOWS[dataflow] if isinstance(dataflow, str) else dataflow
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
    heads = layer.b * layer.heads
    return [
        Gemm(layer.name, "q", m=tokens, k=e, n=e),
        Gemm(layer.name, "k", m=tokens, k=e, n=layer.e_kv),
        Gemm(layer.name, "v", m=tokens, k=e, n=layer.e_kv),
        Gemm(layer.name, "qk", m=layer.l, k=d, n=layer.keys, count=heads, w_kind=act),
        Gemm(layer.name, "pv", m=layer.l, k=layer.keys, n=d, count=heads, w_kind=act),
        Gemm(layer.name, "o", m=tokens, k=e, n=e),
    ]


_LOWERINGS: dict[type, Callable[..., list[Gemm]]] = {
    Conv2d: _lower_conv,
    Linear: _lower_linear,
    MatMul: _lower_matmul,
    Attention: _lower_attention,
}


def lower(layer: Layer) -> list[Gemm]:
    """The GEMMs a layer runs, in execution order."""
    return _LOWERINGS[type(layer)](layer)
