"""Bitmap storage: one presence bit per element beside the non-zero values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sparsesim.formats.base import Encoded, Format, TileBits, _encoded, _flat

if TYPE_CHECKING:
    from sparsesim.formats.tiles import TileStats


POPCOUNT_WORD_BITS = 64
"""Width of the bitmap word a decoder lane pops (counts and prefix-sums) per step: the
energy table's popcount and the decoder's area are priced per word of this width."""


@dataclass(frozen=True, slots=True)
class Bitmap(Format):
    """One presence bit per element plus the non-zero values: nnz*n + L bits."""

    name: ClassVar[str] = "bitmap"
    formula: ClassVar[str] = "n*d + 1"
    popcount_gather: ClassVar[bool] = True

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

