"""The memory hierarchy: one DRAM channel and the A, W and O buffers (DESIGN.md §3 Memory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparsesim.arch.dram import CUSTOM, dram_tech
from sparsesim.arch.section import MAX_COUNT, Section, number, positive_int
from sparsesim.errors import SparsesimError
from sparsesim.names import Operand

CONV_HALOS = ("refetch", "line_buffer")


@dataclass(frozen=True, slots=True)
class MemoryConfig(Section):
    """DRAM channel and on-chip buffers (DESIGN.md §3 Memory).

    ``ideal`` memory never stalls: cycles are the compute cycles (traffic is still counted).
    Otherwise one DRAM channel moves ``dram_bytes_per_cycle`` (``inf`` allowed: unlimited)
    after ``dram_latency_cycles``, in whole bursts of ``burst_bytes``. ``dram`` names a DRAM
    technology (:mod:`sparsesim.arch.dram`): its bandwidth at the arch's clock replaces
    ``dram_bytes_per_cycle`` (the :class:`~sparsesim.arch.config.Arch` sets it) and its
    energies the table's; ``custom`` keeps the field and the table as given. ``sram_kib_{a,w,o}``
    is each operand buffer's *total* capacity in KiB (``inf`` allowed here, for timing studies
    of the memory model alone; a whole :class:`~sparsesim.arch.config.Arch` refuses it, as it
    prices SRAM accesses by size); it is double-buffered,
    two halves of half that size, so one tile may be at most half of it. ``format_{a,w,o}``
    is the operand's storage format in DRAM and SRAM (a spec :func:`sparsesim.formats.
    parse_format` reads; checked when memory is simulated, so this module does not import
    formats). ``decode_cycles_per_element``: cycles a decoder spends per stored value of a
    tile whose format carries metadata (default 1/32: one value per array row per cycle on
    the default 32×32 array, so decoding keeps pace with a dense fold). ``conv_halo``: a conv
    tile's input region overlaps its neighbours' (the halo of its windows): ``refetch`` reads
    the whole region for every tile; ``line_buffer`` keeps the rows already read on chip, so
    a tile reads only the pixels no earlier tile read (each input pixel once per pass).
    """

    ideal: bool = False
    dram: str = CUSTOM
    dram_bytes_per_cycle: float = 16.0
    dram_latency_cycles: int = 100
    burst_bytes: int = 64
    sram_kib_a: float = 512.0
    sram_kib_w: float = 512.0
    sram_kib_o: float = 64.0
    format_a: str = "dense"
    format_w: str = "dense"
    format_o: str = "dense"
    decode_cycles_per_element: float = 0.03125
    conv_halo: str = "refetch"

    def __post_init__(self) -> None:
        if self.conv_halo not in CONV_HALOS:
            raise SparsesimError(f"unknown conv_halo {self.conv_halo!r}; expected one of "
                                 f"{', '.join(CONV_HALOS)}", field="memory.conv_halo")
        if not isinstance(self.dram, str):
            raise SparsesimError(f"must be a DRAM technology name, got {self.dram!r}",
                                 field="memory.dram")
        dram_tech(self.dram)
        if not isinstance(self.ideal, bool):
            raise SparsesimError(f"must be true or false, got {self.ideal!r}",
                                 field="memory.ideal")
        number(self.dram_bytes_per_cycle, "memory.dram_bytes_per_cycle", positive=True,
               finite=False)
        if (isinstance(self.dram_latency_cycles, bool)
                or not isinstance(self.dram_latency_cycles, int)
                or not 0 <= self.dram_latency_cycles <= MAX_COUNT):
            raise SparsesimError(f"must be a non-negative integer of at most {MAX_COUNT:,}, got "
                                 f"{self.dram_latency_cycles!r}",
                                 field="memory.dram_latency_cycles")
        positive_int(self.burst_bytes, "memory.burst_bytes")
        for op in (o.lower() for o in Operand):
            number(getattr(self, f"sram_kib_{op}"), f"memory.sram_kib_{op}", positive=True,
                   finite=False)
            fmt = getattr(self, f"format_{op}")
            if not isinstance(fmt, str) or not fmt.strip():
                raise SparsesimError(f"must be a format spec such as 'dense' or 'bitmap', "
                                     f"got {fmt!r}", field=f"memory.format_{op}")
        number(self.decode_cycles_per_element, "memory.decode_cycles_per_element",
               positive=False)

    def to_table(self) -> dict[str, Any]:
        # with a technology the bandwidth is derived, not a field the file sets
        table = Section.to_table(self)
        if self.dram != CUSTOM:
            del table["dram_bytes_per_cycle"]
        return table

    def sram_bytes(self, operand: str) -> float:
        """Total capacity in bytes of operand ``a``, ``w`` or ``o``'s buffer (may be inf)."""
        return float(getattr(self, f"sram_kib_{operand.lower()}")) * 1024.0

    def format_spec(self, operand: str) -> str:
        """The storage-format spec of operand ``a``, ``w`` or ``o``."""
        return str(getattr(self, f"format_{operand.lower()}"))
