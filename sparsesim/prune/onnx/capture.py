"""An ONNX file captured by graph: layers, effective weights, measured masks, parity.

:func:`capture` loads the ``ModelProto``, binds its symbolic input dimensions
(:mod:`.shapes`), infers shapes, folds the static tensors (:mod:`.constants`), finds the GEMM
nodes (:mod:`.walk`) and runs the model once in onnxruntime on the calibration inputs with
every GEMM node's inputs and outputs (and the attention masks) exposed as graph outputs: those
tensors are the activation masks (each GEMM's A operand, an activation B) and the shapes
where inference left a dimension open. Graph optimizations are off, so every exposed tensor
is the one the file names.

The calibration inputs are given (a ``.npz`` with one array per input name) or random normal
from a seed (float inputs only: an integer input such as token ids needs real values). The
calibration batch is the simulated batch, as in the torch capture.

A pruning's weight masks are applied for the second pass by giving each pruned GEMM node a
new initializer holding its effective weight times the mask (in the node's layout), so a
weight behind ``DequantizeLinear`` or ``Transpose`` is pruned where it is multiplied and a
weight shared by two nodes carries each node's own mask.

The parity gate compares the captured MACs with :mod:`.count`'s per-node count of the same
graph; every node that carries MACs no layer holds is listed with its op, module and reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from sparsesim.errors import SparsesimError
from sparsesim.prune.coverage import Coverage, Uncaptured, check_coverage
from sparsesim.prune.criteria import LayerStats
from sparsesim.prune.front import Masks
from sparsesim.prune.graphtrace import Measured, graph_trace, stats_of
from sparsesim.prune.onnx import attention, count, shapes, walk
from sparsesim.prune.onnx.constants import Constants, constants
from sparsesim.prune.spec import PruneSpec
from sparsesim.prune.synthetic import Weights
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Conv2d, Layer
from sparsesim.workload.network import Workload


def load_model(path: str | Path) -> onnx.ModelProto:
    """The ModelProto (external data beside it loaded too); one line if it is not ONNX."""
    file = Path(path)
    if not file.is_file():
        raise SparsesimError("no such file", file=str(path), field="--model")
    try:
        return onnx.load(str(file))
    except Exception as err:  # protobuf's DecodeError and others
        raise SparsesimError(f"cannot load the ONNX model: {type(err).__name__}: {err}"
                             .splitlines()[0],
                             file=str(path), field="--model") from None


def calibration_inputs(model: onnx.ModelProto, bound: Mapping[str, tuple[int, ...]],
                       npz: Mapping[str, np.ndarray] | None, seed: int) -> dict[str, np.ndarray]:
    """The inputs of the pass: the user's arrays (checked against the bound shapes), or
    random normal from ``seed`` for float inputs."""
    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for vi in shapes.graph_inputs(model):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        shape = bound[vi.name]
        if npz is not None:
            if vi.name not in npz:
                raise SparsesimError(f"the calibration file has no array {vi.name!r} (it has "
                                     f"{', '.join(sorted(npz)) or 'none'})",
                                     field="--calibration-inputs")
            x = np.asarray(npz[vi.name])
            if x.shape != shape:
                raise SparsesimError(f"array {vi.name!r} has shape {x.shape}, the model's input "
                                     f"is bound to {shape}", field="--calibration-inputs")
            out[vi.name] = x.astype(dtype, copy=False)
        elif np.issubdtype(dtype, np.floating):
            out[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:
            raise SparsesimError(f"input {vi.name!r} is {np.dtype(dtype).name}: random normal "
                                 "calibration is for float inputs; give --calibration-inputs "
                                 "FILE.npz with its values", field="--calibration-inputs")
    return out


def _session(model: onnx.ModelProto, expose: Sequence[str], types: Mapping[str, int]
             ) -> ort.InferenceSession:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in expose:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(
                name, types.get(name, onnx.TensorProto.FLOAT), None))
            have.add(name)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(m.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types: one line
        raise SparsesimError(f"onnxruntime cannot load the model: {str(err).splitlines()[0]}",
                             field="model") from None


def run_pass(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray], expose: Sequence[str],
             c: Constants, types: Mapping[str, int]) -> dict[str, np.ndarray]:
    """One onnxruntime run: the exposed tensors (static ones from the folded constants)."""
    dynamic = [t for t in dict.fromkeys(expose) if not c.is_static(t)]
    sess = _session(model, dynamic, types)
    try:
        values = sess.run(dynamic, dict(inputs))
    except Exception as err:
        raise SparsesimError(f"onnxruntime failed on the calibration inputs: "
                             f"{str(err).splitlines()[0]}", field="model") from None
    env = {t: c.values[t] for t in expose if c.is_static(t) and t in c.values}
    env.update(zip(dynamic, values))
    return env


def _sq_norms(layer: Layer, a: np.ndarray) -> np.ndarray:
    """``‖X_j‖₂`` per input feature (conv: per input channel), Wanda's statistic."""
    x = a.astype(np.float64)
    s = (x ** 2).sum(axis=(0, 2, 3)) if isinstance(layer, Conv2d) else \
        (x.reshape(-1, x.shape[-1]) ** 2).sum(axis=0)
    return np.sqrt(s).astype(np.float32)


def measure(sites: Sequence[walk.Site], env: Mapping[str, np.ndarray], c: Constants,
            graph: onnx.GraphProto, *, weights: bool, norms: bool) -> Measured:
    """Each site's operand masks from a pass's tensors (and the effective weights)."""
    out = Measured()
    index = {walk.node_id(i, n): n for i, n in enumerate(graph.node)}
    for s in sites:
        name = s.layer.name
        a = s.a(env)
        out.inputs[name] = a != 0
        if s.b is not None:
            out.internal.setdefault(name, {})["b"] = s.b(env) != 0
        o = None if s.o is None else s.o(env)
        if o is not None:
            out.internal.setdefault(name, {})["o"] = o
        if s.w is not None and weights:
            value = c.values[index[s.node].input[s.w.index]]
            out.weights[name] = {"w": np.asarray(s.w.to(value), dtype=np.float32).copy()}
        if norms:
            out.norms[name] = _sq_norms(s.layer, a)
    return out


def with_masks(model: onnx.ModelProto, sites: Sequence[walk.Site], masks: Masks, c: Constants
               ) -> onnx.ModelProto:
    """A copy whose pruned GEMM nodes read their effective weight times the mask."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = {walk.node_id(i, n): n for i, n in enumerate(m.graph.node)}
    for k, s in enumerate(sites):
        mask = masks.get(s.layer.name, {}).get("w")
        if s.w is None or mask is None:
            continue
        node = nodes[s.node]
        value = c.values[node.input[s.w.index]]
        name = f"{node.input[s.w.index]}__sparsesim_pruned_{k}"
        pruned = (value * s.w.back(np.asarray(mask)).astype(value.dtype)).astype(value.dtype)
        m.graph.initializer.append(numpy_helper.from_array(pruned, name))
        node.input[s.w.index] = name
    return m


@dataclass
class OnnxCaptured:
    """An ONNX model captured by graph: its workload, coverage and first pass."""

    model: onnx.ModelProto  # dims bound, shapes inferred
    walked: walk.Walk
    workload: Workload
    coverage: Coverage
    inputs: dict[str, np.ndarray]
    consts: Constants
    types: dict[str, int]
    first: Measured
    file: str

    def weights(self) -> Weights:
        return self.first.weights

    def stats(self) -> dict[str, LayerStats]:
        return stats_of(self.first)

    def rerun(self, masks: Masks) -> Measured:
        """The pass on the pruned model (weights masked at their GEMM nodes)."""
        sites = self.walked.sites
        model = with_masks(self.model, sites, masks, self.consts)
        env = run_pass(model, self.inputs, [t for s in sites for t in s.tensors], self.consts,
                       self.types)
        return measure(sites, env, self.consts, self.model.graph, weights=False, norms=False)

    def trace(self, spec: PruneSpec | None = None, *, meta: Mapping[str, Any] | None = None
              ) -> Trace:
        """The trace (:func:`~sparsesim.prune.graphtrace.graph_trace`): ``spec = None`` is
        the model as it is (its own zeros)."""
        return graph_trace(self.workload, self.first, self.rerun,
                           {"method": "onnx", "file": self.file, **self.coverage.as_dict()},
                           spec, meta=meta)


def capture(path: str | Path, input_shapes: Sequence[str] | Mapping[str, tuple[int, ...]] = (),
            *, calibration: Mapping[str, np.ndarray] | None = None, seed: int = 0,
            allow_uncaptured: float = 0.0, norms: bool = False, name: str | None = None
            ) -> OnnxCaptured:
    """Load, bind, walk and run ``path``; refuse it (one error listing the uncaptured nodes)
    if the capture misses more than ``allow_uncaptured`` of its MACs."""
    file = str(path)
    model = load_model(path)
    given = input_shapes
    if not given and calibration is not None:
        given = {k: tuple(np.shape(v)) for k, v in calibration.items()}
    try:
        bound = shapes.bind_shapes(model, given, file=file)
        model = shapes.infer(model)
        consts = constants(model)
        inputs = calibration_inputs(model, bound, calibration, seed)
        graph = model.graph
        types = shapes.elem_types(model)
        mac_nodes = [n for n in graph.node if (count.domain(n), n.op_type) in count.COUNTS]
        patterns = walk.attention_patterns(graph, consts)
        expose = [t for n in mac_nodes for t in list(n.input) + list(n.output) if t]
        expose += [t for p in patterns for t in p.tensors]
        env = run_pass(model, inputs, expose, consts, types)
        known = dict(shapes.known_shapes(model))
        for t, v in env.items():
            known.setdefault(t, tuple(int(d) for d in np.shape(v)))
        walked = walk.walk(graph, known, consts, {**walk.HANDLERS, **attention.HANDLERS})
        first = measure(walked.sites, env, consts, graph, weights=True, norms=norms)
        cov = _coverage(graph, known, walked)
        check_coverage(cov, allow_uncaptured)
    except SparsesimError as err:
        raise err.located(file=file) from None
    layers = tuple(s.layer for s in walked.sites)
    stem = Path(file).stem
    workload = Workload(name or stem, layers, f"ONNX {Path(file).name}")
    return OnnxCaptured(model, walked, workload, cov, inputs, consts, types, first, file)


def _coverage(graph: onnx.GraphProto, known: Mapping[str, tuple[int, ...]], walked: walk.Walk
              ) -> Coverage:
    held: dict[str, int] = {}
    for s in walked.sites:
        held[s.node] = held.get(s.node, 0) + s.layer.dense_macs
    total = captured = 0
    uncaptured = []
    for i, node in enumerate(graph.node):
        if (count.domain(node), node.op_type) not in count.COUNTS:
            continue
        nid = walk.node_id(i, node)
        macs = count.node_macs(node, known)
        total += macs
        if nid in held:
            if held[nid] != macs:
                raise SparsesimError(f"node {nid}: the layers hold {held[nid]} MACs, the "
                                     f"per-node count is {macs}", layer=nid, field="parity")
            captured += macs
        elif macs:
            path, _ = walk.module_path(node.name)
            uncaptured.append(Uncaptured(nid, node.op_type, path, macs,
                                         walked.refused.get(nid, "no handler for this op")))
    return Coverage(captured, total, tuple(uncaptured), count.COUNTER)


def user_trace(path: str, prune: PruneSpec | None, *, input_shapes: Sequence[str] = (),
               calibration: str | None = None, seed: int = 0, allow_uncaptured: float = 0.0
               ) -> Trace:
    """The CLI's ``--model model.onnx``: its trace, pruned by ``prune`` (weight
    granularities) or, with ``None``, as it is (its own zeros)."""
    if prune is not None and prune.criterion in ("taylor", "fisher"):
        raise SparsesimError(f"criterion {prune.criterion!r} needs a loss; an ONNX model "
                             "ships none: use magnitude, random or wanda", field="--method")
    arrays = None
    if calibration is not None:
        try:
            with np.load(calibration) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as err:
            raise SparsesimError(f"cannot read: {err}", file=calibration,
                                 field="--calibration-inputs") from None
    cap = capture(path, input_shapes, calibration=arrays, seed=seed,
                  allow_uncaptured=allow_uncaptured,
                  norms=prune is not None and prune.criterion == "wanda")
    return cap.trace(prune)


__all__ = ["OnnxCaptured", "calibration_inputs", "capture", "load_model", "measure",
           "run_pass", "user_trace", "with_masks"]
