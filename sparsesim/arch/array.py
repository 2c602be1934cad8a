"""The array: its size and dataflow, and the operand widths it computes at."""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.arch.section import Section, positive_int
from sparsesim.errors import SparsesimError
from sparsesim.names import DataflowName, choices


#: Longest array edge: 65,536 PEs on a side is past any chip (a TPU's is 256); more is a typo.
MAX_ARRAY_EDGE = 2**16


@dataclass(frozen=True, slots=True)
class ArrayConfig(Section):
    """A ``rows × cols`` systolic array and the dataflow it runs."""

    rows: int = 32
    cols: int = 32
    dataflow: str = "os"

    def __post_init__(self) -> None:
        positive_int(self.rows, "array.rows", high=MAX_ARRAY_EDGE)
        positive_int(self.cols, "array.cols", high=MAX_ARRAY_EDGE)
        if self.dataflow not in tuple(DataflowName):
            raise SparsesimError(
                f"unknown dataflow {self.dataflow!r}; expected one of {choices(DataflowName)}",
                field="array.dataflow",
            )


@dataclass(frozen=True, slots=True)
class PrecisionConfig(Section):
    """Operand widths in bits: ``a`` activations, ``w`` weights, ``o`` outputs."""

    a_bits: int = 8
    w_bits: int = 8
    o_bits: int = 8

    def __post_init__(self) -> None:
        for f in ("a_bits", "w_bits", "o_bits"):
            positive_int(getattr(self, f), f"precision.{f}", high=64)
