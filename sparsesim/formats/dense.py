"""Dense storage: every value, no metadata (the baseline every sparse format must beat)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sparsesim.formats.base import Encoded, Format, TileBits, _encoded, _flat

if TYPE_CHECKING:
    from sparsesim.formats.tiles import TileStats


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

