"""Capture by graph: any ``torch.nn.Module`` as a workload, one layer per GEMM node.

``torch.export.export(model, args, kwargs)`` gives the model's forward pass as an aten graph
(the default, un-decomposed IR: ``aten.linear``, ``aten.conv2d``, ``aten.matmul``,
``aten.scaled_dot_product_attention``, plus ``mm``/``addmm``/``bmm``/``convolution`` where the
code calls them). :func:`capture` walks it node by node:

* **Weights are told from activations by the graph, not by module class.** A tensor is a
  *stored weight* when it is computed from parameters, buffers and constants only (no user
  input reaches it): a parameter itself, its transpose, or ``weight_orig · weight_mask`` of a
  ``torch.nn.utils.prune`` parametrisation. Its value as the graph computes it is the
  *effective* weight, so pruning masks and zeros already in the weights read as masks.
* **Layers.** ``linear``, ``mm``/``addmm`` and ``matmul`` with one stored 2-D operand become
  :class:`~sparsesim.workload.layers.Linear` (HF ``Conv1D`` is ``addmm`` with its ``[in, out]``
  weight: a Linear whose weight is its transpose; ``W·X`` is transposed to ``Xᵀ·Wᵀ``); with two
  activation operands (``QKᵀ``, ``PV``, ``bmm``) they become batched
  :class:`~sparsesim.workload.layers.MatMul` layers (``count`` = the broadcast batch axes) whose
  B operand is an activation with a measured mask. ``scaled_dot_product_attention`` becomes its
  two score GEMMs ``qk`` and ``pv`` (``count = batch · query heads``; GQA keys and values
  repeated per query head, as the kernel broadcasts them); ``P`` is recomputed from Q, K, the
  mask and the scale to measure its zeros (the causal mask's among them). The scores the
  causal mask or ``attn_mask`` discards are ``qk``'s output mask ``o`` (known before the
  scores, so a skipping PE need not compute them; a dense array computes them all, and the
  dense MACs count them), as :class:`~sparsesim.workload.layers.Attention` does for causal.
  Every convolution (``conv1d/2d/3d``, ``conv_transpose*``, ``convolution``) becomes one
  :class:`~sparsesim.workload.layers.Conv2d` with its parameters: 1-D as height 1, 3-D with
  its depth, per-axis stride, dilation, padding (``'same'`` included), groups, transposed with
  its ``output_padding``. A ``pad`` node feeding a conv (``nn.Conv2d(padding_mode=...)``
  exports as one; so does a TF-style ``F.pad``) is folded into the conv's padding and
  ``padding_mode`` when it pads only spatial axes by non-negative amounts, with zeros or a
  copying mode (and the conv adds no zero padding of its own to a copying one); the conv's
  input is then the pad's input. PyTorch counts a transposed conv as its scatter
  (``n·c·m/g·kernel·input pixels``), the layer as its direct equivalent over the
  zero-inserted input (what a dense array computes): the parity gate compares the node with
  PyTorch's count (:attr:`Site.macs`). A batch of stored weight matrices is refused in one
  line naming the op, and counted as uncaptured.
* **Names** come from the node's ``nn_module_stack``: the innermost module's path
  (``encoder.layer.0.attention.self.query``), ``model`` at the root; a module holding several
  GEMM nodes names each ``{path}.{node}`` (e.g. ``attn.matmul_1``), SDPA's two ``.qk``/``.pv``.
  A module called twice (tied or reused weights) is two layers: two nodes.
* **Parity** (:mod:`sparsesim.prune.torch.parity`): the capture pass runs every node under
  PyTorch's FlopCounterMode, so a node that dispatched MACs no layer holds is listed with its
  op, module and reason; the total is compared with an eager count of the same forward.

Activation masks are measured by running the exported module with a
:class:`torch.fx.Interpreter` on the calibration inputs: every GEMM's A operand (its layer's
input) and an activation B are recorded as non-zero masks, with the weights a pruning chose
applied at their GEMM node (the graph's weight times the mask), so the masks are those of the
pruned model. The calibration batch is the simulated batch.

Filter, channel and block pruning compact the trace (``sparsesim.prune.compact``) along the
graph read from the same exported program (:func:`units`, ``sparsesim.prune.torch.graphs``):
each GEMM node is a layer reading its activation operand; a matmul's other activation operand
and SDPA's keys and values are pinned.
pruned model. The calibration batch is the simulated batch unless ``sim_batch`` says how many
of its samples (the first) are simulated (:func:`capture`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn

from sparsesim.errors import SparsesimError
from sparsesim.prune.criteria import LayerStats
from sparsesim.prune.front import Masks
from sparsesim.prune.graphtrace import Measured, graph_trace, stats_of
from sparsesim.prune.spec import PruneSpec
from sparsesim.prune.synthetic import Weights
from sparsesim.prune.compact import compact
from sparsesim.prune.torch import graphs, parity
from sparsesim.prune.torch.rebuild import compact_masks
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Conv2d, Layer, Linear, MatMul
from sparsesim.workload.network import Workload

aten = torch.ops.aten
Values = dict[str, Any]  # an op's arguments bound to their schema names


def _bind(target: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Values:
    """An op's arguments by schema name, defaults filled in."""
    out: Values = {}
    for i, a in enumerate(target._schema.arguments):
        if i < len(args):
            out[a.name] = args[i]
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
    return out


@dataclass(frozen=True)
class WeightRef:
    """Where a layer's stored weight is among its node's arguments (``index``: its place in
    a list argument, einsum's ``tensors``), and how its layout maps to the layer's (``to``)
    and back (``back``: to apply a mask in the graph's layout)."""

    arg: str
    to: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    back: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    index: int | None = None

    def get(self, v: Values) -> torch.Tensor:
        x = v[self.arg]
        return x if self.index is None else x[self.index]

    def put(self, v: Values, value: torch.Tensor) -> None:
        if self.index is None:
            v[self.arg] = value
        else:
            items = list(v[self.arg])
            items[self.index] = value
            v[self.arg] = items


def _t(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(-1, -2)


@dataclass(frozen=True)
class Site:
    """One workload layer at one graph node: how to read its operands from the node's
    runtime arguments (``a``: the layer's input, in its ``input_shape``; ``b``: an
    activation B in its ``activation_shapes()["b"]``; ``w``: the stored weight)."""

    layer: Layer
    node: str
    a: Callable[[Values, dict[str, Any]], torch.Tensor]
    w: WeightRef | None = None
    b: Callable[[Values, dict[str, Any]], torch.Tensor] | None = None
    o: Callable[[Values, dict[str, Any]], torch.Tensor | None] | None = None  # needed outputs
    counted_macs: int | None = None  # PyTorch's count when it differs from the layer's

    @property
    def macs(self) -> int:
        """The node's MACs as PyTorch counts them (the parity gate's unit)."""
        return self.layer.dense_macs if self.counted_macs is None else self.counted_macs


class Refusal(Exception):
    """A GEMM node the layer protocol cannot hold yet (the message says why)."""


# --- the graph walk -----------------------------------------------------------------------------


def _shape(x: Any) -> tuple[int, ...]:
    val = x.meta.get("val") if isinstance(x, torch.fx.Node) else x
    if not isinstance(val, torch.Tensor):
        raise Refusal(f"operand {x} has no static tensor shape")
    return tuple(int(d) for d in val.shape)


def _prod(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def _gemm2(name: str, a: str, b: str, sa: tuple[int, ...], sb: tuple[int, ...],
           static_a: bool, static_b: bool, bias: bool) -> tuple[Layer, Callable[..., Any],
                                                                WeightRef | None,
                                                                Callable[..., Any] | None]:
    """``A[..., m, k] · B[..., k, n]`` (torch.matmul's broadcasting; a 1-D A is one row, a 1-D
    B one column) as a Linear (one stored 2-D operand) or a batched activation MatMul."""
    k = sa[-1]
    if static_b and len(sb) <= 2:
        n = 1 if len(sb) == 1 else sb[-1]
        tokens = _prod(sa[:-1])
        layer: Layer = Linear(name, in_features=k, out_features=n, tokens=tokens, bias=bias)
        if len(sb) == 1:
            ref = WeightRef(b, lambda t: t[None, :], lambda t: t[0])
        else:
            ref = WeightRef(b, _t, _t)
        return layer, lambda v, c: v[a].reshape(tokens, k), ref, None
    if static_a and len(sa) == 2 and not static_b and len(sb) == 2:
        m, n = sa[0], sb[1]  # W·X = (Xᵀ·Wᵀ)ᵀ: X's columns are the tokens, W [m, k] is [out, in]
        layer = Linear(name, in_features=k, out_features=m, tokens=n, bias=bias)
        return layer, lambda v, c: _t(v[b]), WeightRef(a), None
    if static_a or static_b:
        raise Refusal("a batch of stored weight matrices (a matmul whose weight operand has "
                      "batch axes) is not a layer sparsesim holds yet")
    m = 1 if len(sa) == 1 else sa[-2]
    n = 1 if len(sb) == 1 else sb[-1]
    batch = torch.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
    count = _prod(batch)
    layer = MatMul(name, m=m, k=k, n=n, weights_operand=False, count=count)
    lead = (count,) if count > 1 else ()

    def a_of(v: Values, c: dict[str, Any]) -> torch.Tensor:
        x = v[a] if len(sa) > 1 else v[a][None, :]
        return x.expand(*batch, m, k).reshape(*lead, m, k)

    def b_of(v: Values, c: dict[str, Any]) -> torch.Tensor:
        x = v[b] if len(sb) > 1 else v[b][:, None]
        return x.expand(*batch, k, n).reshape(*lead, k, n)

    return layer, a_of, None, b_of


def _matmul_sites(name: str, node: torch.fx.Node, v: Values, static: Callable[[Any], bool],
                  a: str, b: str, bias: bool) -> list[Site]:
    layer, a_of, w, b_of = _gemm2(name, a, b, _shape(v[a]), _shape(v[b]), static(v[a]),
                                  static(v[b]), bias)
    return [Site(layer, node.name, a_of, w, b_of)]


def _linear(name: str, node: torch.fx.Node, v: Values, static: Callable[[Any], bool]
            ) -> list[Site]:
    sx, sw = _shape(v["input"]), _shape(v["weight"])
    bias = v.get("bias") is not None
    if static(v["weight"]):
        tokens = _prod(sx[:-1])
        if _is_in_proj(node, v["weight"], sw):
            return _split_in_proj(name, node, tokens, sw, bias)
        layer = Linear(name, in_features=sw[1], out_features=sw[0], tokens=tokens, bias=bias)
        return [Site(layer, node.name, lambda vv, c: vv["input"].reshape(tokens, sw[1]),
                     WeightRef("weight"))]
    rows = _prod(sx[:-1])
    mm = MatMul(name, m=rows, k=sw[1], n=sw[0], weights_operand=False)
    return [Site(mm, node.name, lambda vv, c: vv["input"].reshape(rows, sw[1]),
                 None, lambda vv, c: _t(vv["weight"]))]


def _is_in_proj(node: torch.fx.Node, weight: Any, sw: tuple[int, ...]) -> bool:
    """``nn.MultiheadAttention``'s packed ``in_proj_weight`` (``[3·e, e]``, self-attention):
    PyTorch runs Q, K and V as one linear on it."""
    stack = node.meta.get("nn_module_stack") or {}
    inner = str(list(stack.values())[-1][1]) if stack else ""
    return (inner.endswith("MultiheadAttention") and str(weight).endswith("in_proj_weight")
            and len(sw) == 2 and sw[0] == 3 * sw[1])


def _split_in_proj(name: str, node: torch.fx.Node, tokens: int, sw: tuple[int, ...],
                   bias: bool) -> list[Site]:
    """The packed Q/K/V projection as three linears ``{name}.q/.k/.v`` on the same input,
    each its ``e`` rows of the weight (so its heads are rows of its own layer); a mask of
    one is applied to its rows only."""
    e = sw[1]

    def a_of(vv: Values, c: dict[str, Any]) -> torch.Tensor:
        return vv["input"].reshape(tokens, e)

    def part_of(rows: slice) -> WeightRef:
        def to(t: torch.Tensor) -> torch.Tensor:
            return t[rows]

        def back(t: torch.Tensor) -> torch.Tensor:
            full = torch.ones(sw, dtype=t.dtype)
            full[rows] = t
            return full

        return WeightRef("weight", to, back)

    return [Site(Linear(f"{name}.{part}", in_features=e, out_features=e, tokens=tokens,
                        bias=bias), node.name, a_of, part_of(slice(i * e, (i + 1) * e)))
            for i, part in enumerate("qkv")]


def _einsum(name: str, node: torch.fx.Node, v: Values, static: Callable[[Any], bool]
            ) -> list[Site]:
    """A two-operand einsum that is a GEMM: indices in both operands and the output are batch
    axes (``count``), in both but not the output the contraction (K), in one operand and the
    output its free axes (M, N). A stored operand with no batch axis makes it a Linear."""
    eq = str(v["equation"]).replace(" ", "")
    tensors = list(v["tensors"])
    if "->" not in eq or "." in eq or len(tensors) != 2:
        raise Refusal(f"einsum {eq!r} is not a two-operand GEMM with an explicit output")
    ins, out = eq.split("->")
    sa_idx, sb_idx = ins.split(",")
    sa, sb = _shape(tensors[0]), _shape(tensors[1])
    if (len(set(sa_idx)) != len(sa_idx) or len(set(sb_idx)) != len(sb_idx)
            or len(set(out)) != len(out) or len(sa_idx) != len(sa) or len(sb_idx) != len(sb)):
        raise Refusal(f"einsum {eq!r} repeats an index (a diagonal) or mismatches its shapes")
    size = {**dict(zip(sa_idx, sa)), **dict(zip(sb_idx, sb))}
    if any(size[i] != d for i, d in zip(sa_idx, sa)):
        raise Refusal(f"einsum {eq!r} broadcasts an axis")
    batch = [i for i in out if i in sa_idx and i in sb_idx]
    contract = [i for i in sa_idx if i in sb_idx and i not in out]
    free_a = [i for i in sa_idx if i not in sb_idx]
    free_b = [i for i in sb_idx if i not in sa_idx]
    if any(i not in out for i in free_a + free_b) or any(
            i not in sa_idx and i not in sb_idx for i in out):
        raise Refusal(f"einsum {eq!r} sums an axis of one operand alone (not a GEMM)")
    st_a, st_b = static(tensors[0]), static(tensors[1])
    ai, bi, ia, ib, fa, fb = 0, 1, sa_idx, sb_idx, free_a, free_b
    if st_a and not st_b:  # O = A·W with the stored operand first: Oᵀ = W'·A'
        ai, bi, ia, ib, fa, fb = 1, 0, sb_idx, sa_idx, free_b, free_a
    m, k, n = (_prod([size[i] for i in x]) for x in (fa, contract, fb))
    count = _prod([size[i] for i in batch])
    lead = (count,) if batch else ()
    perm_a = [ia.index(i) for i in batch + fa + contract]
    perm_b = [ib.index(i) for i in batch + contract + fb]

    def a_of(vv: Values, c: dict[str, Any]) -> torch.Tensor:
        return vv["tensors"][ai].permute(perm_a).reshape(*lead, m, k)

    def b_of(vv: Values, c: dict[str, Any]) -> torch.Tensor:
        return vv["tensors"][bi].permute(perm_b).reshape(*lead, k, n)

    if st_a and st_b:
        raise Refusal("an einsum of two stored tensors is not a layer (no activation)")
    if st_a or st_b:
        if batch:
            raise Refusal("a batch of stored weight matrices (an einsum whose weight operand "
                          "has batch axes) is not a layer sparsesim holds yet")
        wshape = _shape(tensors[bi])
        inverse = [perm_b.index(j) for j in range(len(perm_b))]
        layout = [wshape[j] for j in perm_b]
        ref = WeightRef("tensors", lambda t: t.permute(perm_b).reshape(k, n).T,
                        lambda t: t.T.reshape(layout).permute(inverse), index=bi)
        layer: Layer = Linear(name, in_features=k, out_features=n, tokens=m)
        return [Site(layer, node.name, a_of, ref)]
    layer = MatMul(name, m=m, k=k, n=n, weights_operand=False, count=count)
    return [Site(layer, node.name, a_of, None, b_of)]


def _pairs(x: Any, dims: int, what: str) -> list[int]:
    vals = [int(i) for i in (x if isinstance(x, (list, tuple)) else [x])]
    if len(vals) == 1:
        vals = vals * dims
    if len(vals) != dims:
        raise Refusal(f"{what} {vals} for a {dims}-D convolution")
    return vals


_PAD_MODES = {"constant": "zeros", "reflect": "reflect", "replicate": "replicate",
              "circular": "circular"}


def _folded_pad(x: Any, dims: int) -> tuple[list[tuple[int, int]], str] | None:
    """The padding a ``pad`` node in front of a conv adds per spatial axis (``(before,
    after)``, PyTorch's ``F.pad`` lists the last axis first) and its mode, when the conv
    can hold it (non-negative, spatial axes only, zeros or a copying mode); else ``None``.
    ``nn.Conv2d(padding_mode='reflect')`` and TF-style asymmetric ``F.pad`` are this."""
    if not isinstance(x, torch.fx.Node) or x.op != "call_function":
        return None
    if x.target == aten.pad.default:
        v = _bind(x.target, x.args, x.kwargs)
        mode, value = v.get("mode", "constant"), v.get("value")
    elif x.target == aten.constant_pad_nd.default:
        v = _bind(x.target, x.args, x.kwargs)
        mode, value = "constant", v.get("value", 0)
    else:
        return None
    pad = [int(p) for p in v["pad"]]
    if (mode not in _PAD_MODES or (mode == "constant" and value not in (None, 0, 0.0))
            or len(pad) % 2 or len(pad) > 2 * dims or min(pad, default=0) < 0):
        return None
    pad += [0] * (2 * dims - len(pad))
    per_axis = [(pad[2 * i], pad[2 * i + 1]) for i in range(dims)][::-1]  # first axis first
    return per_axis, _PAD_MODES[mode]


def _conv_weight(layer: Conv2d, sw: tuple[int, ...], transposed: bool) -> WeightRef:
    """PyTorch's kernel ↔ the layer's ``[m, c/g, (t,) r, s]``: a 1-D kernel gains ``r = 1``;
    a transposed one (``[c, m/g, k…]``) is regrouped and flipped into the direct conv's."""
    shape = layer.weight_shapes()["w"]
    if not transposed:
        return WeightRef("weight", lambda t: t.reshape(shape), lambda t: t.reshape(sw))
    g, c, mg = layer.groups, sw[0], sw[1]
    kernel = shape[2:]
    flip = tuple(range(3, 3 + len(kernel)))

    def to(t: torch.Tensor) -> torch.Tensor:
        x = t.reshape(g, c // g, mg, *kernel).transpose(1, 2).flip(flip)
        return x.reshape(shape)

    def back(t: torch.Tensor) -> torch.Tensor:
        x = t.reshape(g, mg, c // g, *kernel).flip(flip).transpose(1, 2)
        return x.reshape(sw)

    return WeightRef("weight", to, back)


def _conv(name: str, node: torch.fx.Node, v: Values, static: Callable[[Any], bool],
          transposed: bool) -> list[Site]:
    """Any aten convolution as one Conv2d: 1-D as height 1, 3-D with its depth, per-axis
    stride, padding (a ``pad`` node in front folded in) and dilation, transposed."""
    sx, sw = _shape(v["input"]), _shape(v["weight"])
    dims = len(sw) - 2
    if dims not in (1, 2, 3):
        raise Refusal(f"a {dims}-D convolution is not a layer sparsesim holds")
    if not static(v["weight"]):
        raise Refusal("a convolution whose kernel is an activation is not modelled")
    stride = _pairs(v.get("stride", 1), dims, "stride")
    dilation = _pairs(v.get("dilation", 1), dims, "dilation")
    out_pad = _pairs(v.get("output_padding", 0), dims, "output_padding")
    groups = int(v.get("groups", 1))
    kernel = list(sw[2:])
    pad = v.get("padding", 0)
    pads: list[tuple[int, int]] | str
    pads = pad if isinstance(pad, str) else [(p, p) for p in _pairs(pad, dims, "padding")]
    mode = "zeros"
    folded = None if transposed or isinstance(pads, str) else _folded_pad(v["input"], dims)
    batched = len(sx) == dims + 2
    spatial = list(sx[2:] if batched else sx[1:])
    if folded is not None and (folded[1] == "zeros" or all(p == (0, 0) for p in pads)):
        extra, mode = folded
        assert not isinstance(pads, str)
        pads = [(a + x, b + y) for (a, b), (x, y) in zip(pads, extra)]
        crop = [(lo, size - hi) for (lo, hi), size in zip(extra, spatial)]
        spatial = [hi - lo for lo, hi in crop]
    else:
        crop = None
    n = sx[0] if batched else 1
    c = sx[1] if batched else sx[0]
    m = sw[1] * groups if transposed else sw[0]
    if dims == 3 and spatial[0] == 1 and kernel[0] == 1:
        if isinstance(pads, str) or pads[0] != (0, 0) or out_pad[0]:
            raise Refusal("a 3-D convolution padding a depth of one pixel is not modelled")
        dims, spatial, kernel = 2, spatial[1:], kernel[1:]
        stride, dilation, out_pad, pads = stride[1:], dilation[1:], out_pad[1:], pads[1:]
    if dims == 1:  # height 1: one pixel, one tap, no padding (its stride and dilation, the
        # width's, change nothing there: the layer stays the plain one it was)
        spatial, kernel = [1, *spatial], [1, *kernel]
        stride, dilation, out_pad = [stride[0], *stride], [dilation[0], *dilation], [0, *out_pad]
        if not isinstance(pads, str):
            pads = [(0, 0), *pads]
    d, t = (spatial[0], kernel[0]) if dims == 3 else (1, 1)
    layer = Conv2d(name, c=c, h=spatial[-2], w=spatial[-1], m=m, r=kernel[-2], s=kernel[-1],
                   n=n, stride=tuple(stride), groups=groups, bias=v.get("bias") is not None,
                   padding=pads if isinstance(pads, str) else tuple(pads),
                   dilation=tuple(dilation), padding_mode=mode, transposed=transposed,
                   output_padding=tuple(out_pad) if transposed else 0, d=d, t=t)
    shape = layer.input_shape

    def a_of(vv: Values, cc: dict[str, Any]) -> torch.Tensor:
        x = vv["input"]
        if crop is not None:  # the pad node's input: the pad is the conv's own padding
            lead = x.dim() - len(crop)
            x = x[(slice(None),) * lead + tuple(slice(lo, hi) for lo, hi in crop)]
        return x.reshape(shape)

    # PyTorch counts a transposed conv's MACs as the scatter (every input pixel × kernel);
    # the layer's are its direct equivalent's over the zero-inserted input
    counted = None
    if transposed:
        counted = n * c * (m // groups) * math.prod(sw[2:]) * math.prod(sx[2:] if batched
                                                                         else sx[1:])
    return [Site(layer, node.name, a_of, _conv_weight(layer, sw, transposed),
                 counted_macs=counted)]


def needed_scores(v: Values) -> torch.Tensor | None:
    """The scores SDPA's softmax keeps (``[..., l, s]`` bool): the causal mask AND a boolean
    ``attn_mask`` (or a float one's finite entries); ``None`` when every score is needed.
    Known before the scores are computed, so ``QKᵀ`` need not compute the others."""
    q, k = v["query"], v["key"]
    l, s = q.shape[-2], k.shape[-2]  # noqa: E741 - sequence lengths
    keep = None
    if v.get("is_causal"):
        keep = torch.ones(l, s, dtype=torch.bool).tril()
    mask = v.get("attn_mask")
    if mask is not None:
        m = mask if mask.dtype == torch.bool else torch.isfinite(mask) | (mask > 0)
        keep = m if keep is None else keep & m
    return keep


def probabilities(v: Values) -> torch.Tensor:
    """SDPA's attention probabilities ``softmax(q·kᵀ·scale + mask)`` (GQA keys repeated per
    query head), as the kernel computes them; their zeros are PV's A-operand zeros."""
    q, k = v["query"], v["key"]
    if v.get("enable_gqa") and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scale = v.get("scale")
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ _t(k)) * scale  # in the model's precision: its underflows are its zeros
    mask = v.get("attn_mask")
    if v.get("is_causal"):
        l, s = scores.shape[-2:]  # noqa: E741 - sequence lengths
        keep = torch.ones(l, s, dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    return torch.softmax(scores, dim=-1)


def _sdpa(name: str, node: torch.fx.Node, v: Values, static: Callable[[Any], bool]
          ) -> list[Site]:
    sq, sk, sv = _shape(v["query"]), _shape(v["key"]), _shape(v["value"])
    if any(static(v[x]) for x in ("query", "key", "value")):
        raise Refusal("attention on stored (constant) queries, keys or values is not modelled")
    if float(v.get("dropout_p", 0.0) or 0.0) != 0:
        raise Refusal("attention dropout (dropout_p > 0) makes the probabilities random: "
                      "export the model in eval mode")
    batch = sq[:-2]
    count, l, e, s, ev = _prod(batch), sq[-2], sq[-1], sk[-2], sv[-1]  # noqa: E741
    lead = (count,) if count > 1 else ()
    rep = 1 if len(sk) < 3 or sk[-3] == sq[-3] else sq[-3] // sk[-3]

    def kv(x: torch.Tensor) -> torch.Tensor:
        if rep > 1:
            x = x.repeat_interleave(rep, dim=-3)
        return x.expand(*batch, *x.shape[-2:]).reshape(*lead, *x.shape[-2:])

    def p_of(vv: Values, cache: dict[str, Any]) -> torch.Tensor:
        if "p" not in cache:
            cache["p"] = probabilities(vv).reshape(*lead, l, s)
        return cache["p"]

    qk = MatMul(f"{name}.qk", m=l, k=e, n=s, weights_operand=False, count=count)
    pv = MatMul(f"{name}.pv", m=l, k=s, n=ev, weights_operand=False, count=count)
    def o_of(vv: Values, cache: dict[str, Any]) -> torch.Tensor | None:
        keep = needed_scores(vv)
        return None if keep is None else keep.expand(*batch, l, s).reshape(*lead, l, s)

    return [Site(qk, node.name, lambda vv, c: vv["query"].reshape(*lead, l, e), None,
                 lambda vv, c: _t(kv(vv["key"])), o_of),
            Site(pv, node.name, p_of, None, lambda vv, c: kv(vv["value"]))]


_Handler = Callable[[str, torch.fx.Node, Values, Callable[[Any], bool]], list[Site]]


def _handlers() -> dict[Any, _Handler]:
    h: dict[Any, _Handler] = {
        aten.linear.default: _linear,
        aten.mm.default: lambda n, node, v, st: _matmul_sites(n, node, v, st, "self", "mat2",
                                                              False),
        aten.addmm.default: lambda n, node, v, st: _matmul_sites(n, node, v, st, "mat1", "mat2",
                                                                 True),
        aten.matmul.default: lambda n, node, v, st: _matmul_sites(n, node, v, st, "self",
                                                                  "other", False),
        aten.bmm.default: lambda n, node, v, st: _matmul_sites(n, node, v, st, "self", "mat2",
                                                               False),
        aten.baddbmm.default: lambda n, node, v, st: _matmul_sites(n, node, v, st, "batch1",
                                                                   "batch2", True),
        aten.scaled_dot_product_attention.default: _sdpa,
        aten.einsum.default: _einsum,
    }
    for op in (aten.conv1d.default, aten.conv2d.default, aten.conv3d.default,
               aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding):
        h[op] = lambda n, node, v, st: _conv(n, node, v, st, False)
    h[aten.convolution.default] = lambda n, node, v, st: _conv(n, node, v, st,
                                                              bool(v.get("transposed")))
    for name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        packet = getattr(aten, name, None)
        for overload in ([] if packet is None else packet.overloads()):
            h[getattr(packet, overload)] = lambda n, node, v, st: _conv(n, node, v, st, True)
    return h


HANDLERS = _handlers()


def module_path(node: torch.fx.Node) -> str:
    """The innermost module the node ran in (``""`` at the model's root)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    return str(list(stack.values())[-1][0])


@dataclass
class Graph:
    """What the walk found: the sites (layers) in graph order and the refused GEMM nodes."""

    program: Any  # torch.export.ExportedProgram
    module: torch.fx.GraphModule
    sites: list[Site]
    refused: dict[str, str]  # node → reason
    paths: dict[str, str]  # node → module path


def walk(program: Any) -> Graph:
    """Sites for every GEMM node of an exported program (refusals kept with their reason)."""
    gm = program.module()
    static: set[torch.fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr" or (node.op == "call_function"
                                     and all(i in static for i in node.all_input_nodes)):
            static.add(node)

    def is_static(x: Any) -> bool:
        return isinstance(x, torch.fx.Node) and x in static

    found: list[tuple[torch.fx.Node, str, Any]] = []
    refused: dict[str, str] = {}
    paths: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in HANDLERS:
            continue
        paths[node.name] = module_path(node)
        found.append((node, paths[node.name], node.target))
    per_path: dict[str, int] = {}
    for _, path, _ in found:
        per_path[path] = per_path.get(path, 0) + 1
    sites: list[Site] = []
    for node, path, target in found:
        base = path or "model"
        name = base if per_path[path] == 1 else f"{base}.{node.name}"
        v = _bind(target, node.args, node.kwargs)
        try:
            sites += HANDLERS[target](name, node, v, is_static)
        except Refusal as why:
            refused[node.name] = str(why)
        except SparsesimError as err:
            refused[node.name] = err.message
    return Graph(program, gm, sites, refused, paths)


# --- running the graph ----------------------------------------------------------------------------


def _sq_norms(layer: Layer, a: torch.Tensor) -> np.ndarray:
    """``‖X_j‖₂`` per input feature (conv: per input channel), Wanda's statistic."""
    x = a.detach().double()
    if isinstance(layer, Conv2d):
        s = x.pow(2).sum(dim=tuple(d for d in range(x.dim()) if d != 1))
    else:
        s = x.reshape(-1, x.shape[-1]).pow(2).sum(dim=0)
    return s.sqrt().float().numpy()


class _Run(torch.fx.Interpreter):
    """Runs the graph; at each GEMM node records its operands (and applies weight masks)."""

    def __init__(self, graph: Graph, out: Measured, masks: Masks | None, count: bool,
                 norms: bool, record: bool = True) -> None:
        super().__init__(graph.module)
        self.by_node: dict[str, list[Site]] = {}
        for s in graph.sites:
            self.by_node.setdefault(s.node, []).append(s)
        self.out, self.masks, self.count, self.want_norms = out, masks, count, norms
        self.record = record

    def run_node(self, n: torch.fx.Node) -> Any:
        if n.op != "call_function":
            return super().run_node(n)
        sites = self.by_node.get(n.name)
        if sites is None and not self.count:
            return super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        if sites:
            v = _bind(n.target, args, kwargs)
            for s in sites:
                mask = (self.masks or {}).get(s.layer.name, {}).get("w")
                if s.w is not None and mask is not None:
                    w = s.w.get(v)
                    s.w.put(v, w * s.w.back(torch.as_tensor(mask, dtype=w.dtype)))
            cache: dict[str, Any] = {}
            for s in sites:
                self._record(s, v, cache)
            args = tuple(v[a.name] for a in n.target._schema.arguments  # type: ignore[union-attr]
                         if a.name in v and not a.kwarg_only)
            kwargs = {a.name: v[a.name] for a in n.target._schema.arguments  # type: ignore[union-attr]
                      if a.name in v and a.kwarg_only}
        target: Any = n.target
        if not self.count:
            return target(*args, **kwargs)
        out, macs = parity.count_call(lambda: target(*args, **kwargs))
        if macs:
            self.out.node_macs[n.name] = macs
        return out

    def _record(self, s: Site, v: Values, cache: dict[str, Any]) -> None:
        name, layer = s.layer.name, s.layer
        a = s.a(v, cache)
        if not self.record:  # a statistics pass: no masks kept
            if self.want_norms:
                self.out.norms[name] = _sq_norms(layer, a)
            return
        self.out.inputs[name] = (a != 0).numpy()
        if s.b is not None:
            self.out.internal.setdefault(name, {})["b"] = (s.b(v, cache) != 0).numpy()
        o = None if s.o is None else s.o(v, cache)
        if o is not None:
            self.out.internal.setdefault(name, {})["o"] = o.numpy().copy()
        if s.w is not None and self.masks is None:  # a pruned pass: the masks say
            self.out.weights[name] = {"w": s.w.to(s.w.get(v)).detach().float().numpy().copy()}
        if self.want_norms:
            self.out.norms[name] = _sq_norms(layer, a)


def flat_inputs(program: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
    """The exported module's flat placeholders for ``(args, kwargs)`` (its pytree spec)."""
    from torch.utils import _pytree

    flat, spec = _pytree.tree_flatten((tuple(args), dict(kwargs)))
    want = program.call_spec.in_spec
    if want is not None and spec != want:
        raise SparsesimError("the calibration inputs are not structured as the example inputs "
                             "the model was exported with", field="inputs")
    return flat


def run(graph: Graph, args: Sequence[Any], kwargs: Mapping[str, Any], *,
        masks: Masks | None = None, count: bool = False, norms: bool = False,
        record: bool = True) -> Measured:
    """One pass of the graph on the inputs (no grad); ``record = False`` keeps only the
    statistics (``norms``), no operand masks."""
    out = Measured()
    with torch.no_grad():
        out.output = _Run(graph, out, masks, count, norms, record).run(
            *flat_inputs(graph.program, args, kwargs))
    return out


# --- the graph ------------------------------------------------------------------------------------

#: the activation operand a weight layer reads, by the argument holding its stored weight
_READS = {"weight": "input", "mat2": ("self", "mat1"), "other": "self", "batch2": "batch1"}


def units(graph: Graph) -> list[graphs.Unit]:
    """The layers of ``graph`` as units of its fx graph (``sparsesim.prune.torch.graphs``): a
    weight layer reads its activation operand (last axis; NCHW for a conv); a weight on the
    left (``W·X``) and activation × activation products read on no provable channel axis,
    their other operands pinned."""
    gm = graph.module
    static = graphs.static_nodes(gm, {n.name for n in gm.graph.nodes if n.op == "placeholder"})
    by_node: dict[str, list[Site]] = {}
    for s in graph.sites:
        by_node.setdefault(s.node, []).append(s)
    out = []
    for node in graph.module.graph.nodes:
        sites = by_node.get(node.name)
        if not sites:
            continue
        v = _bind(node.target, node.args, node.kwargs)
        acts = [x for k, x in v.items() if isinstance(x, torch.fx.Node)
                and x.name not in static and (sites[0].w is None or k != sites[0].w.arg)]
        layers = tuple((s.layer.name, s.layer.op) for s in sites)
        w = sites[0].w
        if isinstance(sites[0].layer, Conv2d):
            unit = graphs.Unit(layers, v["input"], 1, node, 1)
        elif w is not None and w.arg in _READS:
            names = _READS[w.arg]
            key = next((k for k in ((names,) if isinstance(names, str) else names)
                        if isinstance(v.get(k), torch.fx.Node) and v[k].name not in static),
                       None)  # addmm's "self" is its bias
            unit = graphs.Unit(layers, None if key is None else v[key], -1, node, -1)
        else:  # W·X, or both operands activations: nothing read on a channel axis
            first = acts[0] if acts else None
            unit = graphs.Unit(layers, first, None, node, None, tuple(acts[1:]))
        out.append(unit)
    return out
def first_samples(args: Sequence[Any], kwargs: Mapping[str, Any], n: int
                  ) -> tuple[tuple[Any, ...], dict[str, Any], int]:
    """The first ``n`` samples of a calibration batch: every input tensor whose first axis is
    the batch ``B`` (the first input tensor's first axis) cut to its first ``n`` rows; other
    inputs (flags, broadcast ``[1, …]`` tensors) as they are. Returns them and ``B``."""
    from torch.utils import _pytree

    leaves, spec = _pytree.tree_flatten((tuple(args), dict(kwargs)))
    tensors = [x for x in leaves if isinstance(x, torch.Tensor) and x.dim() > 0]
    if not tensors:
        raise SparsesimError("the inputs hold no tensor with a batch axis", field="--sim-batch")
    batch = int(tensors[0].shape[0])
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= batch:
        raise SparsesimError(f"must be an integer in [1, {batch}] (the calibration batch), got "
                             f"{n!r}", field="--sim-batch")
    cut = [x[:n] if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch
           else x for x in leaves]
    sim_args, sim_kwargs = _pytree.tree_unflatten(cut, spec)
    return tuple(sim_args), dict(sim_kwargs), batch


# --- the front-end object ------------------------------------------------------------------------


@dataclass
class Captured:
    """A model captured by graph: its workload, effective weights, coverage and a pass."""

    graph: Graph
    workload: Workload
    coverage: parity.Coverage
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    first: Measured  # the pass on the model as it is (its own zeros)
    calibration: dict[str, Any] | None = None  # the batches, with sim_batch (trace meta)

    def weights(self) -> Weights:
        return self.first.weights

    def stats(self) -> dict[str, LayerStats]:
        """Wanda's input norms per layer with a stored weight."""
        return stats_of(self.first)

    def trace(self, spec: PruneSpec | None = None, *, meta: Mapping[str, Any] | None = None,
              masks: Masks | None = None) -> Trace:
        """The trace (:func:`~sparsesim.prune.graphtrace.graph_trace`): weight masks = non-zero
        patterns of the effective weights (after ``spec``'s pruning, computed on them, or
        ``masks`` chosen already), activation masks measured on the pruned model; filter,
        channel and block pruning compacted along the exported graph, head pruning by
        :mod:`sparsesim.prune.torch.heads`. ``spec = None`` is the model as it is (its own
        zeros)."""
        extra = {} if self.calibration is None else {"calibration": dict(self.calibration)}
        if spec is not None and spec.granularity == "head":
            from sparsesim.prune.torch import heads

            return heads.prune(self, spec, meta={**extra, **dict(meta or {})})
        return graph_trace(self.workload, self.first,
                           lambda chosen: run(self.graph, self.args, self.kwargs, masks=chosen),
                           {"method": "torch.export", **self.coverage.as_dict()}, spec,
                           meta=meta, masks=masks, extra=extra, compactor=self._compacted)

    def graph_of(self) -> Any:
        """The workload graph read from the exported program (``graphs.derive``)."""
        gm = self.graph.module
        user = {n.name for n in gm.graph.nodes if n.op == "placeholder"}
        static = graphs.static_nodes(gm, user)
        return graphs.derive(gm, units(self.graph), static)

    def _compacted(self, weights: Weights, chosen: Masks | None,
                   layer_masks: Mapping[str, LayerMasks], info: dict[str, Any]) -> Trace:
        """The trace compacted along the exported graph: removed filters and input channels
        leave the shapes, constants fold into the readers' bias (``prune.compact``)."""
        from dataclasses import replace

        nonzero: Masks = {}
        for name, tensors in weights.items():
            nz = tensors["w"] != 0
            if chosen is not None and name in chosen:
                nz = nz & chosen[name]["w"]
            nonzero[name] = {"w": nz}
        done = compact(replace(self.workload, graph=self.graph_of()), nonzero)
        for name, entry in done.layers.items():
            info["layers"].setdefault(name, {}).update(entry)
        info["compaction"] = {**done.summary, "graph": "read from torch.export"}
        return Trace(done.workload, compact_masks(done, layer_masks), info)


def _export(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return torch.export.export(model, args, kwargs)
    except Exception as err:  # torch raises many kinds; the user needs its one line
        line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SparsesimError(f"torch.export cannot capture the model: {line}",
                             field="model") from None


def _calibration_norms(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                       graph: Graph) -> dict[str, np.ndarray]:
    """Wanda's input norms over the whole calibration batch: the model exported at that batch
    and run once keeping only the norms (never the batch's masks); its layers must be the
    simulated graph's."""
    calib = walk(_export(model, args, kwargs))
    if [s.layer.name for s in calib.sites] != [s.layer.name for s in graph.sites]:
        raise SparsesimError("the model's GEMM nodes differ between the calibration batch and "
                             "the simulated batch (shape-dependent control flow?)",
                             field="--sim-batch")
    return run(calib, args, kwargs, norms=True, record=False).norms


def capture(model: nn.Module, args: Sequence[Any] | Any, kwargs: Mapping[str, Any] | None = None,
            *, name: str = "model", source: str = "", allow_uncaptured: float = 0.0,
            norms: bool = False, sim_batch: int | None = None) -> Captured:
    """Export, walk and run ``model`` on ``(args, kwargs)``; refuse it (one error listing the
    uncaptured ops) if the capture misses more than ``allow_uncaptured`` of its MACs.

    ``sim_batch = N`` decouples the simulated batch from the calibration batch ``B`` (the
    inputs): the workload is the model on the *first* ``N`` samples (:func:`first_samples`),
    exported at that batch, whose operand masks (of the pruned model) are measured on those
    ``N`` samples only; the statistics a criterion reads (Wanda's input norms) come from all
    ``B`` samples, in a second pass that keeps no masks. ``None``: ``N = B``."""
    args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    kwargs = dict(kwargs or {})
    model = model.eval()
    calib_args, calib_kwargs, batch = args, kwargs, None
    if sim_batch is not None:
        args, kwargs, batch = first_samples(args, kwargs, sim_batch)
    program = _export(model, args, kwargs)
    graph = walk(program)
    split = batch is not None and sim_batch != batch
    first = run(graph, args, kwargs, count=True, norms=norms and not split)
    if norms and split:
        first.norms = _calibration_norms(model, calib_args, calib_kwargs, graph)
    total, _ = parity.independent_macs(model, args, kwargs)
    captured_nodes = {s.node for s in graph.sites}
    uncaptured = []
    for node, macs in first.node_macs.items():
        if node in captured_nodes:
            held = sum(s.macs for s in graph.sites if s.node == node)
            if held != macs:
                raise SparsesimError(f"node {node}: the layers hold {held} MACs, PyTorch counts "
                                     f"{macs}", layer=node, field="parity")
            continue
        uncaptured.append(parity.Uncaptured(
            node, _op_name(graph, node), graph.paths.get(node, _path_of(graph, node)), macs,
            graph.refused.get(node, "no handler for this op")))
    layers = tuple(s.layer for s in graph.sites)
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SparsesimError("two GEMM nodes got the same name", layer=dup, field="name")
    cov = parity.Coverage(sum(s.macs for s in graph.sites), total, tuple(uncaptured),
                          parity.COUNTER)
    parity.check_coverage(cov, allow_uncaptured)
    workload = Workload(name, layers, source or f"torch.export of {type(model).__name__}")
    calibration = None
    if batch is not None:
        calibration = {"batch": batch, "sim_batch": sim_batch,
                       "masks": f"the first {sim_batch} of the {batch} calibration samples",
                       "statistics": (f"all {batch} samples (Wanda's input norms)" if norms
                                      else "none (the criterion reads no activations)")}
    return Captured(graph, workload, cov, args, kwargs, first, calibration)


def _node(graph: Graph, name: str) -> torch.fx.Node:
    return next(n for n in graph.module.graph.nodes if n.name == name)


def _op_name(graph: Graph, name: str) -> str:
    return str(_node(graph, name).target)


def _path_of(graph: Graph, name: str) -> str:
    return module_path(_node(graph, name))


__all__ = ["Captured", "Graph", "HANDLERS", "Measured", "Site", "capture", "first_samples",
           "probabilities", "run", "walk"]
