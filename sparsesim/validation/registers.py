"""The PE register level against its closed form (issue 19 item 8): ws GEMMs run under
SCALE-Sim's loop order, whose K folds for one output tile are consecutive.

For a ws GEMM ``M × K × N`` on an ``R × C`` array (int8, 1-byte bursts, buffers that hold
everything) there are ``F = ceil(K / R)`` K folds per output tile ``M × w`` (``w = C``, the
last column fold's ``N mod C`` if partial), the stream ``m`` whole. With ``acc_entries``
accumulators per PE a tile stays in the PEs when ``M · w ≤ R · C · acc_entries``; per tile:

    held:     O SRAM writes = M·w            psum reads 0           accumulator accesses M·w
    spilled:  O SRAM writes = F·M·w          psum reads (F−1)·M·w   accumulator accesses (2F−1)·M·w

(O SRAM reads are the psum reads plus the write-back's M·N.) The cases run each GEMM with
the fewest entries that hold its full tiles (``ceil(M / R)``) and one fewer. Written here from the
definition, not from the package's code; and the cycles and DRAM bytes must be the same
either way (the register level moves SRAM traffic and energy only).
"""

from __future__ import annotations

from sparsesim.api import simulate
from sparsesim.arch.array import ArrayConfig, PrecisionConfig
from sparsesim.arch.config import Arch
from sparsesim.arch.energy import EnergyTable
from sparsesim.arch.memory import MemoryConfig
from sparsesim.arch.pe import PeConfig
from sparsesim.validation.registry import (SOURCES, Check, Context, Group, add_group, exact_row,
                                           register)
from sparsesim.workload.layers import MatMul
from sparsesim.workload.network import Workload

add_group("registers", Group("PE register level", """\
Partial sums stay in the PE accumulators across K folds when SCALE-Sim's ws order runs an
output tile's K folds back to back and the tile fits `rows · cols · acc_entries` entries; else
they spill to the O buffer. Closed forms from the definition (module
`sparsesim.validation.registers`): O SRAM bytes and register energy (3 accesses per MAC and
one accumulator access per element drained or filled), held and spilled,
on GEMMs of several shapes, with cycles and DRAM bytes unchanged between the two."""))

#: (M, K, N, rows, cols): K folds 1 to 5, partial column folds, M at and around R · entries.
CASES = ((8, 12, 4, 4, 4), (16, 40, 10, 8, 4), (8, 8, 8, 8, 8), (31, 17, 3, 4, 2),
         (64, 100, 16, 16, 8))


def _run(m: int, k: int, n: int, rows: int, cols: int, acc: int
         ) -> tuple[dict[str, int], int, int, float]:
    arch = Arch(array=ArrayConfig(rows, cols, "ws"), precision=PrecisionConfig(8, 8, 8),
                pe=PeConfig(acc_entries=acc),
                memory=MemoryConfig(burst_bytes=1, sram_kib_a=64, sram_kib_w=64,
                                    sram_kib_o=64))
    (row,) = simulate(Workload("registers", (MatMul("mm", m, k, n),)), arch).rows
    return (row.traffic, row.cycles, row.dram_read_bytes + row.dram_write_bytes,
            row.energy["register"])


@register("registers", fast=True)
def _registers_ws(ctx: Context) -> list[Check]:
    good = total = 0
    bad: list[str] = []
    table = EnergyTable()
    assert table.accumulator(8) == table.register(8)  # the default: one RF figure
    for m, k, n, rows, cols in CASES:
        folds = -(-k // rows)
        fits = -(-m // rows)  # the fewest entries that hold the M × C tile
        runs = {}
        for acc, held in ((fits, True), (max(fits - 1, 0), False)):
            traffic, cycles, dram, register_pj = _run(m, k, n, rows, cols, acc)
            runs[held] = (cycles, dram)
            writes = reads = 0
            for j in range(-(-n // cols)):  # per column fold: its tile M × w
                w = min(cols, n - j * cols)
                kept = m * w <= rows * cols * acc
                writes += m * w * (1 if kept else folds)
                reads += 0 if kept else (folds - 1) * m * w
            # 3 register accesses per MAC (A, W, accumulator) + one accumulator access per
            # element drained to or filled from SRAM, all at 8 bits
            expect_pj = (3 * m * k * n + writes + reads) * table.register(8)
            total += 2
            if (traffic["sram_write_bytes_o"], traffic["sram_read_bytes_o"]) == \
                    (writes, reads + m * n):
                good += 1
            else:
                bad.append(f"{m}x{k}x{n} on {rows}x{cols}, {acc} entries: O SRAM "
                           f"{traffic['sram_write_bytes_o']}/{traffic['sram_read_bytes_o']} "
                           f"B, expected {writes}/{reads + m * n}")
            if abs(register_pj - expect_pj) <= 2 ** -7:
                good += 1
            else:
                bad.append(f"{m}x{k}x{n}, {acc} entries: register {register_pj} pJ, expected "
                           f"{expect_pj}")
        total += 1
        if runs[True] == runs[False]:
            good += 1
        else:
            bad.append(f"{m}x{k}x{n}: cycles/DRAM {runs[True]} held vs {runs[False]} spilled")
    return [exact_row(id="registers.ws_psums", group="registers",
                      what="ws partial sums held in accumulators or spilled: O SRAM bytes, "
                           "and cycles and DRAM bytes unchanged",
                      anchor="per output tile M×w: written once when M·w ≤ rows·cols·"
                             "acc_entries; else F·M·w written, (F−1)·M·w read back",
                      source=SOURCES["registers"], good=good,
                      total=total, unit="figures", failures=bad)]
