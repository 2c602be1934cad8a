"""Convolution geometry: a conv's A operand is the im2col view of its input feature map.

The GEMM of a conv (im2col per group: M = n·e·f output pixels, K = c/g·r·s window) reads an
``[pixels, window]`` matrix in which each input pixel appears up to ``r·s`` times; memory moves
the feature map itself. :class:`Im2col` says which input pixels and channels a block of that
matrix touches, :class:`ConvView` which GEMM operand is the matrix, and
:func:`im2col_matrix` builds it from an input mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sparsesim.workload.layers import Conv2d


@dataclass(frozen=True)
class Im2col:
    """The A operand of a convolution is the im2col view of its input feature map.

    Memory moves the feature map, not its im2col copy (where each input pixel appears up to
    ``r·s`` times): an A tile's DRAM and SRAM footprint is the input region its output pixels
    and channels touch. ``inputs`` is the ``[n, c, h, w]`` mask (``None``: dense).
    """

    layer: Conv2d
    inputs: np.ndarray | None = None

    def planes(self, m0: int, m1: int) -> tuple[tuple[int, np.ndarray], ...]:
        """Per image ``n``, the ``[h, w]`` mask of input pixels output pixels ``m0:m1`` read."""
        return _touched(self.layer, m0, m1)

    def group_rows(self, k0: int, k1: int, *, owned: bool = False) -> np.ndarray:
        """``[groups, channels]``: the input channels im2col columns ``k0:k1`` read, per group
        (``owned``: only those whose first column is among them, so that blocks of columns
        share out the channels without overlap)."""
        conv = self.layer
        window, cg = conv.r * conv.s, conv.c // conv.groups
        if owned:
            within = np.arange(-(-k0 // window), -(-k1 // window))
        else:
            within = np.arange(k0 // window, (k1 - 1) // window + 1)
        return np.arange(conv.groups)[:, None] * cg + within[None, :]

    def nm_hint(self, m: int) -> str:
        """Why an input pruned N:M along its channels may not be N:M along this GEMM's K.

        K runs over ``(c/groups, r, s)`` with ``s`` fastest, so a group of ``m`` consecutive k
        is ``m`` taps of one channel (neighbouring input pixels) unless the kernel is 1×1;
        channel groups are K's groups only for a 1×1 kernel whose ``c/groups`` is a multiple
        of ``m`` (or one group). Other convs need masks N:M along the im2col rows themselves,
        which no per-tensor pruning gives: the error says so instead of guessing."""
        conv = self.layer
        cg = conv.c // conv.groups
        if conv.r * conv.s == 1 and (conv.groups == 1 or cg % m == 0):
            return ""
        return (f" (a conv's A is the im2col of its input, K running over (c/groups, r, s) = "
                f"({cg}, {conv.r}, {conv.s}): activations N:M along their channels are N:M "
                f"along K only under a 1×1 kernel with c/groups a multiple of {m})")


    def nm_weight_hint(self, m: int) -> str:
        """Why a weight pruned N:M along its input channels at each kernel tap (NVIDIA ASP's
        layout, ``sparsesim prune --nm-layout channel``) may not be N:M along this GEMM's K.

        Our im2col orders K as ``(c/groups, r, s)``, ``s`` fastest, and W's rows the same way
        (:func:`im2col_matrix`); SCALE-Sim v3 orders its window as ``(r, s, c)``, ``c``
        fastest (``operand_matrix.calc_ifmap_elem_addr``: HWC addresses) — the order of
        ASP's groups and of NHWC implicit-GEMM kernels. Under our order a group of ``m``
        consecutive k is ``m`` taps of one channel, so ASP's masks are N:M along K only for a
        1×1 kernel (one tap per channel: the two layouts are the same groups). The N:M unit
        sees its groups along K as this lowering orders it and does not re-order K: any other
        conv with such a mask is the N:M error (naming layer and group), or runs densely with
        ``pe.nm_nonconformant = "dense"`` (its row says ``nm_mode = "dense"``)."""
        conv = self.layer
        if conv.r * conv.s == 1:
            return ""
        return (f" (a conv's W is K×N with K over (c/groups, r, s) = ({conv.c // conv.groups}, "
                f"{conv.r}, {conv.s}), s fastest: masks N:M along input channels at each tap "
                f"(ASP, --nm-layout channel) are N:M along K only under a 1×1 kernel; prune "
                f"with --nm-layout flat, or set pe.nm_nonconformant = dense to run it densely)")


@lru_cache(maxsize=1 << 14)
def _touched(conv: Conv2d, m0: int, m1: int) -> tuple[tuple[int, np.ndarray], ...]:
    """Per image, the input pixels that output pixels ``m0:m1`` (row-major n, e, f) read.
    Cached: every group and every K block of a layer reads the same pixels."""
    e, f, st, p = conv.e, conv.f, conv.stride, conv.padding
    touched: dict[int, np.ndarray] = {}
    for row in range(m0 // f, (m1 - 1) // f + 1):  # output rows (n, e) the pixels cover
        n, out_y = divmod(row, e)
        first = max(m0, row * f) - row * f
        last = min(m1 - 1, row * f + f - 1) - row * f
        plane = touched.setdefault(n, np.zeros((conv.h, conv.w), dtype=bool))
        y0 = out_y * st - p
        # the window columns of each output pixel: gaps between them when stride > s
        xs = (np.arange(first, last + 1)[:, None] * st - p + np.arange(conv.s)[None, :]).ravel()
        xs = xs[(xs >= 0) & (xs < conv.w)]
        plane[max(0, y0):max(0, y0 + conv.r), xs] = True
    for plane in touched.values():
        plane.flags.writeable = False
    return tuple(sorted(touched.items()))


@dataclass(frozen=True)
class ConvView:
    """Which operand of a GEMM is a convolution's im2col matrix (``[pixels, window]``).

    The forward conv reads it as A; a training step's weight gradient reads its transpose as
    A (``transposed``: ``[window, pixels]``) and the input gradient writes it as O (col2im
    adds the windows back into the feature map). Memory moves the feature-map regions: an A
    tile reads all the pixels its windows touch (halos again), an O tile writes the pixels
    no earlier tile touched (each input pixel's gradient once; overlaps summed on chip).
    """

    im2col: Im2col
    operand: str = "A"
    transposed: bool = False
    memo: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict, compare=False, repr=False)
    """Tile sizes (data bits, metadata bits, the format each is stored in) of every conv group
    at once, keyed by tile and format: the groups of a layer read the same pixels, so a tile
    is sized for all of them in one pass."""


def im2col_matrix(inputs: np.ndarray, layer: Conv2d) -> np.ndarray:
    """``[n, c, h, w]`` → ``[groups, n·e·f, c/g·r·s]`` with padding zeros, K ordered (c, r, s)."""
    e, f, st, p = layer.e, layer.f, layer.stride, layer.padding
    # ceil_mode outputs may read past the input (SCALE-Sim reads nothing there): zeros.
    extra_h = max(0, (e - 1) * st + layer.r - (layer.h + 2 * p))
    extra_w = max(0, (f - 1) * st + layer.s - (layer.w + 2 * p))
    x = np.pad(inputs, ((0, 0), (0, 0), (p, p + extra_h), (p, p + extra_w)))
    win = sliding_window_view(x, (layer.r, layer.s), axis=(2, 3))[:, :, ::st, ::st][:, :, :e, :f]
    g, cg = layer.groups, layer.c // layer.groups
    win = win.reshape(layer.n, g, cg, e, f, layer.r, layer.s)
    cols = win.transpose(1, 0, 3, 4, 2, 5, 6)  # [g, n, e, f, cg, r, s]
    return np.ascontiguousarray(cols).reshape(g, layer.n * e * f, cg * layer.r * layer.s)
