"""Mapping as data (issue 19 item 1): loop orders over the folds, tile sizes, and the
``[mapping]`` table. Expected figures are counted by hand from the loop nests in the
comments; the default order is checked against SCALE-Sim's fold enumeration written out
here, not read from the code under test."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.arch.array import ArrayConfig, PrecisionConfig
from sparsesim.arch.config import Arch, arch_from_dict, load_arch, with_overrides
from sparsesim.arch.mapping import MappingConfig
from sparsesim.arch.memory import MemoryConfig
from sparsesim.arch.pe import PeConfig
from sparsesim.errors import SparsesimError
from sparsesim.mapping.dataflows import DATAFLOWS, plan
from sparsesim.mapping.gemm import Gemm
from sparsesim.mapping.loops import all_orders, mapping_of, revisits
from sparsesim.memory import fold_schedule, simulate_gemm
from sparsesim.memory.tiling import simulate_tiled
from sparsesim.names import MappingOrder


def arch_of(rows, cols, dataflow, *, order="scalesim", stream_tile=0, acc=1, **memory):
    base = {"dram_bytes_per_cycle": 4.0, "dram_latency_cycles": 5, "burst_bytes": 1,
            "decode_cycles_per_element": 0.0}
    return Arch(array=ArrayConfig(rows, cols, dataflow), precision=PrecisionConfig(8, 8, 8),
                pe=PeConfig(acc_entries=acc), memory=MemoryConfig(**{**base, **memory}),
                mapping=MappingConfig(order=order, stream_tile=stream_tile))


def run(m, k, n, arch):
    a = arch.array
    p = plan(Gemm("L", "g", m, k, n), a.dataflow, a.rows, a.cols)
    return fold_schedule(p, arch), simulate_tiled(p, arch)


# --- the [mapping] table -----------------------------------------------------------------------


def test_default_is_scalesim_and_round_trips():
    arch = load_arch("default")
    assert arch.mapping == MappingConfig("scalesim", 0)
    again = arch_from_dict(arch.to_dict())
    assert again == arch
    explicit = with_overrides(arch, {"mapping.order": ["m", "n", "k"], "mapping.stream_tile": 8})
    assert explicit.mapping.order == ("m", "n", "k")
    assert arch_from_dict(explicit.to_dict()).mapping == explicit.mapping


@pytest.mark.parametrize("field, value, words", [
    ("order", "fastest", "unknown order"),
    ("order", ["m", "k"], "once each"),
    ("order", ["m", "k", "k"], "once each"),
    ("order", 3, "unknown order"),
    ("stream_tile", -1, "stream_tile"),
    ("stream_tile", 2.5, "stream_tile"),
    ("stream_tile", True, "stream_tile"),
])
def test_bad_mapping_fields_name_the_field(field, value, words):
    with pytest.raises(SparsesimError) as err:
        with_overrides(load_arch("default"), {f"mapping.{field}": value})
    assert f"mapping.{field}" in str(err.value) and words in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_mapping_key_is_refused():
    with pytest.raises(SparsesimError, match=r"mapping\.tile"):
        arch_from_dict({"mapping": {"tile": 4}})


def test_named_orders_by_what_they_keep():
    # scalesim: (col, row, stream) axes; X_reuse puts the axis X lacks innermost
    expect = {"os": {"scalesim": ("n", "m", "k"), "output_reuse": ("n", "m", "k"),
                     "weight_reuse": ("n", "k", "m"), "input_reuse": ("m", "k", "n")},
              "ws": {"scalesim": ("n", "k", "m"), "output_reuse": ("n", "m", "k"),
                     "weight_reuse": ("n", "k", "m"), "input_reuse": ("k", "m", "n")},
              "is": {"scalesim": ("m", "k", "n"), "output_reuse": ("m", "n", "k"),
                     "weight_reuse": ("k", "n", "m"), "input_reuse": ("m", "k", "n")}}
    keeps = {"output_reuse": "O", "weight_reuse": "W", "input_reuse": "A"}
    for df, orders in expect.items():
        for name, order in orders.items():
            m = mapping_of(arch_of(2, 2, df, order=name))
            assert m.order == order, (df, name)
            if name in keeps:
                assert m.keeps == keeps[name]
        assert len(set(all_orders(DATAFLOWS[df]))) == 6
        assert all_orders(DATAFLOWS[df])[0] == orders["scalesim"]
    assert set(MappingOrder) == {"scalesim", *keeps}


# --- DRAM traffic per operand by hand ----------------------------------------------------------

# os on a 2×2 array, M = 6, K = 6, N = 4: 3 row folds (m) × 2 column folds (n), stream k = 6.
# Tiles (int8, 1-byte bursts): A = 6 (k) × 2 (m) = 12 B, three of them (by row fold i);
# W = 6 × 2 = 12 B, two (by column fold j); O = 2 × 2 = 4 B, six. A and W buffers of 24 B hold
# two tiles (one per half): LRU over a cycle of three A tiles misses every time.
#   scalesim / output_reuse / weight_reuse (n > m > k; k is one chunk): j outer, i inner
#     A ids 0 1 2 0 1 2 → 6 fetches = 72 B; W ids 0 0 0 1 1 1 → 2 fetches = 24 B
#   input_reuse (m > k > n): i outer, j inner
#     A ids 0 0 1 1 2 2 → 3 fetches = 36 B; W ids 0 1 0 1 0 1 → two tiles fit: 24 B
#   O: every tile written back once, 6 × 4 = 24 B, never read from DRAM.
@pytest.mark.parametrize("order, a_bytes, a_fetches", [
    ("scalesim", 72, 6), ("output_reuse", 72, 6), ("weight_reuse", 72, 6),
    ("input_reuse", 36, 3), (["m", "n", "k"], 36, 3),
])
def test_os_dram_traffic_per_operand_by_hand(order, a_bytes, a_fetches):
    arch = arch_of(2, 2, "os", order=order, sram_kib_a=24 / 1024, sram_kib_w=24 / 1024,
                   sram_kib_o=8 / 1024)
    _, r = run(6, 6, 4, arch)
    assert (r.a.dram_read_bytes, r.a.fetches) == (a_bytes, a_fetches)
    assert r.a.refetch_bytes == a_bytes - 36
    assert (r.w.dram_read_bytes, r.w.fetches) == (24, 2)
    assert (r.o.dram_write_bytes, r.o.dram_read_bytes) == (24, 0)
    # the same folds, the stream whole: compute cycles are the dense folds' (6 × (6 + 2))
    assert r.compute_cycles == 6 * (6 + 2 + 2 - 2)


# ws on a 2×2 array, M = 4, K = 4, N = 2, stream_tile = 2: 2 row folds (k) × 1 column fold,
# the stream m in 2 chunks. Tiles: A = 2 (k) × 2 (m) = 4 B, four (i, s); W = 2 × 2 = 4 B, two
# (i); O = 2 (m) × 2 (n) = 4 B, two (s). Buffers: A 8 B, W 8 B, O 8 B (two tiles each).
#   scalesim (n > k > m: j, i, s):   steps (i, s) = 00 01 10 11; W ids 0 0 1 1; O ids 0 1 0 1
#   output_reuse (n > m > k: j, s, i): steps 00 10 01 11;       W ids 0 1 0 1; O ids 0 0 1 1
# A: 4 distinct tiles, each used once → 16 B either way. W: scalesim 2 fetches (8 B);
# output_reuse cycles over two tiles that both fit → also 8 B. O: two tiles written back
# once → 8 B, nothing spilled (both fit the 8 B buffer).
# Fold cycles (dense ws): T + 2·rows + cols − 2 = 4 + 4 = 8 per fold, 4 per chunk.
#   scalesim: each fold's chunks consecutive → 2 × 8 = 16 compute cycles
#   output_reuse: fold 0 runs at steps 0 and 2, fold 1 at 1 and 3 → two revisits, each
#     paying the fold's fill/drain and preload again (4 cycles): 16 + 8 = 24
def test_ws_chunked_orders_by_hand():
    kw = dict(stream_tile=2, sram_kib_a=8 / 1024, sram_kib_w=8 / 1024, sram_kib_o=8 / 1024)
    s_sc, r_sc = run(4, 4, 2, arch_of(2, 2, "ws", order="scalesim", **kw))
    s_or, r_or = run(4, 4, 2, arch_of(2, 2, "ws", order="output_reuse", **kw))
    np.testing.assert_array_equal(s_sc.w.tile_ids, [0, 0, 1, 1])
    np.testing.assert_array_equal(s_sc.o.tile_ids, [0, 1, 0, 1])
    np.testing.assert_array_equal(s_or.w.tile_ids, [0, 1, 0, 1])
    np.testing.assert_array_equal(s_or.o.tile_ids, [0, 0, 1, 1])
    for r in (r_sc, r_or):
        assert r.a.dram_read_bytes == 16 and r.w.dram_read_bytes == 8
        assert (r.o.dram_write_bytes, r.o.dram_read_bytes) == (8, 0)
    assert r_sc.compute_cycles == 16
    assert r_or.compute_cycles == 24
    np.testing.assert_array_equal(s_or.compute_cycles, [4, 4, 8, 8])


def test_revisits_by_hand():
    np.testing.assert_array_equal(revisits(np.array([0, 0, 1, 1])), [0, 0, 0, 0])
    np.testing.assert_array_equal(revisits(np.array([0, 1, 0, 1])), [0, 0, 1, 1])
    np.testing.assert_array_equal(revisits(np.array([0, 0, 1, 0, 0])), [0, 0, 0, 1, 0])


def test_explicit_stream_tile_is_taken_and_checked():
    # ws, M = 8 streamed: stream_tile 3 → chunks of 3, 3, 2; the tiling policy would take
    # the whole stream here (it fits and is fastest)
    arch = arch_of(2, 2, "ws", stream_tile=3, sram_kib_a=1, sram_kib_w=1, sram_kib_o=1)
    s, _ = run(8, 4, 2, arch)
    assert s.folds == 2 * 3
    assert int(s.o_elements.sum()) == 8 * 2
    policy, _ = run(8, 4, 2, arch_of(2, 2, "ws", sram_kib_a=1, sram_kib_w=1, sram_kib_o=1))
    assert policy.folds == 2
    # longer than the stream: the whole stream, one tile
    s, _ = run(8, 4, 2, arch_of(2, 2, "ws", stream_tile=100, sram_kib_a=1, sram_kib_w=1,
                                sram_kib_o=1))
    assert s.folds == 2
    # a tile that does not fit half its buffer is an error naming the buffer
    tight = arch_of(2, 2, "ws", stream_tile=8, sram_kib_a=16 / 1024, sram_kib_w=1,
                    sram_kib_o=1)
    with pytest.raises(SparsesimError, match="sram_kib_a"):
        run(8, 4, 2, tight)


# --- the default order is SCALE-Sim's, to the cycle and byte -----------------------------------


@st.composite
def cases(draw):
    m, k, n = (draw(st.integers(1, 20)) for _ in range(3))
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    df = draw(st.sampled_from(["os", "ws", "is"]))
    kib = draw(st.sampled_from([0.0625, 0.25, 4.0]))
    bw = draw(st.sampled_from([1.0, 4.0, 64.0]))
    tile = draw(st.sampled_from([0, 1, 3]))
    return m, k, n, rows, cols, df, kib, bw, tile


@settings(max_examples=60, deadline=None)
@given(cases())
def test_default_order_enumerates_scalesim_folds(case):
    """Steps in SCALE-Sim's order (written out: step → chunk s = step mod S, fold = step div
    S, row fold = fold mod R, column fold = fold div R); with no register level every
    number of every order is the machine's on that step sequence (cycles, DRAM), and the
    register level changes only the O SRAM counts."""
    m, k, n, rows, cols, df, kib, bw, tile = case
    kw = dict(sram_kib_a=kib, sram_kib_w=kib, sram_kib_o=kib, dram_bytes_per_cycle=bw,
              stream_tile=tile)
    g = Gemm("L", "g", m, k, n)
    p = plan(g, df, rows, cols)
    try:
        s = fold_schedule(p, arch_of(rows, cols, df, **kw))
    except SparsesimError:
        return  # a tile that does not fit: refused for every order alike
    chunks = s.folds // p.folds
    step = np.arange(s.folds)
    sc, fold = step % chunks, step // chunks
    i, j = fold % p.row_folds, fold // p.row_folds
    blocks = {ax: (rows if ax == DATAFLOWS[df].row_axis else cols if ax ==
                   DATAFLOWS[df].col_axis else -(-DATAFLOWS[df].spatial(g)[2] // chunks))
              for ax in "mkn"}
    by = {DATAFLOWS[df].row_axis: i, DATAFLOWS[df].col_axis: j, DATAFLOWS[df].stream_axis: sc}
    dims = {"m": m, "k": k, "n": n}
    for op, (x, y) in (("A", ("k", "m")), ("W", ("k", "n")), ("O", ("m", "n"))):
        count_y = -(-dims[y] // min(blocks[y], dims[y]))
        np.testing.assert_array_equal(s.operand(op).tile_ids, by[x] * count_y + by[y])
    # dense folds, each fold's cycles spread over its chunks: the total is SCALE-Sim's
    assert int(s.compute_cycles.sum()) == p.folds * p.fold_cycles
    base = simulate_gemm(s, arch_of(rows, cols, df, **kw).memory)
    for acc in (0, 1, 7):
        r = simulate_gemm(fold_schedule(p, arch_of(rows, cols, df, acc=acc, **kw)),
                          arch_of(rows, cols, df, **kw).memory)
        assert (r.cycles, r.compute_cycles, r.stall_cycles) == \
            (base.cycles, base.compute_cycles, base.stall_cycles)
        assert (r.a, r.w) == (base.a, base.w)
        assert (r.o.dram_read_bytes, r.o.dram_write_bytes, r.o.fetches) == \
            (base.o.dram_read_bytes, base.o.dram_write_bytes, base.o.fetches)
        # O SRAM traffic beside DRAM's (1-byte bursts: stored = encoded): the array writes
        # a step's tile unless the next step holds it in the accumulators, and reads it
        # back when it accumulates and this step does not hold it
        ids = s.o.tile_ids
        bm, bn = min(blocks["m"], m), min(blocks["n"], n)
        count_n = -(-n // bn)
        elems = np.minimum(bm, m - bm * (ids // count_n)) * np.minimum(bn, n - bn * (ids % count_n))
        keep = np.r_[False, (ids[1:] == ids[:-1]) & (elems[1:] <= rows * cols * acc)]
        first = np.array([list(ids).index(t) for t in ids])
        accumulates = first < step
        enc = s.o.encoded_bytes[ids]
        writes = ~np.r_[keep[1:], False]
        reads = accumulates & ~keep
        assert r.o.sram_write_bytes - r.o.dram_read_bytes == int(enc[writes].sum())
        assert r.o.sram_read_bytes - r.o.dram_write_bytes == int(enc[reads].sum())
        assert r.accumulator_accesses == int(elems[writes].sum() + elems[reads].sum())


@settings(max_examples=40, deadline=None)
@given(cases(), st.sampled_from(["output_reuse", "weight_reuse", "input_reuse",
                                 ("k", "n", "m")]))
def test_every_order_runs_the_same_folds(case, order):
    """A reordered loop runs every (fold, chunk) once: the same tiles are used the same
    number of times, so each operand's SRAM reads into the array and the O tiles' element
    total are the default's; compute cycles grow only by the revisits' fill/drain."""
    m, k, n, rows, cols, df, kib, bw, tile = case
    kw = dict(sram_kib_a=kib, sram_kib_w=kib, sram_kib_o=kib, dram_bytes_per_cycle=bw,
              stream_tile=tile or 2)
    p = plan(Gemm("L", "g", m, k, n), df, rows, cols)
    try:
        base = fold_schedule(p, arch_of(rows, cols, df, acc=0, **kw))
        other = fold_schedule(p, arch_of(rows, cols, df, acc=0, order=order, **kw))
    except SparsesimError:
        return
    for op in ("A", "W", "O"):
        assert sorted(base.operand(op).tile_ids) == sorted(other.operand(op).tile_ids)
    extra = int(other.compute_cycles.sum() - base.compute_cycles.sum())
    overhead = DATAFLOWS[df].overhead_cycles(rows, cols)
    fold = other.folds // p.folds
    assert extra % max(overhead, 1) == 0 and 0 <= extra <= p.folds * (fold - 1) * overhead
    r0 = simulate_gemm(base, arch_of(rows, cols, df, **kw).memory)
    r1 = simulate_gemm(other, arch_of(rows, cols, df, **kw).memory)
    assert r0.a.sram_read_bytes == r1.a.sram_read_bytes
    assert r0.w.sram_read_bytes == r1.w.sram_read_bytes
    assert r1.compute_cycles == r0.compute_cycles + extra
    assert math.isfinite(r1.cycles) and r1.cycles >= r1.compute_cycles


def test_readme_mapping_block_is_a_valid_arch():
    import re
    import tomllib
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^### Mapping\n(.*?)^### ", text, re.M | re.S)
    assert section
    block = re.search(r"^```toml\n(.*?)^```", section.group(1), re.M | re.S)
    arch = arch_from_dict(tomllib.loads(block.group(1)))
    assert arch.mapping == MappingConfig("scalesim", 0) and arch.pe.acc_entries == 1
