"""Coordinate storage: each non-zero with its coordinates (COO) or its flat offset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.formats.base import Encoded, Format, TileBits, _check_int, \
    _check_optional_width, _encoded, _fixed_or_needed, _flat, _index_width_array, index_width

if TYPE_CHECKING:
    from sparsesim.formats.tiles import TileStats


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

