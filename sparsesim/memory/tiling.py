"""The tiling policy: which stream chunk a GEMM instance runs with, so that a bigger buffer is
never slower than a smaller one (issue 17, defect a).

**Why a policy is needed.** A fold's tiles move whole: the array waits for the first step's
tiles and the last O tile is written back after the last step. Cutting the stream into
chunks (:func:`~sparsesim.memory.schedule.chunk_ladder`) pipelines those transfers with
compute, so a buffer small enough to force a cut could be *faster* than a big one that takes
the whole stream in one step (a MatMul 2×3×38 on a 4×2 ``is`` array, 1 B/cycle, latency
100, 1-byte bursts: 342 cycles with 0.25 KiB buffers, 281 with 0.125 KiB).

**The rule.** The chunk lengths are fixed by the stream alone (the whole stream, then
halving down to 1). The *candidates* are fixed by the GEMM, never by the buffer size: the
chunks that move no more bytes (every distinct tile once, burst padding and conv halos
included) than the whole stream, and the chunks some buffer could be forced to (at the
smallest buffers that fit them, no longer chunk and no such chunk fits). Of the candidates
whose tiles fit half their buffers, the instance runs with the fastest (fewest cycles, then
fewest DRAM bytes, then the longest chunk), as a compiler that tries the tilings would. A
bigger buffer fits every candidate a smaller one fits, and with the same chunk the machine is
never slower with more space (LRU over a larger capacity, shorter waits for space; tested by
hypothesis, not proven), so it is
never slower. A finer cut is therefore taken when it pipelines the first fetch and the last
write-back behind compute, and may then move more bytes (conv halos re-read per chunk).

**Bound.** Each candidate is one machine run, and a chunk of length ``c`` has
``folds × ceil(stream / c)`` steps: the search takes the ladder chunks with at most
``SEARCH_STEPS`` steps (and the whole stream always), so it costs at most a few dozen extra
machine steps per GEMM instance. When none of them fits, the longest finer chunk that fits is
taken (as before). So the guarantee is exact for buffers that fit a chunk within the bound,
which for every GEMM whose whole ladder is within it (every case the property test draws,
the issue's example) is every buffer; a large GEMM (more than ``SEARCH_STEPS`` folds) runs
its whole stream when it fits and is then not compared with the finer cuts a smaller buffer
is forced to. Searching them too was measured at 4-10x the run time of whole networks
(BERT-base-128 on gemmini_like) for no change in its cycles.

Ideal memory has no stalls: every chunk gives the compute cycles, and the whole stream is
taken (the fewest steps, the same traffic figures as before). A mapping that sets
``stream_tile`` (:mod:`sparsesim.mapping.loops`) takes that chunk and no other: the policy
is the default of a choice the user may make.
"""

from __future__ import annotations

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.mapping.conv import ConvView
from sparsesim.mapping.dataflows import FoldPlan
from sparsesim.mapping.loops import Mapping, mapping_of
from sparsesim.memory.machine import simulate_gemm
from sparsesim.memory.schedule import (OPERANDS, FoldSchedule, _check_fits, _fits, chunk_ladder,
                                       fold_schedule)
from sparsesim.memory.traffic import MemoryResult

#: A candidate chunk (other than the whole stream) has at most this many steps in all.
SEARCH_STEPS = 64


def _dram_bytes(r: MemoryResult) -> int:
    return sum(r.operand(op).dram_read_data_bytes + r.operand(op).dram_read_meta_bytes
               + r.operand(op).dram_write_data_bytes + r.operand(op).dram_write_meta_bytes
               for op in ("A", "W", "O"))


def _volume(schedule: FoldSchedule) -> int:
    """Bytes of every distinct tile once (what any buffer must move at least): fixed by the
    chunk, not by the buffer size."""
    return sum(int(schedule.operand(op).stored_bytes.sum()) for op in OPERANDS)


def _need(schedule: FoldSchedule) -> tuple[int, ...]:
    """The smallest buffers (bytes, A, W, O) this schedule fits: twice its largest tile."""
    return tuple(2 * int(t.stored_bytes.max()) if t.tiles else 0
                 for t in (schedule.operand(op) for op in OPERANDS))


def _within(need: tuple[int, ...], other: tuple[int, ...]) -> bool:
    return all(a <= b for a, b in zip(need, other, strict=True))


def candidates(schedules: list[FoldSchedule]) -> list[bool]:
    """Which ladder chunks (longest first) the policy may take, the same for every buffer
    size: those moving no more bytes than the whole stream, and those a buffer could be
    forced to (at the smallest buffers that fit them, no longer chunk and no such chunk
    fits)."""
    volumes = [_volume(s) for s in schedules]
    needs = [_need(s) for s in schedules]
    ok = [v <= volumes[0] for v in volumes]
    out = []
    for i, need in enumerate(needs):
        forced = not any(_within(needs[d], need) for d in range(len(needs))
                         if d < i or (ok[d] and d != i))
        out.append(ok[i] or forced)
    return out


def simulate_tiled(plan: FoldPlan, arch: Arch, a_mask: np.ndarray | None = None,
                   w_mask: np.ndarray | None = None, *,
                   compute_cycles: np.ndarray | None = None, o_mask: np.ndarray | None = None,
                   view: ConvView | None = None, group: int = 0,
                   mapping: Mapping | None = None) -> MemoryResult:
    """One GEMM instance through the memory with the fastest candidate chunk that fits (the
    arguments are :func:`~sparsesim.memory.schedule.fold_schedule`'s), or with the
    mapping's ``stream_tile`` when it sets one (an error if its tiles do not fit)."""
    mapping = mapping or mapping_of(arch)

    def build(chunk: int | None) -> FoldSchedule:
        return fold_schedule(plan, arch, a_mask, w_mask, compute_cycles=compute_cycles,
                             o_mask=o_mask, view=view, group=group, chunk=chunk,
                             mapping=mapping)

    memory = arch.memory
    if memory.ideal or mapping.stream_tile is not None:
        return simulate_gemm(build(None), memory)
    stream = plan.extents[2]
    folds = plan.row_folds * plan.col_folds
    bound = SEARCH_STEPS
    ladder = chunk_ladder(stream)
    searched = [c for c in ladder if c == ladder[0] or folds * -(-stream // c) <= bound]
    schedules = [build(c) for c in searched]
    best: tuple[tuple[int, int], MemoryResult] | None = None
    for schedule, allowed in zip(schedules, candidates(schedules), strict=True):
        if not allowed or not _fits(schedule, memory):
            continue
        result = simulate_gemm(schedule, memory)
        key = (result.cycles, _dram_bytes(result))
        if best is None or key < best[0]:
            best = (key, result)
    if best is not None:
        return best[1]
    # Nothing within the search bound fits: the longest finer chunk that does, as before.
    schedule = schedules[-1]
    for chunk in ladder[len(searched):]:
        schedule = build(chunk)
        if _fits(schedule, memory):
            return simulate_gemm(schedule, memory)
    _check_fits(schedule, memory)  # chunk 1 does not fit either: say which buffer
    raise AssertionError("unreachable")  # pragma: no cover
