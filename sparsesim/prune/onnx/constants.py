"""Which tensors of an ONNX graph are stored weights, and their values.

A tensor is *static* when no graph input reaches it: an initializer (dense, or a
``SparseTensorProto`` expanded to dense), a ``Constant`` node, or the output of a node whose
inputs are all static. Its value is folded here in numpy through the ops exporters put
between a stored weight and its GEMM — ``Identity``, ``Cast``, ``Transpose``,
``DequantizeLinear`` (``(q − zero_point) · scale``, per tensor or per axis), ``Reshape``,
``Squeeze``/``Unsqueeze``, ``Mul``/``Div``/``Add``/``Sub`` of constants — so the value is the
*effective* weight the GEMM multiplies by, and its zeros are masks. A static tensor made by
another op is known to be static but has no folded value: a GEMM on it is refused, naming
the op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper


def sparse_to_dense(st: onnx.SparseTensorProto) -> np.ndarray:
    """A ``SparseTensorProto`` as its dense array (indices flat ``[nnz]`` or ``[nnz, rank]``)."""
    values = numpy_helper.to_array(st.values)
    idx = numpy_helper.to_array(st.indices).astype(np.int64)
    shape = tuple(int(d) for d in st.dims)
    out = np.zeros(shape, dtype=values.dtype)
    if idx.ndim == 1:
        out.reshape(-1)[idx] = values
    else:
        out[tuple(idx.T)] = values
    return out


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dequantize(node: onnx.NodeProto, x: list[np.ndarray]) -> np.ndarray:
    q, scale = x[0], x[1].astype(np.float32)
    zp = x[2].astype(np.float32) if len(x) > 2 else np.zeros((), np.float32)
    axis = int(_attrs(node).get("axis", 1))
    if scale.ndim == 1 and q.ndim > 1:  # per axis
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), (zp.reshape(shape) if zp.ndim else zp)
    return ((q.astype(np.float32) - zp) * scale).astype(np.float32)


def _reshape(node: onnx.NodeProto, x: list[np.ndarray]) -> np.ndarray:
    shape = [int(d) for d in x[1]]
    if not int(_attrs(node).get("allowzero", 0)):
        shape = [x[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x[0].reshape(shape)


def _axes(node: onnx.NodeProto, x: list[np.ndarray]) -> list[int]:
    if len(x) > 1:
        return [int(a) for a in x[1]]
    return [int(a) for a in _attrs(node).get("axes", [])]


def _unsqueeze(node: onnx.NodeProto, x: list[np.ndarray]) -> np.ndarray:
    out = x[0]
    axes = sorted(a % (out.ndim + len(_axes(node, x))) for a in _axes(node, x))
    for a in axes:
        out = np.expand_dims(out, a)
    return out


def _squeeze(node: onnx.NodeProto, x: list[np.ndarray]) -> np.ndarray:
    axes = _axes(node, x)
    return np.squeeze(x[0], axis=tuple(axes) if axes else None)


def _transpose(node: onnx.NodeProto, x: list[np.ndarray]) -> np.ndarray:
    perm = _attrs(node).get("perm")
    return np.transpose(x[0], perm if perm is None else list(perm))


def _cast(node: onnx.NodeProto, x: list[np.ndarray]) -> np.ndarray:
    to = int(_attrs(node)["to"])
    return x[0].astype(onnx.helper.tensor_dtype_to_np_dtype(to))


FOLD: dict[str, Callable[[onnx.NodeProto, list[np.ndarray]], np.ndarray]] = {
    "Identity": lambda n, x: x[0],
    "Cast": _cast,
    "Transpose": _transpose,
    "DequantizeLinear": _dequantize,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Mul": lambda n, x: x[0] * x[1],
    "Div": lambda n, x: x[0] / x[1],
    "Add": lambda n, x: x[0] + x[1],
    "Sub": lambda n, x: x[0] - x[1],
}
"""The ops folded between a stored weight and its GEMM (numpy, ONNX semantics)."""


@dataclass
class Constants:
    """The static tensors of a graph: ``values`` folded; ``made_by`` the op of each static
    tensor, so a GEMM on an unfolded one names it."""

    values: dict[str, np.ndarray]
    static: set[str]
    made_by: dict[str, str]

    def is_static(self, name: str) -> bool:
        return name in self.static

    def value(self, name: str) -> np.ndarray | None:
        return self.values.get(name)


def constants(model: onnx.ModelProto) -> Constants:
    """Fold the graph's static part (nodes are in topological order, as ONNX requires)."""
    g = model.graph
    values: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for st in g.sparse_initializer:
        values[st.values.name] = sparse_to_dense(st)
    static = set(values)
    made_by = {n: "initializer" for n in static}
    for node in g.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Constant":
            a = node.attribute[0]
            if a.name == "value":
                values[node.output[0]] = numpy_helper.to_array(a.t)
            elif a.name == "sparse_value":
                values[node.output[0]] = sparse_to_dense(a.sparse_tensor)
            else:
                values[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(a))
            static.add(node.output[0])
            made_by[node.output[0]] = "Constant"
            continue
        if not ins or not all(i in static for i in ins) or node.op_type in ("RandomNormal",
                                                                             "RandomUniform"):
            continue
        for o in node.output:
            static.add(o)
            made_by[o] = node.op_type
        fold = FOLD.get(node.op_type)
        if fold is not None and all(i in values for i in ins) and len(node.output) == 1:
            try:
                values[node.output[0]] = np.asarray(fold(node, [values[i] for i in node.input
                                                                if i]))
            except (ValueError, KeyError, IndexError, TypeError):
                pass  # static, not folded: a GEMM on it is refused with the op named
    return Constants(values, static, made_by)


__all__ = ["Constants", "FOLD", "constants", "sparse_to_dense"]
