"""Granularity: from per-weight scores to keep-masks (True keeps, as ``torch.nn.utils.prune``).

Every weight tensor is seen through its GEMM view ``[out, K]`` — conv ``[m, c/g·r·s]`` with
K ordered ``(c, r, s)`` as the lowering orders it, linear and attention ``[out, in]``, a
matmul's ``[k, n]`` transposed — and pruned in units:

=================  ==========================================================================
``unstructured``   single weights
``nm``             in every group of ``m`` consecutive K of a row, the ``m − n`` lowest
                   (``nm_layout = "channel"``: groups of ``m`` consecutive input channels
                   at each kernel tap, NVIDIA ASP's layout, :func:`nm_keep`)
``filter``         rows of the view: whole output filters / neurons (the shape stays, the mask
                   is zero there: a zero column of the GEMM's W, which a ``wavefront``-synced
                   skipping array gets for free)
``channel``        input channels: conv ``r·s`` consecutive K, otherwise one K column
``block``          ``k × k`` tiles of the view (edge tiles may be smaller)
=================  ==========================================================================

A unit's score is the power mean of order ``spec.norm = p`` of its weights' scores,
``(mean s^p)^(1/p)`` (:func:`power_mean`): ``p = 1`` the mean (the L1 norm over the size for
magnitude), ``p = 2`` the root mean square (the L2 norm over √size) — one mechanism for
filters, channels, blocks and heads. A pruned weight of an iterative schedule scores ``-inf``
and makes its whole unit ``-inf`` whatever ``p``.
Per tensor, ``prune_count(units, sparsity)`` units go (``compare = "row"``: that many weights
of every row); globally, the lowest units of all tensors go until ``prune_count(weights,
sparsity)`` weights are pruned (exact for single weights, within one unit otherwise). The
count is :mod:`sparsesim.rules.keep`'s, ``torch.nn.utils.prune``'s ``round(sparsity · n)``;
N:M keeps by score with :func:`sparsesim.rules.nm.conformant_mask`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from sparsesim.prune.spec import PruneSpec
from sparsesim.rules.keep import prune_count
from sparsesim.rules.nm import conformant_mask
from sparsesim.workload.layers import Layer

Entry = tuple[Layer, str, np.ndarray]


def _k_last(layer: Layer, tensor: str, ndim: int) -> list[int]:
    """The tensor's axes with its reduction (K) axes last, in K's order."""
    k_axes = layer.reduction_axes(tensor)
    return [i for i in range(ndim) if i not in k_axes] + list(k_axes)


def gemm_view(layer: Layer, tensor: str, a: np.ndarray) -> np.ndarray:
    """``a`` (a weight-shaped array) as ``[out, K]``, K in the lowering's order."""
    order = _k_last(layer, tensor, a.ndim)
    k = math.prod(a.shape[i] for i in layer.reduction_axes(tensor))
    return a.transpose(order).reshape(-1, k)


def from_view(layer: Layer, tensor: str, v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`gemm_view`."""
    order = _k_last(layer, tensor, len(shape))
    return np.ascontiguousarray(v.reshape([shape[i] for i in order]).transpose(np.argsort(order)))


def channel_width(layer: Layer) -> int:
    """How many consecutive K columns one input channel spans."""
    return layer.k_per_channel


def lowest(scores: np.ndarray, count: int) -> np.ndarray:
    """Bool mask of the ``count`` lowest of a flat array; ties go to the lower index. O(n)."""
    n = scores.size
    out = np.zeros(n, dtype=bool)
    if count <= 0:
        return out
    if count >= n:
        out[:] = True
        return out
    kth = np.partition(scores, count - 1)[count - 1]
    below = scores < kth
    out |= below
    need = count - int(np.count_nonzero(below))
    out[np.flatnonzero(scores == kth)[:need]] = True
    return out


def power_mean(scores: np.ndarray, p: float, axis: int | tuple[int, ...] | None = None
               ) -> np.ndarray:
    """``(mean s^p)^(1/p)`` of non-negative scores over ``axis``; ``-inf`` (a weight pruned
    before) makes the result ``-inf``. ``p = 1`` is the plain mean, bit for bit."""
    if p == 1:
        return np.asarray(scores.mean(axis=axis))
    s = np.asarray(scores, dtype=np.float64)
    dead = np.isneginf(s).any(axis=axis)
    m = np.power(np.where(np.isneginf(s), 0.0, s), p).mean(axis=axis)
    return np.asarray(np.where(dead, -np.inf, np.power(m, 1 / p)))


def _units(view: np.ndarray, spec: PruneSpec, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit scores (flat; the power mean of order ``spec.norm``) and unit sizes."""
    rows, k = view.shape
    g, p = spec.granularity, spec.norm
    if g == "unstructured":
        return view.ravel(), np.ones(view.size, dtype=np.int64)
    if g == "filter":
        return power_mean(view, p, axis=1), np.full(rows, k, dtype=np.int64)
    if g == "channel":
        w = channel_width(layer)
        return (power_mean(view.reshape(rows, k // w, w), p, axis=(0, 2)),
                np.full(k // w, rows * w, dtype=np.int64))
    if g == "block":
        b = spec.block
        rb, kb = -(-rows // b), -(-k // b)
        v = view if p == 1 else np.where(np.isneginf(view), -np.inf,
                                         np.power(np.maximum(view, 0), p))
        padded = np.zeros((rb * b, kb * b), dtype=np.float64)
        valid = np.zeros_like(padded, dtype=bool)
        padded[:rows, :k] = v
        valid[:rows, :k] = True
        sums = padded.reshape(rb, b, kb, b).sum(axis=(1, 3))
        sizes = valid.reshape(rb, b, kb, b).sum(axis=(1, 3))
        means = sums / sizes  # -inf stays -inf: (-inf)^p is not taken (see above)
        if p != 1:
            means = np.where(np.isneginf(means), -np.inf, np.power(means, 1 / p))
        return means.ravel(), sizes.ravel().astype(np.int64)
    raise ValueError(f"not a unit granularity: {g}")


def _expand(pruned: np.ndarray, view_shape: tuple[int, int], spec: PruneSpec,
            layer: Layer) -> np.ndarray:
    """Unit prune-flags → element prune-mask in the view's shape."""
    rows, k = view_shape
    g = spec.granularity
    if g == "unstructured":
        return pruned.reshape(view_shape)
    if g == "filter":
        return np.broadcast_to(pruned[:, None], view_shape)
    if g == "channel":
        w = channel_width(layer)
        return np.broadcast_to(pruned[None, :, None], (rows, k // w, w)).reshape(view_shape)
    b = spec.block
    rb, kb = -(-rows // b), -(-k // b)
    full = np.repeat(np.repeat(pruned.reshape(rb, kb), b, axis=0), b, axis=1)
    return full[:rows, :k]


def nm_keep(view: np.ndarray, layer: Layer, spec: PruneSpec) -> np.ndarray:
    """N:M keep-mask of a ``[out, K]`` score view: groups along K (``flat``), or along the
    input channels at each kernel tap (``channel``: K seen as ``[channels, taps]``, the
    ``k_per_channel`` taps of a channel consecutive, groups along the channels for every
    tap — NVIDIA ASP's layout; one tap per channel makes it ``flat``)."""
    n, m = spec.nm
    if spec.nm_layout == "flat":
        return conformant_mask(view.shape, n, m, (1,), scores=view)
    rows, k = view.shape
    taps = channel_width(layer)
    cube = view.reshape(rows, k // taps, taps)
    return conformant_mask(cube.shape, n, m, (1,), scores=cube).reshape(rows, k)


def _row_keep(view: np.ndarray, amount: float) -> np.ndarray:
    rows, k = view.shape
    count = prune_count(k, amount)
    keep = np.ones((rows, k), dtype=bool)
    if count:
        order = np.argsort(view, axis=1, kind="stable")[:, :count]
        np.put_along_axis(keep, order, False, axis=1)
    return keep


def keep_masks(entries: Sequence[Entry], spec: PruneSpec,
               prior: Sequence[np.ndarray | None] | None = None,
               tick: Callable[[], None] | None = None) -> list[np.ndarray]:
    """Keep-masks (each in its tensor's layout) for the scored tensors of ``entries``.

    ``prior`` masks (iterative schedules) stay pruned: their zeros score ``-inf`` and count
    toward the target sparsity. ``tick`` is called once per tensor whose mask is done (a
    progress bar's ``update``; a global ranking finishes every tensor at once, at the end).
    """
    views = []
    for i, (layer, tensor, s) in enumerate(entries):
        v = gemm_view(layer, tensor, np.asarray(s))
        p = None if prior is None else prior[i]
        if p is not None:
            v = np.where(gemm_view(layer, tensor, p), v, -np.inf)
        views.append(v)

    def each(make: Callable[[int], np.ndarray]) -> list[np.ndarray]:
        out = []
        for i in range(len(entries)):
            out.append(make(i))
            if tick is not None:
                tick()
        return out

    def layer_of(i: int) -> Layer:
        return entries[i][0]

    def back(i: int, keep: np.ndarray) -> np.ndarray:
        layer, tensor, s = entries[i]
        return from_view(layer, tensor, keep, s.shape)

    if spec.granularity == "nm":
        return each(lambda i: back(i, nm_keep(views[i], layer_of(i), spec)))
    if spec.compare == "row":
        return each(lambda i: back(i, _row_keep(views[i], spec.sparsity)))
    if spec.scope == "layer":
        def one(i: int) -> np.ndarray:
            u, _ = _units(views[i], spec, layer_of(i))
            pruned = lowest(u, prune_count(u.size, spec.sparsity))
            return back(i, ~_expand(pruned, views[i].shape, spec, layer_of(i)))
        return each(one)
    units = [_units(v, spec, layer) for (layer, _, _), v in zip(entries, views)]
    pruned = _global(units, spec)
    return each(lambda i: back(i, ~_expand(pruned[i], views[i].shape, spec, layer_of(i))))


def _global(units: list[tuple[np.ndarray, np.ndarray]], spec: PruneSpec) -> list[np.ndarray]:
    scores = np.concatenate([u for u, _ in units]) if units else np.zeros(0)
    sizes = np.concatenate([z for _, z in units]) if units else np.zeros(0, np.int64)
    target = prune_count(int(sizes.sum()), spec.sparsity)
    if spec.granularity == "unstructured":
        flat = lowest(scores, target)
    else:
        order = np.lexsort((np.arange(scores.size), scores))
        cum = np.cumsum(sizes[order])
        k = int(np.searchsorted(cum, target, side="right"))
        if k < order.size and (cum[k] - target) < (target - (cum[k - 1] if k else 0)):
            k += 1  # one more unit lands closer to the target
        flat = np.zeros(scores.size, dtype=bool)
        flat[order[:k]] = True
    bounds = np.cumsum([0] + [u.size for u, _ in units])
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def achieved_sparsity(masks: Sequence[np.ndarray]) -> float:
    """Fraction of weights pruned over all ``masks``."""
    total = sum(math.prod(m.shape) for m in masks)
    return 1 - sum(int(np.count_nonzero(m)) for m in masks) / total if total else 0.0
