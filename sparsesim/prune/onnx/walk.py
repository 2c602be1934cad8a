"""An ONNX graph's GEMM nodes as workload layers (one layer per node, attention's two).

* ``Conv`` becomes :class:`~sparsesim.workload.layers.Conv2d` (1-D as height 1) where the
  layer protocol holds it: one stride and one zero padding on every side of both axes
  (``auto_pad`` resolved to its pads as ONNX defines them), no dilation. 3-D kernels,
  ``dilations`` ≠ 1, per-axis strides, asymmetric or per-axis pads, a padded 1-D conv and
  ``ConvTranspose`` are refused in one line naming the node and the attribute, and count as
  uncaptured.
* ``Gemm`` (``transA``/``transB``; ``alpha`` scales the effective weight, a bias counts when
  ``C`` is given and ``beta`` ≠ 0) and ``MatMul`` with one stored 2-D operand become
  :class:`~sparsesim.workload.layers.Linear` (``W·X`` transposed to ``Xᵀ·Wᵀ``; a MatMul whose
  only consumer adds a stored ``[n]`` vector has a bias); with two activation operands
  (``QKᵀ``, ``PV``) a batched :class:`~sparsesim.workload.layers.MatMul` (``count`` = the
  broadcast batch axes) whose B operand's zeros are measured.
* **Attention pattern** ``MatMul → (Mul | Div | Add | Where | Cast)* → Softmax → MatMul``: the
  two GEMMs are named ``{module}.qk`` and ``{module}.pv``, as the torch capture names SDPA's;
  the scores a mask discards (an added mask's non-finite entries, a ``Where`` filling
  non-finite values) are ``qk``'s needed-output mask ``o``, as in the torch capture.
* **Names** come from the exporter's node names (``/encoder/layer.0/attn/MatMul_1`` → module
  ``encoder.layer.0.attn``; ``/layer1/layer1.0/conv1/Conv`` → ``layer1.0.conv1``): the module
  path, or ``{path}.{node}`` where a module holds several GEMM nodes; ``model`` at the root.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from typing import Any

import numpy as np
import onnx

from sparsesim.errors import SparsesimError
from sparsesim.prune.onnx.constants import Constants
from sparsesim.prune.onnx.count import domain
from sparsesim.workload.layers import Conv2d, Layer, Linear, MatMul

Env = Mapping[str, np.ndarray]  # tensor name → its value in a pass
Shapes = Mapping[str, tuple[int, ...]]
Extract = Callable[[Env], np.ndarray]


class Refusal(Exception):
    """A GEMM node the layer protocol cannot hold yet (the message says why)."""


@dataclass(frozen=True)
class WeightRef:
    """The node input holding a layer's stored weight, its layout mapped to the layer's
    (``to``) and a layer-layout mask back to the node's (``back``)."""

    index: int
    to: Callable[[np.ndarray], np.ndarray] = lambda t: t
    back: Callable[[np.ndarray], np.ndarray] = lambda t: t


@dataclass(frozen=True)
class Site:
    """One workload layer at one node: how its operands are read from a pass's tensors
    (``a`` in the layer's ``input_shape``; ``b`` an activation B; ``o`` the needed outputs),
    and the tensors those reads need (exposed as outputs in the onnxruntime pass)."""

    layer: Layer
    node: str
    a: Extract
    tensors: tuple[str, ...]
    w: WeightRef | None = None
    b: Extract | None = None
    o: Callable[[Env], np.ndarray | None] | None = None


def node_id(i: int, node: onnx.NodeProto) -> str:
    """A node's name, or ``{op}_{index}`` for an unnamed one."""
    return node.name or f"{node.op_type}_{i}"


def module_path(node_name: str) -> tuple[str, str]:
    """``/a/b/MatMul_1`` → (``a.b``, ``MatMul_1``); a name without slashes has no path; a
    scope that repeats its parent's name (``/layer1/layer1.0/conv1/Conv``) is the module
    ``layer1.0.conv1``."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) <= 1:
        return "", (parts[0] if parts else node_name)
    path: list[str] = []
    for p in parts[:-1]:  # the TorchScript exporter repeats a scope's prefix: layer1/layer1.0
        if path and p.startswith(path[-1] + "."):
            path[-1] = p
        else:
            path.append(p)
    return ".".join(path), parts[-1]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _t(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def _weight(c: Constants, name: str) -> None:
    if c.value(name) is None:
        raise Refusal(f"its weight {name!r} is computed from constants by "
                      f"{c.made_by.get(name, '?')}, which is not folded")


def _gemm2(name: str, ia: str, ib: str, sa: tuple[int, ...], sb: tuple[int, ...], c: Constants,
           bias: bool, ka: int, kb: int) -> Site:
    """``A[..., m, k] · B[..., k, n]`` with numpy's broadcasting (1-D operands promoted):
    a Linear on one stored 2-D operand, else a batched activation MatMul. ``ka``/``kb`` are
    A's and B's input positions on the node."""
    k = sa[-1]
    if c.is_static(ib) and len(sb) <= 2 and not c.is_static(ia):
        _weight(c, ib)
        n = 1 if len(sb) == 1 else sb[-1]
        tokens = math.prod(sa[:-1])
        layer: Layer = Linear(name, in_features=k, out_features=n, tokens=tokens, bias=bias)
        ref = (WeightRef(kb, lambda t: t[None, :], lambda t: t[0]) if len(sb) == 1
               else WeightRef(kb, _t, _t))
        return Site(layer, "", lambda e: e[ia].reshape(tokens, k), (ia,), ref)
    if c.is_static(ia) and len(sa) == 2 and not c.is_static(ib) and len(sb) == 2:
        _weight(c, ia)
        m, n = sa[0], sb[1]  # W·X = (Xᵀ·Wᵀ)ᵀ: X's columns are tokens, W [m, k] is [out, in]
        layer = Linear(name, in_features=k, out_features=m, tokens=n, bias=bias)
        return Site(layer, "", lambda e: _t(e[ib]), (ib,), WeightRef(ka))
    if c.is_static(ia) and c.is_static(ib):
        raise Refusal("both operands are constants (a product the exporter did not fold)")
    if c.is_static(ia) or c.is_static(ib):
        raise Refusal("a batch of stored weight matrices (a MatMul whose weight operand has "
                      "batch axes) is not a layer sparsesim holds yet")
    m = 1 if len(sa) == 1 else sa[-2]
    n = 1 if len(sb) == 1 else sb[-1]
    batch = tuple(np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2])))
    count = math.prod(batch)
    layer = MatMul(name, m=m, k=k, n=n, weights_operand=False, count=count)
    lead = (count,) if count > 1 else ()

    def a_of(e: Env) -> np.ndarray:
        x = e[ia] if len(sa) > 1 else e[ia][None, :]
        return np.broadcast_to(x, (*batch, m, k)).reshape(*lead, m, k)

    def b_of(e: Env) -> np.ndarray:
        x = e[ib] if len(sb) > 1 else e[ib][:, None]
        return np.broadcast_to(x, (*batch, k, n)).reshape(*lead, k, n)

    return Site(layer, "", a_of, (ia, ib), None, b_of)


def _matmul(name: str, node: onnx.NodeProto, s: Shapes, c: Constants, bias: bool) -> list[Site]:
    ia, ib = node.input[0], node.input[1]
    return [_gemm2(name, ia, ib, s[ia], s[ib], c, bias, 0, 1)]


def _gemm(name: str, node: onnx.NodeProto, s: Shapes, c: Constants, bias: bool) -> list[Site]:
    at = _attrs(node)
    ta, tb = bool(at.get("transA", 0)), bool(at.get("transB", 0))
    alpha = float(at.get("alpha", 1.0))
    beta = float(at.get("beta", 1.0))
    has_c = len(node.input) > 2 and bool(node.input[2]) and beta != 0
    ia, ib = node.input[0], node.input[1]
    sa, sb = s[ia], s[ib]
    m, k = (sa[1], sa[0]) if ta else sa
    n = sb[0] if tb else sb[1]
    if c.is_static(ib) and not c.is_static(ia):
        _weight(c, ib)
        layer: Layer = Linear(name, in_features=k, out_features=n, tokens=m, bias=has_c)
        ref = WeightRef(1, (lambda t: alpha * t) if tb else (lambda t: alpha * t.T),
                        (lambda t: t) if tb else (lambda t: t.T))
        return [Site(layer, "", (lambda e: e[ia].T) if ta else (lambda e: e[ia]), (ia,), ref)]
    if c.is_static(ia) and not c.is_static(ib):
        _weight(c, ia)
        layer = Linear(name, in_features=k, out_features=m, tokens=n, bias=has_c)
        ref = WeightRef(0, (lambda t: alpha * t.T) if ta else (lambda t: alpha * t),
                        (lambda t: t.T) if ta else (lambda t: t))
        return [Site(layer, "", (lambda e: e[ib]) if tb else (lambda e: e[ib].T), (ib,), ref)]
    if c.is_static(ia):
        raise Refusal("both operands are constants (a product the exporter did not fold)")
    layer = MatMul(name, m=m, k=k, n=n, weights_operand=False)
    return [Site(layer, "", (lambda e: e[ia].T) if ta else (lambda e: e[ia]), (ia, ib), None,
                 (lambda e: e[ib].T) if tb else (lambda e: e[ib]))]


def _ints(x: object, n: int, default: int) -> list[int]:
    vals = [int(v) for v in x] if isinstance(x, (list, tuple)) else []
    return vals or [default] * n


def conv_pads(node: onnx.NodeProto, spatial: Sequence[int], kernel: Sequence[int]) -> list[int]:
    """The node's pads ``[begin…, end…]``, ``auto_pad`` resolved as the ONNX spec defines it
    (SAME: output ``ceil(in / stride)``, the odd pixel at the end for UPPER, begin for LOWER)."""
    at = _attrs(node)
    dims = len(kernel)
    strides = _ints(at.get("strides"), dims, 1)
    dil = _ints(at.get("dilations"), dims, 1)
    auto = at.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for x, k, st, d in zip(spatial, kernel, strides, dil):
            out = -(-x // st)
            total = max((out - 1) * st + (k - 1) * d + 1 - x, 0)
            small = total // 2
            b = small if auto == "SAME_UPPER" else total - small
            begin.append(b)
            end.append(total - b)
        return begin + end
    if auto == "VALID":
        return [0] * (2 * dims)
    return _ints(at.get("pads"), 2 * dims, 0)


def _conv(name: str, node: onnx.NodeProto, s: Shapes, c: Constants, bias: bool) -> list[Site]:
    ix, iw = node.input[0], node.input[1]
    sx, sw = s[ix], s[iw]
    dims = len(sw) - 2
    at = _attrs(node)
    if dims not in (1, 2):
        raise Refusal(f"a {dims}-D convolution (kernel_shape {list(sw[2:])}) is not a layer "
                      "sparsesim holds yet (Conv2d holds 1-D and 2-D)")
    if not c.is_static(iw):
        raise Refusal("a convolution whose kernel is an activation is not modelled")
    _weight(c, iw)
    dil = _ints(at.get("dilations"), dims, 1)
    if any(d != 1 for d in dil):
        raise Refusal(f"attribute dilations {dil} is not modelled (Conv2d has no dilation)")
    strides = _ints(at.get("strides"), dims, 1)
    if len(set(strides)) != 1:
        raise Refusal(f"attribute strides {strides} is per-axis (Conv2d has one stride for "
                      "both axes)")
    kernel = list(sw[2:])
    pads = conv_pads(node, sx[2:], kernel)
    if len(set(pads)) != 1:
        raise Refusal(f"attribute pads {pads} (begin..., end...) is asymmetric or per-axis "
                      "(Conv2d pads every side equally)")
    if dims == 1 and pads[0]:
        raise Refusal(f"attribute pads {pads} on a 1-D convolution is not modelled (as Conv2d "
                      "of height 1 the padding would pad the height too)")
    groups = int(at.get("group", 1))
    n, ch = sx[0], sx[1]
    h, w = (1, sx[2]) if dims == 1 else (sx[2], sx[3])
    r, sk = (1, kernel[0]) if dims == 1 else (kernel[0], kernel[1])
    has_b = len(node.input) > 2 and bool(node.input[2])
    layer = Conv2d(name, c=ch, h=h, w=w, m=sw[0], r=r, s=sk, n=n, stride=strides[0],
                   padding=pads[0], groups=groups, bias=has_b)
    shape, wshape = layer.input_shape, (sw[0], sw[1], r, sk)
    ref = WeightRef(1, lambda t: t.reshape(wshape), lambda t: t.reshape(sw))
    return [Site(layer, "", lambda e: e[ix].reshape(shape), (ix,), ref)]


def _conv_transpose(name: str, node: onnx.NodeProto, s: Shapes, c: Constants,
                    bias: bool) -> list[Site]:
    raise Refusal("a transposed convolution (ConvTranspose) is not a layer sparsesim holds yet")


def _quantized(name: str, node: onnx.NodeProto, s: Shapes, c: Constants, bias: bool
               ) -> list[Site]:
    raise Refusal(f"an integer {node.op_type} (quantized operands, zero points inside the "
                  "op) is not lowered yet: export with DequantizeLinear before a float GEMM")


def _einsum(name: str, node: onnx.NodeProto, s: Shapes, c: Constants, bias: bool
            ) -> list[Site]:
    raise Refusal("Einsum is not lowered yet (rewrite it as MatMul)")


_Handler = Callable[[str, onnx.NodeProto, Shapes, Constants, bool], list[Site]]
HANDLERS: dict[tuple[str, str], _Handler] = {
    ("", "Conv"): _conv,
    ("", "ConvTranspose"): _conv_transpose,
    ("", "Gemm"): _gemm,
    ("", "MatMul"): _matmul,
    **{("", op): _quantized for op in ("ConvInteger", "QLinearConv", "MatMulInteger",
                                        "QLinearMatMul")},
    ("", "Einsum"): _einsum,
}
"""(domain, op) → its layers; :mod:`.attention` adds the contrib attention ops."""


@dataclass(frozen=True)
class Pattern:
    """A MatMul–Softmax–MatMul attention: its two nodes and the masks on the score path
    (``adds``: tensors added to the scores; ``wheres``: (condition, scores-if-true) pairs
    whose other branch is a non-finite fill)."""

    qk: int
    pv: int
    adds: tuple[str, ...] = ()
    wheres: tuple[tuple[str, bool], ...] = ()

    @property
    def tensors(self) -> tuple[str, ...]:
        return self.adds + tuple(w for w, _ in self.wheres)


_ON_PATH = {"Mul", "Div", "Add", "Sub", "Where", "Cast", "Identity"}


def attention_patterns(graph: onnx.GraphProto, c: Constants) -> list[Pattern]:
    """Every ``MatMul → elementwise* → Softmax → (Cast | Identity | Dropout | NaN guard)* →
    MatMul`` with the softmax output as the second MatMul's A operand (found on the graph's
    topology; the NaN guard is ``Where(IsNaN(P), 0, P)``, which the exporter adds with masks)."""
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    nodes = graph.node
    out: list[Pattern] = []
    for i, node in enumerate(nodes):
        if node.op_type != "MatMul" or domain(node) or any(c.is_static(t) for t in node.input):
            continue
        t, adds, wheres = node.output[0], [], []
        j = None
        while True:
            users = consumers.get(t, [])
            if len(users) != 1:
                break
            u = nodes[users[0]]
            if u.op_type == "Softmax":
                j = users[0]
                break
            if u.op_type not in _ON_PATH:
                break
            if u.op_type == "Add":
                adds += [x for x in u.input if x != t]
            elif u.op_type == "Where":
                cond, x, y = u.input
                fill = y if x == t else x
                value = c.value(fill)
                if value is not None and not np.isfinite(value).all():
                    wheres.append((cond, x == t))
            t = u.output[0]
        if j is None:
            continue
        t = nodes[j].output[0]
        while True:  # IsNaN + Where: the exporter's guard for fully masked rows (NaN → 0)
            users = [k for k in consumers.get(t, []) if nodes[k].op_type != "IsNaN"]
            if len(users) != 1:
                break
            u = nodes[users[0]]
            if u.op_type in ("Cast", "Identity", "Dropout") or (
                    u.op_type == "Where" and t in u.input[1:]):
                t = u.output[0]
                continue
            if u.op_type == "MatMul" and u.input[0] == t and not c.is_static(u.input[1]):
                out.append(Pattern(i, users[0], tuple(adds), tuple(wheres)))
            break
    return out


def _needed(p: Pattern, lead: tuple[int, ...], batch: tuple[int, ...], m: int, n: int
            ) -> Callable[[Env], np.ndarray | None]:
    def o_of(e: Env) -> np.ndarray | None:
        keep: np.ndarray | None = None
        for t in p.adds:
            v = e[t]
            k = np.isfinite(v) | (v > 0)
            keep = k if keep is None else keep & k
        for cond, true_is_scores in p.wheres:
            k = e[cond].astype(bool)
            k = k if true_is_scores else ~k
            keep = k if keep is None else keep & k
        if keep is None:
            return None
        return np.broadcast_to(keep, (*batch, m, n)).reshape(*lead, m, n).copy()
    return o_of


@dataclass
class Walk:
    """What the walk found: the sites in graph order and the refused GEMM nodes."""

    sites: list[Site]
    refused: dict[str, str]  # node id → reason
    paths: dict[str, str]  # node id → module path
    ops: dict[str, str]  # node id → op


def _bias_add(graph: onnx.GraphProto, i: int, s: Shapes, c: Constants) -> bool:
    """A MatMul whose only consumer adds a stored ``[n]`` vector (an exported Linear's bias)."""
    out = graph.node[i].output[0]
    users = [n for n in graph.node if out in n.input]
    if len(users) != 1 or users[0].op_type != "Add":
        return False
    other = [x for x in users[0].input if x != out]
    return len(other) == 1 and c.is_static(other[0]) and len(s.get(other[0], ())) == 1


def walk(graph: onnx.GraphProto, shapes: Shapes, c: Constants,
         handlers: Mapping[tuple[str, str], _Handler] | None = None) -> Walk:
    """Sites for every GEMM node (refusals kept with their reason)."""
    handlers = HANDLERS if handlers is None else handlers
    found: list[tuple[int, str, str]] = []
    for i, node in enumerate(graph.node):
        if (domain(node), node.op_type) in handlers:
            path, last = module_path(node.name)
            found.append((i, path, last))
    per_path: dict[str, int] = {}
    for _, path, _ in found:
        per_path[path] = per_path.get(path, 0) + 1
    patterns = {p.qk: p for p in attention_patterns(graph, c)}
    pv_of = {p.pv: p for p in patterns.values()}
    sites: list[Site] = []
    refused: dict[str, str] = {}
    paths: dict[str, str] = {}
    ops: dict[str, str] = {}
    for i, path, last in found:
        node = graph.node[i]
        nid = node_id(i, node)
        paths[nid], ops[nid] = path, node.op_type
        base = path or "model"
        name = base if per_path[path] == 1 else f"{base}.{last}"
        if i in patterns:
            name = f"{base}.qk"
        elif i in pv_of:
            name = f"{module_path(graph.node[pv_of[i].qk].name)[0] or 'model'}.pv"
        bias = node.op_type == "MatMul" and _bias_add(graph, i, shapes, c)
        try:
            missing = [t for t in node.input if t and t not in shapes]
            if missing:
                raise Refusal(f"no static shape for {missing[0]!r}")
            got = handlers[(domain(node), node.op_type)](name, node, shapes, c, bias)
        except Refusal as why:
            refused[nid] = str(why)
            continue
        except SparsesimError as err:
            refused[nid] = err.message
            continue
        for site in got:
            site = replace(site, node=nid)
            if i in patterns and isinstance(site.layer, MatMul):
                layer = site.layer
                sa = shapes[node.input[0]]
                batch = tuple(np.broadcast_shapes(tuple(sa[:-2]),
                                                  tuple(shapes[node.input[1]][:-2])))
                lead = (layer.count,) if layer.count > 1 else ()
                p = patterns[i]
                site = replace(site, o=_needed(p, lead, batch, layer.m, layer.n),
                               tensors=site.tensors + p.tensors)
            sites.append(site)
    names = [s.layer.name for s in sites]
    seen: dict[str, int] = {}
    for k, s in enumerate(sites):  # a clash left (two patterns in one module): number them
        if names.count(s.layer.name) > 1:
            seen[s.layer.name] = seen.get(s.layer.name, 0) + 1
            numbered = f"{s.layer.name}_{seen[s.layer.name]}"
            sites[k] = replace(s, layer=replace(s.layer, name=numbered))
    return Walk(sites, refused, paths, ops)


__all__ = ["Env", "HANDLERS", "Pattern", "Refusal", "Site", "Walk", "WeightRef",
           "attention_patterns", "conv_pads", "module_path", "node_id", "walk"]
