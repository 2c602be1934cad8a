"""Sparse storage formats: exact encoders and decoders, closed-form sizes, per-tile sizes.

One module per idea: :mod:`~sparsesim.formats.base` (the :class:`Format` interface, the
:class:`Encoded` tensor, shared checks and bit helpers), one module per format family
(:mod:`~sparsesim.formats.dense`, :mod:`~sparsesim.formats.bitmap`,
:mod:`~sparsesim.formats.rle`, :mod:`~sparsesim.formats.coo`,
:mod:`~sparsesim.formats.compressed`, :mod:`~sparsesim.formats.nm`,
:mod:`~sparsesim.formats.auto`), :mod:`~sparsesim.formats.registry` (:data:`FORMATS` and
construction from names and specs), :mod:`~sparsesim.formats.tiles` (per-tile sizes at Numba
speed) and :mod:`~sparsesim.formats.study` (the format-crossover study). Adding a format is a
new module plus one entry in the registry. The public names are re-exported here.
"""

from __future__ import annotations

from sparsesim.formats.auto import Auto, AutoTiles
from sparsesim.formats.base import Bits, Encoded, Format, TileBits, bits_to_bytes, index_width
from sparsesim.formats.bitmap import Bitmap
from sparsesim.formats.compressed import Csc, Csr
from sparsesim.formats.coo import Coo, CooOffset
from sparsesim.formats.dense import Dense
from sparsesim.formats.nm import NM
from sparsesim.formats.registry import (
    FORMATS,
    as_format,
    decode,
    encode,
    make_format,
    parse_format,
    with_widths,
)
from sparsesim.formats.rle import RunLength
from sparsesim.formats.tiles import TileStats, auto_tile_bits, tile_bits, tile_bits_all, tile_stats

__all__ = [
    "FORMATS",
    "NM",
    "Auto",
    "AutoTiles",
    "Bitmap",
    "Bits",
    "Coo",
    "CooOffset",
    "Csc",
    "Csr",
    "Dense",
    "Encoded",
    "Format",
    "RunLength",
    "TileBits",
    "TileStats",
    "as_format",
    "auto_tile_bits",
    "bits_to_bytes",
    "decode",
    "encode",
    "index_width",
    "make_format",
    "parse_format",
    "tile_bits",
    "tile_bits_all",
    "tile_stats",
    "with_widths",
]
