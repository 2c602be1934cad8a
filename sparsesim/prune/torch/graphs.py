"""The workload graph of a captured model, read from its ``torch.export`` graph.

Structured pruning compacts along the graph (:mod:`sparsesim.prune.compact`); a residual add or
a concat lives in ``forward``, not in the module tree, so the edges are read from the aten
graph ``torch.export`` gives. Each workload layer is a *unit* of that graph — one GEMM node
(``sparsesim.prune.torch.export``), or every node of a hooked module
(``sparsesim.prune.torch.capture.TorchNet``: a conv, a linear, a whole attention module) — that
reads one input tensor and writes one output. :func:`derive` walks the nodes between the units
and tracks, for every activation tensor, which graph node's channels it carries and on which
axis (and, after a flatten, how many features each channel spans):

* **Per-channel ops pass channels through**: rectifiers and other activations mapping 0 to 0
  (ReLU, ReLU6, GELU, SiLU, tanh, hard-swish), dropout, copies and casts, pooling and means
  over non-channel axes, up-sampling, ``x · c`` and ``x / c`` with a constant ``c`` that varies
  only along the channel axis. Ops that map 0 to a non-zero value per channel (batch-norm in
  eval, ``x + c``, a sigmoid, softmax over another axis) are ``offset`` nodes; zero padding of
  the spatial axes is a ``pad`` node (see :mod:`sparsesim.workload.graph`).
* **Joins**: ``add``/``sub`` and ``mul`` of two activations carrying the same channels on the
  same axis are ``add`` / ``mul`` joins; ``cat`` along the channel axis is a ``concat``;
  ``layer_norm``, ``rms_norm`` and ``group_norm`` are ``layernorm`` (channel-mixing) nodes.
* **Channel maps**: ``view``/``reshape``/``flatten``/``unsqueeze``/``squeeze`` keep the
  channels where provable — the elements before the channel axis are the same, and the new
  axis holding them is a multiple of the channel count (channel ``j`` is then its block
  ``[j·k, (j+1)·k)``, PyTorch's row-major order); ``permute``/``transpose`` move the axis;
  ``select``/``slice``/``expand`` on another axis keep it.
* **Everything else pins**, with the reason in the ``opaque`` node's note: an unknown op, a
  reshape that splits or interleaves the channels (attention's heads), a slice or split of the
  channel axis (a fused qkv), a reduction or softmax over it, an element-wise op with a
  per-position activation (a norm's ``x · rsqrt(mean(x²))``) or with a position-dependent
  constant (rotary ``cos``/``sin``), a layer reading its channels on another axis, the other
  activation operand of a matmul, a join with the network input, and every network output.

Tensors computed from the network input alone (token embeddings, a padded image) carry the
network input's "channels": nothing there is removable, so nothing is tracked.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx

from sparsesim.errors import SparsesimError
from sparsesim.workload.graph import NETWORK_INPUT, Graph, Node


@dataclass(frozen=True)
class Unit:
    """Workload layers at one place of the fx graph: ``layers`` (name, op) in order, the first
    reading ``input`` on its axis ``read_axis``, each the next the previous one's output; the
    last writes ``output`` with its channels on ``write_axis``. ``others``: other activation
    operands (a matmul's B, attention's K and V), pinned; ``members``: fx nodes inside."""

    layers: tuple[tuple[str, str], ...]
    input: torch.fx.Node | None
    read_axis: int | None
    output: torch.fx.Node
    write_axis: int | None
    others: tuple[torch.fx.Node, ...] = ()
    members: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Src:
    """An activation tensor's channels: those of graph node ``node`` on ``axis`` (``None``:
    no channel identity, after an opaque op), ``width`` channels of ``span`` elements."""

    node: str
    axis: int | None
    width: int = 1
    span: int = 1

    @property
    def is_input(self) -> bool:
        return self.node == NETWORK_INPUT


INNER = "inner"  # a unit's internal value (not its output)

PASS = frozenset({
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "silu", "silu_", "tanh", "neg",
    "dropout", "native_dropout", "feature_dropout", "alpha_dropout", "clone", "contiguous",
    "alias", "detach", "lift_fresh_copy", "_to_copy", "to", "type_as", "leaky_relu", "elu",
    "hardswish", "hardswish_", "mish", "abs", "erf", "square", "upsample_nearest2d",
    "upsample_bilinear2d", "upsample_nearest1d", "max_pool2d", "max_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool1d", "adaptive_max_pool2d", "avg_pool2d",
    "avg_pool1d", "max_pool2d_with_indices", "identity"})
OFFSET = frozenset({"sigmoid", "hardsigmoid", "exp", "cos", "sin", "softplus"})
REDUCE = frozenset({"mean", "sum", "amax", "amin"})
RESHAPE = frozenset({"view", "reshape", "_unsafe_view", "flatten", "unsqueeze", "squeeze",
                     "unflatten"})
NORMS = frozenset({"layer_norm", "native_layer_norm", "rms_norm", "group_norm",
                   "native_group_norm"})
IGNORE = frozenset({"_assert_tensor_metadata", "_assert_async", "sym_constrain_range_for_size",
                    "_assert_scalar"})


def op_name(target: Any) -> str:
    """``aten.relu6.default`` → ``relu6``."""
    if target is operator.getitem:
        return "getitem"
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return str(schema.name).split("::")[-1]
    return getattr(target, "__name__", str(target))


def _val(x: Any) -> Any:
    return x.meta.get("val") if isinstance(x, torch.fx.Node) else None


def _shape(x: Any) -> tuple[int, ...] | None:
    v = _val(x)
    return tuple(int(d) for d in v.shape) if isinstance(v, torch.Tensor) else None


def _norm_axis(axis: int, ndim: int) -> int:
    return axis % ndim if ndim else 0


def _reshaped(s: Src, old: Sequence[int], new: Sequence[int]) -> Src | None:
    """``s`` after a row-major reshape ``old`` → ``new``: the axis whose prefix holds the same
    elements and whose size is a multiple of the channels, else ``None`` (not provable)."""
    assert s.axis is not None
    before = math.prod(old[:s.axis])
    for b in range(len(new)):
        if math.prod(new[:b]) == before and new[b] % s.width == 0 and (
                new[b] > 1 or s.width == 1):
            return Src(s.node, b, s.width, new[b] // s.width)
    return None


class _Walk:
    """The state of one walk (see :func:`derive`)."""

    def __init__(self, static: set[str]) -> None:
        self.static = static
        self.nodes: list[Node] = []
        self.src: dict[str, Any] = {}

    def emit(self, name: str, op: str, inputs: tuple[str, ...], note: str = "") -> str:
        self.nodes.append(Node(name, op, inputs, note))
        return name

    def pin(self, s: Src, at: str, note: str) -> Src:
        """An opaque node after ``s`` (its channels stay), with ``note``; the network input
        needs none."""
        if s.is_input:
            return s
        name = self.emit(f"{at}:{len(self.nodes)}", "opaque", (s.node,), note)
        return Src(name, s.axis, s.width, s.span)

    def of(self, x: Any) -> Any:
        """The Src of an argument (``None``: static or not a tensor)."""
        if not isinstance(x, torch.fx.Node):
            return None
        return self.src.get(x.name)

    def acts(self, args: Iterable[Any]) -> list[tuple[torch.fx.Node, Any]]:
        out = []
        for a in args:
            for x in (a if isinstance(a, (list, tuple)) else [a]):
                if isinstance(x, torch.fx.Node) and self.of(x) is not None:
                    out.append((x, self.of(x)))
        return out

    def opaque(self, n: torch.fx.Node, note: str) -> Any:
        """Every activation operand of ``n`` pinned; ``n``'s value has no channel identity."""
        srcs = [s for _, s in self.acts([*n.args, *n.kwargs.values()])]
        pinned = [self.pin(s, n.name, note) if isinstance(s, Src) else None for s in srcs]
        for s in srcs:
            if isinstance(s, tuple):
                for part in s:
                    if isinstance(part, Src):
                        self.pin(part, n.name, note)
        first = next((p for p in pinned if p is not None), None)
        if first is None:
            return Src(NETWORK_INPUT, None)
        first = Src(first.node, None, first.width, first.span)  # its shape may differ
        if isinstance(_val(n), (tuple, list)):
            return tuple(first for _ in _val(n))
        return first


def _static_varies_off_axis(c: Any, out_shape: Sequence[int], axis: int) -> bool:
    """A constant operand of an element-wise op that varies along an axis other than
    ``axis`` (of the broadcast output)."""
    shape = _shape(c)
    if shape is None:
        return False  # a Python scalar
    lead = len(out_shape) - len(shape)
    return any(d != 1 and i + lead != axis for i, d in enumerate(shape))


def derive(gm: torch.fx.GraphModule, units: Sequence[Unit], static: set[str]) -> Graph:
    """The workload graph of ``gm`` with ``units`` as its layers (module docstring);
    ``static``: names of the fx nodes computed from parameters and constants only."""
    w = _Walk(static)
    member = {m: u for u in units for m in u.members}
    by_output = {u.output.name: u for u in units}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            w.src[n.name] = None if n.name in static else Src(NETWORK_INPUT, None)
        elif n.op == "output":
            for i, (_, s) in enumerate(w.acts(n.args)):
                for part in (s if isinstance(s, tuple) else (s,)):
                    if isinstance(part, Src):
                        w.pin(part, f"@output{i}", "network output")
        elif n.op != "call_function" or n.name in static:
            w.src[n.name] = None
        elif n.name in by_output:
            w.src[n.name] = _unit(w, by_output[n.name])
        elif n.name in member:
            w.src[n.name] = INNER
        else:
            w.src[n.name] = _op(w, n)
    return Graph(tuple(w.nodes))


def _unit(w: _Walk, u: Unit) -> Src:
    first = u.layers[0][0]
    s = w.of(u.input) if u.input is not None else None
    if s is None or s == INNER:
        inp = NETWORK_INPUT if s is None else w.pin(Src(first, None), first, "inside a layer")
        inp_name = inp if isinstance(inp, str) else inp.node
    else:
        if isinstance(s, tuple):
            s = w.pin(s[0], first, "a layer reads one of several outputs")
        shape = _shape(u.input)
        if u.read_axis is None:
            s = w.pin(s, first, f"{first} reads no channel axis (an activation product)")
        elif (s.axis is not None and shape is not None
                and _norm_axis(u.read_axis, len(shape)) != s.axis):
            s = w.pin(s, first, f"{first} reads its channels on another axis")
        inp_name = s.node
    for other in u.others:
        o = w.of(other)
        if isinstance(o, Src):
            w.pin(o, first, f"an activation operand of {first}")
    prev = inp_name
    for name, op in u.layers:
        w.emit(name, op, (prev,))
        prev = name
    shape = _shape(u.output)
    if u.write_axis is None or shape is None:  # an activation product: no channels to track
        return w.pin(Src(prev, None), prev, f"the output of {prev} (no channel axis)")
    axis = _norm_axis(u.write_axis, len(shape))
    return Src(prev, axis, shape[axis] if shape else 1)


def _op(w: _Walk, n: torch.fx.Node) -> Any:
    """The Src of an op's value (see the module docstring)."""
    name = op_name(n.target)
    acts = w.acts([*n.args, *n.kwargs.values()])
    if name in IGNORE or not acts:
        return None
    out_shape = _shape(n)
    srcs = [s for _, s in acts]
    if any(s == INNER for s in srcs):
        return w.opaque(n, f"reads a value inside a layer ({name})")
    if name == "getitem":
        s, i = srcs[0], n.args[1]
        return s[i] if isinstance(s, tuple) and isinstance(i, int) and i < len(s) else s
    if all(isinstance(s, Src) and s.is_input for s in srcs):
        if isinstance(_val(n), (tuple, list)):
            return tuple(Src(NETWORK_INPUT, None) for _ in _val(n))
        return Src(NETWORK_INPUT, None)
    if name in ("embedding",):
        return Src(NETWORK_INPUT, None)
    if any(isinstance(s, tuple) for s in srcs):
        return w.opaque(n, f"{name} of several outputs")
    if len(srcs) == 1:
        s = srcs[0]
        assert isinstance(s, Src)
        if s.axis is None:
            if name in PASS or name in OFFSET or name in RESHAPE:
                return Src(s.node, None, s.width, s.span)  # nothing provable: stays unmapped
            shape = _shape(n)
            if name in NORMS and shape:  # normalises the last axis: new channels there
                node = w.emit(f"{n.name}:norm", "layernorm", (s.node,))
                return Src(node, len(shape) - 1, shape[-1])
            return w.opaque(n, f"{name} of an unmapped tensor")
        return _unary(w, n, name, s, acts[0][0], out_shape)
    return _binary(w, n, name, acts, out_shape)


def _arg(n: torch.fx.Node, i: int, key: str, default: Any) -> Any:
    if len(n.args) > i:
        return n.args[i]
    return n.kwargs.get(key, default)


def _unary(w: _Walk, n: torch.fx.Node, name: str, s: Src, x: torch.fx.Node,
           out_shape: tuple[int, ...] | None) -> Any:
    assert s.axis is not None
    in_shape = _shape(x)
    if in_shape is None:
        return w.opaque(n, f"{name}: no static shape")
    if name in ("chunk", "split", "split_with_sizes", "unbind"):
        dim = _norm_axis(int(_arg(n, 2 if name != "unbind" else 1, "dim", 0)), len(in_shape))
        if dim == s.axis:
            return w.opaque(n, f"{name} of the channel axis (a split of the channels)")
        parts = _val(n)
        moved = Src(s.node, s.axis - (dim < s.axis) if name == "unbind" else s.axis, s.width,
                    s.span)
        return tuple(moved for _ in (parts or ()))
    if out_shape is None:
        return w.opaque(n, f"{name}: no static shape")
    ndim = len(in_shape)
    axis = s.axis
    if name in ("mul", "div", "add", "sub", "rsub", "true_divide"):
        other = [a for a in n.args if a is not x][:1]
        c = other[0] if other else None
        if _static_varies_off_axis(c, out_shape, axis + len(out_shape) - ndim):
            return w.opaque(n, f"{name} with a constant that varies along another axis")
        if name in ("div", "true_divide") and n.args[0] is not x:
            return w.opaque(n, "a constant divided by an activation")
        moved = Src(s.node, axis + len(out_shape) - ndim, s.width, s.span)
        if name in ("mul", "div", "true_divide"):
            return moved
        return Src(w.emit(f"{n.name}:offset", "offset", (s.node,)), moved.axis, s.width, s.span)
    if name == "pow":  # x^p with p > 0 maps 0 to 0 and a constant to a constant
        p = _arg(n, 1, "exponent", None)
        if isinstance(p, (int, float)) and p > 0:
            return s
        return w.opaque(n, f"pow with exponent {p}")
    if name in PASS:
        if name.startswith(("max_pool", "avg_pool", "adaptive", "upsample")) and axis != 1:
            return w.opaque(n, f"{name} over the channel axis")
        if name.startswith("avg_pool"):
            pad = _arg(n, 3, "padding", 0)
            if any(int(p) for p in (pad if isinstance(pad, (list, tuple)) else [pad])):
                return Src(w.emit(f"{n.name}:pad", "pad", (s.node,)), axis, s.width, s.span)
        if name == "max_pool2d_with_indices":
            return (s, Src(NETWORK_INPUT, None))
        return s
    if name in OFFSET:
        return Src(w.emit(f"{n.name}:offset", "offset", (s.node,)), axis, s.width, s.span)
    if name in ("softmax", "log_softmax", "_softmax"):
        dim = _norm_axis(int(_arg(n, 1, "dim", -1)), ndim)
        if dim == axis:
            return w.opaque(n, f"{name} over the channels")
        return Src(w.emit(f"{n.name}:offset", "offset", (s.node,)), axis, s.width, s.span)
    if name in ("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm"):
        training = _arg(n, 5, "training", False) if name != \
            "_native_batch_norm_legit_no_training" else False
        if training or axis != 1:
            return w.opaque(n, "batch-norm in training mode or on another axis")
        out = Src(w.emit(f"{n.name}:offset", "offset", (s.node,)), axis, s.width, s.span)
        return out if name == "batch_norm" else (out, None, None)
    if name in NORMS:
        node = w.emit(f"{n.name}:norm", "layernorm", (s.node,))
        out = Src(node, axis, s.width, s.span)  # new channels on the same axis (pinned)
        return out if not isinstance(_val(n), (tuple, list)) else tuple(
            out for _ in _val(n))
    if name in REDUCE:
        dims = _arg(n, 1, "dim", None)
        keep = bool(_arg(n, 2, "keepdim", False))
        dims = list(range(ndim)) if dims is None else [
            _norm_axis(int(d), ndim) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
        if axis in dims:
            return w.opaque(n, f"{name} over the channels mixes them")
        return Src(s.node, axis if keep else axis - sum(d < axis for d in dims), s.width, s.span)
    if name in RESHAPE:
        mapped = _reshaped(s, in_shape, out_shape)
        return mapped if mapped is not None else w.opaque(
            n, f"{name} {list(in_shape)} → {list(out_shape)} splits or interleaves the channels")
    if name in ("permute",):
        dims = [_norm_axis(int(d), ndim) for d in n.args[1]]  # type: ignore[arg-type,union-attr]
        return Src(s.node, dims.index(axis), s.width, s.span)
    if name in ("transpose", "swapaxes", "t"):
        d0, d1 = ((0, 1) if name == "t" else
                  (_norm_axis(int(n.args[1]), ndim), _norm_axis(int(n.args[2]), ndim)))  # type: ignore[arg-type]
        new = d1 if axis == d0 else d0 if axis == d1 else axis
        return Src(s.node, new, s.width, s.span)
    if name in ("expand", "expand_as", "repeat"):
        if out_shape[axis + len(out_shape) - ndim] != in_shape[axis]:
            return w.opaque(n, f"{name} of the channel axis")
        return Src(s.node, axis + len(out_shape) - ndim, s.width, s.span)
    if name in ("select", "slice", "narrow", "index_select"):
        dim = _norm_axis(int(_arg(n, 1, "dim", 0)), ndim)
        if dim == axis:
            return w.opaque(n, f"{name} of the channel axis (a split of the channels)")
        if name == "select":
            return Src(s.node, axis - (dim < axis), s.width, s.span)
        return s
    if name in ("pad", "constant_pad_nd"):
        pads = [int(p) for p in n.args[1]]  # type: ignore[arg-type,union-attr]
        mode = _arg(n, 2, "mode", "constant") if name == "pad" else "constant"
        value = _arg(n, 3, "value", None) if name == "pad" else _arg(n, 2, "value", 0)
        touched = {ndim - 1 - i // 2 for i, p in enumerate(pads) if p}
        if axis in touched:
            return w.opaque(n, "padding of the channel axis")
        if mode in ("reflect", "replicate", "circular"):
            return s
        if mode != "constant" or (value not in (None, 0, 0.0)):
            return w.opaque(n, f"{mode} padding with value {value}")
        return Src(w.emit(f"{n.name}:pad", "pad", (s.node,)), axis, s.width, s.span)
    if name in ("cat", "concat", "stack"):
        return w.opaque(n, f"{name} of one activation with constants")
    return w.opaque(n, f"{name}: an op whose channel mapping is not known")


def _binary(w: _Walk, n: torch.fx.Node, name: str, acts: list[tuple[torch.fx.Node, Any]],
            out_shape: tuple[int, ...] | None) -> Any:
    srcs: list[Src] = [s for _, s in acts]
    if out_shape is None:
        return w.opaque(n, f"{name}: no static shape")
    if any(s.is_input for s in srcs):
        kept = [(x, s) for x, s in acts if not s.is_input]
        pinned = [w.pin(s, n.name, f"{name} with the network input (a residual stream from "
                                   "the input: its channels stay)") for _, s in kept]
        x, first = kept[0][0], pinned[0]
        shape = _shape(x)
        if name in ("add", "sub", "mul") and first.axis is not None and shape is not None \
                and len(shape) <= len(out_shape) \
                and out_shape[first.axis + len(out_shape) - len(shape)] == shape[first.axis]:
            return Src(first.node, first.axis + len(out_shape) - len(shape), first.width,
                       first.span)
        return Src(first.node, None, first.width, first.span)
    if name in ("cat", "concat"):
        dim = _norm_axis(int(_arg(n, 1, "dim", 0)), len(out_shape))
        if all(s.axis == dim and s.span == 1 for s in srcs) and len(acts) == len(n.args[0]):  # type: ignore[arg-type]
            node = w.emit(f"{n.name}:concat", "concat", tuple(s.node for s in srcs))
            return Src(node, dim, sum(s.width for s in srcs))
        return w.opaque(n, f"{name} along another axis than the channels")
    if name in ("add", "sub", "mul") and len(acts) == 2:
        axes: list[tuple[int, int, int, int] | None] = []
        for x, s in acts:
            shape = _shape(x)
            if shape is None or s.axis is None:
                axes.append(None)
                continue
            lead = len(out_shape) - len(shape)
            axes.append((s.axis + lead, s.width, s.span, shape[s.axis]))
        a, b = axes
        if a is not None and a == b and out_shape[a[0]] == a[3]:
            op = "mul" if name == "mul" else "add"
            node = w.emit(f"{n.name}:{op}", op, (srcs[0].node, srcs[1].node))
            return Src(node, a[0], a[1], a[2])
        if a is None or b is None:
            return w.opaque(n, f"{name} with a tensor whose channels are not mapped")
        return w.opaque(n, f"{name} of tensors whose channels differ (a per-position "
                           "activation scale, a broadcast)")
    return w.opaque(n, f"{name} of several activations")


def static_nodes(gm: torch.fx.GraphModule, user_inputs: set[str]) -> set[str]:
    """Nodes computed from parameters, buffers and constants only (no user input)."""
    static: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr" or (node.op == "placeholder" and node.name not in user_inputs):
            static.add(node.name)
        elif node.op == "call_function" and all(i.name in static for i in node.all_input_nodes):
            static.add(node.name)
    return static


def module_units(gm: torch.fx.GraphModule, layers: Mapping[str, tuple[str, int | None, int | None]],
                 static: set[str]) -> list[Unit]:
    """One unit per hooked module ``path → (op, read axis, write axis)``: every node run
    inside it (its ``nn_module_stack``); its input the first activation entering it, its
    output the one value used outside."""
    inside: dict[str, list[torch.fx.Node]] = {p: [] for p in layers}
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        stack = node.meta.get("nn_module_stack") or {}
        paths = [str(v[0]) for v in stack.values()]
        hit = [p for p in paths if p in inside]
        if hit:
            inside[hit[0]].append(node)  # the outermost hooked module holds it
    units = []
    for path, (op, read, write) in layers.items():
        nodes = inside[path]
        names = {x.name for x in nodes}
        if not nodes:
            raise SparsesimError("no node of the exported graph runs in this module",
                                 layer=path, field="graph")
        entering: list[torch.fx.Node] = []
        for x in nodes:
            for i in x.all_input_nodes:
                if i.name not in names and i.name not in static and i not in entering:
                    entering.append(i)
        leaving = [x for x in nodes if any(u.name not in names for u in x.users)]
        if len(leaving) != 1 or not entering:
            raise SparsesimError(f"a module of the graph must read an activation and write one "
                                 f"value; it writes {len(leaving)}", layer=path, field="graph")
        units.append(Unit(((path, op),), entering[0], read, leaving[0], write,
                          tuple(entering[1:]), frozenset(names)))
    return units


#: where a hooked layer type reads and writes its channels (conv: NCHW; linear, attention: last)
AXES = {"conv2d": (1, 1), "linear": (-1, -1), "attention": (-1, -1)}


def module_graph(model: torch.nn.Module, inputs: Any, layers: Mapping[str, str]) -> Graph:
    """The graph of a hooked model (``TorchNet``: layer name = module path → op), exported
    with ``torch.export`` on ``inputs`` (a copy, its ``torch.nn.utils.prune``
    parametrisations removed: the edges do not depend on the masks). Raises
    :class:`SparsesimError` (one line) when the model cannot be exported or mapped."""
    import copy

    import torch.nn.utils.prune as tprune

    clone = copy.deepcopy(model).eval()
    for mod in clone.modules():
        if hasattr(mod, "weight_mask"):
            tprune.remove(mod, "weight")
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        program = torch.export.export(clone, args)
    except Exception as err:  # torch raises many kinds; the user needs its one line
        line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SparsesimError(f"torch.export cannot capture the model: {line}",
                             field="graph") from None
    gm = program.module()
    user = {n.name for n in gm.graph.nodes if n.op == "placeholder"}
    static = static_nodes(gm, user)
    units = module_units(gm, {p: (op, *AXES.get(op, (None, None))) for p, op in layers.items()},
                         static)
    return derive(gm, units, static)
