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
Version 4 adds ``draw_version`` to an ``act_model`` (the mask-drawing version its mask is
drawn with, :mod:`sparsesim.sparsity.masks`); an ``act_model`` without it (versions 2 and 3)
draws as version 1, what those files were written with, so they load to the same masks. A
trace of masks drawn from a :class:`~sparsesim.sparsity.masks.SparsityModel`
(:func:`sparsesim.engine.inference.draw_trace`) records the model's version in
``meta["mask_draw_version"]``; its masks are stored, so loading draws nothing. A trace
without activation models is written as version 3 (all it uses), so version-3 readers read it.
By convention (``sparsesim.prune``) ``meta`` holds ``method`` (criterion, granularity,
schedule and their parameters), ``seed``, ``accuracy`` (one row per measured sparsity level)
and ``layers`` (per layer: achieved sparsity, kept tokens / heads / KV entries, measured
activation density). An accuracy row is ``{"metric", "sparsity", "accuracy" or "value",
"stage", "includes"}``; the last row is the model the trace describes (:func:`trace_accuracy`), the
earlier ones the dense model and a schedule's intermediate levels. ``includes`` lists the
prunings the number was measured with (``sparsesim.prune.torch.applied.Applied.includes``:
``weights:<granularity>``, ``removed:slimming``, ``removed:compaction``, ``heads``,
``tokens``, ``kv``, ``act_prune:<kind>``, ``attn_prune:<kind>``, ``dynamic:<kind>``); ``[]`` is
the dense model. ``compaction`` (``sparsesim.prune.compact``) counts what structured pruning
removed from the shapes (``{filters,inputs,channels,heads}_removed`` of ``_total``, folds), or
says why the shapes were kept (``compacted: false`` and a ``note``); :func:`compaction_text`
prints it.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, replace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.files import regular_file
from sparsesim.workload.layers import LAYER_TYPES, Layer
from sparsesim.kernels.packed import PackedMask
from sparsesim.sparsity.masks import (ActivationModel, AnyLayerMasks, LayerMasks,
                                      PackedLayerMasks, as_bool, check_masks)
from sparsesim.workload.network import Workload

FORMAT = "sparsesim-trace"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)


@dataclass(frozen=True)
class Trace:
    """Layers (as pruned) and their masks; ``meta`` is JSON-able provenance.

    ``act_models`` gives a layer an activation-density model instead of a measured input
    mask; the mask drawn from it is put into ``masks`` here, so the simulator sees one kind.
    ``packed``: every mask is held bit-packed (:class:`~sparsesim.sparsity.masks.
    PackedLayerMasks`, 1/8 of the memory), drawn ones included; the engine unpacks a layer
    when it runs it. The numbers are the same either way.
    """

    workload: Workload
    masks: Mapping[str, AnyLayerMasks]
    meta: dict[str, Any] = field(default_factory=dict)
    act_models: dict[str, ActivationModel] = field(default_factory=dict)
    packed: bool = False

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
                    drawn = model.draw(layer)
                except SparsesimError as err:
                    raise err.located(file=file, layer=layer.name) from None
                masks[layer.name] = (replace(have, inputs=PackedMask.of(drawn))
                                     if isinstance(have, PackedLayerMasks)
                                     else replace(have, inputs=drawn))
            here = masks.get(layer.name)
            if here is not None:
                check_masks(layer, here, file=file)
                if self.packed and isinstance(here, LayerMasks):
                    masks[layer.name] = PackedLayerMasks.of(here)
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
        overrides = dict(self.workload.mappings)
        for i, layer in enumerate(self.workload.layers):
            entry: dict[str, Any] = {"op": layer.op, **asdict(layer)}
            if layer.name in overrides:  # its [mapping] override (left out when none)
                entry["mapping"] = {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in overrides[layer.name]}
            masks = as_bool(self.masks.get(layer.name))  # one layer unpacked at a time
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
                    else list(model.channel_densities), "draw_version": model.draw_version}
            layers.append(entry)
        # the oldest version that describes the file: only act_models gained a field in 4
        manifest = {"format": FORMAT, "version": VERSION if self.act_models else 3,
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


#: Largest manifest read (bytes): a manifest is JSON of shapes and metadata, kilobytes even for
#: a large network; a bigger one is not a trace's.
MAX_MANIFEST_BYTES = 64 * 2**20
#: Most mask elements a trace may hold (all layers) as bools: each unpacks to one byte in
#: memory, so 2^31 is 2 GiB — an LLM block's are ~10^8. Loaded packed (what a run does), 8x
#: more: 2 GiB of packed bits.
MAX_TRACE_ELEMENTS = 2**31
_NPY_MAGIC = b"\x93NUMPY"


#: what ``meta["compaction"]`` counts: (key prefix, what it is), ``{key}_removed`` of
#: ``{key}_total`` (``sparsesim.prune.compact``, head pruning in ``sparsesim.prune.front``)
_REMOVED = (("filters", "filters"), ("inputs", "input channels"),
            ("channels", "depthwise channels"), ("heads", "heads"))


def compaction_text(meta: Mapping[str, Any]) -> str | None:
    """One line on what structured pruning removed from the shapes (``meta["compaction"]``):
    "compacted: 54 layers (declared graph), removed 4,540 of 27,560 filters (16.5 %), ...";
    "not compacted: ..." when the shapes were kept; ``None`` when the trace says nothing."""
    comp = meta.get("compaction")
    if not isinstance(comp, Mapping):
        return None
    if not comp.get("compacted"):
        return f"not compacted: {comp.get('note', 'shapes kept, pruned units masked')}"
    parts = []
    for key, what in _REMOVED:
        gone, total = int(comp.get(f"{key}_removed", 0)), comp.get(f"{key}_total")
        if total:
            parts.append(f"{gone:,} of {int(total):,} {what} ({100 * gone / int(total):.1f} %)")
        elif gone:
            parts.append(f"{gone:,} {what}")
    graph = str(comp.get("graph", "?"))
    where = f"{graph} graph" if graph in ("declared", "unknown") else graph
    line = (f"compacted: {comp.get('layers_compacted', 0)} layers ({where}), removed "
            f"{', '.join(parts) or 'nothing'}")
    folded = int(comp.get("folded_channels", 0))
    if folded:
        maps = int(comp.get("folded_map_layers", 0))
        line += (f"; {folded:,} constant input channels folded into biases (exact"
                 + (f"; per-pixel bias maps in {maps} layers, where padding meets them)"
                    if maps else ")"))
    if comp.get("note"):
        line += f"; {comp['note']}"
    return line


def load_trace(path: str | Path, *, packed: bool = False) -> Trace:
    """Read a trace file; a malformed one is one error naming the file, layer and field.

    The manifest is read first; every other member's size and type are checked against it
    from the member's header before its data is read, and a member the manifest does not
    name is refused (a 1 MB trace cannot make the reader load a 1 GiB array).

    ``packed``: hold the masks bit-packed (:attr:`Trace.packed`; each tensor is unpacked once,
    alone, while it is read), what a run does; the masks may then total 2³⁴ elements (2 GiB
    packed: a whole Llama-2-7B's 6.6·10⁹ weights) instead of 2³¹ as bools."""
    file = str(path)
    p = regular_file(path, what="trace file")
    try:
        with open(p, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
        if head == _NPY_MAGIC:
            raise SparsesimError("a plain .npy array, not a trace (a trace is the .npz that "
                                 "`sparsesim prune` writes)", file=file)
        with zipfile.ZipFile(p) as archive:
            return _read(archive, file, packed)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        # A truncated or corrupted file fails inside zipfile/zlib: say so once.
        raise SparsesimError(f"cannot read trace (truncated or not an .npz?): {err}",
                             file=file) from None


def _read(archive: zipfile.ZipFile, file: str, packed: bool) -> Trace:
    members = {info.filename[:-4]: info for info in archive.infolist()
               if info.filename.endswith(".npy")}
    others = [info.filename for info in archive.infolist() if not info.filename.endswith(".npy")]
    if others:
        raise SparsesimError(f"member {others[0]!r} is not an array: not a sparsesim trace",
                             file=file)
    if "manifest" not in members:
        raise SparsesimError("not a sparsesim trace (no manifest)", file=file, field="manifest")
    raw = _member(archive, members["manifest"], None, file, None, "manifest",
                  limit=MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SparsesimError(f"malformed manifest: {err}", file=file, field="manifest") from None
    except RecursionError:
        raise SparsesimError("manifest nested too deeply", file=file, field="manifest") from None
    if not isinstance(manifest, dict):
        raise SparsesimError(f"the manifest must be a JSON object, got "
                             f"{type(manifest).__name__}", file=file, field="manifest")
    if manifest.get("format") != FORMAT:
        raise SparsesimError(f"not a sparsesim trace: format {manifest.get('format')!r}",
                             file=file, field="format")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or (
            version not in READABLE_VERSIONS):
        raise SparsesimError(f"trace version {manifest.get('version')!r}; this sparsesim reads "
                             f"versions {', '.join(map(str, READABLE_VERSIONS))}", file=file,
                             field="version")
    for key, kind in (("network", dict), ("meta", dict)):
        if not isinstance(manifest.get(key, {}), kind):
            raise SparsesimError(f"must be a JSON object, got {type(manifest[key]).__name__}",
                                 file=file, field=key)
    layers: list[Layer] = []
    wanted: dict[str, tuple[list[int], str, str]] = {}  # member → (shape, layer, field)
    shapes_of: dict[str, tuple[int, dict[str, Any], Any, dict[str, Any]]] = {}
    act_models: dict[str, ActivationModel] = {}
    mappings: list[tuple[str, tuple[tuple[str, Any], ...]]] = []
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
        mapping = entry.pop("mapping", None)
        if mapping is not None:
            if not isinstance(mapping, dict):
                raise SparsesimError("must be a JSON object (order, stream_tile)", file=file,
                                     layer=name, field="mapping")
            mappings.append((name, tuple((k, tuple(v) if isinstance(v, list) else v)
                                         for k, v in mapping.items())))
        model = entry.pop("act_model", None)
        if model is not None:
            act_models[name] = _act_model(model, file, name)
        if not isinstance(op, str) or op not in LAYER_TYPES:
            raise SparsesimError(f"unknown op {op!r}", file=file, layer=name, field="op")
        try:
            layers.append(LAYER_TYPES[op](**entry))
        except TypeError as err:
            raise SparsesimError(f"bad layer fields: {err}", file=file, layer=name) from None
        except SparsesimError as err:
            raise err.located(file=file) from None
        if shapes is not None:
            weights, inputs, internal = _mask_shapes(shapes, file, name,
                                                     tuple(layers[-1].activation_shapes()))
            for k, shape in weights.items():
                wanted[f"{i}/w/{k}"] = (shape, name, f"weights.{k}")
            if inputs is not None:
                wanted[f"{i}/in"] = (inputs, name, "inputs")
            for k, shape in internal.items():
                wanted[f"{i}/act/{k}"] = (shape, name, f"activations.{k}")
            shapes_of[name] = (i, weights, inputs, internal)
    unused = sorted(set(members) - set(wanted) - {"manifest"})
    if unused:
        raise SparsesimError(f"member {unused[0]!r} is named by no layer of the manifest",
                             file=file, field="masks")
    total = sum(math.prod(shape) for shape, _, _ in wanted.values())
    limit = MAX_TRACE_ELEMENTS * (8 if packed else 1)
    if total > limit:
        raise SparsesimError(f"the manifest's masks hold {total:,} elements, more than "
                             f"{limit:,} (2 GiB {'packed' if packed else 'unpacked'})",
                             file=file, field="masks")
    masks: dict[str, AnyLayerMasks] = {}
    for name, (i, weights, inputs, internal) in shapes_of.items():
        unpacked = {k: _unpack(archive, members, f"{i}/w/{k}", s, file, name, f"weights.{k}")
                    for k, s in weights.items()}
        measured = None if inputs is None else _unpack(archive, members, f"{i}/in", inputs,
                                                       file, name, "inputs")
        activations = {k: _unpack(archive, members, f"{i}/act/{k}", s, file, name,
                                  f"activations.{k}") for k, s in internal.items()}
        layer_masks = LayerMasks(unpacked, measured, activations)
        masks[name] = PackedLayerMasks.of(layer_masks) if packed else layer_masks
    network = manifest.get("network", {})
    try:
        workload = Workload(str(network.get("name", Path(file).stem)), tuple(layers),
                            str(network.get("source", "")), file=file,
                            mappings=tuple(mappings))
        return Trace(workload, masks, dict(manifest.get("meta", {})), act_models, packed)
    except SparsesimError as err:
        raise err.located(file=file) from None


def _mask_shapes(shapes: Any, file: str, layer: str, internal_names: tuple[str, ...]
                 ) -> tuple[dict[str, list[int]], list[int] | None, dict[str, list[int]]]:
    """A layer's ``masks`` entry: ``{"weights": {tensor: shape}, "inputs": shape or null,
    "activations": {operand: shape}}`` (``activations``: version 3, the internal activations
    the layer has, ``internal_names``: attention's q, k, v, p, o_in; a MatMul's b, o)."""
    if not isinstance(shapes, dict) or not set(shapes) <= {"weights", "inputs", "activations"}:
        raise SparsesimError("expected {weights: {tensor: shape}, inputs: shape or null, "
                             "activations: {operand: shape}}", file=file, layer=layer,
                             field="masks")
    weights = shapes.get("weights", {})
    if not isinstance(weights, dict):
        raise SparsesimError("expected {tensor: shape}", file=file, layer=layer,
                             field="masks.weights")
    for k, shape in weights.items():
        _check_shape(shape, file, layer, f"weights.{k}")
    inputs = shapes.get("inputs")
    if inputs is not None:
        _check_shape(inputs, file, layer, "inputs")
    internal = shapes.get("activations") or {}
    if not isinstance(internal, dict):
        raise SparsesimError("expected {operand: shape}", file=file, layer=layer,
                             field="masks.activations")
    for k, shape in internal.items():
        if k not in internal_names:
            raise SparsesimError(f"no internal activation {k!r}; expected "
                                 + (f"one of {', '.join(internal_names)}" if internal_names
                                    else "none (this layer has none)"), file=file,
                                 layer=layer, field=f"activations.{k}")
        _check_shape(shape, file, layer, f"activations.{k}")
    return weights, inputs, internal


def _check_shape(shape: Any, file: str, layer: str, field: str) -> None:
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_TRACE_ELEMENTS
            for d in shape):
        raise SparsesimError(f"bad mask shape {shape!r}", file=file, layer=layer, field=field)


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int | None, file: str,
            layer: str | None, field: str, *, limit: int | None = None) -> np.ndarray:
    """One 1-D ``uint8`` member, its header checked (``size`` bytes, or at most ``limit``)
    before its data is read."""
    with archive.open(info) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        except (ValueError, SyntaxError) as err:
            raise SparsesimError(f"member is not a numpy array: {err}", file=file, layer=layer,
                                 field=field) from None
        ok = dtype == np.uint8 and len(shape) == 1
        n = shape[0] if len(shape) == 1 else -1
        if not ok or (size is not None and n != size) or (limit is not None and n > limit):
            need = f"{size} bytes" if size is not None else f"at most {limit:,} bytes"
            raise SparsesimError(f"member holds {dtype} {tuple(shape)}; the manifest needs "
                                 f"uint8 of {need}", file=file, layer=layer, field=field)
        data = handle.read(n)
    if len(data) != n:
        raise SparsesimError(f"member cut short: {len(data)} of {n} bytes", file=file,
                             layer=layer, field=field)
    return np.frombuffer(data, dtype=np.uint8)


def _act_model(data: Any, file: str, layer: str) -> ActivationModel:
    """A layer's ``act_model``, its values as written (a seed of 1.5 or a density of "0.5" is
    refused by :class:`ActivationModel`, not truncated or parsed); no ``draw_version``: 1."""
    if not isinstance(data, dict) or "density" not in data or not set(data) <= {
            "density", "channel_densities", "seed", "draw_version"}:
        raise SparsesimError("expected {density, channel_densities, seed, draw_version}",
                             file=file, layer=layer, field="act_model")
    channels = data.get("channel_densities")
    if channels is not None and not isinstance(channels, list):
        raise SparsesimError(f"channel_densities must be a list, got {channels!r}", file=file,
                             layer=layer, field="act_model.channel_densities")
    try:
        return ActivationModel(data["density"], None if channels is None else tuple(channels),
                               data.get("seed", 0), data.get("draw_version", 1))
    except SparsesimError as err:
        raise SparsesimError(err.message, file=file, layer=layer,
                             field=f"act_model.{err.field}") from None


def _unpack(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], key: str,
            shape: list[int], file: str, layer: str, field: str) -> np.ndarray:
    if key not in members:
        raise SparsesimError(f"mask missing from the file (no array {key!r})", file=file,
                             layer=layer, field=field)
    size = math.prod(shape)
    try:
        packed = _member(archive, members[key], (size + 7) // 8, file, layer, field)
    except SparsesimError as err:
        if "the manifest needs" not in err.message:
            raise
        raise SparsesimError(f"{err.message} (shape {shape}: {size} bits)", file=file,
                             layer=layer, field=field) from None
    bits = np.unpackbits(packed, count=size)
    return bits.astype(bool).reshape(shape)
