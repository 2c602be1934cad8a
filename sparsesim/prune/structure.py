"""Pruning that changes layer shapes: attention heads, tokens, KV entries, slimmed channels.

The trace stores layers *after* shape pruning, so these return a new :class:`Workload`:

* **heads** — ``Attention.heads_kept``; the Q/K/V/O projections and the score GEMMs shrink.
  A head's score is the mean score of its Q rows, O columns and the K/V rows it reads. With
  grouped K/V (``kv_heads``) heads are kept group-packed (best groups whole, the last one
  partly), because the layer counts ``ceil(kept / group)`` K/V heads.
* **tokens** — at each pruning attention layer ``round(sparsity · t)`` of its ``t`` tokens
  are dropped *after* it (EViT/SpAtten style: the layer scores them): every later attention
  layer of the same stream has fewer query tokens (``l``), every later linear layer of that
  stream fewer rows (``tokens``). Per-layer keep ratios (measured, dynamic) may replace the
  fixed amount.
* **kv** — each attention layer keeps ``keys − round(sparsity · keys)`` keys/values
  (``kv_len``); a causal layer left with fewer keys than queries attends the kept keys
  densely (``causal = false``).
* **slimming** (Liu et al., ICCV 2017) — output channels cut by one global threshold on
  ``|γ|`` of the batch-norm after each conv; the cut cascades into each consumer's input
  channels (a depthwise consumer loses the same channels and passes the cut on; a linear
  consumer after a flatten loses ``in_features / m`` features per channel).

Counts follow ``torch.nn.utils.prune`` (``round(amount · n)`` removed:
:func:`sparsesim.rules.keep.keep_count`); at least one head, token, key or channel is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.prune.select import lowest, power_mean
from sparsesim.rules.keep import keep_count, prune_count
from sparsesim.workload.layers import Attention, Conv2d, Layer, Linear
from sparsesim.workload.network import Workload


def head_scores(layer: Attention, scores: Mapping[str, np.ndarray], norm: float = 1
                ) -> np.ndarray:
    """Score per (active) query head: the power mean of order ``norm`` (1: the mean) of its
    q/k/v/o weight scores (:func:`sparsesim.prune.select.power_mean`)."""
    h, d = layer.active_heads, layer.head_dim
    group = 1 if layer.kv_heads is None else layer.heads // layer.kv_heads
    out = np.zeros(h)
    for i in range(h):
        kv = i // group
        parts = [scores["q"][i * d:(i + 1) * d].ravel(), scores["o"][:, i * d:(i + 1) * d].ravel(),
                 scores["k"][kv * d:(kv + 1) * d].ravel(), scores["v"][kv * d:(kv + 1) * d].ravel()]
        out[i] = float(power_mean(np.concatenate(parts), norm))
    return out


def choose_heads(layer: Attention, head_score: np.ndarray, amount: float) -> np.ndarray:
    """Sorted indices of the heads kept (group-packed with grouped K/V)."""
    h = layer.active_heads
    keep = keep_count(h, sparsity=amount, at_least=1)
    order = np.lexsort((-np.arange(h), head_score))[::-1]  # best first; ties: lower index
    if layer.kv_heads is None:
        return np.sort(order[:keep])
    if layer.heads_kept is not None:
        raise SparsesimError("head pruning with grouped K/V starts from all heads",
                             layer=layer.name, field="heads_kept")
    group = layer.heads // layer.kv_heads
    per_group = head_score.reshape(layer.kv_heads, group)
    group_order = np.lexsort((-np.arange(layer.kv_heads), per_group.mean(axis=1)))[::-1]
    chosen: list[int] = []
    for g in group_order:
        members = g * group + np.lexsort((-np.arange(group), per_group[g]))[::-1]
        chosen.extend(int(i) for i in members[: keep - len(chosen)])
        if len(chosen) == keep:
            break
    return np.sort(np.asarray(chosen))


def prune_heads(workload: Workload, scores: Mapping[str, Mapping[str, np.ndarray]],
                amount: float, *, skip: Sequence[str] = (), norm: float = 1
                ) -> tuple[Workload, dict[str, dict]]:
    """Each attention layer keeps ``heads − round(amount · heads)`` heads (at least one),
    heads scored by the power mean of order ``norm``."""
    from fnmatch import fnmatch

    layers: list[Layer] = []
    info: dict[str, dict] = {}
    for layer in workload.layers:
        if isinstance(layer, Attention) and not any(fnmatch(layer.name, p) for p in skip):
            kept = choose_heads(layer, head_scores(layer, scores[layer.name], norm), amount)
            layers.append(replace(layer, heads_kept=len(kept)))
            info[layer.name] = {"heads_kept": len(kept), "heads": layer.active_heads,
                                "kept_heads": kept.tolist()}
        else:
            layers.append(layer)
    return replace(workload, layers=tuple(layers)), info


def head_masks(layer: Attention, kept: Sequence[int]) -> dict[str, np.ndarray]:
    """Keep-masks of the uncompacted layer for the ``kept`` query heads (``--keep-shape``):
    Q rows and O columns of the other heads are zero, and the K/V rows of K/V heads no kept
    query head uses. The shapes stay; the score GEMMs of the pruned heads still run dense."""
    d, group = layer.head_dim, layer.group_size
    shapes = layer.weight_shapes()
    q = np.zeros(layer.active_heads, dtype=bool)
    q[list(kept)] = True
    kv = np.zeros(layer.active_kv_heads, dtype=bool)
    kv[[i // group for i in kept]] = True
    rows_q, rows_kv = np.repeat(q, d), np.repeat(kv, d)
    return {"q": np.broadcast_to(rows_q[:, None], shapes["q"]).copy(),
            "k": np.broadcast_to(rows_kv[:, None], shapes["k"]).copy(),
            "v": np.broadcast_to(rows_kv[:, None], shapes["v"]).copy(),
            "o": np.broadcast_to(rows_q[None, :], shapes["o"]).copy()}


def prune_tokens(workload: Workload, amount: float, *,
                 token_layers: Sequence[int] | None = None,
                 keep_ratios: Mapping[str, float] | None = None
                 ) -> tuple[Workload, dict[str, dict]]:
    """Drop tokens after the chosen attention layers; later layers of the stream shrink.

    ``token_layers`` are indices among the workload's attention layers (``None``: all);
    ``keep_ratios`` (attention layer name → fraction kept) replaces ``amount`` where given.
    The stream is the ``b × l`` token set of the first self-attention layer (``kv_len``
    unset); other layers (a conv stem, a one-token classifier) are left alone.
    """
    layers: list[Layer] = []
    info: dict[str, dict] = {}
    stream: tuple[int, int] | None = None
    cur: int | None = None
    att_index = -1
    for layer in workload.layers:
        if isinstance(layer, Attention) and layer.kv_len is None:
            if stream is None:
                stream = (layer.b, layer.l)
            if (layer.b, layer.l) == stream:
                att_index += 1
                t = stream[1] if cur is None else cur
                layer = replace(layer, l=t)
                ratio = None if keep_ratios is None else keep_ratios.get(layer.name)
                if ratio is not None:
                    cur = keep_count(t, density=ratio, at_least=1)
                elif token_layers is None or att_index in token_layers:
                    cur = keep_count(t, sparsity=amount, at_least=1)
                info[layer.name] = {"tokens": t, "tokens_kept": t if cur is None else cur}
        elif isinstance(layer, Linear) and stream is not None and cur is not None:
            if layer.tokens == stream[0] * stream[1]:
                layer = replace(layer, tokens=stream[0] * cur)
                info[layer.name] = {"tokens": layer.tokens}
        layers.append(layer)
    if stream is None:
        raise SparsesimError("token pruning needs a self-attention layer (kv_len unset)",
                             file=workload.file, field="granularity")
    beyond = sorted(i for i in token_layers or () if not 0 <= i <= att_index)
    if beyond:  # an index that names no layer would prune nothing: refused, not ignored
        raise SparsesimError(f"attention-layer index {beyond[0]} out of range: the token stream "
                             f"has {att_index + 1} attention layers (0 to {att_index})",
                             file=workload.file, field="token_layers")
    return replace(workload, layers=tuple(layers)), info


def prune_kv(workload: Workload, amount: float, *, skip: Sequence[str] = ()
             ) -> tuple[Workload, dict[str, dict]]:
    """Each attention layer keeps ``keys − round(amount · keys)`` keys/values."""
    from fnmatch import fnmatch

    layers: list[Layer] = []
    info: dict[str, dict] = {}
    for layer in workload.layers:
        if isinstance(layer, Attention) and not any(fnmatch(layer.name, p) for p in skip):
            kv = keep_count(layer.keys, sparsity=amount, at_least=1)
            causal = layer.causal and kv >= layer.l
            info[layer.name] = {"kv": layer.keys, "kv_kept": kv}
            layer = replace(layer, kv_len=kv, causal=causal)
        layers.append(layer)
    return replace(workload, layers=tuple(layers)), info


# --- network slimming -----------------------------------------------------------------------


def sequential_consumers(workload: Workload) -> dict[str, list[str]]:
    """Producer → consumer for a plain chain (VGG-like): each conv feeds the next layer.

    Residual networks (a conv's output also feeds a shortcut) need an explicit map; this
    one stops at the first layer whose input does not match the previous conv's output.
    """
    out: dict[str, list[str]] = {}
    layers = workload.layers
    for a, b in zip(layers, layers[1:]):
        if not isinstance(a, Conv2d) or a.groups != 1:
            continue
        if isinstance(b, Conv2d) and b.c == a.m:
            out[a.name] = [b.name]
        elif isinstance(b, Linear) and b.in_features % a.m == 0:
            out[a.name] = [b.name]
        else:
            break
    return out


def slim_channels(gammas: Mapping[str, np.ndarray], *, amount: float | None = None,
                  threshold: float | None = None) -> dict[str, np.ndarray]:
    """Sorted kept channel indices per layer, by one global threshold on ``|γ|``.

    Give ``threshold`` (channels with ``|γ| ≤ threshold`` go) or ``amount`` (the threshold
    that cuts ``round(amount · channels)`` of all channels; ties by position). Each layer
    keeps at least its best channel.
    """
    if (amount is None) == (threshold is None):
        raise SparsesimError("give amount or threshold", field="slimming")
    names = list(gammas)
    mags = [np.abs(np.asarray(gammas[n], dtype=np.float64)).ravel() for n in names]
    if threshold is None:
        flat = np.concatenate(mags)
        cut = lowest(flat, prune_count(flat.size, float(amount)))  # type: ignore[arg-type]
        bounds = np.cumsum([0] + [m.size for m in mags])
        pruned = [cut[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        pruned = [m <= threshold for m in mags]
    kept = {}
    for name, m, p in zip(names, mags, pruned):
        keep = ~p
        if not keep.any():
            keep[int(np.argmax(m))] = True
        kept[name] = np.flatnonzero(keep)
    return kept


def slim_workload(workload: Workload, kept: Mapping[str, np.ndarray],
                  consumers: Mapping[str, Sequence[str]]) -> tuple[Workload, dict[str, dict]]:
    """The workload after cutting ``kept`` output channels and cascading into consumers."""
    by_name = {layer.name: layer for layer in workload.layers}
    new: dict[str, Layer] = dict(by_name)
    info: dict[str, dict] = {}

    def cut_inputs(name: str, channels: int, keep: int) -> None:
        layer = new[name]
        try:
            new[name], passes_on = layer.with_in_channels(channels, keep)
        except SparsesimError:
            raise SparsesimError(f"cannot cascade a cut of {channels} → {keep} channels into "
                                 f"this {layer.op}", file=workload.file, layer=name,
                                 field="consumers") from None
        if passes_on:  # a depthwise conv loses the same channels and passes the cut on
            for nxt in consumers.get(name, ()):
                cut_inputs(nxt, channels, keep)
        info.setdefault(name, {})["in_channels_kept"] = keep

    for name, keep in kept.items():
        if name not in by_name:
            raise SparsesimError("no such layer", file=workload.file, layer=name)
        layer = by_name[name]
        total = layer.out_channels
        if total is None or not layer.cuts_outputs:
            raise SparsesimError("slimming cuts the outputs of a plain conv or linear",
                                 file=workload.file, layer=name, field="gammas")
        new[name] = new[name].with_out_channels(len(keep))
        info.setdefault(name, {}).update({"channels": total, "channels_kept": len(keep)})
        for consumer in consumers.get(name, ()):
            cut_inputs(consumer, total, len(keep))
    layers = tuple(new[layer.name] for layer in workload.layers)
    return replace(workload, layers=layers), info
