"""Run-length storage: (zero run, value) entries with fixed-width run fields (Eyeriss-style)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.formats.base import _MAX_RUN_BITS, Encoded, Format, TileBits, _check_int, \
    _encoded, _flat

if TYPE_CHECKING:
    from sparsesim.formats.tiles import TileStats


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

