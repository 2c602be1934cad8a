"""Pruned traces: a workload's layer shapes with their real masks, in one versioned file.

A trace is what the pruning front-end hands the simulator. On disk it is one ``.npz``: a
``manifest`` entry (UTF-8 JSON: format name, version, network, each layer's kind and fields,
the shapes of its masks, free-form metadata such as the pruning method and accuracy) and one
bit-packed array per mask (``"{layer index}/w/{tensor}"``, ``"{layer index}/in"``). The
layers are stored *after* shape pruning (fewer tokens, heads, KV entries), so the file
describes exactly what runs.

Version 2 adds, per layer, an optional ``act_model`` (an :class:`ActivationModel`: density,
per-channel densities and seed) in place of a measured input mask: the mask is drawn from it
when the trace is built or loaded, the same for the same seed. A version-1 reader would
ignore it and simulate dense activations, hence the new version; version-1 files still load.

Version 3 adds attention's internal activation masks (queries, keys, values, probabilities
and the O projection's input, :class:`~sparsesim.names.AttnOperand`), one bit-packed member
``"{layer index}/act/{name}"`` each, listed under the layer's ``masks.activations`` with its
shape (:meth:`~sparsesim.workload.layers.Attention.activation_shapes`). A version-2 reader
would drop them and simulate dense internals, hence the version; version-1 and -2 files still
load, with dense internals (all they described).
By convention (``sparsesim.prune``) ``meta`` holds ``method`` (criterion, granularity,
schedule and their parameters), ``seed``, ``accuracy`` (one row per measured sparsity level)
and ``layers`` (per layer: achieved sparsity, kept tokens / heads / KV entries, measured
activation density). An accuracy row is ``{"metric", "sparsity", "accuracy" or "value",
"stage", "includes"}``; the last row is the model the trace describes (:func:`trace_accuracy`), the
earlier ones the dense model and a schedule's intermediate levels. ``includes`` lists the
prunings the number was measured with (``sparsesim.prune.torch.applied.Applied.includes``:
``weights:<granularity>``, ``removed:slimming``, ``heads``, ``tokens``, ``kv``,
``act_prune:<kind>``, ``dynamic:<kind>``); ``[]`` is the dense model.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import LAYER_TYPES, Layer
from sparsesim.sparsity.masks import ActivationModel, LayerMasks, check_masks
from sparsesim.workload.network import Workload

FORMAT = "sparsesim-trace"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


@dataclass(frozen=True)
class Trace:
    """Layers (as pruned) and their masks; ``meta`` is JSON-able provenance.

    ``act_models`` gives a layer an activation-density model instead of a measured input
    mask; the mask drawn from it is put into ``masks`` here, so the simulator sees one kind.
    """

    workload: Workload
    masks: dict[str, LayerMasks]
    meta: dict[str, Any] = field(default_factory=dict)
    act_models: dict[str, ActivationModel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        file = self.workload.file
        names = {layer.name for layer in self.workload.layers}
        for name in [*self.masks, *self.act_models]:
            if name not in names:
                raise SparsesimError("masks for a layer the workload does not have",
                                     file=file, layer=name)
        masks = dict(self.masks)
        for layer in self.workload.layers:
            model = self.act_models.get(layer.name)
            if model is not None:
                have = masks.get(layer.name, LayerMasks())
                if have.inputs is not None:
                    raise SparsesimError("give a measured input mask or an activation model, "
                                         "not both", file=file, layer=layer.name,
                                         field="act_model")
                try:
                    masks[layer.name] = LayerMasks(have.weights, model.draw(layer),
                                                   have.activations)
                except SparsesimError as err:
                    raise err.located(file=file, layer=layer.name) from None
            if layer.name in masks:
                check_masks(layer, masks[layer.name], file=file)
        object.__setattr__(self, "masks", masks)

    def check_workload(self, workload: Workload) -> None:
        """Every layer of ``workload`` must be in the trace, as the same kind of layer.

        Shapes may differ (the trace stores layers after shape pruning); a missing layer is
        one error naming the trace file and the layer.
        """
        mine = {layer.name: layer for layer in self.workload.layers}
        for layer in workload.layers:
            if layer.name not in mine:
                raise SparsesimError(f"layer of workload {workload.name!r} missing from the "
                                     "trace", file=self.workload.file, layer=layer.name,
                                     field="layers")
            if mine[layer.name].op != layer.op:
                raise SparsesimError(f"is a {mine[layer.name].op} in the trace, a {layer.op} in "
                                     f"workload {workload.name!r}", file=self.workload.file,
                                     layer=layer.name, field="op")

    def save(self, path: str | Path) -> None:
        """Write the trace as one compressed ``.npz`` (masks bit-packed)."""
        arrays: dict[str, np.ndarray] = {}
        layers = []
        for i, layer in enumerate(self.workload.layers):
            entry: dict[str, Any] = {"op": layer.op, **asdict(layer)}
            masks = self.masks.get(layer.name)
            model = self.act_models.get(layer.name)
            measured = None if masks is None or model is not None else masks.inputs
            if masks is not None:
                entry["masks"] = {"weights": {k: list(v.shape) for k, v in masks.weights.items()},
                                  "inputs": None if measured is None else list(measured.shape)}
                for k, v in masks.weights.items():
                    arrays[f"{i}/w/{k}"] = np.packbits(v.astype(bool, copy=False).ravel())
                if measured is not None:
                    arrays[f"{i}/in"] = np.packbits(measured.astype(bool, copy=False).ravel())
                if masks.activations:  # left out when empty: the manifest of older traces
                    entry["masks"]["activations"] = {k: list(v.shape)
                                                     for k, v in masks.activations.items()}
                for k, v in masks.activations.items():
                    arrays[f"{i}/act/{k}"] = np.packbits(v.astype(bool, copy=False).ravel())
            if model is not None:
                entry["act_model"] = {
                    "density": model.density, "seed": model.seed,
                    "channel_densities": None if model.channel_densities is None
                    else list(model.channel_densities)}
            layers.append(entry)
        manifest = {"format": FORMAT, "version": VERSION,
                    "network": {"name": self.workload.name, "source": self.workload.source},
                    "layers": layers, "meta": self.meta}
        arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TraceAccuracy:
    """One accuracy row of a trace's ``meta``: a metric measured at one sparsity level."""

    metric: str  # e.g. "test_accuracy", "perplexity_heldout_text"
    value: float
    sparsity: float = 0.0
    stage: str = ""
    includes: tuple[str, ...] | None = None  # the prunings it includes; None: not recorded

    @property
    def label(self) -> str:
        """The metric as words ("test accuracy")."""
        return self.metric.replace("_", " ")

    @property
    def includes_text(self) -> str:
        """What the number includes, as printed: "weights:unstructured, act_prune:topk",
        "no pruning (dense)", or "prunings not recorded" (a trace from before they were)."""
        if self.includes is None:
            return "prunings not recorded"
        return ", ".join(self.includes) if self.includes else "no pruning (dense)"


def accuracy_rows(meta: Mapping[str, Any]) -> tuple[TraceAccuracy, ...]:
    """Every accuracy row of a trace's ``meta``, in order (the dense model first, if measured)."""
    rows = []
    for row in meta.get("accuracy") or []:
        value = row.get("accuracy", row.get("value"))
        if value is not None:
            inc = row.get("includes")
            rows.append(TraceAccuracy(str(row.get("metric", "test_accuracy")), float(value),
                                      float(row.get("sparsity", 0.0)), str(row.get("stage", "")),
                                      None if inc is None else tuple(str(i) for i in inc)))
    return tuple(rows)


def trace_accuracy(meta: Mapping[str, Any]) -> TraceAccuracy | None:
    """The accuracy of the pruned model in a trace's ``meta`` (its last row), or ``None``."""
    rows = accuracy_rows(meta)
    return rows[-1] if rows else None


def load_trace(path: str | Path) -> Trace:
    """Read a trace file; a malformed one is one error naming the file, layer and field."""
    file = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        # A truncated or corrupted file fails inside zipfile/zlib: say so once.
        raise SparsesimError(f"cannot read trace (truncated or not an .npz?): {err}",
                             file=file) from None
    if "manifest" not in arrays:
        raise SparsesimError("not a sparsesim trace (no manifest)", file=file, field="manifest")
    try:
        manifest = json.loads(arrays["manifest"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SparsesimError(f"malformed manifest: {err}", file=file, field="manifest") from None
    if manifest.get("format") != FORMAT:
        raise SparsesimError(f"not a sparsesim trace: format {manifest.get('format')!r}",
                             file=file, field="format")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise SparsesimError(f"trace version {manifest.get('version')!r}; this sparsesim reads "
                             f"versions {', '.join(map(str, READABLE_VERSIONS))}", file=file,
                             field="version")
    layers: list[Layer] = []
    masks: dict[str, LayerMasks] = {}
    act_models: dict[str, ActivationModel] = {}
    entries = manifest.get("layers")
    if not isinstance(entries, list) or not entries:
        raise SparsesimError("the manifest lists no layers", file=file, field="layers")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SparsesimError("each layer must be a JSON object", file=file,
                                 field=f"layers[{i}]")
        entry = dict(entry)
        name = str(entry.get("name", f"#{i}"))
        op = entry.pop("op", None)
        shapes = entry.pop("masks", None)
        model = entry.pop("act_model", None)
        if model is not None:
            act_models[name] = _act_model(model, file, name)
        if op not in LAYER_TYPES:
            raise SparsesimError(f"unknown op {op!r}", file=file, layer=name, field="op")
        try:
            layers.append(LAYER_TYPES[op](**entry))
        except TypeError as err:
            raise SparsesimError(f"bad layer fields: {err}", file=file, layer=name) from None
        except SparsesimError as err:
            raise err.located(file=file) from None
        if shapes is not None:
            weights = {k: _unpack(arrays, f"{i}/w/{k}", s, file, name, f"weights.{k}")
                       for k, s in shapes.get("weights", {}).items()}
            inputs = None
            if shapes.get("inputs") is not None:
                inputs = _unpack(arrays, f"{i}/in", shapes["inputs"], file, name, "inputs")
            internal = shapes.get("activations") or {}
            if not isinstance(internal, dict):
                raise SparsesimError("expected {name: shape}", file=file, layer=name,
                                     field="masks.activations")
            activations = {k: _unpack(arrays, f"{i}/act/{k}", s, file, name,
                                      f"activations.{k}") for k, s in internal.items()}
            masks[name] = LayerMasks(weights, inputs, activations)
    network = manifest.get("network", {})
    try:
        workload = Workload(str(network.get("name", Path(file).stem)), tuple(layers),
                            str(network.get("source", "")), file=file)
        return Trace(workload, masks, dict(manifest.get("meta", {})), act_models)
    except SparsesimError as err:
        raise err.located(file=file) from None


def _act_model(data: Any, file: str, layer: str) -> ActivationModel:
    if not isinstance(data, dict) or "density" not in data:
        raise SparsesimError("expected {density, channel_densities, seed}", file=file,
                             layer=layer, field="act_model")
    channels = data.get("channel_densities")
    try:
        return ActivationModel(float(data["density"]),
                               None if channels is None else tuple(float(c) for c in channels),
                               int(data.get("seed", 0)))
    except (TypeError, ValueError) as err:
        if isinstance(err, SparsesimError):
            raise err.located(file=file, layer=layer, field="act_model") from None
        raise SparsesimError(f"bad activation model: {err}", file=file, layer=layer,
                             field="act_model") from None


def _unpack(arrays: dict[str, np.ndarray], key: str, shape: list[int], file: str,
            layer: str, field: str) -> np.ndarray:
    if key not in arrays:
        raise SparsesimError(f"mask missing from the file (no array {key!r})", file=file,
                             layer=layer, field=field)
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise SparsesimError(f"bad mask shape {shape!r}", file=file, layer=layer, field=field)
    size = math.prod(shape)
    packed = arrays[key]
    if packed.dtype != np.uint8 or packed.ndim != 1 or packed.size != (size + 7) // 8:
        raise SparsesimError(f"mask has {packed.size * 8} bits stored, shape {shape} needs "
                             f"{size}", file=file, layer=layer, field=field)
    bits = np.unpackbits(packed, count=size)
    return bits.astype(bool).reshape(shape)
