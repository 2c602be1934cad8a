"""The popcount kernels of :class:`~sparsesim.kernels.packed.PackedMask` (Numba): non-zeros per
packed row and per tile of the packed grid, tiles along the packed axis cut inside words."""

from __future__ import annotations

import numpy as np
from numba import njit

from sparsesim.kernels.skip import _popcount


@njit(cache=True, nogil=True)
def row_counts(words, out):  # type: ignore[no-untyped-def]
    for r in range(words.shape[0]):
        n = 0
        for x in range(words.shape[1]):
            n += _popcount(words[r, x])
        out[r] = n


@njit(cache=True, nogil=True)
def _range_count(row, lo, hi):  # type: ignore[no-untyped-def]
    """Set bits of element range ``[lo, hi)`` of one packed row (edge words masked)."""
    if hi <= lo:
        return 0
    w0, w1 = lo // 64, (hi - 1) // 64
    first = np.uint64(0xFFFFFFFFFFFFFFFF) << np.uint64(lo % 64)
    last = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(63 - (hi - 1) % 64)
    if w0 == w1:
        return _popcount(row[w0] & first & last)
    n = _popcount(row[w0] & first) + _popcount(row[w1] & last)
    for x in range(w0 + 1, w1):
        n += _popcount(row[x])
    return n


@njit(cache=True, nogil=True)
def tile_counts(words, length, tile_rows, tile_cols, out):  # type: ignore[no-untyped-def]
    """``out[ti, tj]`` += set bits of rows ``ti*tile_rows ..`` in element range ``tj*tile_cols
    ..`` (out zero-filled); one in-order pass over the words."""
    n_tc = out.shape[1]
    for r in range(words.shape[0]):
        ti = r // tile_rows
        row = words[r]
        for tj in range(n_tc):
            lo = tj * tile_cols
            out[ti, tj] += _range_count(row, lo, min(lo + tile_cols, length))
