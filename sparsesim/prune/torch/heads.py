"""Head pruning on captured attention (``sparsesim.prune.torch.export``): real heads cut.

A captured model's attention is Linear layers (the Q, K, V, O projections, or one fused QKV
such as GPT-2's ``c_attn``) around a ``scaled_dot_product_attention`` node (its ``qk`` and
``pv`` MatMul layers, ``count = batch · query heads``). :func:`find` reads each attention's
layout from the exported graph: from each SDPA operand back to the Linear that produced it
(through views, transposes, rotary embedding and GQA's repeat), the offset of its slice in
that Linear's outputs (a fused QKV's split), and forward from SDPA's output to the O
projection. Features are taken head-major (feature ``h·d + i`` is dimension ``i`` of head
``h``), the layout of every HF and torch attention; the sizes are checked against it.

:func:`prune` keeps ``heads − round(sparsity · heads)`` query heads per attention (at least
one; with grouped K/V group-packed, as ``sparsesim.prune.structure.choose_heads``: a K/V head
goes when all its query heads have), scored by the criterion's mean over the head's Q rows,
O columns and the K/V rows it reads. The pruned heads' Q rows, K/V rows and O columns are
masked at their GEMM nodes and the exported graph run again, so the masked model is the
pruned one (a head whose O columns are zero adds nothing); its output is compared with the
dense model's (``output_cosine_to_dense``). Compacted (the default), the projections lose
those rows and columns, the score GEMMs ``count`` drops to ``batch · kept heads``, and the
measured masks are cut alike; with ``compact = False`` the shapes stay and the masks hold the
zeros.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from typing import Any

import numpy as np
import torch
import torch.fx

from sparsesim.errors import SparsesimError
from sparsesim.prune.front import Masks, score_weights
from sparsesim.prune.spec import PruneSpec
from sparsesim.prune.structure import choose_heads
from sparsesim.prune.torch import graphs
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Attention, Layer, Linear, MatMul
from sparsesim.workload.network import Workload

aten = torch.ops.aten


@dataclass(frozen=True)
class Heads:
    """One captured attention. ``q``/``k``/``v``: (Linear layer, first feature, features) of
    each operand's slice of its producer (one layer for a fused QKV); ``o``: the O
    projection; ``scores``: its ``qk`` and ``pv`` MatMul layers."""

    q: tuple[str, int, int]
    k: tuple[str, int, int]
    v: tuple[str, int, int]
    o: str
    scores: tuple[str, ...]
    heads: int
    kv_heads: int
    head_dim: int


def _feature_slice(path: list[torch.fx.Node], width: int) -> tuple[int, int]:
    """The (offset, size) of the slice a path takes of its producer's ``width`` output
    features: splits, ``getitem`` and slices of the last axis while it is still whole."""
    offset, size = 0, width
    for i, node in enumerate(path):
        name = graphs.op_name(node.target)
        args: Any = node.args
        src = args[0] if args else None
        shape = graphs._shape(src)
        if name == "getitem" and isinstance(src, torch.fx.Node):
            split = graphs.op_name(src.target)
            base = graphs._shape(src.args[0])
            if base is None or base[-1] != size:
                continue
            sargs: Any = src.args
            kwargs: Any = src.kwargs
            dim = int(sargs[2]) if len(sargs) > 2 else int(kwargs.get("dim", 0))
            if dim % len(base) != len(base) - 1:
                continue
            index = int(args[1])
            if split == "split":
                chunk = int(sargs[1])
                offset, size = offset + index * chunk, min(chunk, size - index * chunk)
            elif split == "split_with_sizes":
                sizes = [int(s) for s in sargs[1]]
                offset, size = offset + sum(sizes[:index]), sizes[index]
            elif split == "chunk":
                chunk = -(-size // int(sargs[1]))
                offset, size = offset + index * chunk, min(chunk, size - index * chunk)
        elif name == "slice" and shape is not None and shape[-1] == size:
            dim = int(args[1]) if len(args) > 1 else 0
            if dim % len(shape) == len(shape) - 1:
                start = int(args[2]) if len(args) > 2 and args[2] else 0
                end = int(args[3]) if len(args) > 3 else size
                offset, size = offset + start, min(end, size) - start
    return offset, size


def _back(node: Any, producers: dict[str, str], static: set[str]) -> tuple[str, list[Any]]:
    """The Linear layer whose output ``node`` is derived from (first activation operand at
    each step), and the path from it (producer side first)."""
    path: list[Any] = []
    cur = node
    for _ in range(200):
        if not isinstance(cur, torch.fx.Node):
            break
        if cur.name in producers:
            return producers[cur.name], path[::-1]
        path.append(cur)
        if cur.op != "call_function" or graphs.op_name(cur.target) in (
                "scaled_dot_product_attention", "matmul", "bmm", "softmax", "layer_norm"):
            break
        acts = [a for a in cur.all_input_nodes if a.name not in static]
        if not acts:
            break
        cur = acts[0]
    raise SparsesimError("cannot trace an attention operand back to its projection",
                         layer=getattr(node, "name", "?"), field="granularity")


def _forward(node: torch.fx.Node, consumers: dict[str, str]) -> str:
    """The Linear layer that reads ``node``'s value (through views and transposes)."""
    cur = node
    for _ in range(50):
        users = list(cur.users)
        for u in users:
            if u.name in consumers:
                return consumers[u.name]
        if len(users) != 1:
            break
        cur = users[0]
    raise SparsesimError("cannot find the O projection after an attention",
                         layer=node.name, field="granularity")


def find(cap: Any) -> list[Heads]:
    """Every SDPA attention of a captured model (``export.Captured``), its layout."""
    graph = cap.graph
    gm = graph.module
    static = graphs.static_nodes(gm, {n.name for n in gm.graph.nodes if n.op == "placeholder"})
    by_name = {x.name: x for x in cap.workload.layers}
    producers: dict[str, str] = {}
    consumers: dict[str, str] = {}
    for s in graph.sites:
        if isinstance(s.layer, Linear) and s.w is not None:
            producers[s.node] = s.layer.name
            consumers[s.node] = s.layer.name
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not \
                aten.scaled_dot_product_attention.default:
            continue
        q, k, v = (node.args[i] if len(node.args) > i else node.kwargs[key]
                   for i, key in enumerate(("query", "key", "value")))
        sq = graphs._shape(q)
        assert sq is not None
        h, d = sq[-3], sq[-1]
        parts = []
        for arg in (q, k, v):
            layer, path = _back(arg, producers, static)
            width = by_name[layer].out_channels or 0
            off, size = _feature_slice(path, width)
            if size % d:
                raise SparsesimError(f"the attention's slice of {layer} ({size} features) is "
                                     f"not whole heads of {d}", layer=layer, field="granularity")
            parts.append((layer, off, size))
        kvh = parts[1][2] // d
        o = _forward(node, consumers)
        if parts[0][2] != h * d or (by_name[o].in_channels or 0) != h * d or h % kvh:
            raise SparsesimError(f"attention layout not head-major: {h} heads of {d}, Q slice "
                                 f"{parts[0][2]}, O reads {by_name[o].in_channels}",
                                 layer=o, field="granularity")
        scores = tuple(s.layer.name for s in graph.sites if s.node == node.name)
        out.append(Heads(parts[0], parts[1], parts[2], o, scores, h, kvh, d))
    return out


def _dummy(a: Heads) -> Attention:
    return Attention(a.o, l=1, e=a.heads * a.head_dim, heads=a.heads,
                     kv_heads=a.kv_heads if a.kv_heads != a.heads else None)


def _rows(a: Heads, kept: np.ndarray) -> dict[str, np.ndarray]:
    """Kept features of Q, of K/V (per K/V head), as bool over heads·d / kv_heads·d."""
    d, group = a.head_dim, a.heads // a.kv_heads
    q = np.zeros(a.heads, dtype=bool)
    q[kept] = True
    kv = np.zeros(a.kv_heads, dtype=bool)
    kv[np.unique(kept // group)] = True
    return {"q": np.repeat(q, d), "kv": np.repeat(kv, d)}


def prune(cap: Any, spec: PruneSpec, *, meta: dict[str, Any] | None = None) -> Trace:
    """Head pruning of a captured model (module docstring)."""
    from sparsesim.prune.torch import export

    atts = [a for a in find(cap) if not any(fnmatch(n, p) for p in spec.skip
                                            for n in (a.o, *a.scores))]
    if not atts:
        raise SparsesimError("no scaled_dot_product_attention node whose heads can be pruned "
                             "(skipped, or attention not written with SDPA)",
                             field="granularity")
    weights = cap.weights()
    names = sorted({x for a in atts for x in (a.q[0], a.k[0], a.v[0], a.o)})
    wl = Workload("heads", tuple(x for x in cap.workload.layers if x.name in names))
    scores = score_weights(wl, replace(spec, granularity="unstructured", skip=(), compact=True), weights,
                           cap.stats())
    masks: Masks = {n: {"w": np.ones(weights[n]["w"].shape, dtype=bool)} for n in names}
    kept_rows: dict[str, np.ndarray] = {n: np.ones(weights[n]["w"].shape[0], bool)
                                        for n in names}
    kept_cols: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}
    kept_by: dict[str, tuple[Heads, np.ndarray]] = {}
    for a in atts:
        d, group = a.head_dim, a.heads // a.kv_heads
        so = scores[a.o]["w"]
        per = np.zeros(a.heads)
        for i in range(a.heads):
            kv = i // group
            parts = [scores[a.q[0]]["w"][a.q[1] + i * d:a.q[1] + (i + 1) * d].ravel(),
                     so[:, i * d:(i + 1) * d].ravel(),
                     scores[a.k[0]]["w"][a.k[1] + kv * d:a.k[1] + (kv + 1) * d].ravel(),
                     scores[a.v[0]]["w"][a.v[1] + kv * d:a.v[1] + (kv + 1) * d].ravel()]
            per[i] = np.concatenate(parts).mean()
        kept = choose_heads(_dummy(a), per, spec.sparsity)
        rows = _rows(a, kept)
        for (lname, off, size), keep in ((a.q, rows["q"]), (a.k, rows["kv"]),
                                         (a.v, rows["kv"])):
            kept_rows[lname][off:off + size] &= keep
        kept_cols[a.o] = rows["q"]
        masks[a.o]["w"] &= rows["q"][None, :]
        for sc in a.scores:
            kept_by[sc] = (a, kept)
        info[a.o] = {"heads": a.heads, "heads_kept": int(kept.size),
                     "kept_heads": kept.tolist(), "kv_heads_kept": int(rows["kv"].sum() // d)}
    for n in names:
        masks[n]["w"] &= kept_rows[n][:, None]
    measured = export.run(cap.graph, cap.args, cap.kwargs, masks=masks)
    agreement = _cosine(measured.output, cap.first.output)
    layers: list[Layer] = []
    layer_masks: dict[str, LayerMasks] = {}
    for layer in cap.workload.layers:
        name = layer.name
        w = None
        if name in weights:
            w = weights[name]["w"] != 0
            if name in masks:
                w = w & masks[name]["w"]
        x = measured.inputs.get(name)
        act = dict(measured.internal.get(name, {}))
        if spec.compact and name in kept_rows and isinstance(layer, Linear):
            keep = kept_rows[name]
            layer = replace(layer, out_features=int(keep.sum()))
            assert w is not None
            w = w[keep]
        if spec.compact and name in kept_cols and isinstance(layer, Linear):
            keep = kept_cols[name]
            layer = replace(layer, in_features=int(keep.sum()))
            assert w is not None
            w = w[:, keep]
            x = None if x is None else x[..., keep]
        if spec.compact and name in kept_by and isinstance(layer, MatMul):
            a, kept = kept_by[name]
            per_head = layer.count // a.heads
            layer = replace(layer, count=per_head * int(kept.size))

            def cut(m: np.ndarray, a: Heads = a, kept: np.ndarray = kept) -> np.ndarray:
                m = m.reshape(-1, a.heads, *m.shape[-2:])[:, kept]
                return m.reshape(-1, *m.shape[-2:]) if m.shape[0] * m.shape[1] > 1 \
                    else m.reshape(m.shape[-2:])
            x = None if x is None else cut(x)
            act = {key: cut(m) for key, m in act.items()}
        layers.append(layer)
        wm = {} if w is None or w.all() else {"w": w}
        x = None if x is None or x.all() else x
        act = {key: m for key, m in act.items() if not m.all()}
        if wm or x is not None or act:
            layer_masks[name] = LayerMasks(wm, x, act)
    total = sum(e["heads"] for e in info.values())
    kept_n = sum(e["heads_kept"] for e in info.values())
    workload = replace(cap.workload, layers=tuple(layers)) if spec.compact else cap.workload
    out_meta: dict[str, Any] = {
        "source": cap.workload.source, "method": spec.as_dict(), "seed": spec.seed,
        "capture": {"method": "torch.export", **cap.coverage.as_dict()},
        "layers": info,
        "compaction": ({"compacted": True, "graph": "within captured attention",
                        "heads_removed": total - kept_n, "heads_total": total}
                       if spec.compact else
                       {"compacted": False, "note": "shape kept (--keep-shape): pruned heads "
                                                    "stay as zeros in the masks"}),
        "accuracy": [{"metric": "output_cosine_to_dense", "value": agreement,
                      "sparsity": spec.sparsity, "stage": "pruned",
                      "includes": ["heads"]}],
        **(meta or {})}
    return Trace(workload, layer_masks, out_meta)


def _leaf(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)):
        return _leaf(x[0])
    if isinstance(x, dict):
        return _leaf(next(iter(x.values())))
    return _leaf(getattr(x, "last_hidden_state", None) if hasattr(x, "last_hidden_state")
                 else x[0])


def _cosine(a: Any, b: Any) -> float:
    """Cosine similarity of the pruned and the dense model's first output (flattened)."""
    x, y = _leaf(a).double().flatten(), _leaf(b).double().flatten()
    return float(torch.nn.functional.cosine_similarity(x, y, dim=0))


_ = operator  # getitem is matched by name (graphs.op_name)
