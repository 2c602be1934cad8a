"""The pruning front-end on numpy weights: a workload + a :class:`PruneSpec` → a :class:`Trace`.

Weights are real (``weights=``, e.g. from ``sparsesim.prune.torch.capture``) or synthetic (seeded,
``spec.distribution``); criteria that need data take their statistics from ``stats``.
Weight granularities give masks in the layer's own shapes; filter, channel and block pruning
then remove what is dead along the workload's graph (``compact.py``; ``spec.compact = False``
keeps the masked shapes); head, token and KV pruning give the reduced layers (see
``structure.py``; heads masked in the unpruned shapes with ``compact = False``). Activations come as measured masks
(``act_masks``) or density models (``act_models``, drawn with their seed when the trace is
built or loaded). ``meta`` records the method, its parameters, the seed, per-layer results
(achieved weight sparsity; kept heads, tokens, KV entries; activation density) and, where
given, the accuracy per sparsity level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from fnmatch import fnmatch
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.progress import Progress, ProgressFactory
from sparsesim.workload.layers import Attention, Layer
from sparsesim.engine.inference import attn_prune_meta, check_sparse_attention
from sparsesim.engine.size import SizeLimits, check_elements
from sparsesim.sparsity.masks import ActivationModel, LayerMasks, SparsityModel, as_bool
from sparsesim.prune.criteria import LayerStats, score
from sparsesim.prune.select import keep_masks
from sparsesim.prune.compact import compact
from sparsesim.prune.spec import COMPACTING, SHAPE_GRANULARITIES, WEIGHT_GRANULARITIES, PruneSpec
from sparsesim.prune.structure import head_masks, prune_heads, prune_kv, prune_tokens
from sparsesim.prune.synthetic import Weights, synthetic_weights
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.network import Workload

Masks = dict[str, dict[str, np.ndarray]]


def _skipped(layer: Layer, spec: PruneSpec) -> bool:
    return any(fnmatch(layer.name, p) for p in spec.skip)


def score_weights(workload: Workload, spec: PruneSpec, weights: Weights,
                  stats: Mapping[str, LayerStats] | None = None,
                  tick: Callable[[], None] | None = None) -> Masks:
    """Criterion scores of every weight tensor of the unskipped layers (``tick``: called once
    per tensor scored, a progress bar's ``update``)."""
    out: Masks = {}
    for index, layer in enumerate(workload.layers):
        if layer.name not in weights or _skipped(layer, spec):
            continue
        st = None if stats is None else stats.get(layer.name)
        out[layer.name] = {}
        for t, (tensor, w) in enumerate(weights[layer.name].items()):
            rng = np.random.default_rng([spec.seed, index, t])
            try:
                out[layer.name][tensor] = score(spec.criterion, layer, tensor, w, stats=st,
                                                rng=rng)
            except SparsesimError as err:
                raise err.located(file=workload.file) from None
            if tick is not None:
                tick()
    return out


def weight_masks(workload: Workload, spec: PruneSpec, scores: Masks,
                 prior: Masks | None = None, tick: Callable[[], None] | None = None) -> Masks:
    """Keep-masks for the scored tensors (weight granularities; ``tick`` once per tensor)."""
    entries, keys, priors = [], [], []
    by_name = {layer.name: layer for layer in workload.layers}
    for name, tensors in scores.items():
        for tensor, s in tensors.items():
            entries.append((by_name[name], tensor, s))
            keys.append((name, tensor))
            priors.append(None if prior is None else prior.get(name, {}).get(tensor))
    masks = keep_masks(entries, spec, priors if prior is not None else None, tick=tick)
    out: Masks = {}
    for (name, tensor), m in zip(keys, masks):
        out.setdefault(name, {})[tensor] = m
    return out


def selection_bar(workload: Workload, spec: PruneSpec, progress: ProgressFactory | None, *,
                  weights: Weights | None = None) -> Progress | None:
    """The bar over a weight pruning's per-tensor work: each tensor drawn (synthetic weights:
    ``weights`` None), then each unskipped one scored and selected — the per-layer work that
    takes tens of seconds on big workloads (VGG-16, a Llama-2-7B block). None without a
    factory or for a shape granularity (heads, tokens, KV: a few attention layers)."""
    if progress is None or spec.granularity not in WEIGHT_GRANULARITIES:
        return None
    tensors = {layer.name: (len(layer.weight_shapes()) if weights is None
                            else len(weights.get(layer.name, {})))
               for layer in workload.layers}
    scored = sum(tensors[layer.name] for layer in workload.layers if not _skipped(layer, spec))
    drawn = sum(tensors.values()) if weights is None else 0
    what = ("weight tensors drawn, scored, selected" if weights is None
            else "weight tensors scored, selected")
    return progress(drawn + 2 * scored, what)


#: Synthetic weights are float32 and pruning scores them (a few copies): 2^29 elements (2 GiB)
#: per tensor, above every built-in (VGG-16's fc6: 1.0e8).
PRUNE_LIMITS = SizeLimits(elements=2**29)


def prune_workload(
    workload: Workload, spec: PruneSpec, *, weights: Weights | None = None,
    stats: Mapping[str, LayerStats] | None = None, prior: Masks | None = None,
    act_masks: Mapping[str, np.ndarray] | None = None,
    act_models: Mapping[str, ActivationModel] | None = None,
    keep_ratios: Mapping[str, float] | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: ProgressFactory | None = None,
) -> Trace:
    """Prune ``workload`` as ``spec`` says and return the trace (not yet saved); ``progress``
    is told of every weight tensor drawn, scored and selected (:func:`selection_bar`)."""
    source = "given weights"
    bar = None
    if weights is None:  # float32 weights of every layer: refuse what cannot be held
        check_elements(list(workload.layers), file=workload.file, limits=PRUNE_LIMITS,
                       per_element="float32 synthetic weights, 4 bytes each", flag=None)
        bar = selection_bar(workload, spec, progress)
        weights = synthetic_weights(workload, distribution=spec.distribution, seed=spec.seed,
                                    tick=None if bar is None else bar.update)
        source = f"synthetic {spec.distribution} weights (Kaiming scale), seed {spec.seed}"
    else:
        bar = selection_bar(workload, spec, progress, weights=weights)
    tick = None if bar is None else bar.update
    layers_meta: dict[str, dict[str, Any]] = {}
    masks: Masks = {}
    shaped = workload
    if spec.granularity in SHAPE_GRANULARITIES and not any(
            isinstance(layer, Attention) for layer in workload.layers):
        raise SparsesimError(f"{spec.granularity} pruning needs attention layers; "
                             f"{workload.name} has none", file=workload.file,
                             field="granularity")
    stored: Masks = {}
    kept_inputs: dict[str, np.ndarray] = {}
    compaction: dict[str, Any] | None = None
    if spec.granularity in WEIGHT_GRANULARITIES:
        scores = score_weights(workload, spec, weights, stats, tick=tick)
        masks = weight_masks(workload, spec, scores, prior, tick=tick)
        stored = masks
        if spec.compact and spec.granularity in COMPACTING:
            done = compact(workload, masks)
            shaped, stored, kept_inputs = done.workload, done.masks, done.kept_inputs
            layers_meta = {k: dict(v) for k, v in done.layers.items()}
            compaction = done.summary
    elif spec.granularity == "head":
        att = replace(workload, layers=tuple(
            layer for layer in workload.layers if isinstance(layer, Attention)))
        scores = score_weights(att, spec, weights, stats)
        shaped, layers_meta = prune_heads(workload, scores, spec.sparsity, skip=spec.skip,
                                          norm=spec.norm)
        if not spec.compact:  # the same heads, masked in the unpruned shapes
            shaped = workload
            for name, entry in layers_meta.items():
                layer = workload.layer(name)
                assert isinstance(layer, Attention)
                stored[name] = masks[name] = head_masks(layer, entry["kept_heads"])
                entry["compacted"] = False
        else:  # heads are cut inside each attention layer: no edge to follow
            total = sum(e["heads"] for e in layers_meta.values())
            kept = sum(e["heads_kept"] for e in layers_meta.values())
            compaction = {"compacted": True, "graph": "within attention layers",
                          "layers_compacted": sum(
                              1 for e in layers_meta.values() if e["heads_kept"] < e["heads"]),
                          "heads_removed": total - kept, "heads_total": total}
    elif spec.granularity == "token":
        shaped, layers_meta = prune_tokens(workload, spec.sparsity,
                                           token_layers=spec.token_layers,
                                           keep_ratios=keep_ratios)
    else:
        shaped, layers_meta = prune_kv(workload, spec.sparsity, skip=spec.skip)

    layer_masks: dict[str, LayerMasks] = {}
    models = dict(act_models or {})
    for layer in shaped.layers:
        w = {t: m for t, m in stored.get(layer.name, {}).items()}
        inputs = None if act_masks is None else act_masks.get(layer.name)
        if inputs is not None and layer.name in kept_inputs:  # removed input channels
            inputs = np.take(inputs, kept_inputs[layer.name], axis=layer.input_channel_axis)
        if inputs is not None and inputs.shape != layer.input_shape:
            # The layer shrank (tokens, channels): keep its measured per-channel densities.
            models.setdefault(layer.name, _density_model(inputs, layer, spec.seed))
            inputs = None
        if inputs is not None and bool(inputs.all()):
            inputs = None  # dense: nothing to store
        if w or inputs is not None:
            layer_masks[layer.name] = LayerMasks(w, inputs)
        entry = layers_meta.setdefault(layer.name, {})
        pruned = masks.get(layer.name, {})  # as pruned, before any compaction
        if pruned:
            total = sum(m.size for m in pruned.values())
            entry["weight_sparsity"] = 1 - sum(int(np.count_nonzero(m))
                                               for m in pruned.values()) / total
        if act_masks is not None and layer.name in act_masks:
            entry["act_density"] = float(np.mean(act_masks[layer.name]))
    kept_w = sum(int(np.count_nonzero(m)) for t in masks.values() for m in t.values())
    all_w = sum(m.size for t in masks.values() for m in t.values())
    info: dict[str, Any] = {
        "method": spec.as_dict(), "seed": spec.seed, "weights": source,
        "weight_sparsity": (1 - kept_w / all_w) if all_w else 0.0,
        "layers": {k: v for k, v in layers_meta.items() if v},
    }
    if compaction is not None:
        info["compaction"] = compaction
    elif spec.granularity in COMPACTING and not spec.compact:
        info["compaction"] = {"compacted": False,
                              "note": "shape kept (--keep-shape): pruned units stay as zeros "
                                      "in the masks, for hardware that cannot compact"}
    if meta:
        for key, value in meta.items():
            if key == "method" and isinstance(value, Mapping):
                info["method"] = {**info["method"], **value}
            else:
                info[key] = value
    return Trace(shaped, layer_masks, info, models)


def with_sparse_attention(trace: Trace, model: SparsityModel) -> Trace:
    """``trace`` with seeded attention-probability masks, drawn as a run with ``model``
    draws them (the same seed stream per layer index, so the trace simulates as that run),
    and ``meta["attn_prune"]`` saying how the online unit finds them."""
    check_sparse_attention(trace.workload, model)
    masks = dict(trace.masks)
    for index, layer in enumerate(trace.workload.layers):
        internal = model.internal_masks(layer, index)
        if internal:
            have = as_bool(masks.get(layer.name)) or LayerMasks()
            masks[layer.name] = LayerMasks(have.weights, have.inputs,
                                           {**have.activations, **internal})
    meta = {**trace.meta, "attn_prune": attn_prune_meta(model)}
    # act_models' draws are already in masks: keep the models, not the drawn inputs
    kept = {k: (replace(m, inputs=None) if k in trace.act_models else m)
            for k, m in masks.items()}
    return Trace(trace.workload, kept, meta, trace.act_models, trace.packed)


def _density_model(mask: np.ndarray, layer: Layer, seed: int) -> ActivationModel:
    """Per-channel densities of a measured mask, re-drawn for the layer's new shape."""
    axis = layer.input_channel_axis % mask.ndim
    per = np.moveaxis(mask, axis, -1).reshape(-1, mask.shape[axis]).mean(axis=0)
    n_in = layer.input_shape[layer.input_channel_axis % len(layer.input_shape)]
    channels = tuple(float(d) for d in per) if per.size == n_in else None
    return ActivationModel(float(mask.mean()), channels, seed)


def mask_bits(trace: Trace) -> int:
    """Bits of all weight and measured input masks, as stored (bit-packed, byte-padded)."""
    total = 0
    for name, m in trace.masks.items():
        arrays = [*m.weights.values(), *m.activations.values()]
        if m.inputs is not None and name not in trace.act_models:
            arrays.append(m.inputs)
        total += sum(8 * math.ceil(a.size / 8) for a in arrays)
    return total
