"""Bit-packed masks (issue 20 item 1): packing is lossless, and every count read from packed
words equals the count on the bool array (random shapes, widths off multiples of 8 and 64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.formats import FORMATS
from sparsesim.formats.tiles import tile_bits, tile_stats
from sparsesim.kernels.packed import PackedMask


@st.composite
def masks(draw, ndim=None):
    nd = draw(st.integers(1, 3)) if ndim is None else ndim
    shape = tuple(draw(st.lists(st.integers(1, 150), min_size=nd, max_size=nd)))
    density = draw(st.sampled_from([0.0, 0.03, 0.5, 0.97, 1.0]))
    seed = draw(st.integers(0, 2**31))
    return np.random.default_rng(seed).random(shape) < density


def _tiles_by_slicing(m, tr, tc):
    """Non-zeros per tile, each tile summed from a numpy slice."""
    r, c = m.shape
    return np.array([[int(m[i:i + tr, j:j + tc].sum()) for j in range(0, c, tc)]
                     for i in range(0, r, tr)], dtype=np.int64).reshape(-(-r // tr), -(-c // tc))


@settings(max_examples=80, deadline=None)
@given(m=masks())
def test_packing_is_lossless_and_counts(m):
    p = PackedMask.of(m)
    assert p.shape == m.shape and p.count == int(m.sum())
    assert p.words.dtype == np.uint64 and p.words.shape == (m.size // m.shape[-1],
                                                            -(-m.shape[-1] // 64))
    np.testing.assert_array_equal(p.unpack(), m)
    np.testing.assert_array_equal(p.row_counts(), m.reshape(p.rows, -1).sum(axis=1))
    assert p.nbytes == 8 * p.words.size <= m.size // 8 + 8 * p.rows


@settings(max_examples=80, deadline=None)
@given(m=masks(ndim=2), tr=st.integers(1, 130), tc=st.integers(1, 130))
def test_tile_counts_equal_the_bool_tiles(m, tr, tc):
    np.testing.assert_array_equal(PackedMask.of(m).tile_counts(tr, tc),
                                  _tiles_by_slicing(m, tr, tc))


@settings(max_examples=60, deadline=None)
@given(m=masks(ndim=2), tr=st.integers(1, 100), tc=st.integers(1, 100),
       fmt=st.sampled_from(sorted(FORMATS)))
def test_every_format_sizes_a_transposed_view_as_its_copy(m, tr, tc, fmt):
    view = m.T  # a [K, N] view of a stored [N, K] weight, as the tilings read it
    stats = tile_stats(view, tr, tc)
    np.testing.assert_array_equal(stats.nnz, _tiles_by_slicing(view, tr, tc))
    if fmt.startswith("nm"):
        return  # N:M sizes need a conformant mask: covered by the N:M format tests
    got = tile_bits(view, tr, tc, fmt, 8)
    want = tile_bits(np.ascontiguousarray(view), tr, tc, fmt, 8)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_non_bool_array_is_refused():
    with pytest.raises(ValueError, match="bool"):
        PackedMask.of(np.ones((2, 3), dtype=np.uint8))
