"""Numba kernels for per-tile sparse-format sizes, computed from a mask alone.

Every kernel takes a 2-D C-contiguous boolean mask (axis 0 = the reduction axis K), plain
integers and preallocated outputs, and fills the outputs. They do no validation: the public
wrappers in :mod:`sparsesim.formats` check shapes, dtypes and values first.

A tile (ti, tj) covers rows ``[ti*tile_rows, min((ti+1)*tile_rows, K))`` and columns
``[tj*tile_cols, min((tj+1)*tile_cols, N))``. Its row-major order is the order a run-length
encoder walks it.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _tile_counts(
    mask: np.ndarray,
    tile_rows: int,
    tile_cols: int,
    run_shifts: np.ndarray,
    nnz: np.ndarray,
    rle_pad: np.ndarray,
) -> None:
    """Non-zeros and run-length padding entries of every tile, in one row-major pass.

    mask: (K, N) bool. run_shifts: (S,) int64 run-field widths r. nnz: (TR, TC) int64,
    zero-filled. rle_pad: (S, TR, TC) int64, zero-filled; gets, per run width r, the number of
    explicit padding zeros ``sum over non-zeros of floor(z / 2**r)`` where z is the zero run
    that precedes the non-zero inside the tile (trailing zeros are implied by the shape).

    The pass walks the whole mask row by row, so memory is read once and in order; each
    tile column keeps its own open run, which carries from one row of the tile to the next.
    """
    n_rows, n_cols = mask.shape
    n_tile_cols = nnz.shape[1]
    n_shifts = run_shifts.shape[0]
    run = np.zeros(n_tile_cols, np.int64)
    pad = np.zeros((n_shifts, n_tile_cols), np.int64)
    for k in range(n_rows):
        ti = k // tile_rows
        if k - ti * tile_rows == 0:
            run[:] = 0
        for tj in range(n_tile_cols):
            j0 = tj * tile_cols
            j1 = min(j0 + tile_cols, n_cols)
            z = run[tj]
            count = 0
            for j in range(j0, j1):
                if mask[k, j]:
                    count += 1
                    for s in range(n_shifts):
                        pad[s, tj] += z >> run_shifts[s]
                    z = 0
                else:
                    z += 1
            run[tj] = z
            nnz[ti, tj] += count
        last_row_of_tile = (k == n_rows - 1) or (k - ti * tile_rows == tile_rows - 1)
        if last_row_of_tile:
            for s in range(n_shifts):
                for tj in range(n_tile_cols):
                    rle_pad[s, ti, tj] = pad[s, tj]
                    pad[s, tj] = 0


@njit(cache=True, nogil=True)
def _nm_first_violation(
    mask: np.ndarray, tile_rows: int, n: int, m: int, out: np.ndarray
) -> None:
    """First group of m consecutive rows (per column) holding more than n non-zeros.

    Groups start at every tile's first row and every m rows after it; a tile's last group may
    be shorter. "First" is in (group start row, column) order. out: (3,) int64, set to
    (group start row, column, non-zeros in the group), or (-1, -1, -1) when the mask conforms.
    """
    n_rows, n_cols = mask.shape
    counts = np.zeros(n_cols, np.int64)
    out[0] = -1
    out[1] = -1
    out[2] = -1
    for k in range(n_rows):
        for j in range(n_cols):
            if mask[k, j]:
                counts[j] += 1
        local = k % tile_rows
        in_group = local % m
        group_ends = in_group == m - 1 or local == tile_rows - 1 or k == n_rows - 1
        if group_ends:
            for j in range(n_cols):
                if counts[j] > n:
                    out[0] = k - in_group
                    out[1] = j
                    out[2] = counts[j]
                    return
                counts[j] = 0
