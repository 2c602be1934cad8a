"""What one GEMM instance through memory comes to: per-operand traffic, cycles, actions.

Traffic is in whole bytes; DRAM figures include the burst padding, counted as data (``data +
meta = stored``). Cycles are clock cycles. :func:`actions` turns a result into the energy
model's action counts (bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from sparsesim.energy import ActionCounts
from sparsesim.memory.schedule import OPERANDS


@dataclass(frozen=True, slots=True)
class OperandTraffic:
    """One operand's traffic in bytes (DRAM figures include burst padding, counted as data).

    ``fetches`` counts DRAM → SRAM tile transfers (for O: partial-sum read-backs);
    ``refetch_bytes`` the part of the DRAM reads that fetched a tile already fetched before.
    """

    fetches: int = 0
    dram_read_data_bytes: int = 0
    dram_read_meta_bytes: int = 0
    dram_write_data_bytes: int = 0
    dram_write_meta_bytes: int = 0
    refetch_bytes: int = 0
    sram_read_bytes: int = 0
    sram_write_bytes: int = 0
    decoded_elements: int = 0
    popcount_words: int = 0

    @property
    def dram_read_bytes(self) -> int:
        return self.dram_read_data_bytes + self.dram_read_meta_bytes

    @property
    def dram_write_bytes(self) -> int:
        return self.dram_write_data_bytes + self.dram_write_meta_bytes


@dataclass(frozen=True, slots=True)
class MemoryResult:
    """One GEMM instance through the memory system. Cycles are clock cycles.

    ``stall_cycles = cycles − compute_cycles``: every cycle the array was not computing
    (``decode_stall_cycles`` of them spent on decoding beyond a fold's compute). ``events``
    counts simpy events processed (0 for ideal memory); ``accumulator_accesses`` the PE
    accumulator accesses moving partial sums to and from the O buffer
    (:attr:`~sparsesim.memory.schedule.FoldSchedule.accumulator_accesses`).
    """

    cycles: int
    compute_cycles: int
    stall_cycles: int
    decode_stall_cycles: int
    a: OperandTraffic
    w: OperandTraffic
    o: OperandTraffic
    events: int = 0
    chosen: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per operand, the formats its tiles are stored in: ``{spec: tiles}`` (distinct tiles;
    :meth:`~sparsesim.memory.schedule.FoldSchedule.chosen`)."""
    accumulator_accesses: int = 0

    @property
    def dram_read_bytes(self) -> int:
        return self.a.dram_read_bytes + self.w.dram_read_bytes + self.o.dram_read_bytes

    @property
    def dram_write_bytes(self) -> int:
        return self.a.dram_write_bytes + self.w.dram_write_bytes + self.o.dram_write_bytes

    def operand(self, name: str) -> OperandTraffic:
        return {"A": self.a, "W": self.w, "O": self.o}[name.upper()]

    def row(self) -> dict[str, int]:
        """Flat, unit-suffixed columns: ``cycles``, ..., ``dram_read_data_bytes_a``, ..."""
        out = {"cycles": self.cycles, "compute_cycles": self.compute_cycles,
               "stall_cycles": self.stall_cycles, "decode_stall_cycles": self.decode_stall_cycles}
        for op in OPERANDS:
            traffic = self.operand(op)
            for f in fields(OperandTraffic):
                out[f"{f.name}_{op.lower()}"] = getattr(traffic, f.name)
        return out


def actions(result: MemoryResult, *, macs: int, gated_macs: int = 0,
            register_accesses: int = 0) -> ActionCounts:
    """The memory side of a run as energy action counts, with the compute side given."""
    return ActionCounts(
        macs=macs, gated_macs=gated_macs, register_accesses=register_accesses,
        sram_a_read_bits=8 * result.a.sram_read_bytes,
        sram_a_write_bits=8 * result.a.sram_write_bytes,
        sram_w_read_bits=8 * result.w.sram_read_bytes,
        sram_w_write_bits=8 * result.w.sram_write_bytes,
        sram_o_read_bits=8 * result.o.sram_read_bytes,
        sram_o_write_bits=8 * result.o.sram_write_bytes,
        dram_read_bits=8 * result.dram_read_bytes,
        dram_write_bits=8 * result.dram_write_bytes,
        decoded_elements=result.a.decoded_elements + result.w.decoded_elements,
        accumulator_accesses=result.accumulator_accesses,
        popcount_words=result.a.popcount_words + result.w.popcount_words,
    )
