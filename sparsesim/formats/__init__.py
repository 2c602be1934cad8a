"""Sparse storage formats: exact encoders and decoders, closed-form sizes, per-tile sizes.

Every format is one small frozen object behind one interface (:class:`Format`):

- ``encode(dense) -> Encoded`` builds the format's real arrays (values plus metadata fields,
  each with its bit width recorded), and ``decode(encoded)`` gives the dense tensor back
  exactly;
- ``bits(mask, value_bits) -> (data_bits, meta_bits)`` is the closed form from the mask alone,
  equal to the bit count of the encoded arrays;
- ``expected_bits(shape, density, value_bits)`` is the closed form in expectation for a
  uniform random mask (used by the format-crossover study);
- ``tile_bits_from_stats(stats, value_bits)`` gives the size of every tile of a tiled 2-D
  mask from counts made by the Numba kernels in :mod:`sparsesim.kernels.format_sizes`.

Formats live in the registry :data:`FORMATS`; :func:`make_format` and :func:`parse_format`
build them by name or from a spec string such as ``"nm:n=2,m=4"``. Code elsewhere never
branches on a format's name.

Conventions. An element is zero when ``x == 0`` (so ``-0.0`` is stored as a zero and decodes
to ``+0.0``). Values cost ``value_bits`` each (default: the dtype's width); the array's dtype is
only the carrier. The tensor's shape is a header known to the decoder and is not counted, so
run-length encoding leaves trailing zeros implicit. For 2-D masks axis 0 is the reduction
axis K (weights are K x N; the caller passes A transposed), N:M groups run along it, CSR
compresses rows and CSC columns. A tile is encoded as a tensor of its own: coordinates,
indices and N:M groups are local to the tile, and index widths follow the tile's own shape.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from numbers import Integral
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.kernels.format_sizes import _nm_first_violation, _tile_counts

Bits = tuple[int, int]
"""(data bits, metadata bits) of one tensor."""

TileBits = tuple[np.ndarray, np.ndarray]
"""(data bits, metadata bits) per tile: two int64 arrays of shape (tiles along K, tiles along N)."""

_MAX_VALUE_BITS = 64
_MAX_RUN_BITS = 62  # 2**r must stay an int64


# ---------------------------------------------------------------------------------------------
# small helpers


def index_width(count: int) -> int:
    """Bits needed to tell ``count`` positions apart: ceil(log2 count), 0 when count <= 1."""
    return max(int(count) - 1, 0).bit_length()


def _index_width_array(count: np.ndarray) -> np.ndarray:
    """:func:`index_width` element-wise on an integer array (exact below 2**53)."""
    c = np.maximum(np.asarray(count, dtype=np.int64) - 1, 0)
    return np.frexp(c.astype(np.float64))[1].astype(np.int64)


def bits_to_bytes(bits: np.ndarray | int) -> np.ndarray | int:
    """Whole bytes that hold ``bits`` bits (ceil(bits / 8)); arrays stay arrays."""
    if isinstance(bits, np.ndarray):
        return (bits + 7) // 8
    return (int(bits) + 7) // 8


def _check_int(value: object, field: str, owner: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, Integral) and not isinstance(value, bool):
        v = int(value)
        if v >= lo and (hi is None or v <= hi):
            return v
    bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
    raise SparsesimError(f"{owner}: {field} must be an integer {bound}, got {value!r}",
                         field=field)


def _check_optional_width(value: object, field: str, owner: str) -> int | None:
    return None if value is None else _check_int(value, field, owner, 0, 64)


def _as_dense(dense: object, name: str) -> np.ndarray:
    x = np.asarray(dense)
    if x.dtype.kind not in "biufc":
        raise SparsesimError(f"tensor {name!r}: cannot encode dtype {x.dtype}; "
                             "expected bool, integer, float or complex", field="dtype")
    if x.ndim == 0 or x.size == 0:
        raise SparsesimError(f"tensor {name!r}: cannot encode an empty or 0-d tensor "
                             f"(shape {x.shape})", field="shape")
    return x


def _as_mask(mask: object, name: str, ndim: int | None = None) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise SparsesimError(f"tensor {name!r}: a mask must be boolean, got dtype {m.dtype}",
                             field="mask")
    if m.ndim == 0 or m.size == 0 or (ndim is not None and m.ndim != ndim):
        want = f"{ndim}-D" if ndim is not None else "at least 1-D"
        raise SparsesimError(f"tensor {name!r}: a mask must be a non-empty {want} array, "
                             f"got shape {m.shape}", field="mask")
    return m


def _value_bits(value_bits: object, dtype: np.dtype, name: str) -> int:
    if value_bits is None:
        return int(dtype.itemsize) * 8
    return _check_int(value_bits, "value_bits", f"tensor {name!r}", 1, _MAX_VALUE_BITS)


def _need_2d(x: np.ndarray, fmt: str, name: str) -> None:
    if x.ndim != 2:
        raise SparsesimError(f"tensor {name!r}: format {fmt!r} needs a 2-D tensor, "
                             f"got shape {x.shape}", field="shape")


def _fixed_or_needed(given: int | None, needed: int, field: str, fmt: str, name: str) -> int:
    """The width to use: the given one (checked to be wide enough) or the needed one."""
    if given is None:
        return needed
    if given < needed:
        raise SparsesimError(f"tensor {name!r}: format {fmt!r}: {field}={given} is too narrow, "
                             f"this tensor needs {needed} bits", field=field)
    return given


# ---------------------------------------------------------------------------------------------
# encoded tensors and tile statistics


@dataclass(frozen=True, slots=True, eq=False)
class Encoded:
    """A tensor in a storage format: the real arrays and the bit width of every field.

    ``values`` holds the stored values (explicit zeros included, e.g. run-length padding or
    unused N:M slots), each ``value_bits`` wide; ``meta`` holds the metadata arrays, the
    element of ``meta[k]`` being ``meta_field_bits[k]`` bits wide. Sizes are counted from these
    arrays, never from a formula.
    """

    format: Format
    shape: tuple[int, ...]
    dtype: np.dtype
    value_bits: int
    values: np.ndarray
    meta: Mapping[str, np.ndarray]
    meta_field_bits: Mapping[str, int]
    name: str = "tensor"

    @property
    def data_bits(self) -> int:
        """Bits of stored values."""
        return int(self.values.size) * self.value_bits

    @property
    def meta_bits(self) -> int:
        """Bits of metadata (bitmaps, runs, coordinates, indices, pointers)."""
        return sum(int(a.size) * int(self.meta_field_bits[k]) for k, a in self.meta.items())

    @property
    def bits(self) -> Bits:
        """(data bits, metadata bits)."""
        return self.data_bits, self.meta_bits

    @property
    def total_bits(self) -> int:
        """Data plus metadata bits."""
        return self.data_bits + self.meta_bits

    @property
    def field_bits(self) -> dict[str, int]:
        """Width in bits of every field, values included."""
        return {"values": self.value_bits, **self.meta_field_bits}


def _encoded(fmt: Format, x: np.ndarray, value_bits: int, values: np.ndarray,
             meta: dict[str, np.ndarray], widths: dict[str, int], name: str) -> Encoded:
    return Encoded(format=fmt, shape=tuple(int(s) for s in x.shape), dtype=x.dtype,
                   value_bits=value_bits, values=values, meta=MappingProxyType(meta),
                   meta_field_bits=MappingProxyType(widths), name=name)


@dataclass(frozen=True, slots=True, eq=False)
class TileStats:
    """Counts of a tiled 2-D mask from one kernel pass, shared by every format's tile sizes.

    ``rows`` (TR, 1) and ``cols`` (1, TC) are the tiles' real heights and widths (edge tiles
    are smaller); ``nnz`` (TR, TC) the non-zeros per tile; ``rle_pad[r]`` (TR, TC) the
    run-length padding entries per tile for an r-bit run field.
    """

    mask: np.ndarray
    tile_rows: int
    tile_cols: int
    rows: np.ndarray
    cols: np.ndarray
    nnz: np.ndarray
    rle_pad: Mapping[int, np.ndarray]
    name: str = "tensor"

    @property
    def shape(self) -> tuple[int, int]:
        """(tiles along K, tiles along N)."""
        return int(self.nnz.shape[0]), int(self.nnz.shape[1])

    @property
    def area(self) -> np.ndarray:
        """Elements per tile, (TR, TC) int64."""
        return self.rows * self.cols


@dataclass(frozen=True, slots=True, eq=False)
class AutoTiles:
    """The smallest format of every tile: ``choice`` indexes ``names`` (format specs)."""

    names: tuple[str, ...]
    choice: np.ndarray
    data_bits: np.ndarray
    meta_bits: np.ndarray
    per: str

    @property
    def total_bits(self) -> np.ndarray:
        """Data plus metadata bits per tile."""
        return self.data_bits + self.meta_bits

    def chosen(self) -> np.ndarray:
        """The winning format's spec per tile, as an object array shaped like the tiles."""
        return np.asarray(self.names, dtype=object)[self.choice]

    def wins(self) -> dict[str, int]:
        """How many tiles each candidate won."""
        counts = np.bincount(self.choice.ravel(), minlength=len(self.names))
        return {n: int(c) for n, c in zip(self.names, counts, strict=True)}


# ---------------------------------------------------------------------------------------------
# the interface


class Format(ABC):
    """One storage format: encoder, decoder, closed-form sizes and per-tile sizes."""

    __slots__ = ()
    name: ClassVar[str]
    formula: ClassVar[str]
    """Closed form in bits per element for a uniform random mask (n value bits, density d)."""

    # -- public, validating -------------------------------------------------------------------
    def encode(self, dense: object, *, value_bits: int | None = None,
               name: str = "tensor") -> Encoded:
        """Encode a dense array (zeros are ``x == 0``); ``value_bits`` defaults to the dtype's."""
        x = _as_dense(dense, name)
        return self._encode(x, _value_bits(value_bits, x.dtype, name), name)

    def decode(self, enc: Encoded) -> np.ndarray:
        """The dense array back, same shape, dtype and values."""
        if enc.format != self:
            raise SparsesimError(f"tensor {enc.name!r}: encoded as {enc.format.spec!r}, "
                                 f"cannot decode as {self.spec!r}", field="format")
        return self._decode(enc)

    def bits(self, mask: object, *, value_bits: int, name: str = "tensor") -> Bits:
        """(data bits, metadata bits) of the encoding, from the boolean mask alone."""
        m = _as_mask(mask, name)
        vb = _check_int(value_bits, "value_bits", f"tensor {name!r}", 1, _MAX_VALUE_BITS)
        data, meta = self._bits(m, vb, name)
        return int(data), int(meta)

    def run_bits_needed(self) -> tuple[int, ...]:
        """Run-field widths whose padding counts :func:`tile_stats` must gather."""
        return ()

    @property
    def spec(self) -> str:
        """Spec string that :func:`parse_format` turns back into this format."""
        parts = []
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, tuple):
                text = "|".join(c.spec for c in v) if f.name == "candidates" else \
                    "+".join(str(i) for i in v)
            else:
                text = str(v)
            parts.append((f.name, text))
        # candidates may hold commas, so they go last (parse_format takes the rest of the line)
        parts.sort(key=lambda kv: kv[0] == "candidates")
        return self.name + (":" + ",".join(f"{k}={t}" for k, t in parts) if parts else "")

    # -- per format ----------------------------------------------------------------------------
    @abstractmethod
    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded: ...

    @abstractmethod
    def _decode(self, enc: Encoded) -> np.ndarray: ...

    @abstractmethod
    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]: ...

    @abstractmethod
    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected (data, metadata) bits of a tensor of ``shape`` with a uniform random mask
        of the given density (float64, broadcast over ``density``)."""

    @abstractmethod
    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        """(data bits, metadata bits) per tile, int64 arrays shaped like ``stats.nnz``."""


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1)


# ---------------------------------------------------------------------------------------------
# the formats


@dataclass(frozen=True, slots=True)
class Dense(Format):
    """Every value stored: L*n bits, no metadata."""

    name: ClassVar[str] = "dense"
    formula: ClassVar[str] = "n"

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        return _encoded(self, x, value_bits, _flat(x).copy(), {}, {}, name)

    def _decode(self, enc: Encoded) -> np.ndarray:
        return enc.values.reshape(enc.shape).copy()

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        return mask.size * value_bits, 0

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(density, dtype=np.float64)
        return np.full_like(d, float(np.prod(shape)) * value_bits), np.zeros_like(d)

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        return stats.area * value_bits, np.zeros(stats.shape, np.int64)


@dataclass(frozen=True, slots=True)
class Bitmap(Format):
    """One presence bit per element plus the non-zero values: nnz*n + L bits."""

    name: ClassVar[str] = "bitmap"
    formula: ClassVar[str] = "n*d + 1"

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        flat = _flat(x)
        present = flat != 0
        return _encoded(self, x, value_bits, flat[present], {"bitmap": present},
                        {"bitmap": 1}, name)

    def _decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros(enc.meta["bitmap"].size, dtype=enc.dtype)
        out[enc.meta["bitmap"]] = enc.values
        return out.reshape(enc.shape)

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        return int(np.count_nonzero(mask)) * value_bits, mask.size

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(density, dtype=np.float64)
        n_el = float(np.prod(shape))
        return d * n_el * value_bits, np.full_like(d, n_el)

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        return stats.nnz * value_bits, stats.area.copy()


@dataclass(frozen=True, slots=True)
class RunLength(Format):
    """Entries of (zero run before the value, value) in row-major order, r-bit run fields.

    A zero run longer than 2**r - 1 emits explicit padding entries (run 2**r - 1, value 0),
    each covering 2**r positions, so a run z before a non-zero costs floor(z / 2**r) extra
    entries. Trailing zeros are implied by the shape. The default r = 4 is a choice of this
    project (Eyeriss uses 5-bit runs with 16-bit values).
    """

    run_bits: int = 4
    name: ClassVar[str] = "rle"
    formula: ClassVar[str] = "(n + r)*d / (1 - (1 - d)^(2^r))"

    def __post_init__(self) -> None:
        _check_int(self.run_bits, "run_bits", "format 'rle'", 1, _MAX_RUN_BITS)

    def run_bits_needed(self) -> tuple[int, ...]:
        return (self.run_bits,)

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        flat = _flat(x)
        pos = np.flatnonzero(flat)
        zeros_before = np.diff(pos, prepend=-1) - 1
        span = np.int64(1) << self.run_bits
        padding = zeros_before >> self.run_bits
        per_value = padding + 1
        n_entries = int(per_value.sum())
        real = np.cumsum(per_value) - 1  # entry index of each non-zero, after its paddings
        runs = np.full(n_entries, span - 1, dtype=np.int64)
        runs[real] = zeros_before - padding * span
        values = np.zeros(n_entries, dtype=x.dtype)
        values[real] = flat[pos]
        return _encoded(self, x, value_bits, values, {"runs": runs},
                        {"runs": self.run_bits}, name)

    def _decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros(int(np.prod(enc.shape)), dtype=enc.dtype)
        positions = np.cumsum(enc.meta["runs"] + 1) - 1
        out[positions] = enc.values
        return out.reshape(enc.shape)

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        pos = np.flatnonzero(mask)
        entries = pos.size + int(((np.diff(pos, prepend=-1) - 1) >> self.run_bits).sum())
        return entries * value_bits, entries * self.run_bits

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        # A non-zero's run Z is geometric: P(Z >= z) = (1-d)^z, so E[floor(Z / R)] =
        # sum_j (1-d)^(jR) = q / (1 - q) with q = (1-d)^R; entries per non-zero = 1 / (1 - q).
        # Ignores the end of the tensor (trailing zeros are free), exact as L grows.
        d = np.asarray(density, dtype=np.float64)
        q = (1.0 - d) ** float(2 ** self.run_bits)
        with np.errstate(divide="ignore", invalid="ignore"):
            entries = np.where(d > 0, d * float(np.prod(shape)) / (1.0 - q), 0.0)
        return entries * value_bits, entries * self.run_bits

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        if self.run_bits not in stats.rle_pad:
            raise SparsesimError(f"tensor {stats.name!r}: tile stats hold no run-length counts "
                                 f"for run_bits={self.run_bits}; pass run_bits="
                                 "fmt.run_bits_needed() to tile_stats", field="run_bits")
        entries = stats.nnz + stats.rle_pad[self.run_bits]
        return entries * value_bits, entries * self.run_bits


@dataclass(frozen=True, slots=True)
class Coo(Format):
    """Coordinate list: each non-zero stores its value and one coordinate per dimension.

    Coordinate d is ``coord_bits[d]`` bits wide, by default ceil(log2 shape[d]).
    """

    coord_bits: tuple[int, ...] | None = None
    name: ClassVar[str] = "coo"
    formula: ClassVar[str] = "(n + sum_dims ceil(log2 dim))*d"

    def __post_init__(self) -> None:
        if isinstance(self.coord_bits, Integral) and not isinstance(self.coord_bits, bool):
            object.__setattr__(self, "coord_bits", (int(self.coord_bits),))
        elif isinstance(self.coord_bits, list):
            object.__setattr__(self, "coord_bits", tuple(self.coord_bits))
        if self.coord_bits is not None:
            if not isinstance(self.coord_bits, tuple) or not self.coord_bits:
                raise SparsesimError("format 'coo': coord_bits must be a non-empty tuple of "
                                     f"integers, got {self.coord_bits!r}", field="coord_bits")
            for b in self.coord_bits:
                _check_int(b, "coord_bits", "format 'coo'", 0, 64)

    def _widths(self, shape: Sequence[int], name: str) -> list[int]:
        needed = [index_width(s) for s in shape]
        if self.coord_bits is None:
            return needed
        if len(self.coord_bits) != len(shape):
            raise SparsesimError(f"tensor {name!r}: format 'coo': coord_bits has "
                                 f"{len(self.coord_bits)} widths for a {len(shape)}-D tensor",
                                 field="coord_bits")
        return [_fixed_or_needed(g, w, "coord_bits", "coo", name)
                for g, w in zip(self.coord_bits, needed, strict=True)]

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        widths = self._widths(x.shape, name)
        coords = np.nonzero(x)
        meta = {f"coord{d}": c.astype(np.int64) for d, c in enumerate(coords)}
        return _encoded(self, x, value_bits, x[coords],
                        meta, {f"coord{d}": w for d, w in enumerate(widths)}, name)

    def _decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros(enc.shape, dtype=enc.dtype)
        out[tuple(enc.meta[f"coord{d}"] for d in range(len(enc.shape)))] = enc.values
        return out

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        nnz = int(np.count_nonzero(mask))
        return nnz * value_bits, nnz * sum(self._widths(mask.shape, name))

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        nnz = np.asarray(density, dtype=np.float64) * float(np.prod(shape))
        return nnz * value_bits, nnz * sum(self._widths(shape, "tensor"))

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        if self.coord_bits is None:
            coord = _index_width_array(stats.rows) + _index_width_array(stats.cols)
        else:
            coord = np.full(stats.shape, sum(self._widths(
                (int(stats.rows.max()), int(stats.cols.max())), stats.name)), np.int64)
        return stats.nnz * value_bits, stats.nnz * coord


@dataclass(frozen=True, slots=True)
class CooOffset(Format):
    """Coordinate offset: each non-zero stores its value and its flat row-major offset.

    The offset is ``offset_bits`` wide, by default ceil(log2 L).
    """

    offset_bits: int | None = None
    name: ClassVar[str] = "coo_offset"
    formula: ClassVar[str] = "(n + ceil(log2 L))*d"

    def __post_init__(self) -> None:
        _check_optional_width(self.offset_bits, "offset_bits", "format 'coo_offset'")

    def _width(self, n_elements: int, name: str) -> int:
        return _fixed_or_needed(self.offset_bits, index_width(n_elements), "offset_bits",
                                self.name, name)

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        flat = _flat(x)
        offsets = np.flatnonzero(flat)
        return _encoded(self, x, value_bits, flat[offsets], {"offsets": offsets},
                        {"offsets": self._width(x.size, name)}, name)

    def _decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros(int(np.prod(enc.shape)), dtype=enc.dtype)
        out[enc.meta["offsets"]] = enc.values
        return out.reshape(enc.shape)

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        nnz = int(np.count_nonzero(mask))
        return nnz * value_bits, nnz * self._width(mask.size, name)

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        n_el = int(np.prod(shape))
        nnz = np.asarray(density, dtype=np.float64) * n_el
        return nnz * value_bits, nnz * self._width(n_el, "tensor")

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        if self.offset_bits is None:
            width = _index_width_array(stats.area)
        else:
            width = np.full(stats.shape, self._width(int(stats.area.max()), stats.name),
                            np.int64)
        return stats.nnz * value_bits, stats.nnz * width


@dataclass(frozen=True, slots=True)
class _Compressed(Format):
    """Compressed rows (CSR) or columns (CSC) of a 2-D tensor.

    Stores the values, one index along the other axis per value (``index_bits``, by default
    ceil(log2 of that axis' length)) and outer+1 pointers (``pointer_bits``, by default
    ceil(log2(nnz + 1)), enough to hold nnz).
    """

    index_bits: int | None = None
    pointer_bits: int | None = None
    by_columns: ClassVar[bool]

    def __post_init__(self) -> None:
        _check_optional_width(self.index_bits, "index_bits", f"format {self.name!r}")
        _check_optional_width(self.pointer_bits, "pointer_bits", f"format {self.name!r}")

    def _outer_inner(self, rows: Any, cols: Any) -> tuple[Any, Any]:
        return (cols, rows) if self.by_columns else (rows, cols)

    def _widths(self, inner: int, nnz: int, name: str) -> tuple[int, int]:
        return (_fixed_or_needed(self.index_bits, index_width(inner), "index_bits",
                                 self.name, name),
                _fixed_or_needed(self.pointer_bits, int(nnz).bit_length(), "pointer_bits",
                                 self.name, name))

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        _need_2d(x, self.name, name)
        y = x.T if self.by_columns else x
        outer, inner = y.shape
        o_idx, i_idx = np.nonzero(y)
        pointers = np.zeros(outer + 1, dtype=np.int64)
        np.cumsum(np.bincount(o_idx, minlength=outer), out=pointers[1:])
        idx_w, ptr_w = self._widths(inner, o_idx.size, name)
        return _encoded(self, x, value_bits, y[o_idx, i_idx],
                        {"indices": i_idx.astype(np.int64), "pointers": pointers},
                        {"indices": idx_w, "pointers": ptr_w}, name)

    def _decode(self, enc: Encoded) -> np.ndarray:
        outer, inner = self._outer_inner(*enc.shape)
        pointers = enc.meta["pointers"]
        y = np.zeros((outer, inner), dtype=enc.dtype)
        y[np.repeat(np.arange(outer), np.diff(pointers)), enc.meta["indices"]] = enc.values
        return np.ascontiguousarray(y.T) if self.by_columns else y

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        _need_2d(mask, self.name, name)
        outer, inner = self._outer_inner(*mask.shape)
        nnz = int(np.count_nonzero(mask))
        idx_w, ptr_w = self._widths(inner, nnz, name)
        return nnz * value_bits, nnz * idx_w + (outer + 1) * ptr_w

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        if len(shape) != 2:
            raise SparsesimError(f"format {self.name!r} needs a 2-D shape, got {tuple(shape)}",
                                 field="shape")
        outer, inner = self._outer_inner(*shape)
        nnz = np.asarray(density, dtype=np.float64) * float(outer * inner)
        idx_w = index_width(inner) if self.index_bits is None else self.index_bits
        ptr_w = (np.ceil(np.log2(nnz + 1.0)) if self.pointer_bits is None
                 else np.full_like(nnz, self.pointer_bits))
        return nnz * value_bits, nnz * idx_w + (outer + 1) * ptr_w

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        outer, inner = self._outer_inner(stats.rows, stats.cols)
        if self.index_bits is None:
            idx_w = _index_width_array(inner)
        else:
            idx_w = np.full(stats.shape, self._widths(int(inner.max()), 0, stats.name)[0])
        if self.pointer_bits is None:
            ptr_w = _index_width_array(stats.nnz + 1)
        else:
            ptr_w = np.full(stats.shape, self._widths(1, int(stats.nnz.max()), stats.name)[1])
        meta = stats.nnz * idx_w + (outer + 1) * ptr_w
        return stats.nnz * value_bits, meta.astype(np.int64)


@dataclass(frozen=True, slots=True)
class Csr(_Compressed):
    """Compressed sparse rows: values, column indices, row pointers."""

    name: ClassVar[str] = "csr"
    formula: ClassVar[str] = "(n + ceil(log2 cols))*d + (rows + 1)*ceil(log2(d*L + 1))/L"
    by_columns: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Csc(_Compressed):
    """Compressed sparse columns: values, row indices, column pointers."""

    name: ClassVar[str] = "csc"
    formula: ClassVar[str] = "(n + ceil(log2 rows))*d + (cols + 1)*ceil(log2(d*L + 1))/L"
    by_columns: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class NM(Format):
    """N of every M consecutive elements along axis 0 (the reduction axis K).

    Per column, each group of M rows stores exactly N slots (value + an index of
    ``index_bits``, by default ceil(log2 M), in the group); a last group of g < M rows stores
    min(N, g) slots, so a column costs floor(K/M)*N + min(N, K mod M) slots (SCALE-Sim's K').
    Unused slots hold explicit zeros. A group with more than N non-zeros is an error naming
    the tensor and the group, never a silent fallback. An N-D tensor is read as
    (shape[0], prod(shape[1:])).
    """

    n: int = 2
    m: int = 4
    index_bits: int | None = None
    name: ClassVar[str] = "nm"
    formula: ClassVar[str] = "(n + ceil(log2 M))*N/M"

    def __post_init__(self) -> None:
        _check_int(self.m, "m", "format 'nm'", 1)
        _check_int(self.n, "n", "format 'nm'", 1, self.m)
        _check_optional_width(self.index_bits, "index_bits", "format 'nm'")

    def _index_width(self, name: str) -> int:
        return _fixed_or_needed(self.index_bits, index_width(self.m), "index_bits",
                                self.name, name)

    def _slots(self, k: Any) -> Any:
        """Slots per column for k rows (int or int64 array)."""
        return (k // self.m) * self.n + np.minimum(self.n, k % self.m)

    def _violation(self, name: str, group_row: int, n_rows: int, column: str,
                   count: int, where: str = "") -> SparsesimError:
        last = min(group_row + self.m, n_rows) - 1
        return SparsesimError(
            f"tensor {name!r} is not {self.n}:{self.m}-conformant along axis 0 (K): "
            f"group rows {group_row}..{last}{column} holds {count} non-zeros, at most "
            f"{self.n} allowed{where}", field="mask")

    def _check(self, mask2: np.ndarray, shape: tuple[int, ...], name: str) -> None:
        k, c = mask2.shape
        groups = -(-k // self.m)
        padded = np.zeros((groups * self.m, c), dtype=np.int64)
        padded[:k] = mask2
        counts = padded.reshape(groups, self.m, c).sum(axis=1)
        bad = counts > self.n
        if bad.any():
            g, col = divmod(int(np.argmax(bad.ravel())), c)
            raise self._violation(name, g * self.m, k, _column_text(col, shape),
                                  int(counts[g, col]))

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        x2 = x.reshape(x.shape[0], -1)
        k, c = x2.shape
        present = x2 != 0
        self._check(present, x.shape, name)
        groups = -(-k // self.m)
        # rank positions in each group: non-zeros first, then real zeros, then padding rows
        key = np.full((groups * self.m, c), 2, dtype=np.int8)
        key[:k] = np.where(present, 0, 1)
        order = np.argsort(key.reshape(groups, self.m, c), axis=1, kind="stable")
        chosen = np.sort(order[:, : self.n, :], axis=1)  # (groups, n, c), position in group
        last_slots = int(self._slots(k - (groups - 1) * self.m))
        slot_pos = np.concatenate([chosen[:-1].reshape(-1, c), chosen[-1, :last_slots]])
        slot_group = self._slot_groups(groups, last_slots)
        rows = slot_group[:, None] * self.m + slot_pos
        values = x2[rows, np.arange(c)[None, :]]
        return _encoded(self, x, value_bits, values, {"indices": slot_pos.astype(np.int64)},
                        {"indices": self._index_width(name)}, name)

    def _slot_groups(self, groups: int, last_slots: int) -> np.ndarray:
        return np.concatenate([np.repeat(np.arange(groups - 1), self.n),
                               np.full(last_slots, groups - 1)]).astype(np.int64)

    def _decode(self, enc: Encoded) -> np.ndarray:
        k = enc.shape[0]
        c = int(np.prod(enc.shape[1:])) if len(enc.shape) > 1 else 1
        groups = -(-k // self.m)
        slot_group = self._slot_groups(groups, int(self._slots(k - (groups - 1) * self.m)))
        rows = slot_group[:, None] * self.m + enc.meta["indices"]
        out = np.zeros((k, c), dtype=enc.dtype)
        out[rows, np.arange(c)[None, :]] = enc.values
        return out.reshape(enc.shape)

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        mask2 = mask.reshape(mask.shape[0], -1)
        self._check(mask2, mask.shape, name)
        slots = int(self._slots(mask2.shape[0])) * mask2.shape[1]
        return slots * value_bits, slots * self._index_width(name)

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(density, dtype=np.float64)
        slots = float(self._slots(int(shape[0])) * int(np.prod(shape[1:])))
        return (np.full_like(d, slots * value_bits),
                np.full_like(d, slots * self._index_width("tensor")))

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        out = np.empty(3, dtype=np.int64)
        _nm_first_violation(stats.mask, stats.tile_rows, self.n, self.m, out)
        if out[0] >= 0:
            row, col, count = (int(v) for v in out)
            tile = (row // stats.tile_rows, col // stats.tile_cols)
            raise self._violation(stats.name, row, min(stats.mask.shape[0],
                                  (row // stats.tile_rows + 1) * stats.tile_rows),
                                  f" of column {col}", count, f" (tile {tile})")
        slots = self._slots(stats.rows) * stats.cols
        return slots * value_bits, slots * self._index_width(stats.name)


def _column_text(col: int, shape: tuple[int, ...]) -> str:
    """How an N:M error names a column of an N-D tensor read as (shape[0], rest)."""
    if len(shape) == 1:
        return ""
    if len(shape) == 2:
        return f" of column {col}"
    return f" of column {tuple(int(i) for i in np.unravel_index(col, shape[1:]))}"


def _default_candidates() -> tuple[Format, ...]:
    return (Dense(), Bitmap(), RunLength(), Coo(), CooOffset(), Csr(), Csc())


@dataclass(frozen=True, slots=True)
class Auto(Format):
    """The smallest of ``candidates`` (by total bits; ties go to the earlier candidate).

    ``per="tile"`` picks per tile, ``per="tensor"`` one format for all tiles of a tensor.
    N:M is not a default candidate: it constrains the tensor, so ask for it explicitly (a
    non-conformant tensor is then an error, as everywhere).
    """

    candidates: tuple[Format, ...] = ()
    per: str = "tile"
    name: ClassVar[str] = "auto"
    formula: ClassVar[str] = "min over candidates"

    def __post_init__(self) -> None:
        given = self.candidates or _default_candidates()
        if isinstance(given, (str, Format)):
            given = (given,)
        cands = tuple(as_format(c) for c in given)
        if any(isinstance(c, Auto) for c in cands):
            raise SparsesimError("format 'auto': candidates cannot include 'auto'",
                                 field="candidates")
        object.__setattr__(self, "candidates", cands)
        if self.per not in ("tile", "tensor"):
            raise SparsesimError(f"format 'auto': per must be 'tile' or 'tensor', got "
                                 f"{self.per!r}", field="per")

    @property
    def names(self) -> tuple[str, ...]:
        """Spec of every candidate, in order."""
        return tuple(c.spec for c in self.candidates)

    def run_bits_needed(self) -> tuple[int, ...]:
        return tuple(sorted({r for c in self.candidates for r in c.run_bits_needed()}))

    def _winner(self, mask: np.ndarray, value_bits: int, name: str) -> Format:
        totals = [sum(c._bits(mask, value_bits, name)) for c in self.candidates]
        return self.candidates[int(np.argmin(totals))]

    def _encode(self, x: np.ndarray, value_bits: int, name: str) -> Encoded:
        """Encoded in the winning candidate, whose object is recorded as ``format``."""
        return self._winner(x != 0, value_bits, name)._encode(x, value_bits, name)

    def decode(self, enc: Encoded) -> np.ndarray:
        return enc.format.decode(enc)

    def _decode(self, enc: Encoded) -> np.ndarray:
        return enc.format.decode(enc)

    def _bits(self, mask: np.ndarray, value_bits: int, name: str) -> tuple[int, int]:
        return self._winner(mask, value_bits, name)._bits(mask, value_bits, name)

    def expected_bits(self, shape: Sequence[int], density: float | np.ndarray,
                      value_bits: int) -> tuple[np.ndarray, np.ndarray]:
        each = [c.expected_bits(shape, density, value_bits) for c in self.candidates]
        data = np.stack([np.broadcast_to(d, np.shape(density)) for d, _ in each])
        meta = np.stack([np.broadcast_to(m, np.shape(density)) for _, m in each])
        win = np.argmin(data + meta, axis=0)
        return (np.take_along_axis(data, win[None], 0)[0],
                np.take_along_axis(meta, win[None], 0)[0])

    def choose(self, stats: TileStats, value_bits: int) -> AutoTiles:
        """The winning candidate of every tile (or of the whole tensor) and its bits."""
        each = [c.tile_bits_from_stats(stats, value_bits) for c in self.candidates]
        data = np.stack([d for d, _ in each])
        meta = np.stack([m for _, m in each])
        total = data + meta
        if self.per == "tile":
            choice = np.argmin(total, axis=0)
        else:
            choice = np.full(stats.shape, int(np.argmin(total.sum(axis=(1, 2)))))
        pick = choice[None].astype(np.intp)
        return AutoTiles(names=self.names, choice=choice.astype(np.int8),
                         data_bits=np.take_along_axis(data, pick, 0)[0],
                         meta_bits=np.take_along_axis(meta, pick, 0)[0], per=self.per)

    def tile_bits_from_stats(self, stats: TileStats, value_bits: int) -> TileBits:
        chosen = self.choose(stats, value_bits)
        return chosen.data_bits, chosen.meta_bits


# ---------------------------------------------------------------------------------------------
# registry and construction

FORMATS: Mapping[str, type[Format]] = MappingProxyType({
    cls.name: cls for cls in (Dense, Bitmap, RunLength, Coo, CooOffset, Csr, Csc, NM, Auto)
})
"""Every format by name."""


def make_format(name: str, **params: Any) -> Format:
    """The format registered under ``name``, built with ``params`` (e.g. ``nm``, n=2, m=4)."""
    cls = FORMATS.get(name)
    if cls is None:
        raise SparsesimError(f"unknown format {name!r}; known: {', '.join(FORMATS)}",
                             field="format")
    try:
        return cls(**params)
    except TypeError as exc:  # unknown or misspelt parameter
        raise SparsesimError(f"format {name!r}: {exc}", field="format") from None


def _parse_value(text: str) -> Any:
    if text.lower() == "none":
        return None
    if "+" in text:
        return tuple(_parse_value(t) for t in text.split("+"))
    try:
        return int(text)
    except ValueError:
        return text


def parse_format(spec: str) -> Format:
    """A format from ``"name"`` or ``"name:key=value,..."`` (the inverse of ``Format.spec``).

    Values are integers, ``none``, ``a+b`` tuples or words; ``auto`` takes
    ``candidates=spec|spec|...`` as its last parameter.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SparsesimError(f"a format spec must be a non-empty string, got {spec!r}",
                             field="format")
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    if "candidates=" in rest:
        rest, _, cands = rest.partition("candidates=")
        params["candidates"] = tuple(parse_format(c) for c in cands.split("|"))
        rest = rest.rstrip(",")
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SparsesimError(f"format spec {spec!r}: expected key=value, got {item!r}",
                                 field="format")
        params[key.strip()] = _parse_value(value.strip())
    return make_format(name.strip(), **params)


def as_format(fmt: str | Format) -> Format:
    """``fmt`` itself if it is a :class:`Format`, else the format its spec string names."""
    if isinstance(fmt, Format):
        return fmt
    return parse_format(fmt)


# ---------------------------------------------------------------------------------------------
# whole tensors


def encode(dense: object, fmt: str | Format, *, value_bits: int | None = None,
           name: str = "tensor") -> Encoded:
    """Encode ``dense`` in ``fmt`` (a name, spec or :class:`Format`)."""
    return as_format(fmt).encode(dense, value_bits=value_bits, name=name)


def decode(enc: Encoded) -> np.ndarray:
    """The dense tensor back from any :class:`Encoded`."""
    return enc.format.decode(enc)


# ---------------------------------------------------------------------------------------------
# per tile, at Numba speed


def tile_stats(mask: object, tile_rows: int, tile_cols: int, *,
               run_bits: Sequence[int] = (), name: str = "tensor") -> TileStats:
    """One kernel pass over a (K, N) boolean mask tiled tile_rows x tile_cols.

    ``run_bits`` lists the run-field widths whose run-length padding to count. A tile size
    larger than the mask means one tile along that axis.
    """
    m = np.ascontiguousarray(_as_mask(mask, name, ndim=2))
    owner = f"tensor {name!r}"
    tr = _check_int(tile_rows, "tile_rows", owner, 1)
    tc = _check_int(tile_cols, "tile_cols", owner, 1)
    shifts = np.array(sorted({_check_int(r, "run_bits", owner, 1, _MAX_RUN_BITS)
                              for r in run_bits}), dtype=np.int64)
    k, n = m.shape
    n_tr, n_tc = -(-k // tr), -(-n // tc)
    nnz = np.zeros((n_tr, n_tc), dtype=np.int64)
    pad = np.zeros((shifts.size, n_tr, n_tc), dtype=np.int64)
    _tile_counts(m, tr, tc, shifts, nnz, pad)
    rows = np.minimum(tr, k - np.arange(n_tr, dtype=np.int64) * tr)[:, None]
    cols = np.minimum(tc, n - np.arange(n_tc, dtype=np.int64) * tc)[None, :]
    return TileStats(mask=m, tile_rows=tr, tile_cols=tc, rows=rows, cols=cols, nnz=nnz,
                     rle_pad=MappingProxyType({int(r): pad[i] for i, r in enumerate(shifts)}),
                     name=name)


def _tile_value_bits(value_bits: object, name: str) -> int:
    return _check_int(value_bits, "value_bits", f"tensor {name!r}", 1, _MAX_VALUE_BITS)


def with_widths(fmt: str | Format, widths: Mapping[str, Any] | None) -> Format:
    """``fmt`` with some parameters replaced, e.g. ``{"index_bits": 8}`` (None: unchanged)."""
    f = as_format(fmt)
    if not widths:
        return f
    params = {fl.name: getattr(f, fl.name) for fl in fields(f)}  # type: ignore[arg-type]
    unknown = set(widths) - set(params)
    if unknown:
        raise SparsesimError(f"format {f.name!r} has no parameter {sorted(unknown)[0]!r}; it "
                             f"has {', '.join(params) or 'none'}", field="format")
    return make_format(f.name, **{**params, **widths})


def tile_bits(mask: object, tile_rows: int, tile_cols: int, fmt: str | Format,
              value_bits: int, *, widths: Mapping[str, Any] | None = None,
              name: str = "tensor") -> TileBits:
    """(data bits, metadata bits) of every tile of a (K, N) boolean mask in one format.

    Both are int64 arrays of shape (ceil(K / tile_rows), ceil(N / tile_cols)); each tile is
    sized as if encoded on its own (see the module notes). Metadata widths other than the
    defaults come with ``fmt`` (``Csr(index_bits=8)``, ``"csr:index_bits=8"``) or ``widths``.
    """
    f = with_widths(fmt, widths)
    vb = _tile_value_bits(value_bits, name)
    stats = tile_stats(mask, tile_rows, tile_cols, run_bits=f.run_bits_needed(), name=name)
    return f.tile_bits_from_stats(stats, vb)


def tile_bits_all(mask: object, tile_rows: int, tile_cols: int,
                  formats: Sequence[str | Format], value_bits: int, *,
                  name: str = "tensor") -> dict[str, TileBits]:
    """:func:`tile_bits` for several formats from one kernel pass, keyed by format spec."""
    fmts = [as_format(f) for f in formats]
    vb = _tile_value_bits(value_bits, name)
    needed = sorted({r for f in fmts for r in f.run_bits_needed()})
    stats = tile_stats(mask, tile_rows, tile_cols, run_bits=needed, name=name)
    return {f.spec: f.tile_bits_from_stats(stats, vb) for f in fmts}


def auto_tile_bits(mask: object, tile_rows: int, tile_cols: int, value_bits: int, *,
                   candidates: Sequence[str | Format] | None = None, per: str = "tile",
                   name: str = "tensor") -> AutoTiles:
    """The smallest candidate format per tile (``per="tile"``) or per tensor, and its bits.

    ``candidates`` defaults to every format but N:M (see :class:`Auto`).
    """
    auto = Auto(candidates=tuple(as_format(c) for c in candidates) if candidates else (),
                per=per)
    vb = _tile_value_bits(value_bits, name)
    stats = tile_stats(mask, tile_rows, tile_cols, run_bits=auto.run_bits_needed(), name=name)
    return auto.choose(stats, vb)
