"""Bit-packed masks: one type (:class:`PackedMask`); the popcount kernels that read it are in
:mod:`sparsesim.kernels.popcounts` (Numba, imported when first counted, not with the type).

*Layout.* A mask of shape ``(..., L)`` is packed along its last axis, the axis it is stored
contiguously along: row ``r`` of the flattened leading axes is ``ceil(L / 64)`` ``uint64``
words, element ``t`` in bit ``t % 64`` of word ``t // 64`` (little-endian bit order, the
order :func:`sparsesim.kernels.skip.pack_rows` uses), the bits past ``L`` zero. That is 1 bit
per element instead of numpy's 1 byte per ``bool``: a Llama-2-7B's weight masks are 0.83 GB
packed, 6.6 GB as bools.

*Why packing along the stored axis.* A weight ``[out, in]`` is read by the tilings as its
transpose ``[K = in, N = out]``; counting a tile's non-zeros on that transposed view needs a
transposed copy of the whole tensor (``np.ascontiguousarray``, ~25x a contiguous copy), where
packing the stored rows and counting bits in the tile's word range reads the memory once, in
order. Counts are the same either way (:func:`tile_counts` of the transpose is the transpose
of the counts): a tile is a set of elements, whichever way it is walked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WORD = 64  # bits per packed word


@dataclass(frozen=True, eq=False)
class PackedMask:
    """A boolean mask of ``shape`` packed along its last axis (module docstring): ``words``
    is ``uint64 [rows, ceil(L / 64)]`` (``rows``: the product of the leading axes), ``count``
    the non-zeros. Build with :meth:`of`; :meth:`unpack` gives the bool array back."""

    shape: tuple[int, ...]
    words: np.ndarray
    count: int

    @classmethod
    def of(cls, mask: np.ndarray) -> PackedMask:
        """``mask`` (any bool array, any memory layout) packed along its last axis."""
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise ValueError(f"a mask is a bool array, got {m.dtype}")
        shape = tuple(int(s) for s in m.shape) or (1,)
        length = shape[-1]
        rows = math.prod(shape[:-1])
        words = max(1, -(-length // WORD))
        flat = m.reshape(rows, length)
        packed = np.zeros((rows, words * 8), dtype=np.uint8)
        packed[:, : -(-length // 8)] = np.packbits(flat, axis=1, bitorder="little")
        # native uint64 words: bit t % 64 is element t on a little-endian machine (x86, ARM),
        # as in sparsesim.kernels.skip.pack_rows
        return cls(shape, packed.view(np.uint64), int(np.count_nonzero(m)))

    @property
    def rows(self) -> int:
        """Rows of the packed grid: the product of the leading axes."""
        return int(self.words.shape[0])

    @property
    def length(self) -> int:
        """Elements per row: the last axis."""
        return self.shape[-1]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        """What :meth:`unpack` gives: ``bool``."""
        return np.dtype(np.bool_)

    @property
    def nbytes(self) -> int:
        """Bytes the packed words take (1/8 of a ``bool`` array, rounded up per row)."""
        return int(self.words.nbytes)

    def unpack(self) -> np.ndarray:
        """The bool array of ``shape``."""
        b = self.words.view(np.uint8).reshape(self.rows, -1)
        bits = np.unpackbits(b, axis=1, count=self.length, bitorder="little")
        return bits.astype(bool).reshape(self.shape)

    def row_counts(self) -> np.ndarray:
        """Non-zeros per row of the packed grid, ``int64 [rows]``."""
        from sparsesim.kernels.popcounts import row_counts

        out = np.zeros(self.rows, dtype=np.int64)
        row_counts(self.words, out)
        return out

    def tile_counts(self, tile_rows: int, tile_cols: int) -> np.ndarray:
        """Non-zeros of every ``tile_rows x tile_cols`` tile of the ``[rows, L]`` grid
        (tiles along L cut inside words), ``int64 [ceil(rows / tile_rows), ceil(L /
        tile_cols)]``; a last, shorter tile holds what is left."""
        if tile_rows < 1 or tile_cols < 1:
            raise ValueError("tile sizes must be positive")
        out = np.zeros((-(-self.rows // tile_rows), -(-self.length // tile_cols)),
                       dtype=np.int64)
        from sparsesim.kernels.popcounts import tile_counts

        tile_counts(self.words, self.length, tile_rows, tile_cols, out)
        return out
