"""Auto: the smallest of several formats, per tile or per tensor, and the record of choices.

The record reaches the results: every GEMM row says which format each operand's tiles are
stored in (``format_a_chosen``, ``format_w_chosen``, ``format_o_chosen``: the format, or
``mixed: bitmap 12, rle 4`` — distinct tiles, each counted once per GEMM instance, as the
tiling the memory model ran them with cut them), written by :func:`chosen_text`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.formats.base import Encoded, Format, TileBits

if TYPE_CHECKING:
    from sparsesim.formats.tiles import TileStats


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
        total: np.ndarray = self.data_bits + self.meta_bits
        return total

    def chosen(self) -> np.ndarray:
        """The winning format's spec per tile, as an object array shaped like the tiles."""
        chosen: np.ndarray = np.asarray(self.names, dtype=object)[self.choice]
        return chosen

    def wins(self) -> dict[str, int]:
        """How many tiles each candidate won."""
        counts = np.bincount(self.choice.ravel(), minlength=len(self.names))
        return {n: int(c) for n, c in zip(self.names, counts, strict=True)}


def chosen_text(tiles: Mapping[str, int]) -> str:
    """A result cell for the formats an operand's tiles are stored in (``{spec: tiles}``):
    the format when every tile has it, else ``mixed: bitmap 12, rle 4`` (most tiles first,
    then by name); empty for no tiles."""
    used = sorted(((n, c) for n, c in tiles.items() if c > 0), key=lambda nc: (-nc[1], nc[0]))
    if len(used) <= 1:
        return used[0][0] if used else ""
    return "mixed: " + ", ".join(f"{n} {c}" for n, c in used)


def parse_chosen(text: str) -> dict[str, int] | None:
    """The counts of a :func:`chosen_text` cell: ``{spec: tiles}``, or ``None`` for a single
    format (whose tile count the cell does not say); ``{}`` for an empty cell."""
    text = text.strip()
    if not text:
        return {}
    if not text.startswith("mixed: "):
        return None
    out: dict[str, int] = {}
    for part in text[len("mixed: "):].split(", "):
        name, _, count = part.rpartition(" ")
        out[name] = int(count)
    return out


def _default_candidates() -> tuple[Format, ...]:
    """Every registered format that takes any tensor (``Format.auto_candidate``), in registry
    order: dense, bitmap, rle, coo, coo_offset, csr, csc."""
    from sparsesim.formats.registry import FORMATS  # the registry imports this module

    return tuple(cls() for cls in FORMATS.values() if cls.auto_candidate)


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
    auto_candidate: ClassVar[bool] = False

    def __post_init__(self) -> None:
        from sparsesim.formats.registry import as_format  # the registry imports this module

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

