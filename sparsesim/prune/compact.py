"""Structured pruning compacts the network: removed filters and channels leave the shapes.

A filter whose weights are all pruned writes a constant map (zero, or its batch-norm's
``β − γ·μ/σ`` through the rectifier); an input channel whose weights are all pruned is not
read. Which of them can leave the lowered GEMMs follows the workload's graph
(:mod:`sparsesim.workload.graph`), with DepGraph's channel groups (Fang et al., "DepGraph:
Towards Any Structural Pruning", CVPR 2023):

* **Groups.** Channel ``j`` of an add's or mul's output *is* channel ``j`` of each of its
  inputs; a depthwise conv's channel ``j`` passes its input's channel ``j`` through (its filter
  goes with it); a concat maps its inputs' channels to consecutive ranges. The channels so
  coupled form one group; a group goes whole or stays whole.
* **When a group goes.** Every plain reader of a tensor of the group (a conv with ``groups =
  1``, a linear — after a flatten, channel ``j`` is its features ``[j·k, (j+1)·k)``) either
  drops the channel (its weights there are all pruned) or reads a constant there. A tensor is
  constant in channel ``j`` when its producer's filter ``j`` is pruned, a depthwise conv's
  filter or input is, or — for an add or mul — *every* joined path is (an add with one
  unpruned path is not constant: "kept: add with an unpruned path"). A mul is also zero
  where *one* path is exactly zero (a dead filter without bias or batch-norm), as in SwiGLU's
  ``act(gate) · up``: the activations between are taken to map 0 to 0 (SiLU, GELU, ReLU do;
  a sigmoid gate would not, and must not be written as a mul of the raw projections).
* **Never removed** (the group is pinned): at a network output, at the network input, across
  an attention layer or a matmul (activation × activation; head pruning is their structured
  cut; an attention's own pruned projection rows stay masked, and the meta says so), across
  a channel-mixing op (layer norm), at a grouped conv that is not depthwise (only whole
  groups could go; not modelled, so its channels stay), across an edge the graph does not
  know (``Workload.graph is None``: every edge is unknown).
* **Per-channel ops** a captured graph writes out (``pad``, ``offset``: see
  :mod:`sparsesim.workload.graph`) pass channel ``j`` on; after zero padding a non-zero
  constant is constant only away from the borders (its readers fold a bias map), after an
  offset (batch-norm, ``+ b``, a sigmoid) a zero channel is a non-zero constant (a mul with
  it is not zero). An ``opaque`` node pins its input, with its ``note`` as the reason.
* **Reader-local drops.** A plain reader that drops an input channel reads fewer channels
  (its ``c`` or ``in_features`` shrinks) even when the group stays — exact, its weights there
  are zero; the producer keeps computing the channel for its other readers.
* **Constants folded.** A removed channel that a reader reads is input-independent (a dead
  filter's bias through batch-norm and rectifier); the reader gets its contribution as bias,
  which costs no MACs: a scalar per output ``o``, ``Σ_taps W[o, j, ·] · const_j``, where that
  is exact (linear layers, 1×1 convs, unpadded convs reading a constant), else a bias *map*
  per output pixel, ``conv(map_j, W[:, j])`` — a padded k×k conv's border windows cover
  padding (zero, not the constant), and a constant passed through a padded depthwise conv is
  constant only away from the borders. Either way the fold is exact; the trace meta says per
  reader which (``"bias": "scalar" | "map"``). The bias map's storage (``M × E × F`` values,
  or one per border position class) is not modelled.

Pruned filters and channels that stay keep their zeros in the masks (a skipping PE still
skips them); the trace meta says, per layer, how many were removed and why the others stayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.workload.graph import ELEMENTWISE, PER_CHANNEL_OPS, Graph, Node
from sparsesim.workload.layers import Layer
from sparsesim.workload.network import Workload

Masks = dict[str, dict[str, np.ndarray]]

PLAIN, DEPTHWISE, GROUPED, OPAQUE = "plain", "depthwise", "grouped", "opaque"


def role(layer: Layer) -> str:
    """How a layer's channels take part: ``plain`` (filters and input channels cut freely),
    ``depthwise`` (channel j in → channel j out), ``grouped`` or ``opaque`` (no cut)."""
    if layer.out_channels is None or layer.in_channels is None:
        return OPAQUE
    if layer.cuts_outputs:
        return PLAIN
    try:
        _, passes_on = layer.with_in_channels(layer.in_channels, layer.in_channels)
    except SparsesimError:
        return GROUPED
    return DEPTHWISE if passes_on else GROUPED


def dead_filters(layer: Layer, mask: np.ndarray | None) -> np.ndarray:
    """Filters (output channels) whose weights are all pruned."""
    m = layer.out_channels or 0
    if mask is None:
        return np.zeros(m, dtype=bool)
    return np.asarray(~mask.reshape(m, -1).any(axis=1))


def dropped_inputs(layer: Layer, mask: np.ndarray | None) -> np.ndarray:
    """A plain reader's input units (conv channels, linear features) with no kept weight."""
    n = layer.in_channels or 0
    if mask is None:
        return np.zeros(n, dtype=bool)
    axes = tuple(i for i in range(mask.ndim) if i != 1)
    return np.asarray(~mask.any(axis=axes))


def exact_fold(layer: Layer) -> bool:
    """A constant input channel folds into a scalar bias of this reader exactly: no padding
    can differ from it (a linear layer, a 1×1 conv, an unpadded conv); else a bias map."""
    return layer.k_per_channel == 1 or not getattr(layer, "reads_zeros", False)


@dataclass(frozen=True)
class Compaction:
    """The compacted workload and masks; ``kept_inputs`` (layer → kept input-unit indices)
    for the layers whose inputs shrank, to cut their measured activation masks alike;
    ``kept_outputs`` (layer → kept filter indices) for the layers whose filters went, to cut
    a real model alike (``sparsesim.prune.torch.compact``)."""

    workload: Workload
    masks: Masks
    kept_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    kept_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class _Slots:
    """Union-find over the channels of every tensor of the graph; pins carry a reason."""

    def __init__(self) -> None:
        self.offset: dict[str, int] = {}
        self.width: dict[str, int] = {}
        self.parent: list[int] = []
        self.pin: list[str | None] = []

    def add(self, tensor: str, width: int) -> None:
        self.offset[tensor] = len(self.parent)
        self.width[tensor] = width
        self.parent.extend(range(len(self.parent), len(self.parent) + width))
        self.pin.extend([None] * width)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: str, b: str, offset: int = 0) -> None:
        """Channel ``offset + j`` of ``a`` is channel ``j`` of ``b``."""
        oa, ob = self.offset[a] + offset, self.offset[b]
        for j in range(self.width[b]):
            ra, rb = self.find(oa + j), self.find(ob + j)
            if ra != rb:
                self.parent[rb] = ra

    def pin_all(self, tensor: str, reason: str) -> None:
        o = self.offset[tensor]
        for j in range(self.width[tensor]):
            if self.pin[o + j] is None:
                self.pin[o + j] = reason

    def ids(self, tensor: str) -> range:
        o = self.offset[tensor]
        return range(o, o + self.width[tensor])


def compact(workload: Workload, masks: Mapping[str, Mapping[str, np.ndarray]]) -> Compaction:
    """Remove what structured pruning left dead from ``workload`` (see the module docstring)."""
    by_name = {layer.name: layer for layer in workload.layers}
    roles = {name: role(layer) for name, layer in by_name.items()}
    wmask = {name: masks.get(name, {}).get("w") for name in by_name}
    dead = {n: dead_filters(by_name[n], wmask[n]) for n, r in roles.items() if r != OPAQUE}
    drop = {n: dropped_inputs(by_name[n], wmask[n]) for n, r in roles.items() if r == PLAIN}
    removed: dict[str, np.ndarray] = {}
    kept_reasons: dict[str, Counter[str]] = {}
    folds: dict[str, dict[str, Any]] = {}
    graph = workload.graph
    if graph is not None:
        removed = _groups(graph, by_name, roles, dead, drop, kept_reasons, folds)
    else:
        for name, d in dead.items():
            if d.any():
                kept_reasons.setdefault(name, Counter())["graph unknown"] += int(d.sum())
    readers_input = {} if graph is None else {
        n.name: n.inputs[0] for n in graph.nodes if n.is_layer}

    layers: list[Layer] = []
    new_masks: Masks = {k: dict(v) for k, v in masks.items()}
    kept_inputs: dict[str, np.ndarray] = {}
    kept_outputs: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}
    totals = Counter[str]()
    for layer in workload.layers:
        name, r = layer.name, roles[layer.name]
        entry: dict[str, Any] = {}
        new = layer
        if r == PLAIN:
            keep_out = ~removed.get(name, np.zeros(layer.out_channels or 0, dtype=bool))
            removed_in = np.zeros(drop[name].size, dtype=bool)
            src = readers_input.get(name)
            if src is not None and src in removed:
                span = layer.channel_span(removed[src].size)
                if span is not None:
                    removed_in = np.repeat(removed[src], span)
            gone_in = drop[name] | removed_in
            keep_in = ~gone_in
            if not keep_in.any():  # a layer reads at least one input: the first still there
                keep_in[int(np.argmax(~removed_in))] = True
            if not keep_out.all():
                new = new.with_out_channels(int(keep_out.sum()))
                kept_outputs[name] = np.flatnonzero(keep_out)
                entry["filters_removed"] = int((~keep_out).sum())
            if not keep_in.all():
                new, _ = new.with_in_channels(keep_in.size, int(keep_in.sum()))
                entry["inputs_removed"] = int((~keep_in).sum())
                kept_inputs[name] = np.flatnonzero(keep_in)
            w = wmask[name]
            if w is not None and new is not layer:
                new_masks[name]["w"] = np.ascontiguousarray(w[keep_out][:, keep_in])
        elif r == DEPTHWISE and name in removed and removed[name].any():
            keep = ~removed[name]
            new, _ = layer.with_in_channels(keep.size, int(keep.sum()))
            entry["channels_removed"] = int((~keep).sum())
            kept_inputs[name] = kept_outputs[name] = np.flatnonzero(keep)
            w = wmask[name]
            if w is not None:
                new_masks[name]["w"] = np.ascontiguousarray(w[keep])
        if name in new_masks and "w" in new_masks[name] and new_masks[name]["w"].all():
            del new_masks[name]["w"]  # nothing pruned is left in the compacted tensor
        if name in new_masks and not new_masks[name]:
            del new_masks[name]
        if r == OPAQUE:  # pruned rows / columns of attention's projections stay, masked
            views = [m.reshape(m.shape[0], -1) for m in masks.get(name, {}).values()]
            rows = sum(int((~v.any(axis=1)).sum()) + int((~v.any(axis=0)).sum())
                       for v in views)
            if rows:
                kept_reasons.setdefault(name, Counter())[
                    f"inside {layer.op}: not cut by filter/channel pruning "
                    "(head pruning is its structured cut)"] += rows
        if name in kept_reasons:
            entry["pruned_kept"] = dict(sorted(kept_reasons[name].items()))
        if name in folds:
            entry["folded"] = folds[name]
        for key in ("filters_removed", "inputs_removed", "channels_removed"):
            totals[key] += entry.get(key, 0)
        if r == PLAIN:  # what there was to remove, for the share removed
            totals["filters_total"] += layer.out_channels or 0
            totals["inputs_total"] += layer.in_channels or 0
        elif r == DEPTHWISE:
            totals["channels_total"] += layer.in_channels or 0
        if entry:
            info[name] = entry
        layers.append(new)
    summary = {
        "compacted": True, "graph": "unknown" if graph is None else "declared",
        "layers_compacted": sum(1 for e in info.values() if any(
            k in e for k in ("filters_removed", "inputs_removed", "channels_removed"))),
        **dict(totals),
        "folded_channels": sum(f["channels"] for f in folds.values()),
        "folded_map_layers": sum(1 for f in folds.values() if f["bias"] == "map"),
    }
    if graph is None:
        summary["note"] = ("the workload's edges are unknown: only input channels a layer "
                           "itself no longer reads are removed; pruned filters keep their "
                           "shape (masked)")
    return Compaction(replace(workload, layers=tuple(layers)), new_masks, kept_inputs,
                      kept_outputs, info, summary)


def _groups(graph: Graph, by_name: Mapping[str, Layer], roles: Mapping[str, str],
            dead: Mapping[str, np.ndarray], drop: Mapping[str, np.ndarray],
            kept_reasons: dict[str, Counter[str]], folds: dict[str, dict[str, Any]]
            ) -> dict[str, np.ndarray]:
    """Tensor → removed channels (bool), by DepGraph groups over ``graph``."""
    slots = _Slots()
    nodes = {n.name: n for n in graph.nodes}
    const: dict[str, np.ndarray] = {}
    zero: dict[str, np.ndarray] = {}  # constant and exactly zero (no bias, no norm after it)
    approx: dict[str, np.ndarray] = {}  # input-independent, constant only away from borders
    live: dict[int, str] = {}  # slot → why a reader needs its value
    reads: list[tuple[str, str, int]] = []  # (reader, tensor, channel) read as a constant
    for node in graph.nodes:
        ins = list(node.inputs)
        if node.is_layer:
            layer, r = by_name[node.name], roles[node.name]
            src = ins[0]
            if r != OPAQUE:
                slots.add(node.name, layer.out_channels or 0)
                const[node.name] = dead[node.name].copy()
                zero[node.name] = dead[node.name] & ~_offset(layer)
                approx[node.name] = np.zeros(slots.width[node.name], dtype=bool)
            if src not in slots.width:
                if r == DEPTHWISE:
                    slots.pin_all(node.name, "unknown edge")
                continue
            if r == OPAQUE:
                slots.pin_all(src, f"read by {layer.op}")
            elif r == GROUPED:
                slots.pin_all(src, "grouped conv")
                slots.pin_all(node.name, "grouped conv")
            elif r == DEPTHWISE:
                if slots.width[src] != slots.width[node.name]:
                    slots.pin_all(node.name, "unknown edge")
                    slots.pin_all(src, "unknown edge")
                    continue
                slots.union(node.name, src)
                through = const[src] & ~dead[node.name]
                const[node.name] |= const[src]
                zero[node.name] = (dead[node.name] | zero[src]) & ~_offset(layer)
                approx[node.name] = approx[src] | (through & ~exact_fold(layer))
            else:
                span = layer.channel_span(slots.width[src])
                if span is None:
                    slots.pin_all(src, "unknown edge")
                    continue
                dropped = np.asarray(drop[node.name].reshape(-1, span).all(axis=1))
                for j in range(slots.width[src]):
                    if dropped[j]:
                        continue
                    if const[src][j]:
                        reads.append((node.name, src, j))
                    else:
                        slot = slots.offset[src] + j
                        live.setdefault(slot, _live_reason(nodes, src, const, j))
            continue
        known = [s for s in ins if s in slots.width]
        if node.op == "concat":
            if len(known) < len(ins):
                for s in known:
                    slots.pin_all(s, "concat with an unknown input")
                continue
            slots.add(node.name, sum(slots.width[s] for s in ins))
            const[node.name] = np.concatenate([const[s] for s in ins])
            zero[node.name] = np.concatenate([zero[s] for s in ins])
            approx[node.name] = np.concatenate([approx[s] for s in ins])
            off = 0
            for s in ins:
                slots.union(node.name, s, off)
                off += slots.width[s]
            continue
        if not known:
            continue
        width = slots.width[known[0]]
        slots.add(node.name, width)
        if node.op in PER_CHANNEL_OPS:  # channel j is channel j; what a constant becomes:
            src = known[0]
            slots.union(node.name, src)
            const[node.name] = const[src].copy()
            if node.op == "pad":  # zero borders: a non-zero constant varies near them
                zero[node.name] = zero[src].copy()
                approx[node.name] = approx[src] | (const[src] & ~zero[src])
            else:  # offset: 0 maps to a non-zero constant
                zero[node.name] = np.zeros(width, dtype=bool)
                approx[node.name] = approx[src].copy()
            continue
        if node.op in ELEMENTWISE:
            const[node.name] = np.logical_and.reduce([const[s] for s in known])
            zero[node.name] = np.logical_and.reduce([zero[s] for s in known])
            approx[node.name] = np.logical_or.reduce([approx[s] for s in known])
            if node.op == "mul" and len(known) == len(ins):  # 0 · x = 0: one zero path will do
                any_zero = np.logical_or.reduce([zero[s] for s in known])
                const[node.name] |= any_zero
                zero[node.name] |= any_zero
                approx[node.name] &= ~any_zero
            for s in known:
                slots.union(node.name, s)
            if len(known) < len(ins):
                slots.pin_all(node.name, f"{node.op} with an attention or matmul output")
        else:  # channel mixing: nothing passes through
            const[node.name] = np.zeros(width, dtype=bool)
            zero[node.name] = np.zeros(width, dtype=bool)
            approx[node.name] = np.zeros(width, dtype=bool)
            pinned = node.note or f"channel-mixing {node.op}"
            slots.pin_all(known[0], pinned)
            slots.pin_all(node.name, pinned)
    for out in graph.outputs:
        if out in slots.width:
            slots.pin_all(out, "network output")

    # A group's reason: a structural pin first, then a join with an unpruned path, then a
    # plain live reader (the most telling of why its pruned members stay).
    reason: dict[int, str | None] = {}
    rank: dict[int, int] = {}
    for i in range(len(slots.parent)):
        root = slots.find(i)
        why = slots.pin[i] or live.get(i)
        level = 0 if why is None else 3 if slots.pin[i] else 1 if why == "live reader" else 2
        if level > rank.get(root, -1):
            rank[root], reason[root] = level, why
    removed = _removed(slots, reason)
    while True:  # a tensor keeps at least one channel: its first group stays
        empty = [t for t, gone in removed.items() if gone.size and gone.all()]
        if not empty:
            break
        reason[slots.find(slots.offset[empty[0]])] = "last channel kept"
        removed = _removed(slots, reason)
    for name, d in dead.items():
        if name in removed:
            for j in np.flatnonzero(d & ~removed[name]).tolist():
                why = reason[slots.find(slots.offset[name] + int(j))] or "live reader"
                kept_reasons.setdefault(name, Counter())[why] += 1
        elif d.any():
            kept_reasons.setdefault(name, Counter())["unknown edge"] += int(d.sum())
    for reader, tensor, j in reads:
        if removed[tensor][j]:
            f = folds.setdefault(reader, {"from": tensor, "channels": 0, "bias": "scalar"
                                          if exact_fold(by_name[reader]) else "map"})
            f["channels"] += 1
            if approx[tensor][j]:
                f["bias"] = "map"
    return removed


def _offset(layer: Layer) -> bool:
    """The layer adds something to every output (a bias, or batch-norm's β): a dead filter
    then writes a constant, not zero."""
    return bool(getattr(layer, "bias", False) or getattr(layer, "norm", False))


def _removed(slots: _Slots, reason: Mapping[int, str | None]) -> dict[str, np.ndarray]:
    return {t: np.array([reason[slots.find(i)] is None for i in slots.ids(t)], dtype=bool)
            for t in slots.width}


def _live_reason(nodes: Mapping[str, Node], tensor: str, const: Mapping[str, np.ndarray],
                 j: int) -> str:
    """Why channel ``j`` of ``tensor`` is needed: it is an add's or mul's output (a path joined
    there is unpruned), or a plain live channel."""
    node = nodes.get(tensor)
    if node is not None and node.op in ELEMENTWISE:
        return f"{node.op} with an unpruned path"
    return "live reader"
