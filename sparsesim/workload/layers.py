"""Layer shapes: what a network asks of the hardware, before any mapping.

Each layer type answers its own questions (the :class:`LayerShape` protocol): its dense MAC
count by the closed forms of DESIGN.md §2, parameter count and storage in bits; the shapes of
its weight tensors and which of their axes the GEMM reduces over (K); its input tensor's shape,
channel axis and batch; and how a cut of channels acts on it (filter pruning, slimming,
dynamic gating). Code elsewhere asks the layer, never ``isinstance``. How it becomes GEMMs is
the lowering's business (:mod:`sparsesim.mapping.lower`, one registry keyed by layer type); the
tests check that the lowered GEMMs add up to these closed forms. Adding a layer type means a
class here (with the protocol's members) and its lowering there.

Dimension names follow the accelerator literature (Eyeriss, SCALE-Sim): a convolution has
``n`` images of ``c`` channels of ``h × w`` pixels, ``m`` filters of ``r × s`` taps, and an
``e × f`` output.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Protocol, Union

import numpy as np

from sparsesim.errors import SparsesimError


@dataclass(frozen=True, slots=True)
class Storage:
    """Bits to hold a layer's operands once (no reuse, no padding)."""

    weight_bits: int
    input_bits: int
    output_bits: int

    @property
    def total_bits(self) -> int:
        return self.weight_bits + self.input_bits + self.output_bits


def _check_positive(layer: str, **values: int) -> None:
    for field, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise SparsesimError(f"must be an integer, got {value!r}", layer=layer, field=field)
        if value <= 0:
            raise SparsesimError(f"must be positive, got {value}", layer=layer, field=field)


def _check_flags(layer: str, **values: bool) -> None:
    for field, value in values.items():
        if not isinstance(value, bool):
            raise SparsesimError(f"must be true or false, got {value!r}", layer=layer, field=field)


class LayerShape(Protocol):
    """What every layer type answers (shapes in PyTorch's layout; counts are elements).

    ``out_channels``/``in_channels`` are the channels a cut acts on (``None``: this type's
    outputs/inputs are not channels a producer's cut removes). ``cuts_outputs``: whether
    filter pruning, slimming and dynamic gating may cut its output channels.
    """

    name: str
    op: ClassVar[str]
    input_channel_axis: ClassVar[int]

    @property
    def dense_macs(self) -> int: ...
    @property
    def weights(self) -> int: ...
    @property
    def params(self) -> int: ...
    def storage(self, a_bits: int, w_bits: int, o_bits: int) -> Storage: ...
    def weight_shapes(self) -> dict[str, tuple[int, ...]]: ...
    def reduction_axes(self, tensor: str) -> tuple[int, ...]: ...
    def activation_shapes(self) -> dict[str, tuple[int, ...]]: ...
    @property
    def input_shape(self) -> tuple[int, ...]: ...
    @property
    def batch(self) -> int: ...
    def with_batch(self, batch: int) -> Layer: ...
    @property
    def k_per_channel(self) -> int: ...
    @property
    def out_channels(self) -> int | None: ...
    @property
    def in_channels(self) -> int | None: ...
    @property
    def cuts_outputs(self) -> bool: ...
    def with_out_channels(self, keep: int) -> Layer: ...
    def with_in_channels(self, channels: int, keep: int) -> tuple[Layer, bool]: ...
    def channel_span(self, channels: int) -> int | None: ...


def _no_cut(layer: Layer, what: str) -> SparsesimError:
    return SparsesimError(f"a {layer.op} layer's {what} are not channels that can be cut",
                          layer=layer.name, field="channels")


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
"""How a convolution fills its padding (PyTorch's ``padding_mode``). Only ``zeros`` puts zeros
in the im2col matrix; the others copy input pixels there (data movement: the GEMM is the same,
only its A operand's non-zero pattern differs)."""


@dataclass(frozen=True, slots=True)
class ConvAxis:
    """One spatial axis of a convolution: ``size`` input pixels, ``kernel`` taps.

    A transposed axis is lowered as the equivalent direct convolution over the zero-inserted
    input (``stride − 1`` zeros between pixels, ``span − 1 − pad`` pixels of zero padding each
    side, ``output_padding`` more at the end, stride 1, the kernel flipped): :meth:`taps` says
    which input pixel each output reads at each tap, ``-1`` where it reads a structural zero
    (zero padding, an inserted zero, a ceil-mode overhang) — known before compute, so a
    PE that skips zero A operands skips them.
    """

    size: int
    kernel: int
    stride: int = 1
    pad: tuple[int, int] = (0, 0)
    dilation: int = 1
    transposed: bool = False
    output_padding: int = 0
    ceil_mode: bool = False
    mode: str = "zeros"

    @property
    def span(self) -> int:
        """Input pixels one window covers, ``dilation·(kernel − 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def out(self) -> int:
        """Output pixels (0 or less: the geometry is impossible)."""
        lo, hi = self.pad
        if self.transposed:  # PyTorch: (size − 1)·stride − 2·pad + span + output_padding
            return (self.size - 1) * self.stride - lo - hi + self.span + self.output_padding
        span = self.size + lo + hi - self.span
        if span < 0:
            return 0
        if self.ceil_mode:
            return -(-span // self.stride) + 1
        return span // self.stride + 1

    def taps(self) -> np.ndarray:
        """``[out, kernel]``: the input pixel each output pixel reads at each tap (``-1``: a
        structural zero). Non-zero padding modes read the pixel they copy."""
        o = np.arange(self.out)[:, None]
        j = np.arange(self.kernel)[None, :] * self.dilation
        if self.transposed:
            x = o - (self.span - 1 - self.pad[0]) + j  # in the zero-inserted input
            real = (x >= 0) & (x % self.stride == 0) & (x // self.stride < self.size)
            return np.where(real, x // self.stride, -1)
        x = o * self.stride - self.pad[0] + j
        inside = (x >= 0) & (x < self.size)
        padded = (x >= -self.pad[0]) & (x < self.size + self.pad[1]) & ~inside
        n = self.size
        if self.mode == "reflect":
            src = np.abs(x)
            src = np.where(src >= n, 2 * (n - 1) - src, src)
        elif self.mode == "replicate":
            src = np.clip(x, 0, n - 1)
        elif self.mode == "circular":
            src = np.mod(x, n)
        else:
            src = x
        copied = padded if self.mode != "zeros" else np.zeros_like(padded)
        return np.where(inside, x, np.where(copied, src, -1))


def _ints(layer: str, field: str, value: object, dims: int, *, low: int) -> tuple[int, ...]:
    """A per-axis parameter as ``dims`` integers ``>= low`` (one integer: every axis)."""
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(vals) == 1:
        vals = vals * dims
    if len(vals) != dims:
        raise SparsesimError(f"needs one value or {dims} (one per spatial axis, "
                             f"{'(d, h, w)' if dims == 3 else '(h, w)'}), got {value!r}",
                             layer=layer, field=field)
    out: list[int] = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise SparsesimError(f"must be {'positive' if low else 'non-negative'} integers, "
                                 f"got {value!r}", layer=layer, field=field)
        out.append(v)
    return tuple(out)


def _pads(layer: str, value: object, dims: int) -> tuple[tuple[int, int], ...]:
    """Padding per axis as ``(before, after)``: one integer (every side), or one entry per
    axis, each an integer (both sides) or ``[before, after]``."""
    if isinstance(value, (list, tuple)):
        entries = list(value)
        if len(entries) != dims:
            raise SparsesimError(f"needs one value or {dims} (one per spatial axis, each n or "
                                 f"[before, after]), got {value!r}", layer=layer,
                                 field="padding")
    else:
        entries = [value] * dims
    out = []
    for e in entries:
        pair = list(e) if isinstance(e, (list, tuple)) else [e, e]
        if len(pair) != 2 or any(isinstance(x, bool) or not isinstance(x, int) or x < 0
                                 for x in pair):
            raise SparsesimError(f"must be non-negative integers (n or [before, after] per "
                                 f"axis), got {value!r}", layer=layer, field="padding")
        out.append((pair[0], pair[1]))
    return tuple(out)


def _canon(values: tuple[object, ...]) -> object:
    """One value when every axis has it (the plain layer's form), else the per-axis tuple."""
    return values[0] if len(set(values)) == 1 else values


@dataclass(frozen=True, slots=True)
class Conv2d:
    """Convolution: 2-D, 1-D (``h = r = 1``) and 3-D (``d``, ``t`` > 1); ``groups = c = m`` is
    depthwise.

    Per-axis parameters (``stride``, ``dilation``, ``output_padding``) are one integer for every
    spatial axis or one per axis, ``(h, w)`` (2-D) or ``(d, h, w)`` (3-D); ``padding`` is one
    integer, ``"same"``/``"valid"`` (PyTorch's rule: ``dilation·(kernel − 1)`` split with the
    odd pixel after), or per axis an integer or ``[before, after]`` (asymmetric). They are
    stored in that order, one integer when every axis agrees, so a plain conv is the same
    object however it was spelled. ``padding_mode`` (PyTorch's) other than ``zeros`` copies
    input pixels into the padding: data movement (the address generator reads the pixel it
    copies), the GEMM is the same; only the im2col matrix's zeros differ.

    ``transposed`` is a transposed convolution (its ``c`` inputs, ``m`` outputs, PyTorch's
    output size ``(size − 1)·stride − 2·pad + dilation·(kernel − 1) + output_padding + 1``),
    lowered as the equivalent direct convolution over the zero-inserted input
    (:class:`ConvAxis`); its MACs are that direct conv's, what a dense array computes,
    the inserted zeros included. Its weights are held in that direct conv's layout
    ``[m, c/g, (t,) r, s]`` (PyTorch's ``[c, m/g, …]`` regrouped and flipped).

    ``ceil_mode`` rounds the output size up, as SCALE-Sim does for its topology files
    (``ceil((h − r + stride) / stride)``); the default is PyTorch's
    ``floor((h + pad_before + pad_after − span) / stride) + 1``. ``norm`` adds a batch-norm's
    two affine parameters per filter to the parameter count (it costs no MACs here).
    """

    name: str
    c: int
    h: int
    w: int
    m: int
    r: int
    s: int
    n: int = 1
    stride: int | tuple[int, ...] = 1
    padding: int | str | tuple[Any, ...] = 0
    groups: int = 1
    bias: bool = False
    norm: bool = False
    ceil_mode: bool = False
    d: int = 1
    t: int = 1
    dilation: int | tuple[int, ...] = 1
    padding_mode: str = "zeros"
    transposed: bool = False
    output_padding: int | tuple[int, ...] = 0
    op: ClassVar[str] = "conv2d"

    def __post_init__(self) -> None:
        _check_positive(
            self.name, n=self.n, c=self.c, h=self.h, w=self.w, m=self.m, r=self.r, s=self.s,
            groups=self.groups, d=self.d, t=self.t,
        )
        _check_flags(self.name, bias=self.bias, norm=self.norm, ceil_mode=self.ceil_mode,
                     transposed=self.transposed)
        dims = self.spatial_dims
        stride = _ints(self.name, "stride", self.stride, dims, low=1)
        dilation = _ints(self.name, "dilation", self.dilation, dims, low=1)
        out_pad = _ints(self.name, "output_padding", self.output_padding, dims, low=0)
        kernel = (self.t, self.r, self.s)[3 - dims:]
        if self.padding == "valid":
            pads = ((0, 0),) * dims
        elif self.padding == "same":
            if self.transposed or any(x != 1 for x in stride):
                raise SparsesimError("padding = 'same' needs stride 1 and a direct conv (as in "
                                     "PyTorch)", layer=self.name, field="padding")
            pads = tuple((dl * (k - 1) // 2, dl * (k - 1) - dl * (k - 1) // 2)
                         for dl, k in zip(dilation, kernel))
        elif isinstance(self.padding, str):
            raise SparsesimError(f"unknown padding {self.padding!r}: an integer, per-axis "
                                 "values, 'same' or 'valid'", layer=self.name, field="padding")
        else:
            pads = _pads(self.name, self.padding, dims)
        if self.padding_mode not in PADDING_MODES:
            raise SparsesimError(f"unknown padding_mode {self.padding_mode!r}; expected one of "
                                 f"{', '.join(PADDING_MODES)}", layer=self.name,
                                 field="padding_mode")
        if self.transposed and self.padding_mode != "zeros":
            raise SparsesimError("a transposed conv pads with zeros only (as in PyTorch)",
                                 layer=self.name, field="padding_mode")
        if self.transposed and self.ceil_mode:
            raise SparsesimError("ceil_mode is SCALE-Sim's rule for direct convs only",
                                 layer=self.name, field="ceil_mode")
        sizes = (self.d, self.h, self.w)[3 - dims:]
        for st_, dl, op_, k, p, size in zip(stride, dilation, out_pad, kernel, pads, sizes):
            if self.transposed and op_ >= max(st_, dl):
                raise SparsesimError(f"output_padding {op_} must be smaller than the stride "
                                     f"or the dilation", layer=self.name, field="output_padding")
            if not self.transposed and op_:
                raise SparsesimError("output_padding is for transposed convs only",
                                     layer=self.name, field="output_padding")
            limit = {"reflect": size - 1, "circular": size}.get(self.padding_mode)
            if limit is not None and max(p) > limit:  # PyTorch's limits: one reflection/wrap
                raise SparsesimError(f"{self.padding_mode} padding {max(p)} is more than "
                                     f"{limit} for an input of {size}", layer=self.name,
                                     field="padding")
        object.__setattr__(self, "stride", _canon(stride))
        object.__setattr__(self, "dilation", _canon(dilation))
        object.__setattr__(self, "output_padding", _canon(out_pad))
        symmetric = all(lo == hi for lo, hi in pads)
        object.__setattr__(self, "padding", pads[0][0] if symmetric and len(set(pads)) == 1
                           else tuple(lo if lo == hi else (lo, hi) for lo, hi in pads))
        for field in ("c", "m"):
            if getattr(self, field) % self.groups:
                raise SparsesimError(
                    f"{getattr(self, field)} is not divisible by groups={self.groups}",
                    layer=self.name, field=field,
                )
        for field, axis in zip(("d", "h", "w"), self.axes):
            if axis.out <= 0:
                raise SparsesimError(
                    f"output size is not positive: input {axis.size}, kernel {axis.kernel}, "
                    f"stride {axis.stride}, padding {list(axis.pad)}, dilation "
                    f"{axis.dilation}", layer=self.name, field=field,
                )

    @property
    def spatial_dims(self) -> int:
        """3 for a 3-D conv (``d`` or ``t`` > 1), else 2 (1-D convs are ``h = r = 1``)."""
        return 3 if self.d > 1 or self.t > 1 else 2

    def _per_axis(self, value: object) -> tuple[Any, ...]:
        """A canonical per-axis field as ``(d, h, w)`` (depth neutral in 2-D)."""
        dims = self.spatial_dims
        vals = tuple(value) if isinstance(value, tuple) else (value,) * dims
        return vals if dims == 3 else (None, *vals)

    @property
    def axes(self) -> tuple[ConvAxis, ConvAxis, ConvAxis]:
        """The depth, height and width axes (depth is one pixel, one tap in 2-D)."""
        pads = self._per_axis(self.padding)
        stride, dil, op_ = (self._per_axis(x) for x in
                            (self.stride, self.dilation, self.output_padding))
        out = []
        for i, (size, kernel) in enumerate(((self.d, self.t), (self.h, self.r), (self.w, self.s))):
            if stride[i] is None:  # 2-D: the depth axis reads its one pixel
                out.append(ConvAxis(size, kernel))
                continue
            p = pads[i]
            out.append(ConvAxis(size, kernel, stride[i], (p, p) if isinstance(p, int) else p,
                                dil[i], self.transposed, op_[i], self.ceil_mode,
                                self.padding_mode))
        return out[0], out[1], out[2]

    @property
    def z(self) -> int:
        """Output depth (pixels; 1 in 2-D)."""
        return self.axes[0].out

    @property
    def e(self) -> int:
        """Output height (pixels)."""
        return self.axes[1].out

    @property
    def f(self) -> int:
        """Output width (pixels)."""
        return self.axes[2].out

    @property
    def taps(self) -> int:
        """Kernel taps per input channel, ``t·r·s``."""
        return self.t * self.r * self.s

    @property
    def pixels(self) -> int:
        """Output pixels per image, ``z·e·f`` (the GEMM's rows per image)."""
        return self.z * self.e * self.f

    @property
    def reads_zeros(self) -> bool:
        """Whether im2col reads structural zeros that are not in the input (zero padding,
        inserted zeros of a transposed conv, a ceil-mode overhang): then a dense input still
        has a sparse A operand."""
        return any(bool((a.taps() < 0).any()) for a in self.axes)

    @property
    def dense_macs(self) -> int:
        """``n·m·(c/groups)·t·r·s·z·e·f`` (a transposed conv: its direct equivalent's)."""
        return self.n * self.m * (self.c // self.groups) * self.taps * self.pixels

    @property
    def weights(self) -> int:
        return self.m * (self.c // self.groups) * self.taps

    @property
    def params(self) -> int:
        return self.weights + self.m * (int(self.bias) + 2 * int(self.norm))

    def storage(self, a_bits: int, w_bits: int, o_bits: int) -> Storage:
        """Weights ``m·c/g·t·r·s``, inputs ``n·c·d·h·w`` (unpadded), outputs ``n·m·z·e·f``."""
        return Storage(
            self.weights * w_bits,
            self.n * self.c * self.d * self.h * self.w * a_bits,
            self.n * self.m * self.pixels * o_bits,
        )

    input_channel_axis: ClassVar[int] = 1

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        kernel = (self.t, self.r, self.s) if self.spatial_dims == 3 else (self.r, self.s)
        return {"w": (self.m, self.c // self.groups, *kernel)}

    def reduction_axes(self, tensor: str) -> tuple[int, ...]:
        return tuple(range(1, self.spatial_dims + 2))  # K = (c/g, (t,) r, s): the window

    def activation_shapes(self) -> dict[str, tuple[int, ...]]:
        """None beside its input (only attention has internal, masked activations)."""
        return {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.spatial_dims == 3:
            return (self.n, self.c, self.d, self.h, self.w)
        return (self.n, self.c, self.h, self.w)

    @property
    def batch(self) -> int:
        return self.n

    def with_batch(self, batch: int) -> Conv2d:
        return replace(self, n=batch)

    @property
    def k_per_channel(self) -> int:
        """Consecutive K columns one input channel spans (its ``t·r·s`` taps)."""
        return self.taps

    @property
    def out_channels(self) -> int:
        return self.m

    @property
    def in_channels(self) -> int:
        return self.c

    @property
    def cuts_outputs(self) -> bool:
        return self.groups == 1  # a grouped conv's filters are tied to its input groups

    def with_out_channels(self, keep: int) -> Conv2d:
        if not self.cuts_outputs:
            raise _no_cut(self, "outputs (grouped)")
        return replace(self, m=keep)

    def with_in_channels(self, channels: int, keep: int) -> tuple[Conv2d, bool]:
        """A plain conv reads fewer channels; a depthwise one loses the same channels of its
        outputs too and passes the cut on (``True``)."""
        if self.groups == 1:
            return replace(self, c=keep), False
        if self.groups == self.c == self.m:
            return replace(self, c=keep, m=keep, groups=keep), True
        raise _no_cut(self, "inputs (grouped)")

    def channel_span(self, channels: int) -> int | None:
        """Input channels each of a producer's ``channels`` is (1), or ``None`` when the
        counts differ (the edge is not the one declared)."""
        return 1 if channels == self.c else None


@dataclass(frozen=True, slots=True)
class Linear:
    """Fully connected layer applied to ``tokens`` rows (batch × sequence positions)."""

    name: str
    in_features: int
    out_features: int
    tokens: int = 1
    bias: bool = False
    norm: bool = False
    op: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        _check_positive(
            self.name, tokens=self.tokens, in_features=self.in_features,
            out_features=self.out_features,
        )
        _check_flags(self.name, bias=self.bias, norm=self.norm)

    @property
    def dense_macs(self) -> int:
        """``tokens·in·out``."""
        return self.tokens * self.in_features * self.out_features

    @property
    def weights(self) -> int:
        return self.in_features * self.out_features

    @property
    def params(self) -> int:
        return self.weights + self.out_features * (int(self.bias) + 2 * int(self.norm))

    def storage(self, a_bits: int, w_bits: int, o_bits: int) -> Storage:
        return Storage(
            self.weights * w_bits,
            self.tokens * self.in_features * a_bits,
            self.tokens * self.out_features * o_bits,
        )

    input_channel_axis: ClassVar[int] = -1

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"w": (self.out_features, self.in_features)}

    def reduction_axes(self, tensor: str) -> tuple[int, ...]:
        return (1,)

    def activation_shapes(self) -> dict[str, tuple[int, ...]]:
        """None beside its input (only attention has internal, masked activations)."""
        return {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.tokens, self.in_features)

    @property
    def batch(self) -> int:
        """Its token rows (batch × sequence positions)."""
        return self.tokens

    def with_batch(self, batch: int) -> Linear:
        return replace(self, tokens=batch)

    @property
    def k_per_channel(self) -> int:
        return 1

    @property
    def out_channels(self) -> int:
        return self.out_features

    @property
    def in_channels(self) -> int:
        return self.in_features

    @property
    def cuts_outputs(self) -> bool:
        return True

    def with_out_channels(self, keep: int) -> Linear:
        return replace(self, out_features=keep)

    def with_in_channels(self, channels: int, keep: int) -> tuple[Linear, bool]:
        """After a flatten, each of the producer's ``channels`` feeds ``in_features /
        channels`` features: a cut to ``keep`` channels keeps that many groups of them."""
        if self.in_features % channels:
            raise _no_cut(self, "inputs (not a whole number per channel)")
        return replace(self, in_features=self.in_features // channels * keep), False

    def channel_span(self, channels: int) -> int | None:
        """Input features each producer channel feeds: 1, or ``in / channels`` after a
        flatten (PyTorch's ``(c, h, w)`` order: channel ``j`` is features ``[j·k, (j+1)·k)``);
        ``None`` when ``channels`` does not divide ``in_features``."""
        return None if self.in_features % channels else self.in_features // channels


@dataclass(frozen=True, slots=True)
class Attention:
    """Multi-head attention: Q/K/V/O projections plus the score GEMMs ``QKᵀ`` and ``PV``.

    ``l`` is the number of query tokens processed now, ``kv_len`` the number of keys and
    values attended (defaults to ``l``; for a decode step ``l = 1`` and ``kv_len`` is the
    context length, of which ``kv_len − l`` come from the KV cache). ``kv_heads < heads`` is
    grouped-query attention (smaller K/V projections; the ``group_size`` query heads of a
    group share one K/V head, and the lowering stacks them into one score GEMM per K/V head,
    :mod:`sparsesim.mapping.lower`); ``kv_heads = 1`` is multi-query. ``causal`` records a causal mask: the
    dense array still computes the full score matrix, so it does not change the dense MACs;
    the masked probabilities are zeros that sparse PE kinds may skip in ``PV``.
    ``heads_kept`` is what head pruning leaves: the Q/K/V/O projections and score GEMMs shrink
    to the kept heads (with grouped K/V, the K/V heads their query heads still use).
    """

    name: str
    l: int  # noqa: E741 - the literature's name for sequence length
    e: int
    heads: int
    b: int = 1
    kv_len: int | None = None
    kv_heads: int | None = None
    causal: bool = False
    bias: bool = False
    heads_kept: int | None = None
    op: ClassVar[str] = "attention"

    def __post_init__(self) -> None:
        _check_positive(self.name, b=self.b, l=self.l, e=self.e, heads=self.heads)
        if self.kv_len is not None:
            _check_positive(self.name, kv_len=self.kv_len)
        if self.kv_heads is not None:
            _check_positive(self.name, kv_heads=self.kv_heads)
            if self.heads % self.kv_heads:
                raise SparsesimError(
                    f"heads={self.heads} is not divisible by kv_heads={self.kv_heads}",
                    layer=self.name, field="kv_heads",
                )
        if self.heads_kept is not None:
            _check_positive(self.name, heads_kept=self.heads_kept)
            if self.heads_kept > self.heads:
                raise SparsesimError(f"cannot keep {self.heads_kept} of {self.heads} heads",
                                     layer=self.name, field="heads_kept")
        if self.e % self.heads:
            raise SparsesimError(
                f"embedding {self.e} is not divisible by heads={self.heads}",
                layer=self.name, field="e",
            )
        _check_flags(self.name, causal=self.causal, bias=self.bias)

    @property
    def head_dim(self) -> int:
        return self.e // self.heads

    @property
    def keys(self) -> int:
        """Key/value sequence length attended."""
        return self.l if self.kv_len is None else self.kv_len

    @property
    def active_heads(self) -> int:
        return self.heads if self.heads_kept is None else self.heads_kept

    @property
    def group_size(self) -> int:
        """Query heads per K/V head, ``heads / kv_heads`` (1: multi-head; ``heads``: MQA)."""
        return 1 if self.kv_heads is None else self.heads // self.kv_heads

    @property
    def active_kv_heads(self) -> int:
        """K/V heads still used: each serves ``group_size`` query heads (kept group-packed)."""
        return -(-self.active_heads // self.group_size)

    @property
    def inner(self) -> int:
        """Width of the kept query heads (``active_heads · head_dim``; ``e`` unpruned)."""
        return self.active_heads * self.head_dim

    @property
    def e_kv(self) -> int:
        """Width of the K and V projections (``kv_heads · head_dim``, kept heads only)."""
        return self.active_kv_heads * self.head_dim

    @property
    def dense_macs(self) -> int:
        """``4·b·l·e² + 2·b·l·kv·e`` with multi-head K/V (``kv = l`` gives DESIGN.md's form)."""
        b, l, e = self.b, self.l, self.e
        return (2 * b * l * e * self.inner + 2 * b * l * e * self.e_kv
                + 2 * b * l * self.keys * self.inner)

    @property
    def weights(self) -> int:
        return 2 * self.e * self.inner + 2 * self.e * self.e_kv

    @property
    def params(self) -> int:
        return self.weights + int(self.bias) * (self.inner + self.e + 2 * self.e_kv)

    def storage(self, a_bits: int, w_bits: int, o_bits: int) -> Storage:
        """Inputs are the ``b·l·e`` tokens plus the ``2·b·(kv − l)·e_kv`` cached keys/values."""
        cached = 2 * self.b * max(self.keys - self.l, 0) * self.e_kv
        return Storage(
            self.weights * w_bits,
            (self.b * self.l * self.e + cached) * a_bits,
            self.b * self.l * self.e * o_bits,
        )

    input_channel_axis: ClassVar[int] = -1

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Q, K, V (``[out, e]``) and O (``[e, inner]``), kept heads only."""
        return {"q": (self.inner, self.e), "k": (self.e_kv, self.e), "v": (self.e_kv, self.e),
                "o": (self.e, self.inner)}

    def reduction_axes(self, tensor: str) -> tuple[int, ...]:
        return (1,)

    def causal_mask(self) -> np.ndarray | None:
        """``[l, kv]``: query i (position kv − l + i) may see key j iff j ≤ kv − l + i; the
        same for every (batch, head). ``None`` without a causal mask."""
        if not self.causal:
            return None
        queries = np.arange(self.l)[:, None] + (self.keys - self.l)
        return np.arange(self.keys)[None, :] <= queries

    def activation_shapes(self) -> dict[str, tuple[int, ...]]:
        """Its internal activations (:class:`~sparsesim.names.AttnOperand`), kept heads only:
        queries ``q [b, heads, l, d]``, keys and values ``k``/``v [b, kv_heads, kv, d]`` (one
        per K/V head: its group's query heads read the same), probabilities
        ``p [b, heads, l, kv]`` and the O projection's input ``o_in [b, l, heads·d]``."""
        b, h, kvh, d = self.b, self.active_heads, self.active_kv_heads, self.head_dim
        return {"q": (b, h, self.l, d), "k": (b, kvh, self.keys, d),
                "v": (b, kvh, self.keys, d), "p": (b, h, self.l, self.keys),
                "o_in": (b, self.l, self.inner)}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.b, self.l, self.e)

    @property
    def batch(self) -> int:
        return self.b

    def with_batch(self, batch: int) -> Attention:
        return replace(self, b=batch)

    @property
    def k_per_channel(self) -> int:
        return 1

    @property
    def out_channels(self) -> None:
        return None

    @property
    def in_channels(self) -> None:
        return None

    @property
    def cuts_outputs(self) -> bool:
        return False  # heads, tokens and KV entries are its structured cuts

    def with_out_channels(self, keep: int) -> Attention:
        raise _no_cut(self, "outputs")

    def with_in_channels(self, channels: int, keep: int) -> tuple[Attention, bool]:
        raise _no_cut(self, "inputs")

    def channel_span(self, channels: int) -> None:
        return None  # its inputs are not channels a producer's cut removes


@dataclass(frozen=True, slots=True)
class MatMul:
    """``count`` independent GEMMs ``O[m×n] = A[m×k]·B[k×n]`` (a batched matmul: ``count``
    is the product of the batch axes, e.g. batch × heads of attention's ``QKᵀ``).

    ``weights_operand`` says whether B is stored weights (then ``count`` is 1: a batch of
    weight matrices is not a layer this protocol holds) or an activation, whose non-zero
    pattern is the internal activation ``b`` (``[k, n]``, or ``[count, k, n]`` batched), as
    A's is the input (``[m, k]`` or ``[count, m, k]``). The internal ``o`` marks the outputs
    the network needs (see :meth:`activation_shapes`).
    """

    name: str
    m: int
    k: int
    n: int
    weights_operand: bool = True
    count: int = 1
    op: ClassVar[str] = "matmul"

    def __post_init__(self) -> None:
        _check_positive(self.name, m=self.m, k=self.k, n=self.n, count=self.count)
        _check_flags(self.name, weights_operand=self.weights_operand)
        if self.weights_operand and self.count != 1:
            raise SparsesimError(f"a batched matmul (count={self.count}) must have an "
                                 "activation B: set weights_operand = false", layer=self.name,
                                 field="count")

    def _batched(self, *shape: int) -> tuple[int, ...]:
        return shape if self.count == 1 else (self.count, *shape)

    @property
    def dense_macs(self) -> int:
        """``count·m·k·n``."""
        return self.count * self.m * self.k * self.n

    @property
    def weights(self) -> int:
        return self.k * self.n if self.weights_operand else 0

    @property
    def params(self) -> int:
        return self.weights

    def storage(self, a_bits: int, w_bits: int, o_bits: int) -> Storage:
        c = self.count
        return Storage(
            self.k * self.n * w_bits if self.weights_operand else 0,
            c * (self.m * self.k + (0 if self.weights_operand else self.k * self.n)) * a_bits,
            c * self.m * self.n * o_bits,
        )

    input_channel_axis: ClassVar[int] = -1

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """B as ``[k, n]`` when it is stored weights (none when it is an activation)."""
        return {"w": (self.k, self.n)} if self.weights_operand else {}

    def reduction_axes(self, tensor: str) -> tuple[int, ...]:
        return (0,)

    def activation_shapes(self) -> dict[str, tuple[int, ...]]:
        """An activation B (``b``: ``[k, n]`` or ``[count, k, n]``; none for stored weights)
        and the outputs the network needs (``o``: ``[m, n]`` or ``[count, m, n]``; e.g. a
        causal ``QKᵀ``, whose future scores softmax discards: their products are not
        effectual, :attr:`~sparsesim.mapping.gemm.GemmOperands.o`)."""
        out = {"o": self._batched(self.m, self.n)}
        return out if self.weights_operand else {"b": self._batched(self.k, self.n), **out}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._batched(self.m, self.k)

    @property
    def batch(self) -> int:
        """Its rows (the GEMM's M)."""
        return self.m

    def with_batch(self, batch: int) -> MatMul:
        return replace(self, m=batch)

    @property
    def k_per_channel(self) -> int:
        return 1

    @property
    def out_channels(self) -> None:
        return None

    @property
    def in_channels(self) -> None:
        return None

    @property
    def cuts_outputs(self) -> bool:
        return False

    def with_out_channels(self, keep: int) -> MatMul:
        raise _no_cut(self, "outputs")

    def with_in_channels(self, channels: int, keep: int) -> tuple[MatMul, bool]:
        raise _no_cut(self, "inputs")

    def channel_span(self, channels: int) -> None:
        return None  # its inputs are not channels a producer's cut removes


Layer = Union[Conv2d, Linear, Attention, MatMul]

LAYER_TYPES: dict[str, type[Conv2d] | type[Linear] | type[Attention] | type[MatMul]] = {
    cls.op: cls for cls in (Conv2d, Linear, Attention, MatMul)
}


def layer_fields(op: str) -> tuple[str, ...]:
    """The keyword fields a layer of kind ``op`` accepts (``name`` included)."""
    return tuple(f.name for f in fields(LAYER_TYPES[op]))


__all__ = [
    "Attention", "Conv2d", "ConvAxis", "LAYER_TYPES", "Layer", "LayerShape", "Linear", "MatMul",
    "PADDING_MODES", "Storage", "layer_fields",
]
