"""Mapping as data: the temporal loop order and tile sizes of a GEMM, and the PE register level.

A GEMM ``O[m, n] = Σ_k A[m, k] · W[k, n]`` runs on the array as nested loops, one level per
storage level:

- **spatial** (the dataflow, :mod:`sparsesim.mapping.dataflows`): the row axis is unrolled
  over ``rows`` PEs, the column axis over ``cols``, the stream axis goes through in time;
  a *fold* is one ``rows × cols`` block of the row and column axes (the SRAM → array tile);
- **temporal** (this module): three loops over the folds and the stream chunks — ``i`` the
  row folds, ``j`` the column folds, ``s`` the chunks of the streamed axis (the DRAM → SRAM
  tile along it is ``chunk`` elements: :attr:`Mapping.stream_tile`, or the tiling policy's,
  :mod:`sparsesim.memory.tiling`; along the row and column axes a tile is one fold's block).
  Each loop runs over one GEMM axis (``i`` over the row axis, ...), so a loop order is a
  permutation of ``m, k, n``, outer to inner: :attr:`Mapping.order`. One step of the
  schedule is one (fold, chunk) pair.

**Orders** (:class:`~sparsesim.names.MappingOrder`). ``scalesim`` is SCALE-Sim v3's: column
folds outer, row folds inner, a fold's chunks innermost — ``(col, row, stream)`` axes. The
others are named by what they *keep*: the operand whose tile stays while the innermost loop
runs, i.e. the innermost loop is over the axis that operand lacks — ``output_reuse`` K
innermost (O lacks k), ``weight_reuse`` M innermost (W lacks m), ``input_reuse`` N innermost
(A lacks n); the other two loops keep SCALE-Sim's relative order. An explicit order lists the
axes. Six orders per dataflow in all (:func:`all_orders`): small and enumerable for a mapper.
Consecutive steps that need the same tile reuse it (no SRAM → DRAM traffic in between); the
memory model (:mod:`sparsesim.memory`) runs the steps in this order, so traffic per operand,
refetches, energy and stalls follow the order.

**Cycles under a reordered loop.** The folds are the same folds: each computes the same
products with the same per-fold cycles as under SCALE-Sim's order (dense: ``T + fill/drain``;
sparse: the PE kind's). What changes is where a fold's chunks run: while a fold's chunks are
consecutive (the stream loop innermost, or one chunk) the PEs keep their stationary operand
and accumulators, and the fill/drain (and preload) is paid once per fold, as today; when
other steps run between two chunks of a fold, each later *visit* of the fold pays the fold's
fill/drain (and preload) again: ``+ overhead`` cycles per revisit (:func:`revisits`). So a
non-default order changes cycles only through revisits' fill/drain and memory stalls; with
the default order every dense cycle count is SCALE-Sim's.

**PE register level** (``[pe] acc_entries``). The PEs' accumulators hold ``rows · cols ·
acc_entries`` partial sums. When consecutive steps add into the same output tile and the tile
has at most that many elements, its partial sums stay in the accumulators between the steps
(:func:`held`): no O SRAM write at the end of the first step, no O SRAM read at the start of
the next. Otherwise they *spill*: written to the O buffer after the step and read back by
the next step that adds into the tile — what every step did before the register level. So
under SCALE-Sim's ``ws`` order (K folds innermost for an output tile) a GEMM whose output
tile ``M × cols`` fits the accumulators (``M ≤ rows · acc_entries``) sends no partial sums to
SRAM; a chunked ``os`` stream keeps its psums in the one accumulator per PE. The O buffer
still reserves the tile's space while it is held (the write-back needs it): timing and DRAM
traffic are unchanged, only SRAM O traffic and energy move. Every element moved between the
accumulators and the O buffer is one accumulator register access (a drain to SRAM is a read,
a fill from SRAM a write), priced per bit at the output width (``energy.acc_pj_per_bit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.arch.mapping import GEMM_AXES, MappingConfig
from sparsesim.errors import SparsesimError
from sparsesim.mapping.dataflows import DATAFLOWS, Dataflow
from sparsesim.names import DataflowName, MappingOrder, check_complete

#: The operand whose tile the innermost loop keeps, by the axis that loop runs over.
KEEPS = {"k": "O", "m": "W", "n": "A"}
_REUSE_AXIS = {MappingOrder.OUTPUT_REUSE: "k", MappingOrder.WEIGHT_REUSE: "m",
               MappingOrder.INPUT_REUSE: "n"}


def scalesim_order(df: Dataflow) -> tuple[str, str, str]:
    """SCALE-Sim v3's loop order: column folds outer, row folds inner, the stream innermost."""
    return (df.col_axis, df.row_axis, df.stream_axis)


_Rule = Callable[[Dataflow], tuple[str, str, str]]


def _reuse(axis: str) -> _Rule:
    def rule(df: Dataflow) -> tuple[str, str, str]:
        rest = tuple(a for a in scalesim_order(df) if a != axis)
        return (rest[0], rest[1], axis)
    return rule


ORDER_RULES: dict[MappingOrder, _Rule] = {MappingOrder.SCALESIM: scalesim_order,
               **{name: _reuse(axis) for name, axis in _REUSE_AXIS.items()}}
check_complete(ORDER_RULES, MappingOrder, "mapping order")


@dataclass(frozen=True, slots=True)
class Mapping:
    """One GEMM's temporal mapping on a dataflow (see the module notes).

    ``order``: the GEMM axes outer to inner; ``stream_tile``: streamed-axis elements per
    DRAM → SRAM tile (``None``: the tiling policy's); ``acc_entries``: accumulator entries
    per PE (the register level).
    """

    dataflow: Dataflow
    order: tuple[str, str, str]
    stream_tile: int | None = None
    acc_entries: int = 1

    def __post_init__(self) -> None:
        if sorted(self.order) != sorted(GEMM_AXES):
            raise SparsesimError(f"a loop order lists m, k, n once each, got {self.order!r}",
                                 field="mapping.order")

    @property
    def loops(self) -> tuple[str, str, str]:
        """The fold loops outer to inner: ``i`` row folds, ``j`` column folds, ``s`` chunks."""
        df = self.dataflow
        letter = {df.row_axis: "i", df.col_axis: "j", df.stream_axis: "s"}
        return tuple(letter[a] for a in self.order)  # type: ignore[return-value]

    @property
    def keeps(self) -> str:
        """The operand (``A``, ``W``, ``O``) whose tile stays while the innermost loop runs."""
        return KEEPS[self.order[-1]]

    @property
    def is_scalesim(self) -> bool:
        return self.order == scalesim_order(self.dataflow)

    def steps(self, row_folds: int, col_folds: int, chunks: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, j, s)`` of every step in execution order (int64 arrays)."""
        extent = {"i": row_folds, "j": col_folds, "s": chunks}
        loops = self.loops
        grid = np.indices(tuple(extent[x] for x in loops), dtype=np.int64).reshape(3, -1)
        by = dict(zip(loops, grid, strict=True))
        return by["i"], by["j"], by["s"]

    def describe(self) -> str:
        """``n > k > m (keeps O)``: the order as a person reads it."""
        return f"{' > '.join(self.order)} (keeps {self.keeps})"


def resolve_order(order: str | tuple[str, ...], df: Dataflow) -> tuple[str, str, str]:
    """A ``mapping.order`` value on dataflow ``df`` as the axes outer to inner."""
    if isinstance(order, tuple):
        return order  # type: ignore[return-value]  # checked by MappingConfig
    return ORDER_RULES[MappingOrder(order)](df)


def mapping_of(arch: Arch, config: MappingConfig | None = None) -> Mapping:
    """The mapping ``arch`` runs its GEMMs with (``config``: a layer's override of its
    ``[mapping]``)."""
    cfg = config or arch.mapping
    df = DATAFLOWS[DataflowName(arch.array.dataflow)]
    return Mapping(df, resolve_order(cfg.order, df), cfg.stream_tile or None,
                   arch.pe.acc_entries)


def all_orders(df: Dataflow) -> tuple[tuple[str, str, str], ...]:
    """Every loop order on ``df`` (SCALE-Sim's first): the space a mapper searches."""
    first = scalesim_order(df)
    rest = [(a, b, c) for a, b, c in permutations(GEMM_AXES) if (a, b, c) != first]
    return (first, *rest)


def revisits(fold_ids: np.ndarray) -> np.ndarray:
    """Per step: it starts a visit of its fold after another step ran since the fold's
    previous visit (so the fold's fill/drain and preload are paid again)."""
    n = fold_ids.size
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    starts = np.flatnonzero(np.r_[True, fold_ids[1:] != fold_ids[:-1]])
    _, first = np.unique(fold_ids[starts], return_index=True)
    again = np.ones(starts.size, dtype=bool)
    again[first] = False
    out[starts[again]] = True
    return out


def held(o_ids: np.ndarray, o_elements: np.ndarray, capacity: int) -> np.ndarray:
    """Per step: its O tile's partial sums come from the previous step in the accumulators
    (the same tile, of at most ``capacity`` elements), not from the O buffer."""
    out = np.zeros(o_ids.size, dtype=bool)
    if o_ids.size < 2 or capacity <= 0:
        return out
    same = o_ids[1:] == o_ids[:-1]
    out[1:] = same & (o_elements[o_ids[1:]] <= capacity)
    return out
