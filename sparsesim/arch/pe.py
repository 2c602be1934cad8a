"""The processing element: what it does with zeros (its cycles: :mod:`sparsesim.pe`)."""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.arch.section import MAX_COUNT, Section, positive_int
from sparsesim.errors import SparsesimError
from sparsesim.names import NmNonconformant, PeKind, PeOperand, Sync, choices
from sparsesim.rules.nm import check_ratio


@dataclass(frozen=True, slots=True)
class PeConfig(Section):
    """What a PE does with zeros (DESIGN.md §3).

    ``kind``: ``dense`` computes everything; ``gate`` clock-gates products whose ``operand``
    (``A``, ``W`` or ``both``: either) is zero (dense cycles, less MAC energy); ``skip``
    issues only effectual steps — products whose ``operand`` (``A``, ``W`` or ``both``) is
    non-zero — with PEs synchronised per ``sync`` group (``pe``, ``row``, ``col`` or the whole
    ``wavefront`` of a fold); ``nm`` has ``n`` multipliers per group of ``m`` elements along K
    of the operand(s) ``nm_operand`` names — ``W`` (the weights, which must be
    N:M-conformant), ``A`` (the activations, pruned N:M along K online or in a trace) or
    ``both`` (joint: the weights' slots, gated where the activation's metadata has no match;
    :mod:`sparsesim.pe.kinds`). ``nm_operand`` is a field of the ``nm`` kind only: another
    kind with a value other than the default ``W`` is refused.

    ``acc_entries``: accumulator entries per PE that keep partial sums across a GEMM's steps
    (the register level, :mod:`sparsesim.mapping.loops`): the array holds an output tile of
    up to ``rows · cols · acc_entries`` elements while consecutive steps add into it, and
    writes it to the O buffer only when it is done or the next step needs another tile.
    ``1`` is the one accumulator every PE has; ``0`` sends every step's partial sums to the
    O buffer (the model before the register level).

    ``merge_lanes``: partial sums per cycle the merge unit of a dual-side skipping array
    (``skip`` with ``operand = both``) accumulates by coordinate (:mod:`sparsesim.mapping.merge`);
    0, the default, is one lane per PE. Another kind or operand has no merge unit: a value
    other than 0 is refused there.

    ``nm_nonconformant``
    (``nm`` only): a forward GEMM whose named operand is sparse but not N:M-conformant is
    refused (``refuse``, the default: the N:M error naming layer and group) or run densely
    (``dense``, its row's ``nm_mode`` says so); a dense operand (no mask, or no zero in it:
    a layer the pruning left dense) always runs densely.
    """

    kind: str = "dense"
    operand: str = "both"
    sync: str = "pe"
    n: int = 2
    m: int = 4
    nm_operand: str = "W"
    acc_entries: int = 1
    merge_lanes: int = 0
    nm_nonconformant: str = "refuse"

    def __post_init__(self) -> None:
        for field, value, names in (("kind", self.kind, PeKind),
                                    ("operand", self.operand, PeOperand),
                                    ("sync", self.sync, Sync),
                                    ("nm_operand", self.nm_operand, PeOperand),
                                    ("nm_nonconformant", self.nm_nonconformant,
                                     NmNonconformant)):
            if value not in tuple(names):
                raise SparsesimError(f"unknown {field} {value!r}; expected one of "
                                     f"{choices(names)}", field=f"pe.{field}")
        if self.nm_operand != PeOperand.W and self.kind != PeKind.NM:
            raise SparsesimError(f"nm_operand {self.nm_operand!r} is for kind 'nm' only, not "
                                 f"kind {self.kind!r}", field="pe.nm_operand")
        if (isinstance(self.merge_lanes, bool) or not isinstance(self.merge_lanes, int)
                or self.merge_lanes < 0):
            raise SparsesimError(f"must be a whole number >= 0, got {self.merge_lanes!r}",
                                 field="pe.merge_lanes")
        if self.merge_lanes and (self.kind != PeKind.SKIP or self.operand != PeOperand.BOTH):
            raise SparsesimError(f"merge_lanes is for kind 'skip' with operand 'both' (the "
                                 f"PEs that merge partial sums), not kind {self.kind!r} with "
                                 f"operand {self.operand!r}", field="pe.merge_lanes")
        if self.nm_nonconformant != NmNonconformant.REFUSE and self.kind != PeKind.NM:
            raise SparsesimError(f"nm_nonconformant {self.nm_nonconformant!r} is for kind 'nm' "
                                 f"only, not kind {self.kind!r}", field="pe.nm_nonconformant")
        positive_int(self.n, "pe.n")
        positive_int(self.m, "pe.m")
        check_ratio((self.n, self.m), field="pe.n")
        if isinstance(self.acc_entries, bool) or not isinstance(self.acc_entries, int) or \
                not 0 <= self.acc_entries <= MAX_COUNT:
            raise SparsesimError(f"must be a non-negative integer of at most {MAX_COUNT:,} "
                                 f"(accumulator entries per PE), got {self.acc_entries!r}",
                                 field="pe.acc_entries")
