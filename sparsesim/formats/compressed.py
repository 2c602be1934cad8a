"""Compressed storage of a 2-D tensor: CSR (by rows) and CSC (by columns), one mechanism."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.formats.base import Encoded, Format, TileBits, _check_optional_width, \
    _encoded, _fixed_or_needed, _index_width_array, _need_2d, index_width

if TYPE_CHECKING:
    from sparsesim.formats.tiles import TileStats


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

