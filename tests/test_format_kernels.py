"""Per-tile format sizes: Numba kernels against plain-Python twins, and against the encoders.

The second kind is the one that matters: for every format, the bits the fast path gives a
tile must equal the bits of the real encoder run on that tile's sub-array.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.errors import SparsesimError
from sparsesim.formats import (
    FORMATS,
    NM,
    Auto,
    Bitmap,
    Coo,
    CooOffset,
    Csc,
    Csr,
    Dense,
    RunLength,
    auto_tile_bits,
    make_format,
    tile_bits,
    tile_bits_all,
    tile_stats,
)
from sparsesim.kernels.format_sizes import _nm_first_violation, _tile_counts

# ------------------------------------------------------------------------------ twins


def twin_tile_counts(mask, tile_rows, tile_cols, run_bits):
    """Per tile, in the tile's own row-major order: non-zeros and run-length paddings."""
    k, n = mask.shape
    tr, tc = -(-k // tile_rows), -(-n // tile_cols)
    nnz = np.zeros((tr, tc), np.int64)
    pad = np.zeros((len(run_bits), tr, tc), np.int64)
    for ti in range(tr):
        for tj in range(tc):
            tile = mask[ti * tile_rows:(ti + 1) * tile_rows, tj * tile_cols:(tj + 1) * tile_cols]
            run = 0
            for v in tile.ravel().tolist():
                if v:
                    nnz[ti, tj] += 1
                    for s, r in enumerate(run_bits):
                        pad[s, ti, tj] += run // 2 ** r
                    run = 0
                else:
                    run += 1
    return nnz, pad


def twin_nm_first_violation(mask, tile_rows, n, m):
    """Groups of m rows restarting at each tile; first bad one by (start row, column)."""
    k, cols = mask.shape
    bad = []
    for t0 in range(0, k, tile_rows):
        t1 = min(t0 + tile_rows, k)
        for g0 in range(t0, t1, m):
            for c in range(cols):
                count = int(mask[g0:min(g0 + m, t1), c].sum())
                if count > n:
                    bad.append((g0, c, count))
    return min(bad) if bad else (-1, -1, -1)


masks = st.builds(
    lambda seed, k, n, density: np.random.default_rng(seed).random((k, n)) < density,
    st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40),
    st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1), st.floats(0, 0.1)))


@settings(max_examples=150, deadline=None)
@given(mask=masks, tile_rows=st.integers(1, 45), tile_cols=st.integers(1, 45),
       run_bits=st.lists(st.integers(1, 5), max_size=3, unique=True))
def test_tile_counts_kernel_equals_twin(mask, tile_rows, tile_cols, run_bits):
    k, n = mask.shape
    tr, tc = -(-k // tile_rows), -(-n // tile_cols)
    nnz = np.zeros((tr, tc), np.int64)
    pad = np.zeros((len(run_bits), tr, tc), np.int64)
    _tile_counts(mask, tile_rows, tile_cols, np.array(run_bits, np.int64), nnz, pad)
    want_nnz, want_pad = twin_tile_counts(mask, tile_rows, tile_cols, run_bits)
    assert np.array_equal(nnz, want_nnz)
    assert np.array_equal(pad, want_pad)


@settings(max_examples=150, deadline=None)
@given(mask=masks, tile_rows=st.integers(1, 45), m=st.integers(1, 8), data=st.data())
def test_nm_violation_kernel_equals_twin(mask, tile_rows, m, data):
    n = data.draw(st.integers(1, m))
    out = np.empty(3, np.int64)
    _nm_first_violation(mask, tile_rows, n, m, out)
    assert tuple(out.tolist()) == twin_nm_first_violation(mask, tile_rows, n, m)


# ------------------------------------------------------------------------------ vs encoders

# Formats that refuse random masks, each tested below on masks of its own structure.
OWN_MASKS = {"nm"}
# Every registered format with its defaults, and non-default widths.
FORMATS_UNDER_TEST = [*(make_format(name) for name in FORMATS if name not in OWN_MASKS),
                      RunLength(1), RunLength(3), Coo(coord_bits=(9, 7)), CooOffset(12),
                      Csr(index_bits=8, pointer_bits=11), Csc(pointer_bits=12)]


def encoder_tile_bits(mask, tile_rows, tile_cols, fmt, value_bits):
    k, n = mask.shape
    tr, tc = -(-k // tile_rows), -(-n // tile_cols)
    data = np.zeros((tr, tc), np.int64)
    meta = np.zeros((tr, tc), np.int64)
    for ti in range(tr):
        for tj in range(tc):
            tile = mask[ti * tile_rows:(ti + 1) * tile_rows, tj * tile_cols:(tj + 1) * tile_cols]
            enc = fmt.encode(tile.astype(np.int8), value_bits=value_bits)
            data[ti, tj], meta[ti, tj] = enc.bits
    return data, meta


@settings(max_examples=100, deadline=None)
@given(mask=masks, tile_rows=st.integers(1, 45), tile_cols=st.integers(1, 45),
       value_bits=st.integers(1, 32))
def test_tile_bits_equal_encoders_every_format(mask, tile_rows, tile_cols, value_bits):
    every = tile_bits_all(mask, tile_rows, tile_cols, FORMATS_UNDER_TEST, value_bits)
    for fmt in FORMATS_UNDER_TEST:
        want = encoder_tile_bits(mask, tile_rows, tile_cols, fmt, value_bits)
        got = every[fmt.spec]
        assert got[0].dtype == np.int64 and got[1].dtype == np.int64
        assert np.array_equal(got[0], want[0]), fmt.spec
        assert np.array_equal(got[1], want[1]), fmt.spec
        alone = tile_bits(mask, tile_rows, tile_cols, fmt, value_bits)
        assert np.array_equal(alone[0], want[0]) and np.array_equal(alone[1], want[1])


def nm_tiled_mask(seed, k, cols, tile_rows, n, m, fill):
    """At most n per group of m rows, groups restarting at every tile's first row."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((k, cols), bool)
    for t0 in range(0, k, tile_rows):
        t1 = min(t0 + tile_rows, k)
        for g0 in range(t0, t1, m):
            g = min(m, t1 - g0)
            for c in range(cols):
                count = min(n, g) if rng.random() < fill else int(rng.integers(0, min(n, g) + 1))
                mask[g0 + rng.choice(g, size=count, replace=False), c] = True
    return mask


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40), cols=st.integers(1, 20),
       tile_rows=st.integers(1, 45), tile_cols=st.integers(1, 25), m=st.integers(1, 8),
       fill=st.floats(0, 1), value_bits=st.integers(1, 16), data=st.data())
def test_nm_tile_bits_equal_encoder(seed, k, cols, tile_rows, tile_cols, m, fill, value_bits,
                                    data):
    n = data.draw(st.integers(1, m))
    mask = nm_tiled_mask(seed, k, cols, tile_rows, n, m, fill)
    fmt = NM(n, m)
    got = tile_bits(mask, tile_rows, tile_cols, fmt, value_bits)
    want = encoder_tile_bits(mask, tile_rows, tile_cols, fmt, value_bits)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_nm_tile_error_names_tensor_group_and_tile():
    mask = np.zeros((64, 70), bool)
    mask[0:64:4, :] = True          # 1:4 everywhere
    mask[41, 66] = True             # group rows 40..43 of column 66: 2 non-zeros
    mask[61, 3] = True              # later group
    with pytest.raises(SparsesimError) as err:
        tile_bits(mask, 32, 32, NM(1, 4), 8, name="conv9.weight")
    msg = str(err.value)
    assert "conv9.weight" in msg and "1:4" in msg
    assert "rows 40..43 of column 66" in msg and "tile (1, 2)" in msg


@settings(max_examples=60, deadline=None)
@given(mask=masks, tile_rows=st.integers(1, 45), tile_cols=st.integers(1, 45),
       value_bits=st.sampled_from([4, 8, 16]))
def test_auto_per_tile_and_per_tensor(mask, tile_rows, tile_cols, value_bits):
    cands = (Dense(), Bitmap(), RunLength(2), Coo(), Csr(), Csc())
    per_fmt = tile_bits_all(mask, tile_rows, tile_cols, cands, value_bits)
    totals = np.stack([per_fmt[c.spec][0] + per_fmt[c.spec][1] for c in cands])

    tiles = auto_tile_bits(mask, tile_rows, tile_cols, value_bits, candidates=cands)
    assert tiles.names == tuple(c.spec for c in cands)
    assert np.array_equal(tiles.total_bits, totals.min(axis=0))
    # the recorded choice is a format that reaches the minimum, the first one on ties
    assert np.array_equal(tiles.choice, totals.argmin(axis=0))
    assert sum(tiles.wins().values()) == totals[0].size
    assert tiles.chosen().shape == totals[0].shape

    whole = auto_tile_bits(mask, tile_rows, tile_cols, value_bits, candidates=cands,
                           per="tensor")
    best = int(totals.sum(axis=(1, 2)).argmin())
    assert (whole.choice == best).all()
    assert np.array_equal(whole.total_bits, totals[best])
    assert whole.total_bits.sum() >= tiles.total_bits.sum()

    via_format = tile_bits(mask, tile_rows, tile_cols, Auto(cands), value_bits)
    assert np.array_equal(via_format[0] + via_format[1], tiles.total_bits)


def test_tile_stats_shapes_and_whole_k_tiles():
    mask = np.random.default_rng(0).random((147, 64)) < 0.3
    stats = tile_stats(mask, 147, 32)
    assert stats.shape == (1, 2)
    assert stats.area.tolist() == [[147 * 32, 147 * 32]]
    stats = tile_stats(mask, 1000, 50)  # tiles larger than the mask: one tile, edges clipped
    assert stats.shape == (1, 2) and stats.cols.tolist() == [[50, 14]]
    assert stats.nnz.sum() == mask.sum()
    # a transposed (non-contiguous) view sizes the same as its copy
    a = tile_bits(mask.T, 16, 32, "csr", 8)
    b = tile_bits(np.ascontiguousarray(mask.T), 16, 32, "csr", 8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_widths_given_separately():
    mask = np.eye(40, dtype=bool)
    a = tile_bits(mask, 40, 16, "csr", 8, widths={"index_bits": 9, "pointer_bits": 7})
    b = tile_bits(mask, 40, 16, Csr(index_bits=9, pointer_bits=7), 8)
    # tile (0, 0): 16 non-zeros, 40 rows -> 16 * 9 + 41 * 7 metadata bits
    assert a[1][0, 0] == 16 * 9 + 41 * 7
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("call", [
    lambda: tile_bits(np.ones((4, 4), bool), 2, 2, "csr", 8, widths={"run_bits": 3}),
    lambda: RunLength(3).tile_bits_from_stats(tile_stats(np.ones((4, 4), bool), 2, 2), 8),
    lambda: tile_bits(np.ones((4, 4), np.int8), 2, 2, "bitmap", 8),
    lambda: tile_bits(np.ones(4, bool), 2, 2, "bitmap", 8),
    lambda: tile_bits(np.ones((4, 4), bool), 0, 2, "bitmap", 8),
    lambda: tile_bits(np.ones((4, 4), bool), 2, 2, "bitmap", 0),
    lambda: tile_bits(np.ones((4, 4), bool), 2, 2, "nope", 8),
    lambda: tile_bits(np.ones((40, 40), bool), 40, 40, Csr(index_bits=3), 8),
    lambda: tile_bits(np.ones((40, 40), bool), 40, 40, Csr(pointer_bits=10), 8),
    lambda: tile_bits(np.ones((4, 4), bool), 4, 4, "nm:n=2,m=4", 8),
    lambda: auto_tile_bits(np.ones((4, 4), bool), 2, 2, 8, per="row"),
])
def test_tile_user_errors(call):
    with pytest.raises(SparsesimError):
        call()
