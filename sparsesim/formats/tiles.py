"""Per-tile sizes of a tiled 2-D mask in any format, from one Numba pass over the mask.

A tile is encoded as a tensor of its own: coordinates, indices and N:M groups are local to the
tile, and index widths follow the tile's own shape. :func:`tile_stats` counts what every format
needs (non-zeros, run-length paddings) in one kernel pass; each format turns the counts into
its (data bits, metadata bits) per tile (``Format.tile_bits_from_stats``).

Non-zeros alone (every format but run-length) are counted on the mask bit-packed along the
axis it is stored along (:class:`~sparsesim.kernels.packed.PackedMask`, popcounts): a weight
read as the transpose ``[K, N]`` of its stored ``[N, K]`` is packed as stored, never copied
transposed. Run-length padding depends on the walk order (row by row along K), so it walks a
C-ordered copy of the mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from sparsesim.formats.auto import Auto, AutoTiles
from sparsesim.formats.base import _MAX_RUN_BITS, _MAX_VALUE_BITS, Format, TileBits, \
    _as_mask, _check_int
from sparsesim.formats.registry import as_format, with_widths
from sparsesim.kernels.format_sizes import _tile_counts
from sparsesim.kernels.packed import PackedMask


@dataclass(frozen=True, slots=True, eq=False)
class TileStats:
    """Counts of a tiled 2-D mask from one kernel pass, shared by every format's tile sizes.

    ``rows`` (TR, 1) and ``cols`` (1, TC) are the tiles' real heights and widths (edge tiles
    are smaller); ``nnz`` (TR, TC) the non-zeros per tile; ``rle_pad[r]`` (TR, TC) the
    run-length padding entries per tile for an r-bit run field.
    """

    mask: np.ndarray
    tile_rows: int
    tile_cols: int
    rows: np.ndarray
    cols: np.ndarray
    nnz: np.ndarray
    rle_pad: Mapping[int, np.ndarray]
    name: str = "tensor"

    @property
    def shape(self) -> tuple[int, int]:
        """(tiles along K, tiles along N)."""
        return int(self.nnz.shape[0]), int(self.nnz.shape[1])

    @property
    def area(self) -> np.ndarray:
        """Elements per tile, (TR, TC) int64."""
        area: np.ndarray = self.rows * self.cols
        return area


def tile_stats(mask: object, tile_rows: int, tile_cols: int, *,
               run_bits: Sequence[int] = (), name: str = "tensor") -> TileStats:
    """One kernel pass over a (K, N) boolean mask tiled tile_rows x tile_cols.

    ``run_bits`` lists the run-field widths whose run-length padding to count. A tile size
    larger than the mask means one tile along that axis.
    """
    m = _as_mask(mask, name, ndim=2)
    owner = f"tensor {name!r}"
    tr = _check_int(tile_rows, "tile_rows", owner, 1)
    tc = _check_int(tile_cols, "tile_cols", owner, 1)
    shifts = np.array(sorted({_check_int(r, "run_bits", owner, 1, _MAX_RUN_BITS)
                              for r in run_bits}), dtype=np.int64)
    k, n = m.shape
    n_tr, n_tc = -(-k // tr), -(-n // tc)
    pad = np.zeros((shifts.size, n_tr, n_tc), dtype=np.int64)
    if shifts.size:  # run lengths: walk the tiles row by row, in K order
        m = np.ascontiguousarray(m)
        nnz = np.zeros((n_tr, n_tc), dtype=np.int64)
        _tile_counts(m, tr, tc, shifts, nnz, pad)
    elif m.T.flags.c_contiguous and not m.flags.c_contiguous:  # a transposed [N, K] weight
        nnz = np.ascontiguousarray(PackedMask.of(m.T).tile_counts(tc, tr).T)
    else:
        nnz = PackedMask.of(m).tile_counts(tr, tc)
    rows = np.minimum(tr, k - np.arange(n_tr, dtype=np.int64) * tr)[:, None]
    cols = np.minimum(tc, n - np.arange(n_tc, dtype=np.int64) * tc)[None, :]
    return TileStats(mask=m, tile_rows=tr, tile_cols=tc, rows=rows, cols=cols, nnz=nnz,
                     rle_pad=MappingProxyType({int(r): pad[i] for i, r in enumerate(shifts)}),
                     name=name)


def _tile_value_bits(value_bits: object, name: str) -> int:
    return _check_int(value_bits, "value_bits", f"tensor {name!r}", 1, _MAX_VALUE_BITS)


def tile_bits(mask: object, tile_rows: int, tile_cols: int, fmt: str | Format,
              value_bits: int, *, widths: Mapping[str, Any] | None = None,
              name: str = "tensor") -> TileBits:
    """(data bits, metadata bits) of every tile of a (K, N) boolean mask in one format.

    Both are int64 arrays of shape (ceil(K / tile_rows), ceil(N / tile_cols)); each tile is
    sized as if encoded on its own (see the module notes). Metadata widths other than the
    defaults come with ``fmt`` (``Csr(index_bits=8)``, ``"csr:index_bits=8"``) or ``widths``.
    """
    f = with_widths(fmt, widths)
    vb = _tile_value_bits(value_bits, name)
    stats = tile_stats(mask, tile_rows, tile_cols, run_bits=f.run_bits_needed(), name=name)
    return f.tile_bits_from_stats(stats, vb)


def tile_bits_chosen(mask: object, tile_rows: int, tile_cols: int, fmt: str | Format,
                     value_bits: int, *, name: str = "tensor"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`tile_bits` and the format spec every tile is stored in (an object array shaped
    like the tiles): ``fmt``'s own spec everywhere, or an :class:`Auto`'s winner per tile —
    from the same kernel pass, so the bits are exactly :func:`tile_bits`'s."""
    f = as_format(fmt)
    vb = _tile_value_bits(value_bits, name)
    stats = tile_stats(mask, tile_rows, tile_cols, run_bits=f.run_bits_needed(), name=name)
    if isinstance(f, Auto):
        won = f.choose(stats, vb)
        return won.data_bits, won.meta_bits, won.chosen()
    data, meta = f.tile_bits_from_stats(stats, vb)
    return data, meta, np.full(stats.shape, f.spec, dtype=object)


def tile_bits_all(mask: object, tile_rows: int, tile_cols: int,
                  formats: Sequence[str | Format], value_bits: int, *,
                  name: str = "tensor") -> dict[str, TileBits]:
    """:func:`tile_bits` for several formats from one kernel pass, keyed by format spec."""
    fmts = [as_format(f) for f in formats]
    vb = _tile_value_bits(value_bits, name)
    needed = sorted({r for f in fmts for r in f.run_bits_needed()})
    stats = tile_stats(mask, tile_rows, tile_cols, run_bits=needed, name=name)
    return {f.spec: f.tile_bits_from_stats(stats, vb) for f in fmts}


def auto_tile_bits(mask: object, tile_rows: int, tile_cols: int, value_bits: int, *,
                   candidates: Sequence[str | Format] | None = None, per: str = "tile",
                   name: str = "tensor") -> AutoTiles:
    """The smallest candidate format per tile (``per="tile"``) or per tensor, and its bits.

    ``candidates`` defaults to every format but N:M (see :class:`Auto`).
    """
    auto = Auto(candidates=tuple(as_format(c) for c in candidates) if candidates else (),
                per=per)
    vb = _tile_value_bits(value_bits, name)
    stats = tile_stats(mask, tile_rows, tile_cols, run_bits=auto.run_bits_needed(), name=name)
    return auto.choose(stats, vb)
