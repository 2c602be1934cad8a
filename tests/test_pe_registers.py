"""The PE register level (issue 19 item 2): partial sums stay in the PE accumulators across
K folds when the loop order keeps K innermost for an output tile and the tile fits them;
otherwise they spill to the O buffer. Expected counts are closed forms derived in the
comments, not read from the code."""

import pytest

from sparsesim.api import simulate
from sparsesim.arch.array import ArrayConfig, PrecisionConfig
from sparsesim.arch.config import Arch, with_overrides
from sparsesim.arch.energy import EnergyTable
from sparsesim.arch.mapping import MappingConfig
from sparsesim.arch.memory import MemoryConfig
from sparsesim.arch.pe import PeConfig
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import MatMul
from sparsesim.workload.network import Workload

# ws on a 4×4 array, M = 8, K = 12, N = 4, int8: rows carry k (3 row folds), columns n (one
# column fold), the stream is m = 8 (whole: big buffers). SCALE-Sim's order runs the three K
# folds of the one output tile (8 × 4 = 32 elements) back to back.
M, K, N, ROWS, COLS = 8, 12, 4, 4, 4
FOLDS = 3


def arch_of(acc, *, order="scalesim", ideal=False):
    return Arch(array=ArrayConfig(ROWS, COLS, "ws"), precision=PrecisionConfig(8, 8, 8),
                pe=PeConfig(acc_entries=acc),
                memory=MemoryConfig(ideal=ideal, burst_bytes=1, dram_latency_cycles=10,
                                    sram_kib_a=4, sram_kib_w=4, sram_kib_o=4),
                mapping=MappingConfig(order=order))


def row(arch):
    workload = Workload("t", (MatMul("mm", M, K, N),))
    (r,) = simulate(workload, arch).rows
    return r


@pytest.mark.parametrize("ideal", [False, True])
def test_ws_gemm_whose_output_tile_fits_spills_no_partial_sums(ideal):
    # acc_entries = 2: 4·4·2 = 32 accumulators hold the 8 × 4 tile. The three K folds add into
    # it in the PEs: the O buffer is written once (the finished 32 B), read once (its
    # write-back to DRAM), and no partial sum is read back: psum SRAM bytes 0.
    r = row(arch_of(2, ideal=ideal))
    t = r.traffic
    assert t["sram_write_bytes_o"] == M * N
    assert t["sram_read_bytes_o"] == M * N  # the write-back only
    assert t["dram_write_data_bytes_o"] == M * N
    # registers: 3 per MAC (A, W, accumulator) + 32 accumulator drains, no fills
    table = EnergyTable()
    expect = 3 * M * K * N * table.register(8) + M * N * table.accumulator(8)
    assert r.energy["register"] == pytest.approx(expect, abs=2 ** -8)


@pytest.mark.parametrize("ideal", [False, True])
def test_ws_gemm_whose_output_tile_does_not_fit_spills_closed_form(ideal):
    # acc_entries = 1: 16 accumulators < 32. Every K fold writes its partial sums (3 × 32 B)
    # and the last two read them back (2 × 32 B) beside the write-back's 32 B read: what every
    # step did before the register level. Accumulators: 3 × 32 drains + 2 × 32 fills.
    r = row(arch_of(1, ideal=ideal))
    t = r.traffic
    assert t["sram_write_bytes_o"] == FOLDS * M * N
    assert t["sram_read_bytes_o"] == (FOLDS - 1) * M * N + M * N
    table = EnergyTable()
    expect = (3 * M * K * N * table.register(8)
              + (FOLDS + FOLDS - 1) * M * N * table.accumulator(8))
    assert r.energy["register"] == pytest.approx(expect, abs=2 ** -8)


def test_registers_move_energy_only():
    # the same GEMM held or spilled: cycles and DRAM traffic identical; O SRAM energy drops by
    # the psum bytes not moved (4 writes-and-reads of 32 B at the O buffer's per-bit cost)
    held, spilled = row(arch_of(2)), row(arch_of(1))
    assert (held.cycles, held.stall_cycles, held.dram_read_bytes, held.dram_write_bytes) == \
        (spilled.cycles, spilled.stall_cycles, spilled.dram_read_bytes,
         spilled.dram_write_bytes)
    table = EnergyTable()
    per_bit = table.sram_read_per_bit(2 * 1024)
    saved = 8 * ((FOLDS - 1) * M * N) * per_bit * 2  # (FOLDS−1) writes and reads of 32 B
    got = (spilled.energy["sram_o_read"] + spilled.energy["sram_o_write"]
           - held.energy["sram_o_read"] - held.energy["sram_o_write"])
    assert got == pytest.approx(saved, abs=2 ** -7)
    assert held.energy_pj < spilled.energy_pj


def test_an_order_that_interleaves_output_tiles_spills():
    # input_reuse on ws is k > m > n: with one column fold and the whole stream it runs the
    # same three folds in the same order (the output tile still consecutive): held.
    assert row(arch_of(2, order="input_reuse")).traffic["sram_write_bytes_o"] == M * N


def test_os_chunked_stream_keeps_psums_in_its_one_accumulator():
    # os 4×4, M = N = 4, K = 12 with stream_tile 4: one fold, 3 chunks of k, one 4 × 4 output
    # tile. acc_entries 1 holds it (16 = 4·4·1): written once. acc_entries 0: each chunk writes
    # it and the later two read it back.
    def os_row(acc):
        arch = Arch(array=ArrayConfig(4, 4, "os"), pe=PeConfig(acc_entries=acc),
                    memory=MemoryConfig(ideal=True, burst_bytes=1),
                    mapping=MappingConfig(stream_tile=4))
        (r,) = simulate(Workload("t", (MatMul("mm", 4, 12, 4),)), arch).rows
        return r
    held, none = os_row(1), os_row(0)
    assert held.traffic["sram_write_bytes_o"] == 16
    assert none.traffic["sram_write_bytes_o"] == 3 * 16
    assert none.traffic["sram_read_bytes_o"] == 2 * 16 + 16
    assert held.cycles == none.cycles == 3 * 4 + (4 + 4 - 2)


def test_acc_entries_validated_and_priced_in_area():
    with pytest.raises(SparsesimError, match=r"pe\.acc_entries"):
        with_overrides(Arch(), {"pe.acc_entries": -1})
    with pytest.raises(SparsesimError, match=r"pe\.acc_entries"):
        with_overrides(Arch(), {"pe.acc_entries": 1.5})
    from sparsesim.area import area_breakdown
    one = area_breakdown(Arch()).area_mm2["pe_registers"]
    four = area_breakdown(with_overrides(Arch(), {"pe.acc_entries": 4})).area_mm2["pe_registers"]
    # per PE 8 + 8 + entries × 32 flip-flops (int8 operands, 32-bit accumulators)
    assert four / one == pytest.approx((16 + 4 * 32) / (16 + 32))
