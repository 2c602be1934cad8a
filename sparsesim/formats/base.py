"""The interface every storage format implements, the encoded tensor, and shared checks.

Every format is one small frozen object behind one interface (:class:`Format`):

- ``encode(dense) -> Encoded`` builds the format's real arrays (values plus metadata fields,
  each with its bit width recorded), and ``decode(encoded)`` gives the dense tensor back
  exactly;
- ``bits(mask, value_bits) -> (data_bits, meta_bits)`` is the closed form from the mask alone,
  equal to the bit count of the encoded arrays;
- ``expected_bits(shape, density, value_bits)`` is the closed form in expectation for a
  uniform random mask (used by the format-crossover study);
- ``tile_bits_from_stats(stats, value_bits)`` gives the size of every tile of a tiled 2-D
  mask from counts made by the Numba kernels (:mod:`sparsesim.formats.tiles`).

Conventions. An element is zero when ``x == 0`` (so ``-0.0`` is stored as a zero and decodes
to ``+0.0``). Values cost ``value_bits`` each (default: the dtype's width); the array's dtype is
only the carrier. The tensor's shape is a header known to the decoder and is not counted, so
run-length encoding leaves trailing zeros implicit. For 2-D masks axis 0 is the reduction
axis K (weights are K x N; the caller passes A transposed), N:M groups run along it, CSR
compresses rows and CSC columns. Sizes are in bits; :func:`bits_to_bytes` rounds to bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from numbers import Integral
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sparsesim.errors import SparsesimError

if TYPE_CHECKING:  # tiles imports this module; formats only read the stats they are given
    from sparsesim.formats.tiles import TileStats

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
# encoded tensors


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


# ---------------------------------------------------------------------------------------------
# the interface


class Format(ABC):
    """One storage format: encoder, decoder, closed-form sizes and per-tile sizes."""

    __slots__ = ()
    name: ClassVar[str]
    formula: ClassVar[str]
    """Closed form in bits per element for a uniform random mask (n value bits, density d)."""
    auto_candidate: ClassVar[bool] = True
    popcount_gather: ClassVar[bool] = False
    """Whether a decoder finds the values' positions by popcount/prefix sum of a presence
    bitmap in its metadata (the bitmap format), priced per bitmap word read
    (:mod:`sparsesim.memory.schedule`)."""
    """Whether :class:`~sparsesim.formats.auto.Auto` tries this format by default: every
    tensor encodes in it (False for a format that constrains the tensor, such as N:M)."""

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
