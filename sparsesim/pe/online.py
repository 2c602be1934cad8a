"""The online pruning unit: what finding activation (or gradient) zeros at run time costs.

Static weight sparsity is free at run time; activation sparsity imposed by a threshold, a
top-k or an N:M rule must be computed on the outputs as they leave the array. The unit sits
on the output path (``[online]`` in the arch) and streams the producer's outputs, so its work
hides behind the producing GEMM unless it is slower than it; what it cannot hide is its
pipeline depth, and for a per-tensor (``dynamic``) threshold the whole second pass, which
waits for the threshold the first pass finds. Counts per kind, for ``E`` elements in rows of
``L`` (the channel vector of a pixel or a token), ``lanes`` comparators, a bitonic network
``W = sorter_width`` wide with ``s = log2 W`` (Batcher 1968: ``W/2 · s(s+1)/2`` comparators
in ``s(s+1)/2`` stages):

============ ================================== =================== ========================
kind         comparisons                        hidden cycles       exposed cycles
============ ================================== =================== ========================
threshold    ``E``                              ``⌈E/lanes⌉``       1
dynamic      ``2E`` (find the quantile, apply)  ``⌈E/lanes⌉``       ``⌈E/lanes⌉ + 1``
nm (N of M)  ``E/M · M(M−1)/2`` (rank in group) ``⌈E/lanes⌉``       ``⌈log2 M⌉ + 1``
topk, k ≤ W  blocks · (sort + merge)             blocks              ``s(s+1)/2 + s + 1``
topk, k > W  quickselect + ``E`` (see below)    ``⌈cmp/lanes⌉``     one row's selection
============ ================================== =================== ========================

Top-k with ``k ≤ W`` cuts each row into ``⌈L/W⌉`` blocks, sorts each (``W/2 · s(s+1)/2``)
and merges it into the running best ``W`` (``W + W/2 · s``: one half-cleaner stage, then a
bitonic merge of the upper half); the network takes one block per cycle. A larger ``k``
(keeping, say, half of 768 channels) would need ``⌈k/W⌉`` such passes, so the unit instead
selects the k-th largest by quickselect over the buffered row on its ``lanes`` comparators
(as SpAtten's top-k engine does, Wang et al., HPCA 2021): Knuth's expected
``2·(L + k·ln(L/k) + (L−k)·ln(L/(L−k)))`` comparisons, one latch each, then a threshold pass;
the row must be complete before it starts, so one row's selection is exposed.

Beside the comparisons, the unit latches values: every pipeline stage writes its ``W``
elements to registers (top-k: ``s(s+1)/2 + s + 1`` stages per block), an N:M selector holds
each group (``M`` per group), a threshold latches each output once; the per-tensor
threshold's second pass reads the tensor back from the output SRAM (``E`` values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparsesim.arch.online import OnlineConfig
from sparsesim.errors import SparsesimError
from sparsesim.names import OnlineKind, choices
from sparsesim.units import ceil_div

@dataclass(frozen=True, slots=True)
class OnlinePrune:
    """What the unit does to a tensor: ``kind`` (an :class:`~sparsesim.names.OnlineKind`), ``nm`` for N:M."""

    kind: str
    nm: tuple[int, int] = (2, 4)

    def __post_init__(self) -> None:
        if self.kind not in tuple(OnlineKind):
            raise SparsesimError(f"unknown online pruning {self.kind!r}; expected one of "
                                 f"{choices(OnlineKind)}", field="act_prune")


@dataclass(frozen=True, slots=True)
class OnlineCost:
    """One tensor through the online pruning unit. Cycles are clock cycles.

    ``hidden_cycles`` overlap the producer's compute (the unit is busy while outputs stream
    out); ``serial_cycles`` come after the producer's last output whatever its length.
    """

    kind: str
    elements: int
    comparisons: int
    hidden_cycles: int
    serial_cycles: int
    register_accesses: int = 0
    sram_reads: int = 0

    def exposed_cycles(self, producer_cycles: int) -> int:
        """Cycles the unit adds after a producer of ``producer_cycles`` cycles."""
        return max(0, self.hidden_cycles - producer_cycles) + self.serial_cycles


def online_cost(kind: str, *, rows: int, row_len: int, unit: OnlineConfig,
                keep: int | None = None, nm: tuple[int, int] = (2, 4)) -> OnlineCost:
    """The cost of pruning ``rows × row_len`` elements online with ``kind``.

    ``keep`` is top-k's k per row; ``nm`` is (N, M) for N:M selection along the row.
    """
    if kind not in tuple(OnlineKind):
        raise SparsesimError(f"unknown online pruning {kind!r}; expected one of "
                             f"{choices(OnlineKind)}", field="act_prune")
    elements = rows * row_len
    stream = ceil_div(elements, unit.lanes)
    if kind == "threshold":
        return OnlineCost(kind, elements, elements, stream, 1 if elements else 0, elements)
    if kind == "dynamic":
        return OnlineCost(kind, elements, 2 * elements, stream, stream + 1 if elements else 0,
                          2 * elements, elements)
    if kind == "nm":
        m = nm[1]
        groups = ceil_div(row_len, m) * rows
        depth = math.ceil(math.log2(m)) + 1 if m > 1 else 1
        return OnlineCost(kind, elements, groups * m * (m - 1) // 2, stream, depth, groups * m)
    if keep is None or not 0 <= keep <= row_len:
        raise SparsesimError(f"top-k needs 0 <= k <= {row_len}, got {keep!r}", field="act_prune")
    w = unit.sorter_width
    if keep > w:
        per_row = quickselect_comparisons(row_len, keep) + row_len
        total = rows * per_row
        return OnlineCost(kind, elements, total, ceil_div(total, unit.lanes),
                          ceil_div(per_row, unit.lanes) + 1, total)
    s = int(math.log2(w))
    per_block = w // 2 * s * (s + 1) // 2 + w + w // 2 * s
    runs = rows * ceil_div(row_len, w)
    stages = s * (s + 1) // 2 + s + 1
    return OnlineCost(kind, elements, runs * per_block, runs, stages, runs * stages * w)


def quickselect_comparisons(n: int, k: int) -> int:
    """Expected comparisons of quickselect for the k-th of n (Knuth, TAOCP 3, 5.3.3)."""
    if n <= 1 or k <= 0 or k >= n:
        return max(n - 1, 0)
    return math.ceil(2 * (n + k * math.log(n / k) + (n - k) * math.log(n / (n - k))))
