"""Memory: DRAM → SRAM (A, W, O buffers) → array, for one GEMM instance, in simpy.

Two steps, as STYLE.md asks: a pure function builds the :class:`FoldSchedule` (which tile
each fold needs and how many bytes every tile is in its storage format), then
:func:`simulate_gemm` runs it through a small discrete-event machine.

**Tiles — one rule for every dataflow.** Folds run column folds outer, row folds inner
(fold ``f`` is row fold ``f % R`` of column fold ``f // R``, as :class:`~sparsesim.mapping.lower.
FoldPlan`). An operand's tile for fold (i, j) is its block along each of its axes (A: m, k;
W: k, n; O: m, n): block ``i`` of ``rows`` on the axis the dataflow lays on the array rows,
block ``j`` of ``cols`` on the column axis, the whole extent on the streamed axis. Its id
is the pair of block indices, flattened. Consecutive folds that need the same tile reuse it.
When a fold's tiles would not fit half their buffers, the streamed axis is cut into the
largest halving chunks that fit and the fold runs as consecutive steps, one chunk each: the
schedule is then over steps, and the fold's compute cycles are shared by chunk length.
A fold *accumulates* when an earlier fold wrote its O tile (K is split over folds: ws, is).

**Bytes.** A tile is encoded on its own (:func:`sparsesim.formats.tile_bits`, K on axis 0, so
A is passed transposed): ``encoded = ceil((data + meta bits) / 8)``, and DRAM moves it in whole
bursts, ``stored = encoded`` rounded up to ``burst_bytes`` — that is also its SRAM footprint.
The burst padding is counted with the data (``data + meta = stored`` in DRAM figures). The
array reads the ``encoded`` bytes from SRAM every fold that uses the tile. Outputs are
partial sums kept at ``o_bits`` in ``format_o`` (dense unless an output mask is given).

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
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
import simpy
from simpy.core import EmptySchedule

from sparsesim.arch.config import Arch, MemoryConfig
from sparsesim.energy import ActionCounts
from sparsesim.errors import SparsesimError
from sparsesim.formats import Auto, as_format, tile_bits
from sparsesim.mapping.lower import ConvView, FoldPlan, Im2col

OPERANDS = ("A", "W", "O")
# Axes of each operand in the orientation the formats see (K on axis 0 where it has one).
_FORMAT_AXES = {"A": ("k", "m"), "W": ("k", "n"), "O": ("m", "n")}


# ---------------------------------------------------------------------------------------------
# the schedule


@dataclass(frozen=True, slots=True, eq=False)
class OperandTiles:
    """One operand's tiles: which one every fold uses and the bytes of each (int64 arrays).

    ``tile_ids[f]`` indexes the per-tile arrays. ``encoded_bytes`` = data + meta bytes of
    the tile's encoding (``meta_bytes = ceil(meta bits / 8)``, the data takes the rest);
    ``stored_bytes`` is ``encoded_bytes`` rounded up to the DRAM burst (DRAM transfer and
    SRAM footprint); ``decode_elements`` the values decoded from metadata per read (0 for a
    format without metadata).
    """

    operand: str
    tile_ids: np.ndarray
    encoded_bytes: np.ndarray
    meta_bytes: np.ndarray
    stored_bytes: np.ndarray
    decode_elements: np.ndarray

    def __post_init__(self) -> None:
        t = self.encoded_bytes.shape
        for f in ("meta_bytes", "stored_bytes", "decode_elements"):
            if getattr(self, f).shape != t:
                raise SparsesimError(f"operand {self.operand}: {f} has shape "
                                     f"{getattr(self, f).shape}, expected {t}", field=f)
        if self.tile_ids.ndim != 1 or (self.tile_ids.size and (
                self.tile_ids.min() < 0 or self.tile_ids.max() >= t[0])):
            raise SparsesimError(f"operand {self.operand}: tile ids must index its {t[0]} "
                                 "tiles", field="tile_ids")

    @property
    def tiles(self) -> int:
        return int(self.encoded_bytes.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class FoldSchedule:
    """The folds of one GEMM instance in execution order, and the tiles each one needs.

    ``compute_cycles[f]`` is fold f's compute time; ``accumulates[f]`` says it adds into an
    O tile that an earlier fold wrote.
    """

    layer: str
    compute_cycles: np.ndarray
    a: OperandTiles
    w: OperandTiles
    o: OperandTiles
    accumulates: np.ndarray

    def __post_init__(self) -> None:
        f = self.compute_cycles.shape
        if self.compute_cycles.ndim != 1 or (f[0] and self.compute_cycles.min() < 0):
            raise SparsesimError("compute cycles must be a 1-D array of non-negative integers",
                                 layer=self.layer, field="compute_cycles")
        for ops in (self.a, self.w, self.o):
            if ops.tile_ids.shape != f:
                raise SparsesimError(f"operand {ops.operand}: {ops.tile_ids.size} tile ids "
                                     f"for {f[0]} folds", layer=self.layer, field="tile_ids")
        if self.accumulates.shape != f:
            raise SparsesimError("one accumulate flag per fold", layer=self.layer,
                                 field="accumulates")

    @property
    def folds(self) -> int:
        return int(self.compute_cycles.shape[0])

    def operand(self, name: str) -> OperandTiles:
        """Tiles of operand ``A``, ``W`` or ``O``."""
        return {"A": self.a, "W": self.w, "O": self.o}[name.upper()]


def _block(axis: str, plan: FoldPlan, chunk: int) -> tuple[int, str]:
    """(block size, fold index that selects the block: 'i', 'j' or 's') of a GEMM axis."""
    df = plan.dataflow
    extent = plan.gemm.dim(axis)
    if axis == df.row_axis:
        return min(plan.rows, extent), "i"
    if axis == df.col_axis:
        return min(plan.cols, extent), "j"
    return min(chunk, extent), "s"


def _tile_geometry(op: str, plan: FoldPlan, i: np.ndarray, j: np.ndarray, s: np.ndarray,
                   chunk: int) -> tuple[tuple[int, int], tuple[int, int], np.ndarray]:
    """Block sizes, block counts and per-step tile ids of operand ``op``."""
    sizes, counts, index = [], [], []
    for axis in _FORMAT_AXES[op]:
        size, by = _block(axis, plan, chunk)
        sizes.append(size)
        counts.append(-(-plan.gemm.dim(axis) // size))
        index.append({"i": i, "j": j, "s": s}[by])
    ids = index[0] * counts[1] + index[1]
    return (sizes[0], sizes[1]), (counts[0], counts[1]), ids


@lru_cache(maxsize=1024)
def _dense_tile_bits(shape: tuple[int, int], block: tuple[int, int], fmt: Any,
                     value_bits: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """tile_bits of an all-ones mask of ``shape`` without building it: the tiles take at most
    two sizes along each axis (full and the last), so a mask of two tiles per axis says all.
    Cached (read-only results): every group of a layer asks the same."""
    small, expand = [], []
    for extent, b in zip(shape, block, strict=True):
        n = -(-extent // b)
        if n == 1:
            small.append(extent)
            expand.append(np.zeros(1, dtype=np.intp))
        else:
            small.append(b + extent - (n - 1) * b)
            expand.append(np.r_[np.zeros(n - 1, dtype=np.intp), 1])
    data, meta = tile_bits(np.ones(small, dtype=bool), block[0], block[1], fmt, value_bits,
                           name=name)
    ix = np.ix_(expand[0], expand[1])
    out = data[ix], meta[ix]
    for a in out:
        a.flags.writeable = False
    return out


def _format(op: str, plan: FoldPlan, memory: MemoryConfig) -> Any:
    """Operand ``op``'s storage format; a bad spec names the layer and the memory field."""
    try:
        return as_format(memory.format_spec(op))
    except SparsesimError as err:
        raise SparsesimError(err.message, layer=plan.gemm.layer,
                             field=f"memory.format_{op.lower()}") from None


def _tiles(op: str, ids: np.ndarray, data: np.ndarray, meta: np.ndarray, memory: MemoryConfig,
           value_bits: int) -> OperandTiles:
    """Per-tile data and metadata bits → bytes as encoded, as stored (burst-rounded), and the
    values a decoder expands (formats with metadata only)."""
    meta_bytes = (meta + 7) // 8
    encoded = (data + meta + 7) // 8
    burst = memory.burst_bytes
    stored = -(-encoded // burst) * burst
    decode = np.where(meta > 0, data // value_bits, 0)
    return OperandTiles(op, ids.astype(np.int64), encoded.astype(np.int64),
                        meta_bytes.astype(np.int64), stored.astype(np.int64),
                        decode.astype(np.int64))


def _operand_tiles(op: str, mask: np.ndarray | None, plan: FoldPlan, memory: MemoryConfig,
                   value_bits: int, i: np.ndarray, j: np.ndarray, s: np.ndarray,
                   chunk: int) -> OperandTiles:
    block, counts, ids = _tile_geometry(op, plan, i, j, s, chunk)
    g = plan.gemm
    shape = (g.dim(_FORMAT_AXES[op][0]), g.dim(_FORMAT_AXES[op][1]))
    name = f"{g.layer}.{g.name} {op}"
    fmt = _format(op, plan, memory)
    if mask is None and not (isinstance(fmt, Auto) and fmt.per == "tensor"):
        data, meta = _dense_tile_bits(shape, block, fmt, value_bits, name)
    else:
        m = np.ones(shape, dtype=bool) if mask is None else mask
        data, meta = tile_bits(m, block[0], block[1], fmt, value_bits, name=name)
    assert data.shape == counts
    return _tiles(op, ids, data.ravel(), meta.ravel(), memory, value_bits)


_MATRIX_AXES = {"A": ("m", "k"), "O": ("m", "n")}


def _footprint_bits(source: Im2col, m0: int, m1: int, k0: int, k1: int, fmt: Any,
                    value_bits: int, name: str, *, owned: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(data bits, metadata bits) per conv group of the feature-map region that im2col rows
    ``m0:m1`` and columns ``k0:k1`` touch: one ``[channels, pixels]`` tile per group.

    ``owned``: only the pixels no earlier rows touched, of the channels these columns start —
    col2im writing an input gradient once per pixel, overlapping windows summed on chip."""
    groups = source.layer.groups
    planes = source.planes(m0, m1)
    if owned and m0 > 0:
        before = dict(source.planes(0, m0))
        planes = tuple((n, plane & ~before[n]) if n in before else (n, plane)
                       for n, plane in planes)
    pixels = sum(int(plane.sum()) for _, plane in planes)
    rows = source.group_rows(k0, k1, owned=owned)
    if pixels == 0 or rows.shape[1] == 0:  # SCALE-Sim's ceil-mode edge pixels read nothing
        zero = np.zeros(groups, dtype=np.int64)
        return zero, zero
    if source.inputs is None:
        d, mt = tile_bits(np.ones((rows.shape[1], pixels), dtype=bool), rows.shape[1], pixels,
                          fmt, value_bits, name=name)
        return np.full(groups, d[0, 0]), np.full(groups, mt[0, 0])
    flat = np.concatenate([source.inputs[n][:, plane] for n, plane in planes], axis=1)
    d, mt = tile_bits(flat[rows.ravel()], rows.shape[1], pixels, fmt, value_bits, name=name)
    return d[:, 0], mt[:, 0]


def _footprint_tiles(view: ConvView, group: int, plan: FoldPlan, memory: MemoryConfig,
                     value_bits: int, i: np.ndarray, j: np.ndarray, s: np.ndarray,
                     chunk: int) -> OperandTiles:
    """Tiles of a convolution's im2col operand (``view``) as the feature-map regions they
    touch, each encoded on its own as a ``[channels, pixels]`` tile in the operand's format."""
    op, source = view.operand, view.im2col
    block, counts, ids = _tile_geometry(op, plan, i, j, s, chunk)
    g = plan.gemm
    name = f"{g.layer}.{g.name} {op}"
    fmt = _format(op, plan, memory)
    axes = _FORMAT_AXES[op]
    rows_axis, cols_axis = _MATRIX_AXES[op]
    if view.transposed:
        rows_axis, cols_axis = cols_axis, rows_axis
    n_tiles = counts[0] * counts[1]
    data = np.zeros(n_tiles, dtype=np.int64)
    meta = np.zeros(n_tiles, dtype=np.int64)
    # col2im writes each pixel once; reads do too with a line buffer holding the halo rows
    owned = op == "O" or memory.conv_halo == "line_buffer"
    for tile in range(n_tiles):
        index = divmod(tile, counts[1])
        span = {ax: (b * size, min(g.dim(ax), (b + 1) * size))
                for ax, b, size in zip(axes, index, block, strict=True)}
        (m0, m1), (k0, k1) = span[rows_axis], span[cols_axis]
        key = (m0, m1, k0, k1, fmt, value_bits, owned)
        if key not in view.memo:
            view.memo[key] = _footprint_bits(source, m0, m1, k0, k1, fmt, value_bits, name,
                                             owned=owned)
        d, mt = view.memo[key]
        data[tile], meta[tile] = d[group], mt[group]
    return _tiles(op, ids, data, meta, memory, value_bits)


def _check_mask(mask: np.ndarray | None, shape: tuple[int, int], what: str,
                layer: str) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.shape != shape:
        raise SparsesimError(f"{what} mask must be boolean of shape {shape}, got {m.dtype} "
                             f"{m.shape}", layer=layer, field=what)
    return m


def fold_schedule(plan: FoldPlan, arch: Arch, a_mask: np.ndarray | None = None,
                  w_mask: np.ndarray | None = None, *, compute_cycles: np.ndarray | None = None,
                  o_mask: np.ndarray | None = None, view: ConvView | None = None,
                  group: int = 0) -> FoldSchedule:
    """The schedule of one instance of ``plan.gemm`` on ``arch``'s memory formats and widths.

    Masks are the instance's ``A[m, k]``, ``W[k, n]`` and (optionally) ``O[m, n]`` non-zero
    patterns (2-D, ``None``: dense). ``compute_cycles`` gives each fold's cycles in execution
    order (default: the dense ``plan.fold_cycles`` for every fold). ``plan.gemm.count``
    instances are the caller's to run (one schedule each, or one result scaled when the
    instances share their masks). With ``view`` (a convolution's im2col operand), that
    operand's tiles are the feature-map regions they touch (of conv group ``group``), not
    im2col copies.
    """
    g = plan.gemm
    r, c = plan.row_folds, plan.col_folds
    n_folds = r * c
    if compute_cycles is None:
        cycles = np.full(n_folds, plan.fold_cycles, dtype=np.int64)
    else:
        cycles = np.asarray(compute_cycles)
        if cycles.shape != (n_folds,) or cycles.dtype.kind not in "iu":
            raise SparsesimError(f"compute cycles must be {n_folds} integers, one per fold, "
                                 f"got {cycles.dtype} {cycles.shape}", layer=g.layer,
                                 field="compute_cycles")
        cycles = cycles.astype(np.int64)
    a = _check_mask(a_mask, (g.m, g.k), "A", g.layer)
    w = _check_mask(w_mask, (g.k, g.n), "W", g.layer)
    o = _check_mask(o_mask, (g.m, g.n), "O", g.layer)
    stream = plan.extents[2]
    chunk = stream
    while True:
        schedule = _schedule(plan, arch, a, w, o, cycles, chunk, view, group)
        if arch.memory.ideal or chunk == 1 or _fits(schedule, arch.memory):
            return schedule
        chunk = -(-chunk // 2)


def _split_cycles(cycles: np.ndarray, stream: int, chunk: int) -> np.ndarray:
    """Each fold's cycles shared over its stream chunks in proportion to their length (the
    last chunk takes the rounding remainder, so the sum is exact)."""
    chunks = -(-stream // chunk)
    lengths = np.full(chunks, chunk, dtype=np.int64)
    lengths[-1] = stream - chunk * (chunks - 1)
    share = (cycles[:, None] * lengths[None, :]) // stream
    share[:, -1] += cycles - share.sum(axis=1)
    return share.ravel()


def _schedule(plan: FoldPlan, arch: Arch, a: np.ndarray | None, w: np.ndarray | None,
              o: np.ndarray | None, cycles: np.ndarray, chunk: int,
              view: ConvView | None = None, group: int = 0) -> FoldSchedule:
    """The schedule with the streamed axis cut into chunks of ``chunk``: a fold whose whole
    stream would not fit its buffers runs as consecutive steps, one chunk each (the PEs keep
    their accumulators and stationary operands across a fold's steps)."""
    g = plan.gemm
    r, c = plan.row_folds, plan.col_folds
    chunks = -(-plan.extents[2] // chunk)
    steps = np.arange(r * c * chunks, dtype=np.int64)
    s = steps % chunks
    fold = steps // chunks
    i, j = fold % r, fold // r
    p, mem = arch.precision, arch.memory
    masks = {"A": None if a is None else a.T, "W": w, "O": o}
    bits = {"A": p.a_bits, "W": p.w_bits, "O": p.o_bits}
    tiles = {op: (_footprint_tiles(view, group, plan, mem, bits[op], i, j, s, chunk)
                  if view is not None and view.operand == op else
                  _operand_tiles(op, masks[op], plan, mem, bits[op], i, j, s, chunk))
             for op in OPERANDS}
    o_ids = tiles["O"].tile_ids
    first = np.full(tiles["O"].tiles, steps.size, dtype=np.int64)
    np.minimum.at(first, o_ids, steps)
    step_cycles = cycles if chunks == 1 else _split_cycles(cycles, plan.extents[2], chunk)
    return FoldSchedule(g.layer, step_cycles, tiles["A"], tiles["W"], tiles["O"],
                        accumulates=first[o_ids] < steps)


def _fits(schedule: FoldSchedule, memory: MemoryConfig) -> bool:
    try:
        _check_fits(schedule, memory)
    except SparsesimError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class OperandTraffic:
    """One operand's traffic in bytes (DRAM figures include burst padding, counted as data).

    ``fetches`` counts DRAM → SRAM tile transfers (for O: partial-sum read-backs);
    ``refetch_bytes`` the part of the DRAM reads that fetched a tile already fetched before.
    """

    fetches: int = 0
    dram_read_data_bytes: int = 0
    dram_read_meta_bytes: int = 0
    dram_write_data_bytes: int = 0
    dram_write_meta_bytes: int = 0
    refetch_bytes: int = 0
    sram_read_bytes: int = 0
    sram_write_bytes: int = 0
    decoded_elements: int = 0

    @property
    def dram_read_bytes(self) -> int:
        return self.dram_read_data_bytes + self.dram_read_meta_bytes

    @property
    def dram_write_bytes(self) -> int:
        return self.dram_write_data_bytes + self.dram_write_meta_bytes


@dataclass(frozen=True, slots=True)
class MemoryResult:
    """One GEMM instance through the memory system. Cycles are clock cycles.

    ``stall_cycles = cycles − compute_cycles``: every cycle the array was not computing
    (``decode_stall_cycles`` of them spent on decoding beyond a fold's compute). ``events``
    counts simpy events processed (0 for ideal memory).
    """

    cycles: int
    compute_cycles: int
    stall_cycles: int
    decode_stall_cycles: int
    a: OperandTraffic
    w: OperandTraffic
    o: OperandTraffic
    events: int = 0

    @property
    def dram_read_bytes(self) -> int:
        return self.a.dram_read_bytes + self.w.dram_read_bytes + self.o.dram_read_bytes

    @property
    def dram_write_bytes(self) -> int:
        return self.a.dram_write_bytes + self.w.dram_write_bytes + self.o.dram_write_bytes

    def operand(self, name: str) -> OperandTraffic:
        return {"A": self.a, "W": self.w, "O": self.o}[name.upper()]

    def row(self) -> dict[str, int]:
        """Flat, unit-suffixed columns: ``cycles``, ..., ``dram_read_data_bytes_a``, ..."""
        out = {"cycles": self.cycles, "compute_cycles": self.compute_cycles,
               "stall_cycles": self.stall_cycles, "decode_stall_cycles": self.decode_stall_cycles}
        for op in OPERANDS:
            traffic = self.operand(op)
            for f in fields(OperandTraffic):
                out[f"{f.name}_{op.lower()}"] = getattr(traffic, f.name)
        return out


def actions(result: MemoryResult, *, macs: int, gated_macs: int = 0,
            register_accesses: int = 0) -> ActionCounts:
    """The memory side of a run as energy action counts, with the compute side given."""
    return ActionCounts(
        macs=macs, gated_macs=gated_macs, register_accesses=register_accesses,
        sram_a_read_bits=8 * result.a.sram_read_bytes,
        sram_a_write_bits=8 * result.a.sram_write_bytes,
        sram_w_read_bits=8 * result.w.sram_read_bytes,
        sram_w_write_bits=8 * result.w.sram_write_bytes,
        sram_o_read_bits=8 * result.o.sram_read_bytes,
        sram_o_write_bits=8 * result.o.sram_write_bytes,
        dram_read_bits=8 * result.dram_read_bytes,
        dram_write_bits=8 * result.dram_write_bytes,
        decoded_elements=result.a.decoded_elements + result.w.decoded_elements,
    )


# ---------------------------------------------------------------------------------------------
# simulation


def _check_fits(schedule: FoldSchedule, memory: MemoryConfig) -> None:
    for op in OPERANDS:
        tiles = schedule.operand(op)
        if not tiles.tiles:
            continue
        biggest = int(tiles.stored_bytes.max())
        capacity = memory.sram_bytes(op)
        if biggest > capacity / 2:
            raise SparsesimError(
                f"a {op} tile of {biggest} bytes ({biggest / 1024:.1f} KiB) does not fit the "
                f"{op} buffer of {capacity:.0f} bytes ({capacity / 1024:g} KiB, double-buffered:"
                f" {capacity / 2048:g} KiB per half)", layer=schedule.layer,
                field=f"memory.sram_kib_{op.lower()}")


def _decode_cycles(schedule: FoldSchedule, memory: MemoryConfig) -> np.ndarray:
    """Per fold: the slower decoder's cycles (A or W), ``ceil(elements × cycles/element)``."""
    per = memory.decode_cycles_per_element
    out = np.zeros(schedule.folds, dtype=np.int64)
    if per == 0:
        return out
    for tiles in (schedule.a, schedule.w):
        elements = tiles.decode_elements[tiles.tile_ids].astype(np.float64)
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
            decoded_elements=int(t.decode_elements[t.tile_ids].sum()))
    o = schedule.o
    distinct = np.unique(o.tile_ids)
    stored, meta = int(o.stored_bytes[distinct].sum()), int(o.meta_bytes[distinct].sum())
    per_fold = o.encoded_bytes[o.tile_ids]
    traffic["O"] = OperandTraffic(
        dram_write_data_bytes=stored - meta, dram_write_meta_bytes=meta,
        sram_read_bytes=int(per_fold[schedule.accumulates].sum()
                            + o.encoded_bytes[distinct].sum()),
        sram_write_bytes=int(per_fold.sum()))
    compute = int(schedule.compute_cycles.sum())
    return MemoryResult(compute, compute, 0, 0, traffic["A"], traffic["W"], traffic["O"])


class _Counts:
    """Mutable tallies of one operand while the machine runs (the fields of OperandTraffic)."""

    __slots__ = tuple(f.name for f in fields(OperandTraffic))

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def frozen(self) -> OperandTraffic:
        return OperandTraffic(**{name: int(getattr(self, name)) for name in self.__slots__})


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
        ca, cw, co = bufs["A"].counts, bufs["W"].counts, bufs["O"].counts
        for fold in range(s.folds):
            yield self.prepared[fold]
            ta, tw, to = self.ids["A"][fold], self.ids["W"][fold], self.ids["O"][fold]
            ca.sram_read_bytes += a_enc[ta]
            cw.sram_read_bytes += w_enc[tw]
            ca.decoded_elements += a_dec[ta]
            cw.decoded_elements += w_dec[tw]
            if self.accumulates[fold]:
                co.sram_read_bytes += o_enc[to]
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
                            events=events)


def simulate_gemm(schedule: FoldSchedule, memory: MemoryConfig) -> MemoryResult:
    """Cycles, stalls and traffic of one GEMM instance's folds through ``memory``."""
    if memory.ideal:
        return _ideal(schedule)
    _check_fits(schedule, memory)
    if schedule.folds == 0:
        return _ideal(schedule)
    return _Machine(schedule, memory).run()

