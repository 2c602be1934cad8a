"""The simpy half of the memory model: a fold schedule through DRAM, SRAM and the array.

**The machine** (``ideal = false``):

- one DRAM channel, a FIFO server: a transfer issued at ``t`` holds the channel for
  ``ceil(stored / dram_bytes_per_cycle)`` cycles from ``max(t, channel free)``; a read's
  data is usable ``dram_latency_cycles`` later (the latency is pipelined: back-to-back reads
  overlap their latencies); writes are posted (done when their data has left). The channel's
  next-free time is a number, so a transfer is one simpy timeout — the same timing as a
  capacity-1 ``simpy.Resource`` granting in request order, without its request and release
  events;
- one buffer per operand, LRU over whole tiles. Double buffering: the tiles of fold ``f+1``
  are fetched (or found resident) while fold ``f`` computes — as soon as fold ``f−1`` has
  released its half — evicting least recently used tiles that fold ``f`` does not hold; a
  tile may therefore take at most half its buffer (else :class:`SparsesimError`). A
  resident tile is not fetched again; an evicted tile that is needed again is re-fetched
  and its bytes are counted as ``refetch_bytes``;
- O tiles are written back after the last fold that writes them; a partial-sum tile evicted
  before then is spilled and read back (a refetch) when a later fold accumulates into it.
  The array reads a step's O tile from SRAM only when it accumulates and the PE accumulators
  do not hold its partial sums, and writes it only when the next step does not keep them
  (``FoldSchedule.o_reads`` / ``o_writes``: the register level, :mod:`sparsesim.mapping.loops`);
  a held tile keeps its SRAM space (its write-back needs it), so timing does not depend on it.
  Write-backs hold their space until their data has left; a fold waits for that space;
- the array: one timeout per fold of ``max(compute, decode A, decode W)`` cycles, where
  decoding a tile costs ``decode_cycles_per_element`` per value stored in a format with
  metadata (the decoder between SRAM and array streams alongside the fold).

``cycles`` runs from the first request to the last write-back; ``stall_cycles = cycles −
compute_cycles`` (waits for data or space, decode beyond compute, the first fetch and the
last write-back). Same inputs, same events in the same order, same numbers.

``ideal = true`` runs no simpy: cycles are the compute cycles, no stalls, and the traffic is
each distinct tile once (unbounded buffers), so reuse still shows; buffer sizes are not
checked.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import simpy
from simpy.core import EmptySchedule

from sparsesim.arch.memory import MemoryConfig
from sparsesim.memory.schedule import OPERANDS, FoldSchedule, OperandTiles, _check_fits
from sparsesim.memory.traffic import MemoryResult, OperandTraffic


def _decode_cycles(schedule: FoldSchedule, memory: MemoryConfig) -> np.ndarray:
    """Per fold: the slower decoder's cycles (A or W), ``ceil(elements × cycles/element)``,
    where a lane takes a value or a bitmap word per step: the more of the two counts."""
    per = memory.decode_cycles_per_element
    out = np.zeros(schedule.folds, dtype=np.int64)
    if per == 0:
        return out
    for tiles in (schedule.a, schedule.w):
        assert tiles.popcount_words is not None
        elements = np.maximum(tiles.decode_elements, tiles.popcount_words)[
            tiles.tile_ids].astype(np.float64)
        out = np.maximum(out, np.ceil(elements * per).astype(np.int64))
    return out


def _ideal(schedule: FoldSchedule) -> MemoryResult:
    traffic = {}
    for op in ("A", "W"):
        t = schedule.operand(op)
        distinct = np.unique(t.tile_ids)
        stored, meta = int(t.stored_bytes[distinct].sum()), int(t.meta_bytes[distinct].sum())
        traffic[op] = OperandTraffic(
            fetches=int(distinct.size), dram_read_data_bytes=stored - meta,
            dram_read_meta_bytes=meta, sram_read_bytes=int(t.encoded_bytes[t.tile_ids].sum()),
            sram_write_bytes=int(t.encoded_bytes[distinct].sum()),
            decoded_elements=int(t.decode_elements[t.tile_ids].sum()),
            popcount_words=int(np.asarray(t.popcount_words)[t.tile_ids].sum()))
    o = schedule.o
    distinct = np.unique(o.tile_ids)
    stored, meta = int(o.stored_bytes[distinct].sum()), int(o.meta_bytes[distinct].sum())
    per_fold = o.encoded_bytes[o.tile_ids]
    traffic["O"] = OperandTraffic(
        dram_write_data_bytes=stored - meta, dram_write_meta_bytes=meta,
        sram_read_bytes=int(per_fold[schedule.o_reads].sum()
                            + o.encoded_bytes[distinct].sum()),
        sram_write_bytes=int(per_fold[schedule.o_writes].sum()))
    compute = int(schedule.compute_cycles.sum())
    return MemoryResult(compute, compute, 0, 0, traffic["A"], traffic["W"], traffic["O"],
                        accumulator_accesses=schedule.accumulator_accesses)


@dataclass(slots=True)
class _Counts:
    """Mutable tallies of one operand while the machine runs: the fields of
    :class:`OperandTraffic`, one for one (tests/test_memory.py holds the two lists equal)."""

    fetches: int = 0
    dram_read_data_bytes: int = 0
    dram_read_meta_bytes: int = 0
    dram_write_data_bytes: int = 0
    dram_write_meta_bytes: int = 0
    refetch_bytes: int = 0
    sram_read_bytes: int = 0
    sram_write_bytes: int = 0
    decoded_elements: int = 0
    popcount_words: int = 0

    def frozen(self) -> OperandTraffic:
        return OperandTraffic(**{f.name: int(getattr(self, f.name)) for f in fields(self)})


class _Buffer:
    """An operand buffer: whole tiles, LRU, with pins (tiles a fold holds) and write-backs."""

    def __init__(self, env: simpy.Environment, tiles: OperandTiles, capacity: float) -> None:
        self.env = env
        self.capacity = capacity
        self.stored = tiles.stored_bytes.tolist()
        self.encoded = tiles.encoded_bytes.tolist()
        self.meta = tiles.meta_bytes.tolist()
        self.used = 0          # bytes of resident, arriving and draining tiles
        self.draining = 0      # bytes of tiles being written back (freed when done)
        self.lru: OrderedDict[int, None] = OrderedDict()  # resident tiles, least recent first
        self.arrival: dict[int, simpy.Event] = {}          # resident tile → its data is in
        self.pins: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.seen: set[int] = set()
        self.drained = env.event()  # fires when a write-back frees space, then is replaced
        self.counts = _Counts()

    def evictable(self) -> int | None:
        """The least recently used tile no fold holds, if any."""
        for tile in self.lru:
            if not self.pins.get(tile):
                return tile
        return None

    def pin(self, tile: int) -> None:
        self.pins[tile] = self.pins.get(tile, 0) + 1

    def unpin(self, tile: int) -> None:
        self.pins[tile] -= 1


class _Events(dict[int, simpy.Event]):
    """Per-fold events, made when first asked for (most folds' events are never waited on
    long, and building them all up front cost more than the simulation)."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__()
        self.env = env

    def __missing__(self, fold: int) -> simpy.Event:
        event = self[fold] = self.env.event()
        return event


class _Machine:
    """The DRAM channel, three buffers and the array, for one schedule."""

    def __init__(self, schedule: FoldSchedule, memory: MemoryConfig) -> None:
        self.env = simpy.Environment()
        self.s = schedule
        self.m = memory
        self.bw = float(memory.dram_bytes_per_cycle)
        self.latency = int(memory.dram_latency_cycles)
        self.channel_free = 0
        self.buffers = {op: _Buffer(self.env, schedule.operand(op), memory.sram_bytes(op))
                        for op in OPERANDS}
        self.ids = {op: schedule.operand(op).tile_ids.tolist() for op in OPERANDS}
        self.accumulates = schedule.accumulates.tolist()
        self.o_reads = schedule.o_reads.tolist()
        self.o_writes = schedule.o_writes.tolist()
        o_ids = schedule.o.tile_ids
        last = np.full(schedule.o.tiles, -1, dtype=np.int64)
        np.maximum.at(last, o_ids, np.arange(schedule.folds, dtype=np.int64))
        self.o_last = last.tolist()
        compute = schedule.compute_cycles
        self.duration = np.maximum(compute, _decode_cycles(schedule, memory)).tolist()
        self.prepared = _Events(self.env)  # fold f's tiles are in SRAM
        self.finished = _Events(self.env)  # fold f has computed
        self.writes: list[simpy.Event] = []
        self.present = self.env.event().succeed()  # "already there": one shared event

    # -- the DRAM channel ----------------------------------------------------------------------
    def _occupy(self, nbytes: int) -> int:
        """Queue ``nbytes`` on the channel; the cycle its last byte has moved."""
        now = int(self.env.now)
        start = max(now, self.channel_free)
        busy = 0 if math.isinf(self.bw) else math.ceil(nbytes / self.bw)
        self.channel_free = start + busy
        return self.channel_free

    def _read(self, nbytes: int) -> simpy.Event:
        done = self._occupy(nbytes) + self.latency
        return self.env.timeout(done - int(self.env.now))

    def _write_back(self, buf: _Buffer, tile: int) -> None:
        """Write a dirty tile to DRAM; its space is held until the data has left."""
        size = buf.stored[tile]
        c = buf.counts
        c.dram_write_meta_bytes += buf.meta[tile]
        c.dram_write_data_bytes += size - buf.meta[tile]
        c.sram_read_bytes += buf.encoded[tile]
        buf.dirty.discard(tile)
        buf.draining += size
        event = self.env.timeout(self._occupy(size) - int(self.env.now))

        def freed(_: simpy.Event) -> None:
            buf.used -= size
            buf.draining -= size
            drained, buf.drained = buf.drained, self.env.event()
            drained.succeed()

        event.callbacks.append(freed)
        self.writes.append(event)

    # -- buffers -------------------------------------------------------------------------------
    def _evict(self, buf: _Buffer, tile: int) -> None:
        del buf.lru[tile]
        del buf.arrival[tile]
        if tile in buf.dirty:  # a partial sum not finished yet: spill it
            self._write_back(buf, tile)
        else:
            buf.used -= buf.stored[tile]

    def _acquire(self, op: str, fold: int) -> Generator[simpy.Event, Any, simpy.Event]:
        """Make fold ``fold``'s tile of ``op`` resident and pinned; the event of its data."""
        buf, tile = self.buffers[op], self.ids[op][fold]
        buf.pin(tile)
        if tile in buf.lru:
            buf.lru.move_to_end(tile)
            return buf.arrival[tile]
        size = buf.stored[tile]
        # Evictions depend on the order of accesses only, not on timing: space that
        # write-backs will free counts as free, and is waited for below.
        while buf.capacity - (buf.used - buf.draining) < size:
            victim = buf.evictable()
            if victim is None:
                break
            self._evict(buf, victim)
        while buf.capacity - buf.used < size:
            if buf.draining == 0:  # pragma: no cover - excluded by the half-buffer check
                raise AssertionError(f"{op} buffer cannot make room for tile {tile}")
            yield buf.drained
        buf.used += size
        buf.lru[tile] = None
        read_back = op != "O" or (self.accumulates[fold] and tile in buf.seen)
        c = buf.counts
        if read_back:
            c.fetches += 1
            c.dram_read_meta_bytes += buf.meta[tile]
            c.dram_read_data_bytes += size - buf.meta[tile]
            c.sram_write_bytes += buf.encoded[tile]
            if tile in buf.seen:
                c.refetch_bytes += size
            arrival = self._read(size)
        else:  # a fresh output tile: space only, nothing to wait for
            arrival = self.present
        buf.seen.add(tile)
        buf.arrival[tile] = arrival
        return arrival

    # -- processes -----------------------------------------------------------------------------
    def prefetcher(self) -> Generator[simpy.Event, Any, None]:
        """Fetches fold f's tiles once fold f−2 has finished: double buffering, one half
        holding fold f−1's tiles, the other filling for fold f."""
        for fold in range(self.s.folds):
            if fold >= 2:
                yield self.finished[fold - 2]
            arrivals = []
            for op in OPERANDS:
                event = yield from self._acquire(op, fold)
                if not event.processed:
                    arrivals.append(event)
            if arrivals:
                self.env.all_of(arrivals).callbacks.append(self._ready(fold))
            else:
                self.prepared[fold].succeed()

    def _ready(self, fold: int) -> Callable[[simpy.Event], None]:
        def callback(_: simpy.Event) -> None:
            self.prepared[fold].succeed()
        return callback

    def array(self) -> Generator[simpy.Event, Any, None]:
        """Runs the folds in order, each once its tiles are in."""
        env, bufs, s = self.env, self.buffers, self.s
        a_enc, w_enc, o_enc = bufs["A"].encoded, bufs["W"].encoded, bufs["O"].encoded
        a_dec = s.a.decode_elements.tolist()
        w_dec = s.w.decode_elements.tolist()
        assert s.a.popcount_words is not None and s.w.popcount_words is not None
        a_pop = s.a.popcount_words.tolist()
        w_pop = s.w.popcount_words.tolist()
        ca, cw, co = bufs["A"].counts, bufs["W"].counts, bufs["O"].counts
        for fold in range(s.folds):
            yield self.prepared[fold]
            ta, tw, to = self.ids["A"][fold], self.ids["W"][fold], self.ids["O"][fold]
            ca.sram_read_bytes += a_enc[ta]
            cw.sram_read_bytes += w_enc[tw]
            ca.decoded_elements += a_dec[ta]
            cw.decoded_elements += w_dec[tw]
            ca.popcount_words += a_pop[ta]
            cw.popcount_words += w_pop[tw]
            if self.o_reads[fold]:  # partial sums back from SRAM (not held in the PEs)
                co.sram_read_bytes += o_enc[to]
            if self.o_writes[fold]:
                co.sram_write_bytes += o_enc[to]
            yield env.timeout(self.duration[fold])
            bufs["A"].unpin(ta)
            bufs["W"].unpin(tw)
            o = bufs["O"]
            o.unpin(to)
            o.dirty.add(to)
            if self.o_last[to] == fold:  # complete: write it back, never needed again
                del o.lru[to]
                del o.arrival[to]
                self._write_back(o, to)
            self.finished[fold].succeed()
        if self.writes:
            yield env.all_of(self.writes)

    def run(self) -> MemoryResult:
        env = self.env
        env.process(self.prefetcher())
        done = env.process(self.array())
        events = 0
        try:
            while True:
                env.step()
                events += 1
        except EmptySchedule:
            pass
        if not done.processed:  # pragma: no cover - a bug, not a user error
            raise AssertionError("memory model deadlocked")
        cycles = int(env.now)
        compute = int(self.s.compute_cycles.sum())
        decode = int(sum(self.duration)) - compute
        c = {op: self.buffers[op].counts.frozen() for op in OPERANDS}
        return MemoryResult(cycles, compute, cycles - compute, decode, c["A"], c["W"], c["O"],
                            events=events, accumulator_accesses=self.s.accumulator_accesses)


def simulate_gemm(schedule: FoldSchedule, memory: MemoryConfig) -> MemoryResult:
    """Cycles, stalls and traffic of one GEMM instance's folds through ``memory``, and the
    formats its tiles are stored in."""
    if memory.ideal or schedule.folds == 0:
        if not memory.ideal:
            _check_fits(schedule, memory)
        result = _ideal(schedule)
    else:
        _check_fits(schedule, memory)
        result = _Machine(schedule, memory).run()
    return replace(result, chosen=schedule.chosen())

