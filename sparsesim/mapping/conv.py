"""Convolution geometry: a conv's A operand is the im2col view of its input feature map.

The GEMM of a conv (im2col per group: M = n·z·e·f output pixels, K = c/g·t·r·s window, as
SCALE-Sim lowers a 2-D conv) reads an ``[pixels, window]`` matrix in which each input pixel
appears up to ``t·r·s`` times; memory moves the feature map itself. Every variant is this one
lowering over the per-axis tap map :meth:`~sparsesim.workload.layers.ConvAxis.taps` (the
input pixel each output reads at each tap, or a structural zero): strides, per-axis and
asymmetric padding, dilation (taps ``dilation`` apart), 1-D (one row) and 3-D (a depth axis),
non-zero padding modes (taps that copy an edge pixel: the same pixels are read, nothing is
moved for them but the copy) and transposed convs (the direct conv over the zero-inserted
input: the inserted zeros are never stored or moved, the address generator knows them; a
PE that skips zero A operands skips them, a dense one multiplies them). :class:`Im2col` says which input pixels and channels a block of that
matrix touches, :class:`ConvView` which GEMM operand is the matrix, and
:func:`im2col_matrix` builds it from an input mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

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
        window, cg = conv.taps, conv.c // conv.groups
        if owned:
            within = np.arange(-(-k0 // window), -(-k1 // window))
        else:
            within = np.arange(k0 // window, (k1 - 1) // window + 1)
        return np.arange(conv.groups)[:, None] * cg + within[None, :]

    def nm_hint(self, m: int) -> str:
        """Why an input pruned N:M along its channels may not be N:M along this GEMM's K.

        K runs over ``(c/groups, t, r, s)`` with ``s`` fastest, so a group of ``m`` consecutive k
        is ``m`` taps of one channel (neighbouring input pixels) unless the kernel is 1×1;
        channel groups are K's groups only for a 1×1 kernel whose ``c/groups`` is a multiple
        of ``m`` (or one group). Other convs need masks N:M along the im2col rows themselves,
        which no per-tensor pruning gives: the error says so instead of guessing."""
        conv = self.layer
        cg = conv.c // conv.groups
        if conv.taps == 1 and (conv.groups == 1 or cg % m == 0):
            return ""
        names, sizes = (("c/groups, t, r, s", (cg, conv.t, conv.r, conv.s))
                        if conv.spatial_dims == 3 else ("c/groups, r, s", (cg, conv.r, conv.s)))
        return (f" (a conv's A is the im2col of its input, K running over ({names}) = "
                f"({', '.join(map(str, sizes))}): activations N:M along their channels are N:M "
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
        if conv.t * conv.r * conv.s == 1:
            return ""
        cg = conv.c // conv.groups
        names, sizes = (("c/groups, t, r, s", (cg, conv.t, conv.r, conv.s))
                        if conv.spatial_dims == 3 else ("c/groups, r, s", (cg, conv.r, conv.s)))
        return (f" (a conv's W is K×N with K over ({names}) = ({', '.join(map(str, sizes))}), "
                f"s fastest: masks N:M along input channels at each tap (ASP, --nm-layout "
                f"channel) are N:M along K only under a 1×1 kernel; prune with --nm-layout "
                f"flat, or set pe.nm_nonconformant = dense to run it densely)")


@lru_cache(maxsize=1 << 10)
def _tap_maps(conv: Conv2d) -> tuple[tuple[np.ndarray, ...], tuple[int, int, int]]:
    """Per axis (d, h, w) the tap map ``[out, kernel]`` and the output size, once per layer."""
    axes = conv.axes
    return tuple(a.taps() for a in axes), (axes[0].out, axes[1].out, axes[2].out)


@lru_cache(maxsize=1 << 14)
def _touched(conv: Conv2d, m0: int, m1: int) -> tuple[tuple[int, np.ndarray], ...]:
    """Per image, the input pixels that output pixels ``m0:m1`` (row-major n, z, e, f) read
    (``[h, w]`` planes; ``[d, h, w]`` in 3-D), structural zeros aside. Cached: every group and
    every K block of a layer reads the same pixels."""
    (dz, dy, dx), (z, e, f) = _tap_maps(conv)
    shape = (conv.d, conv.h, conv.w)
    touched: dict[int, np.ndarray] = {}
    for row in range(m0 // f, (m1 - 1) // f + 1):  # output rows (n, z, e) the pixels cover
        n, rest = divmod(row, z * e)
        out_z, out_y = divmod(rest, e)
        first = max(m0, row * f) - row * f
        last = min(m1 - 1, row * f + f - 1) - row * f
        plane = touched.setdefault(n, np.zeros(shape, dtype=bool))
        zs, ys = dz[out_z], dy[out_y]
        xs = dx[first:last + 1].ravel()  # gaps between windows when stride > span
        plane[np.ix_(zs[zs >= 0], ys[ys >= 0], xs[xs >= 0])] = True
    planes = []
    for n, plane in sorted(touched.items()):
        out = plane if conv.spatial_dims == 3 else plane[0]
        out.flags.writeable = False
        planes.append((n, out))
    return tuple(planes)


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
    """``[n, c, (d,) h, w]`` → ``[groups, n·z·e·f, c/g·t·r·s]``, K ordered (c, t, r, s), with
    a zero wherever a tap reads a structural zero (padding, inserted zero, overhang) and the
    copied pixel where a padding mode copies one."""
    x = inputs.reshape(layer.n, layer.c, layer.d, layer.h, layer.w)
    # one zero slot past the end of every spatial axis: a tap of -1 reads it
    x = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1), (0, 1)))
    iz, iy, ix = (axis.taps() for axis in layer.axes)
    win = x[:, :, iz[:, None, None, :, None, None], iy[None, :, None, None, :, None],
            ix[None, None, :, None, None, :]]  # [n, c, z, e, f, t, r, s]
    g, cg = layer.groups, layer.c // layer.groups
    win = win.reshape(layer.n, g, cg, layer.pixels, layer.taps)
    cols = win.transpose(1, 0, 3, 2, 4)  # [g, n, pixels, cg, taps]
    return np.ascontiguousarray(cols).reshape(g, layer.n * layer.pixels, cg * layer.taps)
