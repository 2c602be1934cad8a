"""The online pruning unit on the array's output path (its costs: :mod:`sparsesim.pe.online`)."""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.arch.section import Section, positive_int
from sparsesim.errors import SparsesimError


@dataclass(frozen=True, slots=True)
class OnlineConfig(Section):
    """The unit that prunes activations (or gradients) at run time, on the output path.

    ``lanes`` comparators take that many elements per cycle (threshold, N:M selection);
    top-k runs rows through a bitonic sorting network ``sorter_width`` elements wide
    (a power of two). Costs: :mod:`sparsesim.pe.online`.
    """

    lanes: int = 32
    sorter_width: int = 32

    def __post_init__(self) -> None:
        positive_int(self.lanes, "online.lanes")
        positive_int(self.sorter_width, "online.sorter_width")
        if self.sorter_width & (self.sorter_width - 1):
            raise SparsesimError(f"a bitonic network's width is a power of 2, got "
                                 f"{self.sorter_width}", field="online.sorter_width")
