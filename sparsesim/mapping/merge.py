"""Partial-sum merging of dual-side skipping: what it costs when products land at scattered outputs.

(Here, below PE kinds and area, because whether partial sums need merging is a question of how
the reduction axis maps onto the array and its sync groups.)

A skipping PE that skips zeros of *both* operands (``kind = skip``, ``operand = both``) forms,
per group, the products of two compressed operand lists; which output a product belongs to is
known only from the two coordinates at run time (SCNN, Parashar et al., ISCA 2017: products of
compressed weights and activations go through a crossbar to coordinate-addressed accumulator
banks; SpArch, Zhang et al., HPCA 2020, and the Dual-side Sparse Tensor Core, Wang et al.,
ISCA 2021: outer products of two compressed operands, partial results merged by coordinate).
This module counts those merges and the cycles they add; it is the design followed here:

- **When**: only where the reduction is spread over PEs that do not move together. ``os``
  keeps K on the stream (each PE accumulates its own output in place: nothing to merge).
  ``ws``/``is`` put K on the rows, so one output's partial sums come from a column of PEs;
  with ``sync = col`` or ``wavefront`` the column advances in lockstep and its partial sums
  stay aligned (the systolic chain adds them), with ``pe`` or ``row`` they do not, and every
  issued product is a partial sum for the merge unit. One-sided skipping (``operand = A`` or
  ``W``) is left as the step rule has it (DESIGN.md §3: the dense operand's order is shared by
  the group, Cnvlutin-style, and its partial sums stay in place): unchanged here.
- **Energy, always**: per merged partial sum a coordinate comparison and an add into the
  output's accumulator (:meth:`~sparsesim.arch.energy.EnergyTable.merge`).
- **Cycles, where on the critical path**: the merge unit takes ``pe.merge_lanes`` partial sums
  per cycle (``0``: one lane per PE, as SCNN provisions accumulator banks for every multiplier —
  never slower than the array, so never on the critical path). It pipelines behind the array;
  a GEMM whose ``ceil(psums / lanes)`` exceeds its compute cycles takes the excess in addition.
  Bank conflicts are not modelled (they would only add cycles).
- **Area**: per lane an accumulator-width adder, a coordinate comparator and an accumulator
  register (:mod:`sparsesim.area`).
"""

from __future__ import annotations

from sparsesim.arch.config import Arch
from sparsesim.mapping.dataflows import DATAFLOWS, Dataflow
from sparsesim.names import DataflowName, PeKind, PeOperand, Sync


def merges(arch: Arch, dataflow: Dataflow | None = None) -> bool:
    """Whether ``arch``'s PEs merge partial sums by coordinate on ``dataflow`` (module notes)."""
    pe = arch.pe
    dataflow = dataflow or DATAFLOWS[DataflowName(arch.array.dataflow)]
    if pe.kind != PeKind.SKIP or pe.operand != PeOperand.BOTH:
        return False
    if dataflow.stream_axis == "k":
        return False  # the reduction is in the PE
    chain = Sync.COL if dataflow.row_axis == "k" else Sync.ROW  # the group one output spans
    return pe.sync not in (chain, Sync.WAVEFRONT)


def merge_lanes(arch: Arch) -> int:
    """Partial sums the merge unit takes per cycle (``pe.merge_lanes``; 0: one per PE)."""
    lanes = arch.pe.merge_lanes
    return lanes if lanes > 0 else arch.array.rows * arch.array.cols


def merged_psums(arch: Arch, dataflow: Dataflow, issued_macs: int) -> int:
    """Partial sums merged by coordinate: every issued product where the PEs merge, else 0."""
    return issued_macs if merges(arch, dataflow) else 0


def merge_excess_cycles(arch: Arch, psums: int, compute_cycles: int) -> int:
    """Cycles the merge unit adds beyond the array's ``compute_cycles`` (0 when it keeps up)."""
    if psums == 0:
        return 0
    lanes = merge_lanes(arch)
    return max(0, -(-psums // lanes) - compute_cycles)
