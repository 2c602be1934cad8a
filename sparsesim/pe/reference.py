"""Cycle-stepped reference model of a systolic array: slow, plain Python, obviously correct.

It moves operand tokens through PE registers one clock at a time and computes the GEMM's
numbers on the way, so it proves two things at once: the mapping (the output equals
``A @ W``) and the timing (the cycle of the last multiply-accumulate). The fast model's
fold plan (:mod:`sparsesim.mapping.dataflows`) must equal it exactly; the tests check that on
random tiny cases.

The array's behaviour follows from which GEMM axis each dataflow puts where:

* the reduction axis K **streamed in time** (``os``): the operand indexed by (row, stream)
  enters each row from the left, skewed one cycle per row; the operand indexed by
  (col, stream) enters each column from the top, skewed one cycle per column; each PE
  accumulates its output in place.
* K **on the rows** (``ws``, ``is``): the operand indexed by (row, col) is first preloaded,
  shifted down one row per cycle (``rows`` cycles); then the operand indexed by
  (row, stream) enters from the left, skewed per row, and partial sums flow down the columns
  and leave at the bottom.

Unmapped PEs of a partial fold receive zero tokens: the skewed wavefront still crosses the
whole physical array, which is why a partial fold costs a full fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.mapping.dataflows import DATAFLOWS, Dataflow
from sparsesim.names import DataflowName, Sync
from sparsesim.rules.nm import check_conformant
from sparsesim.units import ceil_div

Token = tuple[float, int]  # (value, stream index t)


@dataclass(frozen=True, slots=True)
class ReferenceRun:
    """Outcome of a cycle-stepped run: the computed output and the cycles of every fold;
    an N:M run also counts its products: ``issued_macs`` multiplied at full energy,
    ``gated_macs`` clock-gated (``None``: not counted by this model)."""

    output: np.ndarray
    fold_cycles: tuple[int, ...]
    issued_macs: int | None = None
    gated_macs: int | None = None

    @property
    def cycles(self) -> int:
        return sum(self.fold_cycles)


class _Fold:
    """Operand access for one fold: (r, c, t) of the array → A and W values (0 if unmapped)."""

    def __init__(self, a: np.ndarray, w: np.ndarray, df: Dataflow, r0: int, c0: int) -> None:
        self.a, self.w, self.df, self.r0, self.c0 = a, w, df, r0, c0
        self.extent = {"m": a.shape[0], "k": a.shape[1], "n": w.shape[1]}

    def index(self, r: int | None, c: int | None, t: int | None) -> dict[str, int] | None:
        """GEMM indices of the named array coordinates; None if outside the GEMM."""
        idx: dict[str, int] = {}
        for axis, value in ((self.df.row_axis, None if r is None else self.r0 + r),
                            (self.df.col_axis, None if c is None else self.c0 + c),
                            (self.df.stream_axis, t)):
            if value is None:
                continue
            if value >= self.extent[axis]:
                return None
            idx[axis] = value
        return idx

    def value(self, operand: str, r: int | None, c: int | None, t: int | None) -> float:
        idx = self.index(r, c, t)
        if idx is None:
            return 0.0
        if operand == "A":
            return float(self.a[idx["m"], idx["k"]])
        return float(self.w[idx["k"], idx["n"]])


def _operand_over(df: Dataflow, axes: set[str]) -> str:
    """The operand (A is m×k, W is k×n) whose index axes are exactly ``axes``."""
    return "A" if axes == {"m", "k"} else "W"


def _run_streamed_k(fold: _Fold, rows: int, cols: int, t_len: int,
                    out: np.ndarray) -> int:
    """K in time: H operand from the left, V operand from the top, accumulate in place."""
    df = fold.df
    h_op = _operand_over(df, {df.row_axis, "k"})
    v_op = _operand_over(df, {df.col_axis, "k"})
    h: list[list[Token | None]] = [[None] * cols for _ in range(rows)]
    v: list[list[Token | None]] = [[None] * cols for _ in range(rows)]
    acc = np.zeros((rows, cols))
    last_mac = -1
    for cycle in range(t_len + rows + cols):
        for r in range(rows):  # shift right, inject at the left edge (row r skewed by r)
            h[r] = [None, *h[r][:-1]]
            t = cycle - r
            h[r][0] = (fold.value(h_op, r, None, t), t) if 0 <= t < t_len else None
        for r in range(rows - 1, 0, -1):  # shift down, inject at the top (column c skewed by c)
            v[r] = list(v[r - 1])
        v[0] = [None] * cols
        for c in range(cols):
            t = cycle - c
            v[0][c] = (fold.value(v_op, None, c, t), t) if 0 <= t < t_len else None
        for r in range(rows):
            for c in range(cols):
                hv, vv = h[r][c], v[r][c]
                if hv is None or vv is None:
                    assert hv is None and vv is None, "operands out of step"
                    continue
                assert hv[1] == vv[1], "operands of different stream steps met"
                acc[r, c] += hv[0] * vv[0]
                last_mac = cycle
    for r in range(rows):
        for c in range(cols):
            idx = fold.index(r, c, None)
            if idx is not None:
                out[idx["m"], idx["n"]] += acc[r, c]
    return last_mac + 1


def _run_preloaded(fold: _Fold, rows: int, cols: int, t_len: int, out: np.ndarray) -> int:
    """K on the rows: preload the stationary operand, stream the other, sums flow down."""
    df = fold.df
    s_op = _operand_over(df, {df.row_axis, df.col_axis})
    h_op = _operand_over(df, {df.row_axis, df.stream_axis})
    stationary: list[list[float | None]] = [[None] * cols for _ in range(rows)]
    for cycle in range(rows):  # preload: row rows-1-cycle enters at the top, all shift down
        stationary = [[fold.value(s_op, rows - 1 - cycle, c, None) for c in range(cols)],
                      *stationary[:-1]]
    h: list[list[Token | None]] = [[None] * cols for _ in range(rows)]
    psum: list[list[Token | None]] = [[None] * cols for _ in range(rows)]
    last_mac = rows - 1
    for step in range(t_len + rows + cols):
        cycle = rows + step
        for r in range(rows):
            h[r] = [None, *h[r][:-1]]
            t = step - r
            h[r][0] = (fold.value(h_op, r, None, t), t) if 0 <= t < t_len else None
        below: list[list[Token | None]] = [[None] * cols for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                hv = h[r][c]
                if hv is None:
                    continue
                s = stationary[r][c]
                assert s is not None, "stream reached a PE before its preload"
                incoming = psum[r][c]
                if r == 0:
                    assert incoming is None
                    partial = 0.0
                else:
                    assert incoming is not None and incoming[1] == hv[1], "sums out of step"
                    partial = incoming[0]
                total = partial + hv[0] * s
                last_mac = cycle
                if r + 1 < rows:
                    below[r + 1][c] = (total, hv[1])
                else:
                    idx = fold.index(None, c, hv[1])
                    if idx is not None:
                        out[idx["m"], idx["n"]] += total
        psum = below
    return last_mac + 1


def run_reference(a: np.ndarray, w: np.ndarray, dataflow: str, rows: int, cols: int
                  ) -> ReferenceRun:
    """Run ``O = a @ w`` on a ``rows × cols`` array, fold by fold (column folds outer)."""
    df = DATAFLOWS[DataflowName(dataflow)]
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
        raise ValueError(f"shapes {a.shape} and {w.shape} do not form a GEMM")
    extent = {"m": a.shape[0], "k": a.shape[1], "n": w.shape[1]}
    sr, sc, t_len = extent[df.row_axis], extent[df.col_axis], extent[df.stream_axis]
    out = np.zeros((extent["m"], extent["n"]))
    kernel = _run_streamed_k if df.stream_axis == "k" else _run_preloaded
    cycles = []
    for j in range(ceil_div(sc, cols)):
        for i in range(ceil_div(sr, rows)):
            fold = _Fold(a, w, df, i * rows, j * cols)
            cycles.append(kernel(fold, rows, cols, t_len, out))
    return ReferenceRun(out, tuple(cycles))


# --- zero-skipping, stepped -----------------------------------------------------------------


def _groups(rows: int, cols: int, sync: str) -> dict[tuple[int, int], tuple[int, int]]:
    """PE (r, c) → the id of its synchronisation group."""
    keep_r = Sync(sync) in (Sync.PE, Sync.ROW)
    keep_c = Sync(sync) in (Sync.PE, Sync.COL)
    return {(r, c): (r if keep_r else -1, c if keep_c else -1)
            for r in range(rows) for c in range(cols)}


def run_skip_reference(a: np.ndarray, w: np.ndarray, dataflow: str, rows: int, cols: int,
                       operand: str, sync: str, o: np.ndarray | None = None) -> ReferenceRun:
    """Zero-skipping PEs, stepped one clock at a time (DESIGN.md §3's definition).

    Every PE of a fold knows its products ``A[m, k]·W[k, n]`` from the dataflow's mapping
    ((r, c, t) → (m, k, n)); a product is effectual where ``operand`` (``A``, ``W`` or
    ``both``) is non-zero. Each clock, every synchronisation group that still has work issues
    its next step where some PE of the group has an effectual product, all its PEs compute
    that step, and the group moves on; the fold ends when the last group is done, plus the
    dense fill/drain (and preload). The output is accumulated on the way and must be ``a @ w``
    on the effectual products, which equals ``a @ w`` whenever skipped products are zero.
    ``o`` (bool ``[m, n]``) masks outputs the network does not need: a product whose output
    is masked is not effectual either, whatever its operands (its output stays zero).
    """
    df = DATAFLOWS[DataflowName(dataflow)]
    extent = {"m": a.shape[0], "k": a.shape[1], "n": w.shape[1]}
    sr, sc, t_len = extent[df.row_axis], extent[df.col_axis], extent[df.stream_axis]
    out = np.zeros((extent["m"], extent["n"]))
    group_of = _groups(rows, cols, sync)
    fold_cycles = []
    for j in range(ceil_div(sc, cols)):
        for i in range(ceil_div(sr, rows)):
            fold = _Fold(a, w, df, i * rows, j * cols)
            work: dict[tuple[int, int], dict[int, list[tuple[int, int, int]]]] = {}
            for (r, c), gid in group_of.items():
                steps = work.setdefault(gid, {})
                for t in range(t_len):
                    idx = fold.index(r, c, t)
                    if idx is None:
                        continue
                    av, wv = a[idx["m"], idx["k"]], w[idx["k"], idx["n"]]
                    live = {"A": av != 0, "W": wv != 0, "both": av != 0 and wv != 0}[operand]
                    if live and (o is None or o[idx["m"], idx["n"]]):
                        steps.setdefault(t, []).append((idx["m"], idx["k"], idx["n"]))
            queues = {gid: sorted(steps) for gid, steps in work.items()}
            clock = 0
            while any(queues.values()):
                for gid, queue in queues.items():
                    if queue:
                        t = queue.pop(0)
                        for m, k, n in work[gid][t]:
                            out[m, n] += a[m, k] * w[k, n]
                clock += 1
            fold_cycles.append(clock + df.overhead_cycles(rows, cols))
    return ReferenceRun(out, tuple(fold_cycles))


def _slots(x: np.ndarray, n: int, m: int) -> list[list[int]]:
    """Per column of ``x`` (K along axis 0), its N:M slots' k indices: in each group of
    ``m`` rows the non-zeros, then unused positions as padding, ``min(n, group)`` in all."""
    k_len, n_cols = x.shape
    slots: list[list[int]] = [[] for _ in range(n_cols)]
    for col in range(n_cols):
        for g0 in range(0, k_len, m):
            group = list(range(g0, min(k_len, g0 + m)))
            nz = [k for k in group if x[k, col] != 0]
            assert len(nz) <= n, "checked by the caller"
            pad = [k for k in group if x[k, col] == 0][: min(n, len(group)) - len(nz)]
            slots[col].extend(sorted(nz + pad))
    return slots


def run_nm_reference(a: np.ndarray, w: np.ndarray, dataflow: str, rows: int, cols: int,
                     n: int, m: int, operand: str = "W") -> ReferenceRun:
    """An N:M unit: ``n`` slots (a value and its k index) per group of ``m`` along K.

    ``operand`` says whose slots stream: ``W`` — each weight column is compressed to its
    slots (non-zeros first, then unused positions of the group as padding) and each PE
    fetches the activation its slot's index names; ``A`` — each activation row is, and each
    PE fetches the weight its slot names; ``both`` — the weights' slots stream, and each PE
    compares its slot's index with the activation group's slots: a match of two non-zeros is
    a full MAC, anything else is gated. Every slot of ``W`` or ``A`` is a full MAC (padding
    multiplies a zero). The product is checked through the compressed form, and the timing
    is the cycle-stepped array on the compressed reduction length K′. A non-conformant
    operand is :mod:`sparsesim.rules.nm`'s error; the slots are built here, group by group,
    so that the rule's K′ is checked against them.
    """
    rows_a, n_cols = a.shape[0], w.shape[1]
    if operand in ("W", "both"):
        check_conformant(w, n, m, tensor="W", field="W")
    if operand in ("A", "both"):
        check_conformant(a, n, m, tensor="A", field="A", k_axis=1)
    out = np.zeros((rows_a, n_cols))
    issued = gated = 0
    if operand == "A":
        a_slots = _slots(a.T, n, m)
        k_prime = len(a_slots[0]) if a_slots else 0
        for row in range(rows_a):
            for k in a_slots[row]:
                out[row, :] += a[row, k] * w[k, :]
                issued += n_cols
    else:
        w_slots = _slots(w, n, m)
        k_prime = len(w_slots[0]) if w_slots else 0
        a_sets = [set(s) for s in _slots(a.T, n, m)] if operand == "both" else None
        for col in range(n_cols):
            for k in w_slots[col]:
                for row in range(rows_a):
                    if a_sets is not None and not (k in a_sets[row] and a[row, k] != 0
                                                   and w[k, col] != 0):
                        gated += 1  # no index match, or a padding slot on either side
                        continue
                    out[row, col] += a[row, k] * w[k, col]
                    issued += 1
    timing = run_reference(np.ones((rows_a, k_prime)), np.ones((k_prime, n_cols)), dataflow,
                           rows, cols)
    return ReferenceRun(out, timing.fold_cycles, issued, gated)
