"""The N:M rule: at most N non-zeros in every group of M consecutive elements along K.

*Grouping axis.* Groups run along the reduction axis K of the GEMM the tensor feeds: a
weight's K in the lowering's order (conv ``(c, r, s)``), or an activation's channels when
activations are pruned N:M. They start at k = 0 and every M after it; in a tiled tensor they
restart at every tile's first row (each tile is stored on its own). A last, shorter group of
g < M elements holds at most min(N, g).

*Where the groups come from.* The pruning front-end groups a weight along K (``flat``) or, as
NVIDIA's ASP does, along the input channels at each kernel tap (``nm_layout = "channel"``).
The rule here, and so the N:M PE, sees K only in the lowering's order — conv ``(c, r, s)``,
``s`` fastest, where SCALE-Sim v3 and ASP order ``(r, s, c)``: the channel layout is
conformant here only for 1×1 kernels (:meth:`sparsesim.mapping.conv.Im2col.nm_weight_hint`).

*Units.* An N:M unit keeps N **slots** (a value and its index in the group) per whole group and
min(N, g) for a short last one, non-zeros first and explicit zeros as padding. So K
compresses to ``K′ = floor(K/M)·N + min(N, K mod M)`` weight slots along K, SCALE-Sim v3's K′
(DESIGN.md §3). That one figure is the PE's reduction length (the stream for ``os``, the rows
for ``ws`` and ``is``) and the ``nm`` format's stored values per column.

*Why one module.* The PE kind, the format, the cycle-stepped reference, the mask generators
and every ``"2:4"`` parser must agree on the groups, on K′ and on what a violation says, so
they all use this module. A violation is always reported the same way: the tensor, the rows
and column of its first violating group, the count and the bound, with the layer and field
given by the caller.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sparsesim.errors import SparsesimError

_NM_TEXT = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*", re.ASCII)


def check_ratio(value: Any, *, field: str) -> tuple[int, int]:
    """``value`` as ``(n, m)`` ints if it is a pair of integers with ``0 < n <= m``."""
    try:
        n, m = value
    except (TypeError, ValueError):
        n = m = None
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (n, m))
    if not ints or not 0 < n <= m:
        got = f"{n}:{m}" if ints else repr(value)
        raise SparsesimError(f"must be N:M with 0 < N <= M, got {got}", field=field)
    return int(n), int(m)


def parse_nm(text: str, *, field: str = "nm") -> tuple[int, int]:
    """``"2:4"`` → ``(2, 4)`` (spaces around the numbers allowed), with ``0 < N <= M``."""
    match = _NM_TEXT.fullmatch(str(text))
    if match is None:
        raise SparsesimError(f"expected N:M such as 2:4, got {text!r}", field=field)
    return check_ratio((int(match[1]), int(match[2])), field=field)


_K = TypeVar("_K", int, np.ndarray)


def compressed_k(k: _K, n: int, m: int) -> _K:
    """K′: the weight slots along K an N:M unit holds for K elements,
    ``floor(K/M)·N + min(N, K mod M)``; ``k`` an int or an integer array."""
    if isinstance(k, (int, np.integer)):
        return int((k // m) * n + min(n, k % m))
    slots: np.ndarray = (k // m) * n + np.minimum(n, k % m)
    return slots


@dataclass(frozen=True, slots=True)
class Violation:
    """The first group along K holding more than N non-zeros (rows are k indices)."""

    group: int  # index of the group along K (in its tile, when tiled)
    first: int  # its first row
    last: int  # its last row (a short last group, or a tile's, ends early)
    column: int  # flat index over the other axes (C order, K moved first)
    count: int  # non-zeros it holds

    def error(self, n: int, m: int, *, tensor: str, shape: Sequence[int] | None = None,
              layer: str | None = None, field: str | None = None,
              context: str = "") -> SparsesimError:
        """The one N:M error. ``shape`` (K first) names an N-D column by its indices;
        ``context`` is appended (a tile, an instance, a hint)."""
        return SparsesimError(
            f"tensor {tensor!r} is not {n}:{m}-conformant along K: group rows "
            f"{self.first}..{self.last}{_column_text(self.column, shape)} holds {self.count} "
            f"non-zeros, at most {n} allowed{context}", layer=layer, field=field)


def _column_text(col: int, shape: Sequence[int] | None) -> str:
    if shape is not None and len(shape) == 1:
        return ""
    if shape is None or len(shape) == 2:
        return f" of column {col}"
    return f" of column {tuple(int(i) for i in np.unravel_index(col, tuple(shape[1:])))}"


def first_violation(x: np.ndarray, n: int, m: int, *, k_axis: int = 0,
                    tile_rows: int | None = None) -> Violation | None:
    """The first group of ``x`` (a mask, or values: non-zero is present) holding more than
    ``n`` non-zeros, in (first row, column) order; ``None`` if ``x`` is N:M-conformant.

    K runs along ``k_axis``; the other axes, flattened in C order, are the columns. With
    ``tile_rows``, groups restart every ``tile_rows`` rows (tiles stored separately).
    """
    a = np.moveaxis(np.asarray(x), k_axis, 0)
    k = a.shape[0]
    mask = a if a.dtype == np.bool_ else a != 0
    mask = np.ascontiguousarray(mask.reshape(k, -1))
    if mask.size == 0:
        return None
    tile = k if tile_rows is None else int(tile_rows)
    # imported here: parsing "2:4" (every arch and workload load, the CLI's start) needs no Numba
    from sparsesim.kernels.format_sizes import _nm_first_violation

    out = np.empty(3, dtype=np.int64)
    _nm_first_violation(mask, tile, n, m, out)
    if out[0] < 0:
        return None
    first, col, count = (int(v) for v in out)
    tile_end = (first // tile + 1) * tile
    return Violation((first % tile) // m, first, min(first + m, tile_end, k) - 1, col, count)


def check_conformant(x: np.ndarray, n: int, m: int, *, tensor: str, layer: str | None = None,
                     field: str | None = None, k_axis: int = 0, context: str = "") -> None:
    """Raise the N:M error for the first violating group of ``x``, if any."""
    bad = first_violation(x, n, m, k_axis=k_axis)
    if bad is not None:
        shape = np.moveaxis(np.asarray(x), k_axis, 0).shape
        raise bad.error(n, m, tensor=tensor, shape=shape, layer=layer, field=field,
                        context=context)


def conformant_mask(shape: Sequence[int], n: int, m: int, k_axes: Sequence[int] = (0,), *,
                    rng: np.random.Generator | None = None,
                    scores: np.ndarray | None = None) -> np.ndarray:
    """An N:M mask of ``shape`` keeping exactly ``min(n, g)`` of every group (g: its length).

    K is the product of ``k_axes`` in their order (a conv weight's ``(c, r, s)``); groups run
    along it for every column of the other axes. Which ``n`` of a group are kept is the one
    parameter: ``scores`` (an array of ``shape``) keeps the highest, ties pruning the lower
    index first (by-score N:M pruning); ``rng`` draws them uniformly over the group's subsets
    (a seeded stand-in for N:M-pruned tensors). ``n = 0`` keeps nothing.
    """
    shape = tuple(int(s) for s in shape)
    if (rng is None) == (scores is None):
        raise ValueError("give rng (random) or scores (by score), not both")
    if not 0 <= n <= m or m < 1:
        raise SparsesimError(f"must be N:M with 0 <= N <= M, got {n}:{m}", field="nm")
    axes = [a % len(shape) for a in k_axes]
    other = [i for i in range(len(shape)) if i not in axes]
    order = other + axes
    k = math.prod(shape[i] for i in axes)
    cols = math.prod(shape[i] for i in other)
    keys = None
    if scores is not None:
        s = np.asarray(scores)
        if s.shape != shape:
            raise ValueError(f"scores of shape {s.shape} for a mask of shape {shape}")
        keys = s.transpose(order).reshape(cols, k)
    flat = np.zeros((cols, k), dtype=bool)
    whole = k - k % m
    for g0, size, width in ((0, whole, m), (whole, k % m, k % m)):  # whole groups, the rest
        if size:
            groups = size // width
            if keys is None:
                assert rng is not None
                block = _choose(cols * groups, width, min(n, width), rng)
            else:
                block = _top(keys[:, g0:g0 + size].reshape(cols * groups, width),
                             min(n, width))
            flat[:, g0:g0 + size] = block.reshape(cols, size)
    # [cols, K] back to the tensor's layout: other axes first, then the K axes.
    return flat.reshape([shape[i] for i in order]).transpose(np.argsort(order))


def _top(keys: np.ndarray, keep: int) -> np.ndarray:
    """``[groups, m]`` rows keeping their ``keep`` highest keys (ties: lower index goes)."""
    out = np.ones(keys.shape, dtype=bool)
    width = keys.shape[1]
    if keep < width:
        order = np.argsort(keys, axis=1, kind="stable")[:, : width - keep]
        np.put_along_axis(out, order, False, axis=1)
    return out


def _choose(groups: int, m: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[groups, m]`` bool rows with exactly ``n`` random True each, uniformly over subsets."""
    if n == m:
        return np.ones((groups, m), dtype=bool)
    if math.comb(m, n) <= 1 << 16:  # one draw per group from the table of all subsets
        table = np.zeros((math.comb(m, n), m), dtype=bool)
        for row, subset in enumerate(itertools.combinations(range(m), n)):
            table[row, list(subset)] = True
        return table[rng.integers(len(table), size=groups)]
    keys = rng.random((groups, m))
    out = np.zeros((groups, m), dtype=bool)
    np.put_along_axis(out, np.argpartition(keys, n - 1, axis=1)[:, :n], True, axis=1)
    return out
