"""Zero-skipping step counts per fold, on bit-packed masks (numpy + numba only).

A fold's PEs ``(r, c)`` each have a set of effectual stream steps ``E[r, c]`` (a bit set
over ``t``). A synchronisation group issues the steps where any of its PEs has work, so its
step count is ``popcount(OR of E over the group)``. Two shapes of ``E`` cover every dataflow:

* *streamed*: ``E[r, c] = H[r] & V[c]`` — both operands flow (reduction in time, ``os``);
* *stationary*: ``E[r, c] = H[r] if S[r, c] else ∅`` — one operand sits in the PEs
  (``ws``, ``is``) and the other flows along the rows.

An output mask (products whose output is not needed are not effectual) adds the third
operand pair of the GEMM, so the general shape is ``E[r, c] = H[r] & V[c] if S[r, c]``
(*gated*, :func:`gated_fold_steps`): H, V and S are the masks indexed by (row, stream),
(column, stream) and (row, column) — one of A, W, O each, whatever the dataflow. The two
shapes above are its cases with an all-ones S or V; they stay separate kernels because
they are cheaper.

Sync codes: 0 = each PE, 1 = row, 2 = column, 3 = whole wavefront. Outputs per fold: the
slowest group's steps, the sum of steps over the fold's mapped groups, and their number.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sparsesim.names import Sync, check_complete

SYNC_CODES = {Sync.PE: 0, Sync.ROW: 1, Sync.COL: 2, Sync.WAVEFRONT: 3}  # the kernels' codes
check_complete(SYNC_CODES, Sync, "sync code")


def pack_rows(mask: np.ndarray) -> np.ndarray:
    """Bool ``[R, L]`` → ``uint64 [R, ceil(L/64)]``, bit ``t % 64`` of word ``t // 64``."""
    rows, length = mask.shape
    words = max(1, -(-length // 64))
    packed = np.packbits(mask, axis=1, bitorder="little")
    out = np.zeros((rows, words * 8), dtype=np.uint8)
    out[:, : packed.shape[1]] = packed
    return out.view(np.uint64)


@njit(cache=True, nogil=True, inline="always")
def _popcount(x: np.uint64) -> np.int64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, nogil=True)
def _streamed_steps(h, v, rows, cols, sync, out_max, out_sum, out_groups):  # type: ignore[no-untyped-def]
    """``E[r, c] = h[r] & v[c]``: h is ``[Sr, words]``, v is ``[Sc, words]``."""
    sr, words = h.shape
    sc = v.shape[0]
    h_or = np.zeros(words, dtype=np.uint64)
    v_or = np.zeros(words, dtype=np.uint64)
    for i in range(out_max.shape[0]):
        r0, r1 = i * rows, min(sr, (i + 1) * rows)
        for j in range(out_max.shape[1]):
            c0, c1 = j * cols, min(sc, (j + 1) * cols)
            best, total, groups = 0, 0, 0
            if sync == 0:
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        n = 0
                        for x in range(words):
                            n += _popcount(h[r, x] & v[c, x])
                        best = max(best, n)
                        total += n
                groups = (r1 - r0) * (c1 - c0)
            else:
                h_or[:] = 0
                v_or[:] = 0
                for r in range(r0, r1):
                    for x in range(words):
                        h_or[x] |= h[r, x]
                for c in range(c0, c1):
                    for x in range(words):
                        v_or[x] |= v[c, x]
                if sync == 1:
                    for r in range(r0, r1):
                        n = 0
                        for x in range(words):
                            n += _popcount(h[r, x] & v_or[x])
                        best = max(best, n)
                        total += n
                    groups = r1 - r0
                elif sync == 2:
                    for c in range(c0, c1):
                        n = 0
                        for x in range(words):
                            n += _popcount(h_or[x] & v[c, x])
                        best = max(best, n)
                        total += n
                    groups = c1 - c0
                else:
                    for x in range(words):
                        best += _popcount(h_or[x] & v_or[x])
                    total, groups = best, 1
            out_max[i, j] = best
            out_sum[i, j] = total
            out_groups[i, j] = groups


@njit(cache=True, nogil=True)
def _stationary_steps(s, h, rows, cols, sync, out_max, out_sum, out_groups):  # type: ignore[no-untyped-def]
    """``E[r, c] = h[r] if s[r, c]``: s is bool ``[Sr, Sc]``, h is ``[Sr, words]``."""
    sr, words = h.shape
    sc = s.shape[1]
    pop = np.zeros(sr, dtype=np.int64)
    for r in range(sr):
        for x in range(words):
            pop[r] += _popcount(h[r, x])
    acc = np.zeros(words, dtype=np.uint64)
    for i in range(out_max.shape[0]):
        r0, r1 = i * rows, min(sr, (i + 1) * rows)
        for j in range(out_max.shape[1]):
            c0, c1 = j * cols, min(sc, (j + 1) * cols)
            best, total, groups = 0, 0, 0
            if sync == 0 or sync == 1:
                # A row's PEs share h[r]: a PE issues pop[r] steps if it holds a non-zero,
                # and so does the row if any of its PEs does.
                for r in range(r0, r1):
                    busy = 0
                    for c in range(c0, c1):
                        if s[r, c]:
                            busy += 1
                    if busy:
                        best = max(best, pop[r])
                        total += pop[r] * (busy if sync == 0 else 1)
                groups = (r1 - r0) * (c1 - c0) if sync == 0 else r1 - r0
            elif sync == 2:
                for c in range(c0, c1):
                    acc[:] = 0
                    for r in range(r0, r1):
                        if s[r, c]:
                            for x in range(words):
                                acc[x] |= h[r, x]
                    n = 0
                    for x in range(words):
                        n += _popcount(acc[x])
                    best = max(best, n)
                    total += n
                groups = c1 - c0
            else:
                acc[:] = 0
                for r in range(r0, r1):
                    busy = False
                    for c in range(c0, c1):
                        if s[r, c]:
                            busy = True
                            break
                    if busy:
                        for x in range(words):
                            acc[x] |= h[r, x]
                for x in range(words):
                    best += _popcount(acc[x])
                total, groups = best, 1
            out_max[i, j] = best
            out_sum[i, j] = total
            out_groups[i, j] = groups


def fold_steps(h: np.ndarray, other: np.ndarray, *, stationary: bool, rows: int, cols: int,
               sync: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-fold (max steps, summed steps, mapped groups), each ``[row_folds, col_folds]``.

    ``h``: bool ``[Sr, T]`` — the operand flowing along the rows. ``other``: bool ``[Sc, T]``
    (streamed: the operand flowing down the columns) or bool ``[Sr, Sc]`` (stationary).
    """
    if h.ndim != 2 or other.ndim != 2 or h.dtype != np.bool_ or other.dtype != np.bool_:
        raise ValueError("masks must be 2-D bool arrays")
    sr, t = h.shape
    sc = other.shape[1] if stationary else other.shape[0]
    if (stationary and other.shape[0] != sr) or (not stationary and other.shape[1] != t):
        raise ValueError(f"mask shapes {h.shape} and {other.shape} do not fit")
    shape = (-(-sr // rows), -(-sc // cols))
    out_max = np.zeros(shape, dtype=np.int64)
    out_sum = np.zeros(shape, dtype=np.int64)
    out_groups = np.zeros(shape, dtype=np.int64)
    code = SYNC_CODES[Sync(sync)]
    hp = pack_rows(h)
    if stationary:
        _stationary_steps(np.ascontiguousarray(other), hp, rows, cols, code, out_max, out_sum,
                          out_groups)
    else:
        _streamed_steps(hp, pack_rows(other), rows, cols, code, out_max, out_sum, out_groups)
    return out_max, out_sum, out_groups


@njit(cache=True, nogil=True)
def _gated_steps(h, v, s, rows, cols, sync, out_max, out_sum, out_groups):  # type: ignore[no-untyped-def]
    """``E[r, c] = h[r] & v[c] if s[r, c]``: h ``[Sr, words]``, v ``[Sc, words]``, s bool
    ``[Sr, Sc]``."""
    sr, words = h.shape
    sc = v.shape[0]
    acc = np.zeros(words, dtype=np.uint64)
    for i in range(out_max.shape[0]):
        r0, r1 = i * rows, min(sr, (i + 1) * rows)
        for j in range(out_max.shape[1]):
            c0, c1 = j * cols, min(sc, (j + 1) * cols)
            best, total, groups = 0, 0, 0
            if sync == 0:
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        if s[r, c]:
                            n = 0
                            for x in range(words):
                                n += _popcount(h[r, x] & v[c, x])
                            best = max(best, n)
                            total += n
                groups = (r1 - r0) * (c1 - c0)
            elif sync == 1:
                for r in range(r0, r1):
                    acc[:] = 0
                    for c in range(c0, c1):
                        if s[r, c]:
                            for x in range(words):
                                acc[x] |= v[c, x]
                    n = 0
                    for x in range(words):
                        n += _popcount(h[r, x] & acc[x])
                    best = max(best, n)
                    total += n
                groups = r1 - r0
            elif sync == 2:
                for c in range(c0, c1):
                    acc[:] = 0
                    for r in range(r0, r1):
                        if s[r, c]:
                            for x in range(words):
                                acc[x] |= h[r, x]
                    n = 0
                    for x in range(words):
                        n += _popcount(acc[x] & v[c, x])
                    best = max(best, n)
                    total += n
                groups = c1 - c0
            else:
                acc[:] = 0
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        if s[r, c]:
                            for x in range(words):
                                acc[x] |= h[r, x] & v[c, x]
                for x in range(words):
                    best += _popcount(acc[x])
                total, groups = best, 1
            out_max[i, j] = best
            out_sum[i, j] = total
            out_groups[i, j] = groups


def gated_fold_steps(h: np.ndarray, v: np.ndarray, s: np.ndarray, *, rows: int, cols: int,
                     sync: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-fold (max steps, summed steps, mapped groups) for ``E[r, c] = h[r] & v[c] if
    s[r, c]``: h bool ``[Sr, T]``, v bool ``[Sc, T]``, s bool ``[Sr, Sc]``."""
    for x in (h, v, s):
        if x.ndim != 2 or x.dtype != np.bool_:
            raise ValueError("masks must be 2-D bool arrays")
    sr, t = h.shape
    sc = v.shape[0]
    if v.shape[1] != t or s.shape != (sr, sc):
        raise ValueError(f"mask shapes {h.shape}, {v.shape} and {s.shape} do not fit")
    shape = (-(-sr // rows), -(-sc // cols))
    out_max = np.zeros(shape, dtype=np.int64)
    out_sum = np.zeros(shape, dtype=np.int64)
    out_groups = np.zeros(shape, dtype=np.int64)
    _gated_steps(pack_rows(h), pack_rows(v), np.ascontiguousarray(s), rows, cols,
                 SYNC_CODES[Sync(sync)], out_max, out_sum, out_groups)
    return out_max, out_sum, out_groups
