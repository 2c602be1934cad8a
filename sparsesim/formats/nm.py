"""N:M storage: N slots in every group of M along the reduction axis, with in-group indices.

Unlike the other formats it constrains the tensor: a group with more than N non-zeros is an
error, so it is not one of :class:`~sparsesim.formats.auto.Auto`'s default candidates. The
groups, the slot count K′ and the error are :mod:`sparsesim.rules.nm`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sparsesim.formats.base import Encoded, Format, TileBits, _check_int, \
    _check_optional_width, _encoded, _fixed_or_needed, index_width
from sparsesim.rules.nm import compressed_k, first_violation

if TYPE_CHECKING:
    from sparsesim.formats.tiles import TileStats


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
    auto_candidate: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_int(self.m, "m", "format 'nm'", 1)
        _check_int(self.n, "n", "format 'nm'", 1, self.m)
        _check_optional_width(self.index_bits, "index_bits", "format 'nm'")

    def _index_width(self, name: str) -> int:
        return _fixed_or_needed(self.index_bits, index_width(self.m), "index_bits",
                                self.name, name)

    def _slots(self, k: Any) -> Any:
        """Slots per column for k rows (int or int64 array): K′."""
        return compressed_k(k, self.n, self.m)

    def _check(self, mask2: np.ndarray, shape: tuple[int, ...], name: str) -> None:
        bad = first_violation(mask2, self.n, self.m)
        if bad is not None:
            raise bad.error(self.n, self.m, tensor=name, shape=shape, field="mask")

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
        bad = first_violation(stats.mask, self.n, self.m, tile_rows=stats.tile_rows)
        if bad is not None:
            tile = (bad.first // stats.tile_rows, bad.column // stats.tile_cols)
            raise bad.error(self.n, self.m, tensor=stats.name, field="mask",
                            context=f" (tile {tile})")
        slots = self._slots(stats.rows) * stats.cols
        return slots * value_bits, slots * self._index_width(stats.name)
