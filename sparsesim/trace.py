"""Pruned traces: a workload's layer shapes with their real masks, in one versioned file.

A trace is what the pruning front-end hands the simulator. On disk it is one ``.npz``: a
``manifest`` entry (UTF-8 JSON: format name, version, network, each layer's kind and fields,
the shapes of its masks, free-form metadata such as the pruning method and accuracy) and one
bit-packed array per mask (``"{layer index}/w/{tensor}"``, ``"{layer index}/in"``). The
layers are stored *after* shape pruning (fewer tokens, heads, KV entries), so the file
describes exactly what runs.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.layers import LAYER_TYPES, Layer
from sparsesim.masks import LayerMasks, check_masks
from sparsesim.workload import Workload

FORMAT = "sparsesim-trace"
VERSION = 1


@dataclass(frozen=True)
class Trace:
    """Layers (as pruned) and their masks; ``meta`` is JSON-able provenance."""

    workload: Workload
    masks: dict[str, LayerMasks]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {layer.name for layer in self.workload.layers}
        for name in self.masks:
            if name not in names:
                raise SparsesimError("masks for a layer the workload does not have",
                                     file=self.workload.file, layer=name)
        for layer in self.workload.layers:
            if layer.name in self.masks:
                check_masks(layer, self.masks[layer.name], file=self.workload.file)

    def save(self, path: str | Path) -> None:
        """Write the trace as one compressed ``.npz`` (masks bit-packed)."""
        arrays: dict[str, np.ndarray] = {}
        layers = []
        for i, layer in enumerate(self.workload.layers):
            entry: dict[str, Any] = {"op": layer.op, **asdict(layer)}
            masks = self.masks.get(layer.name)
            if masks is not None:
                entry["masks"] = {"weights": {k: list(v.shape) for k, v in masks.weights.items()},
                                  "inputs": None if masks.inputs is None
                                  else list(masks.inputs.shape)}
                for k, v in masks.weights.items():
                    arrays[f"{i}/w/{k}"] = np.packbits(v.astype(bool, copy=False).ravel())
                if masks.inputs is not None:
                    arrays[f"{i}/in"] = np.packbits(masks.inputs.astype(bool, copy=False).ravel())
            layers.append(entry)
        manifest = {"format": FORMAT, "version": VERSION,
                    "network": {"name": self.workload.name, "source": self.workload.source},
                    "layers": layers, "meta": self.meta}
        arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


def load_trace(path: str | Path) -> Trace:
    """Read a trace file; a malformed one is one error naming the file, layer and field."""
    file = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise SparsesimError(f"cannot read trace: {err}", file=file) from None
    if "manifest" not in arrays:
        raise SparsesimError("not a sparsesim trace (no manifest)", file=file, field="manifest")
    try:
        manifest = json.loads(arrays["manifest"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SparsesimError(f"malformed manifest: {err}", file=file, field="manifest") from None
    if manifest.get("format") != FORMAT:
        raise SparsesimError(f"not a sparsesim trace: format {manifest.get('format')!r}",
                             file=file, field="format")
    if manifest.get("version") != VERSION:
        raise SparsesimError(f"trace version {manifest.get('version')!r}; this sparsesim reads "
                             f"version {VERSION}", file=file, field="version")
    layers: list[Layer] = []
    masks: dict[str, LayerMasks] = {}
    for i, entry in enumerate(manifest.get("layers", [])):
        entry = dict(entry)
        name = str(entry.get("name", f"#{i}"))
        op = entry.pop("op", None)
        shapes = entry.pop("masks", None)
        if op not in LAYER_TYPES:
            raise SparsesimError(f"unknown op {op!r}", file=file, layer=name, field="op")
        try:
            layers.append(LAYER_TYPES[op](**entry))
        except TypeError as err:
            raise SparsesimError(f"bad layer fields: {err}", file=file, layer=name) from None
        except SparsesimError as err:
            raise err.located(file=file) from None
        if shapes is not None:
            weights = {k: _unpack(arrays, f"{i}/w/{k}", s, file, name)
                       for k, s in shapes.get("weights", {}).items()}
            inputs = None
            if shapes.get("inputs") is not None:
                inputs = _unpack(arrays, f"{i}/in", shapes["inputs"], file, name)
            masks[name] = LayerMasks(weights, inputs)
    network = manifest.get("network", {})
    try:
        workload = Workload(str(network.get("name", Path(file).stem)), tuple(layers),
                            str(network.get("source", "")), file=file)
        return Trace(workload, masks, dict(manifest.get("meta", {})))
    except SparsesimError as err:
        raise err.located(file=file) from None


def _unpack(arrays: dict[str, np.ndarray], key: str, shape: list[int], file: str,
            layer: str) -> np.ndarray:
    if key not in arrays:
        raise SparsesimError("mask missing from the file", file=file, layer=layer, field=key)
    size = math.prod(shape)
    bits = np.unpackbits(arrays[key], count=size)
    if bits.size != size:
        raise SparsesimError(f"mask has {bits.size} bits, shape {shape} needs {size}",
                             file=file, layer=layer, field=key)
    return bits.astype(bool).reshape(shape)
