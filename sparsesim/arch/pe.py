"""The processing element: what it does with zeros (its cycles: :mod:`sparsesim.pe`)."""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.arch.section import Section, positive_int
from sparsesim.errors import SparsesimError
from sparsesim.names import PeKind, PeOperand, Sync, choices
from sparsesim.rules.nm import check_ratio


@dataclass(frozen=True, slots=True)
class PeConfig(Section):
    """What a PE does with zeros (DESIGN.md §3).

    ``kind``: ``dense`` computes everything; ``gate`` clock-gates products whose ``operand``
    (``A``, ``W`` or ``both``: either) is zero (dense cycles, less MAC energy); ``skip``
    issues only effectual steps — products whose ``operand`` (``A``, ``W`` or ``both``) is
    non-zero — with PEs synchronised per ``sync`` group (``pe``, ``row``, ``col`` or the whole
    ``wavefront`` of a fold); ``nm`` has ``n`` multipliers per group of ``m`` weights along K
    (weights must be N:M-conformant).
    """

    kind: str = "dense"
    operand: str = "both"
    sync: str = "pe"
    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        for field, value, names in (("kind", self.kind, PeKind),
                                    ("operand", self.operand, PeOperand),
                                    ("sync", self.sync, Sync)):
            if value not in tuple(names):
                raise SparsesimError(f"unknown {field} {value!r}; expected one of "
                                     f"{choices(names)}", field=f"pe.{field}")
        positive_int(self.n, "pe.n")
        positive_int(self.m, "pe.m")
        check_ratio((self.n, self.m), field="pe.n")
