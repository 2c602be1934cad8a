"""The DRAM → SRAM → array model: schedules, cycles, stalls, traffic, reuse, errors."""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.arch.array import ArrayConfig, PrecisionConfig
from sparsesim.arch.config import Arch
from sparsesim.arch.memory import MemoryConfig
from sparsesim.errors import SparsesimError
from sparsesim.formats import tile_bits
from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm
from sparsesim.memory import (
    FoldSchedule,
    MemoryResult,
    OperandTiles,
    fold_schedule,
    simulate_gemm,
)
from sparsesim.memory.schedule import _dense_tile_bits
from sparsesim.units import ceil_div

INF = math.inf
FORMATS = ["dense", "bitmap", "csr", "csc", "coo", "rle:run_bits=2"]


def make_arch(rows=4, cols=4, dataflow="os", bits=(8, 8, 8), **memory):
    return Arch(array=ArrayConfig(rows, cols, dataflow), precision=PrecisionConfig(*bits),
                memory=MemoryConfig(**memory))


def unlimited(**kw):
    base = {"dram_bytes_per_cycle": INF, "dram_latency_cycles": 0, "sram_kib_a": INF,
            "sram_kib_w": INF, "sram_kib_o": INF, "decode_cycles_per_element": 0.0}
    return MemoryConfig(**{**base, **kw})


def schedule_of(m, k, n, arch, a=None, w=None, **kw):
    a_cfg = arch.array
    return fold_schedule(plan(Gemm("L", "g", m, k, n), a_cfg.dataflow, a_cfg.rows, a_cfg.cols),
                         arch, a, w, **kw)


@st.composite
def gemm_case(draw, max_dim=24):
    m, k, n = (draw(st.integers(1, max_dim)) for _ in range(3))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    da, dw = draw(st.sampled_from([0.0, 0.3, 1.0])), draw(st.sampled_from([0.0, 0.5, 1.0]))
    a = rng.random((m, k)) < da
    w = rng.random((k, n)) < dw
    arch = make_arch(draw(st.integers(1, 6)), draw(st.integers(1, 6)),
                     draw(st.sampled_from(["os", "ws", "is"])),
                     format_a=draw(st.sampled_from(FORMATS)),
                     format_w=draw(st.sampled_from(FORMATS)),
                     burst_bytes=draw(st.sampled_from([1, 4, 16])))
    return schedule_of(m, k, n, arch, a, w), arch


def max_tile(schedule: FoldSchedule, op: str) -> int:
    return int(schedule.operand(op).stored_bytes.max())


def traffic_fields(r: MemoryResult):
    return (r.a, r.w, r.o)


# --- the schedule ------------------------------------------------------------------------------


def test_schedule_follows_the_fold_order_of_each_dataflow():
    # 10 × 6 × 9 GEMM on a 4 × 4 array: column folds outer, row folds inner
    a = make_arch(dataflow="os")
    s = schedule_of(10, 6, 9, a)  # rows: m (3 blocks), cols: n (3 blocks), stream: k
    assert s.folds == 9
    np.testing.assert_array_equal(s.a.tile_ids, [0, 1, 2] * 3)  # A (m, k): block i of m
    np.testing.assert_array_equal(s.w.tile_ids, [0, 0, 0, 1, 1, 1, 2, 2, 2])  # W: block j of n
    np.testing.assert_array_equal(s.o.tile_ids, [0, 3, 6, 1, 4, 7, 2, 5, 8])  # m blk · 3 + n blk
    assert not s.accumulates.any()
    s = schedule_of(10, 6, 9, make_arch(dataflow="ws"))  # rows: k (2), cols: n (3), stream: m
    np.testing.assert_array_equal(s.a.tile_ids, [0, 1] * 3)  # A (k, m): block i of k, all m
    np.testing.assert_array_equal(s.w.tile_ids, [0, 3, 1, 4, 2, 5])  # k blk · 3 + n blk
    np.testing.assert_array_equal(s.o.tile_ids, [0, 0, 1, 1, 2, 2])  # O: all m, block j of n
    np.testing.assert_array_equal(s.accumulates, [False, True] * 3)
    s = schedule_of(10, 6, 9, make_arch(dataflow="is"))  # rows: k (2), cols: m (3), stream: n
    np.testing.assert_array_equal(s.a.tile_ids, [0, 3, 1, 4, 2, 5])  # id = k block · 3 + m block
    np.testing.assert_array_equal(s.w.tile_ids, [0, 1] * 3)
    np.testing.assert_array_equal(s.o.tile_ids, [0, 0, 1, 1, 2, 2])
    # tile bytes: is A tiles are 4 (k) × 4 (m) int8, edge blocks smaller, one 16-byte burst
    assert s.a.encoded_bytes.tolist() == [16, 16, 8, 8, 8, 4]


def test_sparse_tile_bytes_come_from_the_formats():
    rng = np.random.default_rng(1)
    a_mask, w_mask = rng.random((12, 20)) < 0.3, rng.random((20, 7)) < 0.4
    arch = make_arch(4, 4, "os", format_a="bitmap", format_w="csc", burst_bytes=32)
    s = schedule_of(12, 20, 7, arch, a_mask, w_mask)
    data, meta = tile_bits(a_mask.T, 20, 4, "bitmap", 8)  # K whole, m in blocks of 4
    np.testing.assert_array_equal(s.a.meta_bytes, (meta.ravel() + 7) // 8)
    np.testing.assert_array_equal(s.a.encoded_bytes, (data.ravel() + meta.ravel() + 7) // 8)
    np.testing.assert_array_equal(s.a.stored_bytes, -(-s.a.encoded_bytes // 32) * 32)
    # a decoded element is a stored value: bitmap stores the non-zeros
    nnz = [int(a_mask[4 * b:4 * b + 4].sum()) for b in range(3)]
    np.testing.assert_array_equal(s.a.decode_elements, nnz)
    dense = schedule_of(12, 20, 7, make_arch(4, 4, "os"), a_mask, w_mask)
    assert not dense.a.decode_elements.any() and not dense.a.meta_bytes.any()


@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 9), st.integers(1, 9),
       st.sampled_from([*FORMATS, "auto", "nm:n=4,m=4", "coo_offset"]))
def test_dense_tile_sizes_shortcut_equals_the_full_mask(k, n, tr, tc, fmt):
    """Dense operands are sized on a mask of at most 2 × 2 tiles; the twin sizes them all."""
    got = _dense_tile_bits((k, n), (tr, tc), fmt, 8, "t")
    want = tile_bits(np.ones((k, n), dtype=bool), tr, tc, fmt, 8)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_bad_masks_and_cycles_name_the_layer():
    arch = make_arch()
    with pytest.raises(SparsesimError) as err:
        schedule_of(5, 6, 7, arch, a=np.ones((6, 5), bool))
    assert err.value.layer == "L" and err.value.field == "A"
    with pytest.raises(SparsesimError) as err:
        schedule_of(5, 6, 7, arch, compute_cycles=np.ones(3, np.int64))
    assert err.value.field == "compute_cycles"
    with pytest.raises(SparsesimError) as err:
        schedule_of(5, 6, 7, replace(arch, memory=MemoryConfig(format_w="zip")))
    assert err.value.field == "memory.format_w" and err.value.layer == "L"


# --- cycles ------------------------------------------------------------------------------------


@given(gemm_case())
def test_unlimited_memory_takes_the_compute_cycles_and_ideal_traffic(case):
    s, arch = case
    r = simulate_gemm(s, unlimited(burst_bytes=arch.memory.burst_bytes))
    assert r.cycles == r.compute_cycles == int(s.compute_cycles.sum())
    assert r.stall_cycles == 0
    ideal = simulate_gemm(s, replace(arch.memory, ideal=True))
    assert ideal.cycles == r.cycles and ideal.events == 0
    assert traffic_fields(ideal) == traffic_fields(r)  # each distinct tile once
    assert r.a.refetch_bytes == r.w.refetch_bytes == r.o.refetch_bytes == 0


def test_ideal_memory_never_stalls_and_skips_the_size_check():
    arch = make_arch(sram_kib_a=0.001, dram_bytes_per_cycle=0.01, ideal=True, burst_bytes=1)
    s = schedule_of(30, 40, 20, arch)
    r = simulate_gemm(s, arch.memory)
    assert r.cycles == r.compute_cycles and r.stall_cycles == 0
    assert r.a.dram_read_bytes == 30 * 40 and r.w.dram_read_bytes == 40 * 20
    assert r.o.dram_write_bytes == 30 * 20


@settings(max_examples=40)
@given(gemm_case(max_dim=20), st.floats(0.05, 8), st.floats(1, 8), st.floats(1, 4),
       st.integers(0, 50))
def test_cycles_never_decrease_with_less_bandwidth_or_smaller_buffers(case, bw, slower,
                                                                        bigger, latency):
    s, arch = case
    sizes = {op: 2 * max_tile(s, op) / 1024 for op in "awo"}

    def run(bandwidth, scale):
        mem = replace(arch.memory, dram_bytes_per_cycle=bandwidth, dram_latency_cycles=latency,
                      **{f"sram_kib_{op}": max(sizes[op], 1 / 1024) * scale for op in "awo"})
        return simulate_gemm(s, mem)

    base = run(bw, bigger)
    less_bw = run(bw / slower, bigger)
    small = run(bw, 1.0)
    assert less_bw.cycles >= base.cycles
    assert small.cycles >= base.cycles
    assert small.a.refetch_bytes >= base.a.refetch_bytes  # LRU keeps a superset when bigger
    assert small.w.refetch_bytes >= base.w.refetch_bytes
    for r, b in ((base, bw), (less_bw, bw / slower), (small, bw)):
        # the channel serialises every byte; cycles split into compute and stalls
        assert r.cycles >= (r.dram_read_bytes + r.dram_write_bytes) / b - 1e-9
        assert r.cycles == r.compute_cycles + r.stall_cycles
    assert traffic_fields(less_bw) == traffic_fields(base)  # bandwidth never changes traffic


def test_same_inputs_same_numbers():
    rng = np.random.default_rng(7)
    arch = make_arch(8, 8, "ws", format_w="bitmap", sram_kib_a=1, sram_kib_w=1, sram_kib_o=2)
    s = schedule_of(40, 50, 30, arch, rng.random((40, 50)) < 0.5, rng.random((50, 30)) < 0.2)
    runs = [simulate_gemm(s, arch.memory) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0].stall_cycles > 0 and runs[0].events > 0


@pytest.mark.parametrize("bw", [16.0, 1024.0])
def test_gemv_streams_at_the_bound(bw):
    """M = 1: weights stream once. Within a few percent of max(compute, bytes/bw) + latency.

    Double buffering keeps the channel busy (the next tile is requested as soon as a half is
    free), so only the last fold's compute is exposed beyond the bound (1.6 % here).
    """
    k, n = 2048, 1024
    arch = make_arch(32, 32, "os", dram_bytes_per_cycle=bw, dram_latency_cycles=100,
                     sram_kib_w=256.0)
    s = schedule_of(1, k, n, arch)
    r = simulate_gemm(s, arch.memory)
    moved = r.dram_read_bytes + r.dram_write_bytes
    assert r.w.dram_read_bytes == k * n and r.w.refetch_bytes == 0
    bound = max(r.compute_cycles, moved / bw) + 100
    assert r.cycles >= moved / bw and r.cycles >= r.compute_cycles
    assert r.cycles <= 1.02 * bound
    if bw == 16.0:
        assert r.stall_cycles > r.compute_cycles / 2  # memory-bound: W at 2 B per MAC cycle


@settings(max_examples=40)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(1, 6),
       st.integers(1, 6), st.sampled_from(["os", "ws", "is"]), st.sampled_from([8, 16, 4]),
       st.sampled_from([1, 8, 64]))
def test_dense_traffic_is_the_closed_form(m, k, n, rows, cols, dataflow, bits, burst):
    """Zero sparsity, buffers that hold everything: each element moves once, bits/8 bytes
    each, each tile rounded up to whole bursts."""
    arch = make_arch(rows, cols, dataflow, bits=(bits, bits, bits), burst_bytes=burst,
                     dram_latency_cycles=3, sram_kib_a=1e6, sram_kib_w=1e6, sram_kib_o=1e6)
    s = schedule_of(m, k, n, arch)
    r = simulate_gemm(s, arch.memory)
    dims = {"m": m, "k": k, "n": n}
    df = plan(Gemm("L", "g", m, k, n), dataflow, rows, cols).dataflow

    def blocks(axis):
        size = rows if axis == df.row_axis else cols if axis == df.col_axis else dims[axis]
        full, last = divmod(dims[axis], size)
        return [size] * full + ([last] if last else [])

    def closed_form(x, y):
        return sum(ceil_div(ceil_div(bx * by * bits, 8), burst) * burst
                   for bx in blocks(x) for by in blocks(y))

    assert r.a.dram_read_bytes == closed_form("m", "k")
    assert r.w.dram_read_bytes == closed_form("k", "n")
    assert r.o.dram_write_bytes == closed_form("m", "n")
    assert r.a.dram_read_meta_bytes == r.w.dram_read_meta_bytes == 0
    if burst == 1 and bits == 8:
        assert (r.a.dram_read_bytes, r.w.dram_read_bytes, r.o.dram_write_bytes) == (
            m * k, k * n, m * n)


# --- reuse, refetch, spills ----------------------------------------------------------------


def test_working_set_that_does_not_fit_is_refetched_and_counted():
    # os, 2 column folds: every A tile (8 × 64 int8 = 512 B) is needed once per column fold
    arch = make_arch(8, 8, "os", burst_bytes=64)
    s = schedule_of(64, 64, 16, arch)
    a_bytes = 64 * 64
    fits = simulate_gemm(s, replace(arch.memory, sram_kib_a=8.0))
    assert fits.a.dram_read_bytes == a_bytes and fits.a.refetch_bytes == 0
    tight = simulate_gemm(s, replace(arch.memory, sram_kib_a=1.0))  # two tiles: LRU thrashes
    assert tight.a.dram_read_bytes == 2 * a_bytes and tight.a.refetch_bytes == a_bytes
    assert tight.a.fetches == 16 and fits.a.fetches == 8
    assert tight.a.sram_read_bytes == fits.a.sram_read_bytes == 2 * a_bytes  # one read a fold
    assert tight.cycles >= fits.cycles


def _tiles(op, ids, sizes):
    sizes = np.asarray(sizes, dtype=np.int64)
    return OperandTiles(op, np.asarray(ids, dtype=np.int64), sizes, np.zeros_like(sizes), sizes,
                        np.zeros_like(sizes))


def test_partial_sums_that_do_not_fit_are_spilled_and_read_back():
    # a hand-made order: three output tiles written round-robin, accumulated twice
    o_ids = [0, 1, 2, 0, 1, 2, 0, 1, 2]
    s = FoldSchedule("L", np.full(9, 2, dtype=np.int64), _tiles("A", [0] * 9, [64]),
                     _tiles("W", [0] * 9, [64]), _tiles("O", o_ids, [64, 64, 64]),
                     accumulates=np.arange(9) >= 3)
    mem = MemoryConfig(dram_bytes_per_cycle=64.0, dram_latency_cycles=5, burst_bytes=64)
    roomy = simulate_gemm(s, replace(mem, sram_kib_o=1.0))
    assert roomy.o.dram_write_bytes == 3 * 64 and roomy.o.refetch_bytes == 0
    tight = simulate_gemm(s, replace(mem, sram_kib_o=128 / 1024))  # two tiles
    # every fold from the third on evicts (spills) the tile it will need two folds later
    assert tight.o.refetch_bytes == tight.o.dram_read_bytes == 6 * 64
    assert tight.o.dram_write_bytes == (6 + 3) * 64
    assert tight.cycles > roomy.cycles


def test_write_back_waits_for_space():
    # os outputs: a tile per fold, each written back after its fold; tiny O buffer
    arch = make_arch(4, 4, "os", dram_bytes_per_cycle=0.5, dram_latency_cycles=0,
                     burst_bytes=16, sram_kib_o=32 / 1024)
    s = schedule_of(16, 4, 16, arch)
    r = simulate_gemm(s, arch.memory)
    assert r.o.dram_write_bytes == 16 * 16
    assert r.cycles >= r.dram_write_bytes / 0.5 + r.dram_read_bytes / 0.5


def test_decoding_slower_than_compute_stalls_the_array():
    rng = np.random.default_rng(3)
    a_mask = rng.random((16, 64)) < 0.5
    arch = make_arch(4, 4, "os", format_a="bitmap", decode_cycles_per_element=2.0)
    s = schedule_of(16, 64, 8, arch, a_mask)
    r = simulate_gemm(s, replace(arch.memory, dram_bytes_per_cycle=INF, dram_latency_cycles=0,
                                 sram_kib_a=INF, sram_kib_w=INF, sram_kib_o=INF))
    per_fold = np.maximum(s.compute_cycles, 2 * s.a.decode_elements[s.a.tile_ids])
    assert r.cycles == int(per_fold.sum())
    assert r.decode_stall_cycles == r.stall_cycles == r.cycles - r.compute_cycles > 0
    assert r.a.decoded_elements == int(a_mask.sum()) * 2  # every A tile read by 2 col folds


def test_a_stream_too_long_for_the_buffer_runs_in_chunks():
    arch = make_arch(32, 32, "os", sram_kib_w=16.0)  # whole-K W tiles: 1024 × 32 int8 = 32 KiB
    whole = schedule_of(64, 1024, 64, replace(arch, memory=replace(arch.memory, ideal=True)))
    s = schedule_of(64, 1024, 64, arch)
    assert s.w.stored_bytes.max() <= 8 * 1024 < whole.w.stored_bytes.max()
    assert s.compute_cycles.sum() == whole.compute_cycles.sum()
    assert s.folds == 4 * whole.folds  # K cut in 4 chunks of 256: W tiles of exactly 8 KiB
    r = simulate_gemm(s, arch.memory)
    assert r.w.dram_read_bytes >= 1024 * 64 and r.compute_cycles == whole.compute_cycles.sum()


def test_a_tile_that_cannot_fit_names_layer_operand_and_sizes():
    arch = make_arch(32, 32, "os", sram_kib_w=0.0625)  # 64 B: not even one 32-byte row fits
    s = schedule_of(64, 1024, 64, arch)
    with pytest.raises(SparsesimError) as err:
        simulate_gemm(s, arch.memory)
    e = err.value
    assert e.layer == "L" and e.field == "memory.sram_kib_w"
    assert "W tile of 64 bytes" in e.message and "0.0625 KiB" in e.message
    assert "0.03125 KiB per half" in e.message
    simulate_gemm(s, replace(arch.memory, sram_kib_w=0.125))  # exactly half: fits


def test_result_row_is_flat_and_unit_suffixed():
    arch = make_arch()
    r = simulate_gemm(schedule_of(9, 9, 9, arch), arch.memory)
    row = r.row()
    assert row["cycles"] == r.cycles and row["dram_read_data_bytes_a"] == r.a.dram_read_data_bytes
    assert all(k.endswith(("_cycles", "cycles", "_bytes_a", "_bytes_w", "_bytes_o", "_a", "_w",
                           "_o")) for k in row)
    assert len(row) == 4 + 3 * 10  # 10 traffic fields per operand, popcount_words included


def test_machine_tallies_every_traffic_field():
    """The machine's mutable tallies and the frozen result name the same fields, in order
    (a field added to OperandTraffic alone would silently stay 0)."""
    from dataclasses import fields

    from sparsesim.memory.machine import _Counts
    from sparsesim.memory.traffic import OperandTraffic

    assert [f.name for f in fields(_Counts)] == [f.name for f in fields(OperandTraffic)]
