"""The parity gate's independent count for ONNX: MACs per node, from the op's definition.

Each MAC-carrying op's multiply-adds follow from the ONNX operator specification and the
shapes of its inputs and *outputs* as shape inference (or the calibration pass) gives them —
not from the lowering's layer formulas (a conv's output size is read off its output tensor,
not computed from stride and padding):

* ``Conv``: ``∏ output · (C/group) · ∏ kernel``; ``ConvTranspose``: ``∏ input · (M/group)
  · ∏ kernel`` (every input pixel meets every kernel tap); ``ConvInteger``/``QLinearConv``
  as ``Conv``.
* ``MatMul`` (``MatMulInteger``, ``QLinearMatMul``): broadcast batch · m · k · n, 1-D operands
  as numpy promotes them; ``Gemm``: m · k · n after ``transA``/``transB``.
* ``com.microsoft`` ``Attention``: ``B·S·hidden·(q + k + v widths)`` projections + ``B·heads·
  S·S_kv·(d_qk + d_v)``; ``MultiHeadAttention``: the last term.
* ``Einsum`` of two operands: the product of every index's size (each index a loop).

Every other op counts zero (elementwise ops, softmax, norms are not GEMMs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx

Shapes = Mapping[str, tuple[int, ...]]


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _conv(node: onnx.NodeProto, s: Shapes) -> int:
    w, y = s[node.input[1]], s[node.output[0]]
    return math.prod(y) * w[1] * math.prod(w[2:])


def _qconv(node: onnx.NodeProto, s: Shapes) -> int:  # x, x_scale, x_zp, w, ...
    w, y = s[node.input[3]], s[node.output[0]]
    return math.prod(y) * w[1] * math.prod(w[2:])


def _conv_transpose(node: onnx.NodeProto, s: Shapes) -> int:
    x, w = s[node.input[0]], s[node.input[1]]
    return math.prod(x) * w[1] * math.prod(w[2:])


def matmul_macs(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """numpy.matmul's multiply-adds for operand shapes ``a`` and ``b``."""
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    return math.prod(batch) * a2[-2] * a2[-1] * b2[-1]


def _gemm(node: onnx.NodeProto, s: Shapes) -> int:
    a, b = s[node.input[0]], s[node.input[1]]
    m, k = (a[1], a[0]) if _attr(node, "transA", 0) else a
    n = b[0] if _attr(node, "transB", 0) else b[1]
    return int(m * k * n)


def _attention(node: onnx.NodeProto, s: Shapes) -> int:
    x, w = s[node.input[0]], s[node.input[1]]
    b, seq, hidden = x
    heads = int(_attr(node, "num_heads", 1))
    sizes = _attr(node, "qkv_hidden_sizes", None)
    qh, kh, vh = [int(v) for v in sizes] if sizes else [w[1] // 3] * 3
    past = s[node.input[4]][-2] if len(node.input) > 4 and node.input[4] else 0
    kv = seq + past
    return b * seq * hidden * (qh + kh + vh) + b * heads * seq * kv * (qh // heads + vh // heads)


def _mha(node: onnx.NodeProto, s: Shapes) -> int:
    q, k, v = s[node.input[0]], s[node.input[1]], s[node.input[2]]
    heads = int(_attr(node, "num_heads", 1))
    if len(k) == 4:  # [B, heads, S_kv, d]: keys and values already per head
        kv, dk, dv = k[2], k[3], v[3]
    else:
        kv, dk, dv = k[1], k[2] // heads, v[2] // heads
    return q[0] * heads * q[1] * kv * (dk + dv)


def _einsum(node: onnx.NodeProto, s: Shapes) -> int:
    eq = str(_attr(node, "equation", b"")).replace(" ", "")
    eq = eq[2:-1] if eq.startswith("b'") else eq
    lhs = eq.split("->")[0].split(",")
    if len(lhs) != 2 or "." in eq:
        return 0
    size: dict[str, int] = {}
    for term, name in zip(lhs, node.input):
        for letter, d in zip(term, s[name]):
            size[letter] = max(size.get(letter, 1), d)
    return math.prod(size.values())


COUNTS: dict[tuple[str, str], Callable[[onnx.NodeProto, Shapes], int]] = {
    ("", "Conv"): _conv,
    ("", "ConvInteger"): _conv,
    ("", "QLinearConv"): _qconv,
    ("", "ConvTranspose"): _conv_transpose,
    ("", "MatMul"): lambda n, s: matmul_macs(s[n.input[0]], s[n.input[1]]),
    ("", "MatMulInteger"): lambda n, s: matmul_macs(s[n.input[0]], s[n.input[1]]),
    ("", "QLinearMatMul"): lambda n, s: matmul_macs(s[n.input[0]], s[n.input[3]]),
    ("", "Gemm"): _gemm,
    ("", "Einsum"): _einsum,
    ("com.microsoft", "Attention"): _attention,
    ("com.microsoft", "MultiHeadAttention"): _mha,
}
"""(domain, op) → its MACs; the ops whose tensors the calibration pass exposes for shapes."""


def domain(node: onnx.NodeProto) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def node_macs(node: onnx.NodeProto, shapes: Shapes) -> int:
    """The node's multiply-adds (0 for an op that is not a GEMM)."""
    fn = COUNTS.get((domain(node), node.op_type))
    return 0 if fn is None else int(fn(node, shapes))


COUNTER = ("per ONNX node from the operator definitions and the inferred (or calibration-run) "
           "tensor shapes (sparsesim.prune.onnx.count)")

__all__ = ["COUNTER", "COUNTS", "Shapes", "domain", "matmul_macs", "node_macs"]
