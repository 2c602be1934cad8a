"""A graph capture's trace: shared by the torch.export capture and the ONNX import.

Both captures give the same three things: a workload (one layer per GEMM node), a pass on
the calibration inputs of the model as it is (its effective weights, every layer's input
activation mask, an activation B operand's mask ``b`` and the needed outputs ``o``), and a
way to run the pass again with chosen weight masks applied at their GEMM nodes.
:func:`graph_trace` turns them into the trace: weight masks are the non-zero patterns of the
effective weights (zeros already in the weights are masks), AND the pruning's masks computed on
them; activation masks are measured on the *pruned* model's pass. A padded conv keeps an
all-ones input mask (its padding zeros are the simulator's to add); other all-ones masks are
dropped (dense is the default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.prune.criteria import LayerStats
from sparsesim.prune.front import Masks, score_weights, weight_masks
from sparsesim.prune.spec import COMPACTING, WEIGHT_GRANULARITIES, PruneSpec
from sparsesim.prune.synthetic import Weights
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Conv2d
from sparsesim.workload.network import Workload


@dataclass
class Measured:
    """One pass over the calibration inputs (numpy, per layer name)."""

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    internal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # b, o
    weights: Weights = field(default_factory=dict)
    norms: dict[str, np.ndarray] = field(default_factory=dict)
    node_macs: dict[str, int] = field(default_factory=dict)  # counted, per graph node
    output: Any = None


def stats_of(first: Measured) -> dict[str, LayerStats]:
    """Wanda's input norms per layer with a stored weight."""
    return {n: LayerStats(act_norms={"w": v}) for n, v in first.norms.items()
            if n in first.weights}


Compactor = Callable[[Weights, "Masks | None", dict[str, LayerMasks], dict[str, Any]], Trace]
"""Builds the compacted trace from the effective weights, the chosen masks, the measured layer
masks and the trace info (a capture that knows its graph: ``Captured._compacted``)."""


def graph_trace(workload: Workload, first: Measured, rerun: Callable[[Masks], Measured],
                capture: Mapping[str, Any], spec: PruneSpec | None = None, *,
                meta: Mapping[str, Any] | None = None, masks: Masks | None = None,
                extra: Mapping[str, Any] | None = None,
                compactor: Compactor | None = None) -> Trace:
    """The trace of a captured model: ``spec = None`` is the model as it is (its own zeros);
    otherwise ``spec``'s pruning computed on the effective weights (or ``masks``, chosen
    already: sequential calibration), activations re-measured by ``rerun`` with the chosen
    masks. ``capture`` is recorded as the trace's coverage, ``extra`` beside it (the
    calibration); a compacting ``spec`` with a ``compactor`` compacts the trace along the
    capture's graph."""
    weights = first.weights
    chosen: Masks | None = None
    info: dict[str, Any] = {"source": workload.source, "capture": dict(capture),
                            **dict(extra or {})}
    if spec is not None:
        if spec.granularity not in WEIGHT_GRANULARITIES:
            raise SparsesimError(f"{spec.granularity} pruning of a graph-captured model is "
                                 "not supported yet (its attention is MatMul layers, not "
                                 "attention layers with heads): use a weight granularity",
                                 field="granularity")
        with_w = Workload(workload.name, tuple(
            layer for layer in workload.layers if layer.name in weights), workload.source)
        if masks is None:
            masks = weight_masks(with_w, spec, score_weights(with_w, spec, weights,
                                                             stats_of(first)))
        chosen = masks
        measured = rerun(chosen)
    else:
        measured = first
    layer_masks: dict[str, LayerMasks] = {}
    per_layer: dict[str, dict[str, float]] = {}
    kept = total = 0
    for layer in workload.layers:
        name = layer.name
        w: dict[str, np.ndarray] = {}
        if name in weights:  # the effective weights' zeros, and the pruning's
            nz = weights[name]["w"] != 0
            if chosen is not None and name in chosen:
                nz &= chosen[name]["w"]
            kept, total = kept + int(nz.sum()), total + nz.size
            per_layer.setdefault(name, {})["weight_sparsity"] = 1 - float(nz.mean())
            if not nz.all():
                w["w"] = nz
        x = measured.inputs.get(name)
        if x is not None:
            per_layer.setdefault(name, {})["act_density"] = float(x.mean())
        padded = isinstance(layer, Conv2d) and layer.reads_zeros
        x = None if x is None or (x.all() and not padded) else x
        act = {}
        for key, mask in measured.internal.get(name, {}).items():
            per_layer.setdefault(name, {})[f"{key}_density"] = float(mask.mean())
            if not mask.all():
                act[key] = mask
        if w or x is not None or act:
            layer_masks[name] = LayerMasks(w, x, act)
    info = {"method": {} if spec is None else spec.as_dict(),
            "seed": 0 if spec is None else spec.seed,
            "weight_sparsity": 1 - kept / total if total else 0.0,
            "layers": per_layer, **info, **(meta or {})}
    if (compactor is not None and spec is not None and spec.granularity in COMPACTING
            and spec.compact):
        return compactor(weights, chosen, layer_masks, info)
    return Trace(workload, layer_masks, info)


__all__ = ["Measured", "graph_trace", "stats_of"]
