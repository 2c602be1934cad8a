"""Dataflows and fold plans: how a GEMM folds onto a systolic array, and its dense timing.

A dataflow is one object: which GEMM dimension it lays on the array rows, which on the
columns, which it streams in time, and whether a stationary operand is preloaded first. The
dense timing of a fold follows SCALE-Sim v3 (``compute/systolic_compute_*.py``), checked
against its output in the tests::

    folds       = ceil(Sr / rows) · ceil(Sc / cols)     (column folds outer, row folds inner)
    fold cycles = T + rows + cols − 2 (+ rows to preload the stationary operand: ws, is)

A partial fold costs a full fold: the skewed wavefront crosses the whole physical array.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sparsesim.mapping.gemm import Gemm
from sparsesim.names import DataflowName, check_complete
from sparsesim.units import ceil_div


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
