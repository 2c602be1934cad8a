"""The pure half of the memory model: which tile every fold needs, and its size in bytes.

No simpy here. :func:`fold_schedule` builds the :class:`FoldSchedule` of one GEMM instance
(which tile each fold needs and how many bytes every tile is in its storage format);
:func:`sparsesim.memory.machine.simulate_gemm` runs it through the machine.

**Tiles — one rule for every dataflow.** Steps run in the mapping's loop order
(:mod:`sparsesim.mapping.loops`; by default SCALE-Sim's: column folds outer, row folds inner,
a fold's chunks innermost — fold ``f`` is row fold ``f % R`` of column fold ``f // R``, as
:class:`~sparsesim.mapping.dataflows.FoldPlan`, the index ``compute_cycles`` is given by). An
operand's tile for fold (i, j) is its block along each of its axes (A: m, k;
W: k, n; O: m, n): block ``i`` of ``rows`` on the axis the dataflow lays on the array rows,
block ``j`` of ``cols`` on the column axis, the whole extent on the streamed axis. Its id
is the pair of block indices, flattened. Consecutive folds that need the same tile reuse it.
The streamed axis may be cut into chunks (:func:`chunk_ladder`: the whole stream, then
halving) and the fold run as consecutive steps, one chunk each: the schedule is then over
steps, and the fold's compute cycles are shared by chunk length. Which chunk is the tiling
policy's (:mod:`sparsesim.memory.tiling`); by itself :func:`fold_schedule` takes the largest
whose tiles fit half their buffers.
A fold *accumulates* when an earlier fold wrote its O tile (K is split over folds: ws, is).

**Bytes.** A tile is encoded on its own (:func:`sparsesim.formats.tile_bits`, K on axis 0, so
A is passed transposed): ``encoded = ceil((data + meta bits) / 8)``, and DRAM moves it in whole
bursts, ``stored = encoded`` rounded up to ``burst_bytes`` — that is also its SRAM footprint.
The burst padding is counted with the data (``data + meta = stored`` in DRAM figures). The
array reads the ``encoded`` bytes from SRAM every fold that uses the tile. Outputs are
partial sums kept at ``o_bits`` in ``format_o`` (dense unless an output mask is given).
**An activation as W** (attention's ``Kᵀ`` and ``V``, a weight gradient's ``dO``: ``w_kind``
activation) is stored as activations are: in ``format_a`` at ``a_bits`` (it still sits in the
W buffer, the K×N side of the array); the weight format is for weights, whose static
patterns it is chosen for (an N:M weight format on ``Kᵀ`` would be an error, issue 17 (c)).

A tile may take at most half its operand's buffer (double buffering, see
:mod:`sparsesim.memory.machine`); :func:`_check_fits` says so with the sizes and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.arch.memory import MemoryConfig
from sparsesim.errors import SparsesimError
from sparsesim.formats.auto import Auto
from sparsesim.formats.bitmap import POPCOUNT_WORD_BITS
from sparsesim.formats.registry import as_format
from sparsesim.formats.tiles import tile_bits_chosen
from sparsesim.mapping.conv import ConvView, Im2col
from sparsesim.mapping.dataflows import FoldPlan
from sparsesim.mapping.gemm import Gemm, OperandKind
from sparsesim.mapping.loops import Mapping, held, mapping_of, revisits

OPERANDS = ("A", "W", "O")
# Axes of each operand in the orientation the formats see (K on axis 0 where it has one).
_FORMAT_AXES = {"A": ("k", "m"), "W": ("k", "n"), "O": ("m", "n")}


@dataclass(frozen=True, slots=True, eq=False)
class OperandTiles:
    """One operand's tiles: which one every fold uses and the bytes of each (int64 arrays).

    ``tile_ids[f]`` indexes the per-tile arrays. ``encoded_bytes`` = data + meta bytes of
    the tile's encoding (``meta_bytes = ceil(meta bits / 8)``, the data takes the rest);
    ``stored_bytes`` is ``encoded_bytes`` rounded up to the DRAM burst (DRAM transfer and
    SRAM footprint); ``decode_elements`` the values decoded from metadata per read (0 for a
    format without metadata); ``chosen`` the format specs the tiles are stored in and how
    many tiles each (one entry, unless an ``auto`` format picked per tile); ``popcount_words`` the :data:`POPCOUNT_WORD_BITS`-bit bitmap
    words a decoder pops per read to gather them (formats that gather by popcount only:
    ``ceil(bitmap bits / 64)``, the bitmap being the tile's metadata).
    """

    operand: str
    tile_ids: np.ndarray
    encoded_bytes: np.ndarray
    meta_bytes: np.ndarray
    stored_bytes: np.ndarray
    decode_elements: np.ndarray
    chosen: tuple[tuple[str, int], ...] = ()
    popcount_words: np.ndarray | None = None

    def __post_init__(self) -> None:
        t = self.encoded_bytes.shape
        if self.popcount_words is None:
            object.__setattr__(self, "popcount_words", np.zeros(t, dtype=np.int64))
        for f in ("meta_bytes", "stored_bytes", "decode_elements", "popcount_words"):
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
    O tile that an earlier fold wrote; ``held[f]`` that its O tile's partial sums come from
    step ``f − 1`` in the PE accumulators (:func:`sparsesim.mapping.loops.held`; default
    none), ``o_elements`` the elements of each O tile (the accumulator entries it takes;
    default unknown: no accumulator accesses counted).
    """

    layer: str
    compute_cycles: np.ndarray
    a: OperandTiles
    w: OperandTiles
    o: OperandTiles
    accumulates: np.ndarray
    held: np.ndarray | None = None
    o_elements: np.ndarray | None = None

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
        if self.held is None:
            object.__setattr__(self, "held", np.zeros(f, dtype=bool))
        elif self.held.shape != f or (f[0] and self.held[0]):
            raise SparsesimError("one held flag per fold, the first false", layer=self.layer,
                                 field="held")
        if self.o_elements is None:
            object.__setattr__(self, "o_elements", np.zeros(self.o.tiles, dtype=np.int64))
        elif self.o_elements.shape != (self.o.tiles,):
            raise SparsesimError("one element count per O tile", layer=self.layer,
                                 field="o_elements")

    @property
    def folds(self) -> int:
        return int(self.compute_cycles.shape[0])

    def operand(self, name: str) -> OperandTiles:
        """Tiles of operand ``A``, ``W`` or ``O``."""
        return {"A": self.a, "W": self.w, "O": self.o}[name.upper()]

    def chosen(self) -> dict[str, dict[str, int]]:
        """Per operand, the formats its tiles are stored in: ``{spec: tiles}``."""
        return {op: dict(self.operand(op).chosen) for op in OPERANDS}

    @property
    def o_reads(self) -> np.ndarray:
        """Per step: it reads its O tile's partial sums from the O buffer (it accumulates and
        the accumulators do not hold them)."""
        assert self.held is not None
        return np.asarray(self.accumulates & ~self.held, dtype=bool)

    @property
    def o_writes(self) -> np.ndarray:
        """Per step: it writes its O tile to the O buffer (the next step does not keep it in
        the accumulators)."""
        assert self.held is not None
        return np.asarray(~np.r_[self.held[1:], False], dtype=bool)

    @property
    def accumulator_accesses(self) -> int:
        """Accumulator register accesses moving partial sums to and from the O buffer: one
        per element drained (written to SRAM) or filled (read back)."""
        assert self.o_elements is not None
        per_step = self.o_elements[self.o.tile_ids]
        return int(per_step[self.o_writes].sum() + per_step[self.o_reads].sum())


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
                     value_bits: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    data, meta, chosen = tile_bits_chosen(np.ones(small, dtype=bool), block[0], block[1], fmt,
                                          value_bits, name=name)
    ix = np.ix_(expand[0], expand[1])
    out = data[ix], meta[ix], chosen[ix]
    for a in out:
        a.flags.writeable = False
    return out


def stored_as(op: str, gemm: Gemm) -> str:
    """Whose format and width operand ``op`` of ``gemm`` is stored in: ``A`` for a W operand
    that holds an activation, else ``op`` itself."""
    return "A" if op == "W" and gemm.w_kind is OperandKind.ACTIVATION else op


def _format(op: str, plan: FoldPlan, memory: MemoryConfig) -> Any:
    """Operand ``op``'s storage format; a bad spec names the layer and the memory field."""
    fmt_op = stored_as(op, plan.gemm)
    try:
        return as_format(memory.format_spec(fmt_op))
    except SparsesimError as err:
        raise SparsesimError(err.message, layer=plan.gemm.layer,
                             field=f"memory.format_{fmt_op.lower()}") from None


def _tiles(op: str, ids: np.ndarray, data: np.ndarray, meta: np.ndarray, memory: MemoryConfig,
           value_bits: int, chosen: np.ndarray, fmt: Any = None) -> OperandTiles:
    """Per-tile data and metadata bits → bytes as encoded, as stored (burst-rounded), and the
    values a decoder expands (formats with metadata only); ``chosen``: each tile's format
    spec, counted (an empty spec: a tile that holds nothing)."""
    meta_bytes = (meta + 7) // 8
    encoded = (data + meta + 7) // 8
    burst = memory.burst_bytes
    stored = -(-encoded // burst) * burst
    decode = np.where(meta > 0, data // value_bits, 0)
    names, counts = np.unique(np.asarray(chosen, dtype=str).ravel(), return_counts=True)
    words = (-(-meta // POPCOUNT_WORD_BITS) if getattr(fmt, "popcount_gather", False)
             else np.zeros_like(meta))
    return OperandTiles(op, ids.astype(np.int64), encoded.astype(np.int64),
                        meta_bytes.astype(np.int64), stored.astype(np.int64),
                        decode.astype(np.int64),
                        chosen=tuple((str(n), int(c)) for n, c in zip(names, counts) if n),
                        popcount_words=np.asarray(words, dtype=np.int64))


def _operand_tiles(op: str, mask: np.ndarray | None, plan: FoldPlan, memory: MemoryConfig,
                   value_bits: int, i: np.ndarray, j: np.ndarray, s: np.ndarray,
                   chunk: int) -> OperandTiles:
    block, counts, ids = _tile_geometry(op, plan, i, j, s, chunk)
    g = plan.gemm
    shape = (g.dim(_FORMAT_AXES[op][0]), g.dim(_FORMAT_AXES[op][1]))
    name = f"{g.layer}.{g.name} {op}"
    fmt = _format(op, plan, memory)
    if mask is None and not (isinstance(fmt, Auto) and fmt.per == "tensor"):
        data, meta, chosen = _dense_tile_bits(shape, block, fmt, value_bits, name)
    else:
        m = np.ones(shape, dtype=bool) if mask is None else mask
        data, meta, chosen = tile_bits_chosen(m, block[0], block[1], fmt, value_bits, name=name)
    assert data.shape == counts
    return _tiles(op, ids, data.ravel(), meta.ravel(), memory, value_bits, chosen, fmt)


_MATRIX_AXES = {"A": ("m", "k"), "O": ("m", "n")}


def _footprint_bits(source: Im2col, m0: int, m1: int, k0: int, k1: int, fmt: Any,
                    value_bits: int, name: str, *, owned: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data bits, metadata bits, format spec) per conv group of the feature-map region that
    im2col rows ``m0:m1`` and columns ``k0:k1`` touch: one ``[channels, pixels]`` tile per
    group.

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
        return zero, zero, np.full(groups, "", dtype=object)  # no tile: no format
    if source.inputs is None:
        d, mt, ch = tile_bits_chosen(np.ones((rows.shape[1], pixels), dtype=bool),
                                     rows.shape[1], pixels, fmt, value_bits, name=name)
        return np.full(groups, d[0, 0]), np.full(groups, mt[0, 0]), np.full(groups, ch[0, 0])
    flat = np.concatenate([source.inputs[n][:, plane] for n, plane in planes], axis=1)
    d, mt, ch = tile_bits_chosen(flat[rows.ravel()], rows.shape[1], pixels, fmt, value_bits,
                                 name=name)
    return d[:, 0], mt[:, 0], ch[:, 0]


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
    chosen = np.full(n_tiles, "", dtype=object)
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
        d, mt, ch = view.memo[key]
        data[tile], meta[tile], chosen[tile] = d[group], mt[group], ch[group]
    return _tiles(op, ids, data, meta, memory, value_bits, chosen, fmt)


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
                  group: int = 0, chunk: int | None = None,
                  mapping: Mapping | None = None) -> FoldSchedule:
    """The schedule of one instance of ``plan.gemm`` on ``arch``'s memory formats and widths.

    Masks are the instance's ``A[m, k]``, ``W[k, n]`` and (optionally) ``O[m, n]`` non-zero
    patterns (2-D, ``None``: dense). ``compute_cycles`` gives each fold's cycles in execution
    order (default: the dense ``plan.fold_cycles`` for every fold). ``plan.gemm.count``
    instances are the caller's to run (one schedule each, or one result scaled when the
    instances share their masks). With ``view`` (a convolution's im2col operand), that
    operand's tiles are the feature-map regions they touch (of conv group ``group``), not
    im2col copies. ``chunk`` cuts the streamed axis into chunks of that length (a
    :func:`chunk_ladder` entry); by default the largest ladder chunk whose tiles fit (the
    engine picks among them: :mod:`sparsesim.memory.tiling`), or the mapping's
    ``stream_tile`` when it sets one. ``mapping`` orders the steps and sets the register
    level (default: the arch's, :func:`sparsesim.mapping.loops.mapping_of`).
    """
    g = plan.gemm
    n_folds = plan.row_folds * plan.col_folds
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
    mapping = mapping or mapping_of(arch)
    if chunk is None and mapping.stream_tile is not None:
        chunk = min(mapping.stream_tile, max(plan.extents[2], 1))
    if chunk is not None:
        return _schedule(plan, arch, a, w, o, cycles, chunk, view, group, mapping)
    for c in chunk_ladder(plan.extents[2]):
        schedule = _schedule(plan, arch, a, w, o, cycles, c, view, group, mapping)
        if arch.memory.ideal or c == 1 or _fits(schedule, arch.memory):
            return schedule
    raise AssertionError("the chunk ladder ends at 1")  # pragma: no cover


def chunk_ladder(stream: int) -> tuple[int, ...]:
    """The chunk lengths a stream of ``stream`` may be cut into, longest first: the whole
    stream, then halving (rounded up) down to 1. Fixed by the stream alone, so a bigger buffer
    has every chunk a smaller one has (what keeps it from being slower:
    :mod:`sparsesim.memory.tiling`)."""
    out = [max(stream, 1)]
    while out[-1] > 1:
        out.append(-(-out[-1] // 2))
    return tuple(out)


def _split_cycles(cycles: np.ndarray, stream: int, chunk: int) -> np.ndarray:
    """Each fold's cycles shared over its stream chunks in proportion to their length (the
    last chunk takes the rounding remainder, so the sum is exact)."""
    chunks = -(-stream // chunk)
    lengths = np.full(chunks, chunk, dtype=np.int64)
    lengths[-1] = stream - chunk * (chunks - 1)
    share = (cycles[:, None] * lengths[None, :]) // stream
    share[:, -1] += cycles - share.sum(axis=1)
    return share.ravel()


def _o_elements(plan: FoldPlan, chunk: int) -> np.ndarray:
    """Elements of every O tile (m × n block, the last blocks partial), in tile-id order."""
    lengths = []
    for axis in _FORMAT_AXES["O"]:
        size, _ = _block(axis, plan, chunk)
        extent = plan.gemm.dim(axis)
        n = -(-extent // size) if size else 0
        lengths.append(np.minimum(size, extent - size * np.arange(n, dtype=np.int64)))
    return np.outer(lengths[0], lengths[1]).ravel()


def _schedule(plan: FoldPlan, arch: Arch, a: np.ndarray | None, w: np.ndarray | None,
              o: np.ndarray | None, cycles: np.ndarray, chunk: int,
              view: ConvView | None = None, group: int = 0,
              mapping: Mapping | None = None) -> FoldSchedule:
    """The schedule with the streamed axis cut into chunks of ``chunk``, its steps in the
    mapping's loop order (:mod:`sparsesim.mapping.loops`): a fold whose whole stream would
    not fit its buffers runs as several steps, one chunk each (the PEs keep their
    accumulators and stationary operands across a fold's consecutive steps; a later visit
    of a fold pays its fill/drain again)."""
    g = plan.gemm
    mapping = mapping or mapping_of(arch)
    r, c = plan.row_folds, plan.col_folds
    chunks = -(-plan.extents[2] // chunk)
    steps = np.arange(r * c * chunks, dtype=np.int64)
    i, j, s = mapping.steps(r, c, chunks)
    fold = j * r + i  # the fold's index in SCALE-Sim's order, as ``cycles`` is given
    p, mem = arch.precision, arch.memory
    masks = {"A": None if a is None else a.T, "W": w, "O": o}
    bits = {"A": p.a_bits, "W": p.a_bits if stored_as("W", g) == "A" else p.w_bits,
            "O": p.o_bits}
    tiles = {op: (_footprint_tiles(view, group, plan, mem, bits[op], i, j, s, chunk)
                  if view is not None and view.operand == op else
                  _operand_tiles(op, masks[op], plan, mem, bits[op], i, j, s, chunk))
             for op in OPERANDS}
    o_ids = tiles["O"].tile_ids
    first = np.full(tiles["O"].tiles, steps.size, dtype=np.int64)
    np.minimum.at(first, o_ids, steps)
    share = cycles[:, None] if chunks == 1 else \
        _split_cycles(cycles, plan.extents[2], chunk).reshape(cycles.size, chunks)
    step_cycles = share[fold, s]
    again = revisits(fold)
    if again.any():
        step_cycles = step_cycles + again * plan.dataflow.overhead_cycles(plan.rows, plan.cols)
    o_elements = _o_elements(plan, chunk)
    capacity = plan.rows * plan.cols * mapping.acc_entries
    return FoldSchedule(g.layer, step_cycles, tiles["A"], tiles["W"], tiles["O"],
                        accumulates=first[o_ids] < steps,
                        held=held(o_ids, o_elements, capacity), o_elements=o_elements)


def _check_fits(schedule: FoldSchedule, memory: MemoryConfig) -> None:
    """Every tile must fit half its operand's buffer (the other half is filling)."""
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


def _fits(schedule: FoldSchedule, memory: MemoryConfig) -> bool:
    try:
        _check_fits(schedule, memory)
    except SparsesimError:
        return False
    return True
