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
  dense MACs count them), as :class:`~sparsesim.workload.layers.Attention` does for causal. 1-D and 2-D convolutions become
  :class:`~sparsesim.workload.layers.Conv2d` (1-D as height 1) when the layer protocol holds
  them: one stride and one symmetric zero padding for both axes, no dilation, not transposed.
  3-D and transposed convolutions, dilation, per-axis stride or padding, a padded 1-D conv and
  a batch of stored weight matrices are refused in one line naming the op, and counted as
  uncaptured.
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
from sparsesim.prune.torch import parity
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
    """Where a layer's stored weight is among its node's arguments, and how its layout maps
    to the layer's (``to``) and back (``back``: to apply a mask in the graph's layout)."""

    arg: str
    to: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    back: Callable[[torch.Tensor], torch.Tensor] = lambda t: t


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
        layer = Linear(name, in_features=sw[1], out_features=sw[0], tokens=tokens, bias=bias)
        return [Site(layer, node.name, lambda vv, c: vv["input"].reshape(tokens, sw[1]),
                     WeightRef("weight"))]
    rows = _prod(sx[:-1])
    mm = MatMul(name, m=rows, k=sw[1], n=sw[0], weights_operand=False)
    return [Site(mm, node.name, lambda vv, c: vv["input"].reshape(rows, sw[1]),
                 None, lambda vv, c: _t(vv["weight"]))]


def _pairs(x: Any, dims: int, what: str) -> list[int]:
    vals = [int(i) for i in (x if isinstance(x, (list, tuple)) else [x])]
    if len(vals) == 1:
        vals = vals * dims
    if len(vals) != dims:
        raise Refusal(f"{what} {vals} for a {dims}-D convolution")
    return vals


def _conv(name: str, node: torch.fx.Node, v: Values, static: Callable[[Any], bool],
          transposed: bool) -> list[Site]:
    sx, sw = _shape(v["input"]), _shape(v["weight"])
    dims = len(sw) - 2
    if transposed:
        raise Refusal("a transposed convolution is not a layer sparsesim holds yet")
    if dims not in (1, 2):
        raise Refusal(f"a {dims}-D convolution is not a layer sparsesim holds yet "
                      "(Conv2d holds 1-D and 2-D)")
    if not static(v["weight"]):
        raise Refusal("a convolution whose kernel is an activation is not modelled")
    stride = _pairs(v.get("stride", 1), dims, "stride")
    dilation = _pairs(v.get("dilation", 1), dims, "dilation")
    groups = int(v.get("groups", 1))
    pad = v.get("padding", 0)
    kernel = list(sw[2:])
    if isinstance(pad, str):
        if pad == "valid":
            pad = [0] * dims
        elif any((d * (r - 1)) % 2 for d, r in zip(dilation, kernel)):
            raise Refusal(f"padding='same' with an even kernel {kernel} pads one side "
                          "more than the other; Conv2d pads symmetrically")
        else:
            pad = [d * (r - 1) // 2 for d, r in zip(dilation, kernel)]
    padding = _pairs(pad, dims, "padding")
    if any(d != 1 for d in dilation):
        raise Refusal(f"dilation {dilation} is not modelled (Conv2d has no dilation)")
    if len(set(stride)) != 1 or len(set(padding)) != 1:
        raise Refusal(f"per-axis stride {stride} / padding {padding} is not modelled "
                      "(Conv2d has one stride and one padding for both axes)")
    if dims == 1 and padding[0]:
        raise Refusal(f"a padded 1-D convolution (padding {padding[0]}) is not modelled "
                      "(as Conv2d of height 1 the padding would pad the height too)")
    batched = len(sx) == dims + 2
    n = sx[0] if batched else 1
    c, spatial = (sx[1], sx[2:]) if batched else (sx[0], sx[1:])
    h, w = (1, spatial[0]) if dims == 1 else spatial
    r, s = (1, kernel[0]) if dims == 1 else kernel
    layer = Conv2d(name, c=c, h=h, w=w, m=sw[0], r=r, s=s, n=n, stride=stride[0],
                   padding=padding[0], groups=groups, bias=v.get("bias") is not None)
    shape = layer.input_shape
    wshape = (sw[0], sw[1], r, s)
    ref = WeightRef("weight", lambda t: t.reshape(wshape), lambda t: t.reshape(sw))
    return [Site(layer, node.name, lambda vv, cc: vv["input"].reshape(shape), ref)]


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
        s = x.pow(2).sum(dim=(0, 2, 3))
    else:
        s = x.reshape(-1, x.shape[-1]).pow(2).sum(dim=0)
    return s.sqrt().float().numpy()


class _Run(torch.fx.Interpreter):
    """Runs the graph; at each GEMM node records its operands (and applies weight masks)."""

    def __init__(self, graph: Graph, out: Measured, masks: Masks | None, count: bool,
                 norms: bool) -> None:
        super().__init__(graph.module)
        self.by_node: dict[str, list[Site]] = {}
        for s in graph.sites:
            self.by_node.setdefault(s.node, []).append(s)
        self.out, self.masks, self.count, self.want_norms = out, masks, count, norms

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
                    w = v[s.w.arg]
                    v[s.w.arg] = w * s.w.back(torch.as_tensor(mask, dtype=w.dtype))
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
        self.out.inputs[name] = (a != 0).numpy()
        if s.b is not None:
            self.out.internal.setdefault(name, {})["b"] = (s.b(v, cache) != 0).numpy()
        o = None if s.o is None else s.o(v, cache)
        if o is not None:
            self.out.internal.setdefault(name, {})["o"] = o.numpy().copy()
        if s.w is not None and self.masks is None:  # a pruned pass: the masks say
            self.out.weights[name] = {"w": s.w.to(v[s.w.arg]).detach().float().numpy().copy()}
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
        masks: Masks | None = None, count: bool = False, norms: bool = False) -> Measured:
    """One pass of the graph on the inputs (no grad)."""
    out = Measured()
    with torch.no_grad():
        out.output = _Run(graph, out, masks, count, norms).run(
            *flat_inputs(graph.program, args, kwargs))
    return out


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

    def weights(self) -> Weights:
        return self.first.weights

    def stats(self) -> dict[str, LayerStats]:
        """Wanda's input norms per layer with a stored weight."""
        return stats_of(self.first)

    def trace(self, spec: PruneSpec | None = None, *, meta: Mapping[str, Any] | None = None
              ) -> Trace:
        """The trace (:func:`~sparsesim.prune.graphtrace.graph_trace`): ``spec = None`` is
        the model as it is (its own zeros)."""
        return graph_trace(self.workload, self.first,
                           lambda chosen: run(self.graph, self.args, self.kwargs, masks=chosen),
                           {"method": "torch.export", **self.coverage.as_dict()}, spec,
                           meta=meta)


def capture(model: nn.Module, args: Sequence[Any] | Any, kwargs: Mapping[str, Any] | None = None,
            *, name: str = "model", source: str = "", allow_uncaptured: float = 0.0,
            norms: bool = False) -> Captured:
    """Export, walk and run ``model`` on ``(args, kwargs)``; refuse it (one error listing the
    uncaptured ops) if the capture misses more than ``allow_uncaptured`` of its MACs."""
    args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    kwargs = dict(kwargs or {})
    model = model.eval()
    try:
        program = torch.export.export(model, args, kwargs)
    except Exception as err:  # torch raises many kinds; the user needs its one line
        line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SparsesimError(f"torch.export cannot capture the model: {line}",
                             field="model") from None
    graph = walk(program)
    first = run(graph, args, kwargs, count=True, norms=norms)
    total, _ = parity.independent_macs(model, args, kwargs)
    captured_nodes = {s.node for s in graph.sites}
    uncaptured = []
    for node, macs in first.node_macs.items():
        if node in captured_nodes:
            held = sum(s.layer.dense_macs for s in graph.sites if s.node == node)
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
    cov = parity.Coverage(sum(layer.dense_macs for layer in layers), total, tuple(uncaptured),
                          parity.COUNTER)
    parity.check_coverage(cov, allow_uncaptured)
    workload = Workload(name, layers, source or f"torch.export of {type(model).__name__}")
    return Captured(graph, workload, cov, args, kwargs, first)


def _node(graph: Graph, name: str) -> torch.fx.Node:
    return next(n for n in graph.module.graph.nodes if n.name == name)


def _op_name(graph: Graph, name: str) -> str:
    return str(_node(graph, name).target)


def _path_of(graph: Graph, name: str) -> str:
    return module_path(_node(graph, name))


__all__ = ["Captured", "Graph", "HANDLERS", "Measured", "Site", "capture", "probabilities",
           "run", "walk"]
