"""Input shapes of an ONNX model: ``--input-shape`` parsed, symbolic dimensions bound.

A dimension the file leaves symbolic (``dim_param: "batch"``) takes the value of the given
input shape at that axis; the same name elsewhere (other inputs, the outputs) gets the same
value, so shape inference (``onnx.shape_inference``, with data propagation) can resolve the
graph's intermediate shapes. A given shape that contradicts a fixed dimension, a name bound to
two values and a symbolic dimension left unbound are refused in one line naming the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import onnx

from sparsesim.errors import SparsesimError


def parse_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``name=1x3x224x224`` or ``1x3x224x224`` (positional): the name and the dimensions."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise SparsesimError(f"expected [NAME=]D1xD2x... with positive integers, got {text!r}",
                             field="--input-shape")
    return (name if sep else None), shape


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds (not initializers listed as inputs, as old exporters do)."""
    init = {t.name for t in model.graph.initializer} | {
        t.values.name for t in model.graph.sparse_initializer}
    return [i for i in model.graph.input if i.name not in init]


def _dims(vi: onnx.ValueInfoProto) -> list[Any]:
    return list(vi.type.tensor_type.shape.dim)


def bind_shapes(model: onnx.ModelProto, given: Sequence[str] | Mapping[str, tuple[int, ...]],
                *, file: str | None = None) -> dict[str, tuple[int, ...]]:
    """Fix every graph input's dimensions in ``model`` (in place) from ``given`` (the
    ``--input-shape`` texts, or shapes by name) and return the input shapes."""
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    shapes: dict[str, tuple[int, ...]] = {}
    if isinstance(given, Mapping):
        shapes = {k: tuple(v) for k, v in given.items()}
    else:
        for pos, text in enumerate(given):
            name, shape = parse_shape(text)
            if name is None:
                if pos >= len(names):
                    raise SparsesimError(f"{len(given)} shapes for {len(names)} inputs "
                                         f"({', '.join(names)})", file=file,
                                         field="--input-shape")
                name = names[pos]
            shapes[name] = shape
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise SparsesimError(f"no input {unknown[0]!r}; the model's inputs are "
                             f"{', '.join(names)}", file=file, field="--input-shape")
    bound: dict[str, int] = {}
    for vi in inputs:
        dims = _dims(vi)
        if vi.name not in shapes:
            continue
        shape = shapes[vi.name]
        if len(shape) != len(dims):
            raise SparsesimError(f"input {vi.name!r} has {len(dims)} dimensions, the shape "
                                 f"given has {len(shape)}", file=file, field="--input-shape")
        for axis, (d, v) in enumerate(zip(dims, shape)):
            if d.HasField("dim_value") and d.dim_value != v:
                raise SparsesimError(f"input {vi.name!r} axis {axis} is fixed at {d.dim_value} "
                                     f"in the file, not {v}", file=file, field="--input-shape")
            if d.HasField("dim_param") and d.dim_param:
                if bound.setdefault(d.dim_param, v) != v:
                    raise SparsesimError(f"dimension {d.dim_param!r} given as both "
                                         f"{bound[d.dim_param]} and {v}", file=file,
                                         field="--input-shape")
    out: dict[str, tuple[int, ...]] = {}
    for vi in inputs:
        dims = _dims(vi)
        values = []
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                values.append(d.dim_value)
            elif d.HasField("dim_param") and d.dim_param in bound:
                values.append(bound[d.dim_param])
            elif vi.name in shapes:
                values.append(shapes[vi.name][axis])
            else:
                what = d.dim_param or "unnamed"
                raise SparsesimError(f"input {vi.name!r} axis {axis} is symbolic ({what}): "
                                     f"give --input-shape {vi.name}=" + "x".join(
                                         "D" for _ in dims), file=file, field="--input-shape")
        for d, v in zip(dims, values):
            d.Clear()
            d.dim_value = v
        out[vi.name] = tuple(values)
    for vi in model.graph.output:  # symbolic output dims: bound, or left to inference
        for d in _dims(vi):
            if d.HasField("dim_param"):
                name = d.dim_param
                d.Clear()
                if name in bound:
                    d.dim_value = bound[name]
    del model.graph.value_info[:]  # re-inferred from the bound inputs
    return out


def infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference with data propagation (shapes computed from ``Shape`` ops resolve)."""
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as err:  # onnx raises InferenceError and others: one line for the user
        raise SparsesimError(f"ONNX shape inference failed: {str(err).splitlines()[0]}",
                             field="model") from None


def known_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor whose shape inference found all dimensions."""
    out: dict[str, tuple[int, ...]] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = list(tt.shape.dim)
        if all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(int(d.dim_value) for d in dims)
    for t in g.initializer:
        out[t.name] = tuple(int(d) for d in t.dims)
    for st in g.sparse_initializer:
        out[st.values.name] = tuple(int(d) for d in st.dims)
    return out


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Every tensor's element type where inference knows it (to expose it as an output)."""
    g = model.graph
    out = {vi.name: vi.type.tensor_type.elem_type
           for vi in list(g.input) + list(g.value_info) + list(g.output)
           if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
    return out


__all__ = ["bind_shapes", "elem_types", "graph_inputs", "infer", "known_shapes", "parse_shape"]
