"""The PyTorch front-end: a real ``torch.nn.Module`` as a workload, calibrated and pruned.

:class:`TorchNet` runs calibration inputs through the model once with forward hooks and
reads, for every ``nn.Conv2d``, ``nn.Linear`` and attention module (``q``/``k``/``v``/``o``
linears, ``heads``, ``kv_heads``, ``causal``, ``taps``: see ``models.SelfAttention``), the
layer's shape (so the workload is the model as it ran: batch, image size, sequence length)
and, per :meth:`TorchNet.calibrate`:

* the input-activation masks — the zeros a ReLU really produced, or those imposed by an
  :class:`~sparsesim.prune.activations.ActPrune` applied in a forward pre-hook (so the model's
  output, and its accuracy, reflect them);
* Wanda's input-feature norms ``‖X_j‖₂``;
* with a loss, gradients: their sum (first-order Taylor) and the mean of their squares over
  micro-batches (the diagonal empirical Fisher; micro-batches of one sample make it exact);
* attention received per key (mean over heads and queries of the probabilities), which sets
  dynamic token keep ratios.

:meth:`TorchNet.dynamic_ratios` measures per-input keep ratios instead (tokens, heads,
channels: the ideal gates of ``sparsesim.prune.torch.gates``), in the form of a trace's
``meta["dynamic"]``, which ``sparsesim run --trace`` simulates input by input.

Masks are applied with ``torch.nn.utils.prune.custom_from_mask`` (``weight = weight_orig ·
weight_mask``), so fine-tuning keeps pruned weights at zero, as users of that module expect.
The trace's weight masks are the non-zero patterns of the effective weights (a weight that
was already exactly zero counts as zero), its input masks those measured on the calibration
batch of the pruned model. :meth:`TorchNet.effectual_macs` counts the non-zero products of
every layer from the real tensors (indicator convolutions and matmuls), independently of the
simulator's lowering.

Filter, channel and block pruning compact the trace (``sparsesim.prune.compact``) along the
model's graph. A plain ``nn.Sequential`` chain (``compact.chain_graph``) is cut for real,
constants folded, and the trace is measured on the cut model (:attr:`TorchNet.compacted`).
Any other model's graph is read from ``torch.export`` (``sparsesim.prune.torch.graphs``): the
trace is compacted, the masked model is the one evaluated (it computes what the compacted
network does: a removed filter is a constant channel, folded into its readers' bias), and
:attr:`TorchNet.rebuilt` runs the compacted network itself (``sparsesim.prune.torch.rebuild``),
whose products :meth:`TorchNet.effectual_macs` counts. A model ``torch.export`` cannot capture
keeps its shape, and ``meta["compaction"]`` says why.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as tprune
from torch import nn

from sparsesim.errors import SparsesimError
from sparsesim.progress import ProgressFactory
from sparsesim.workload.layers import Attention, Conv2d, Layer, Linear
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.prune.torch import gates
from sparsesim.prune.activations import ActPrune
from sparsesim.prune.criteria import LayerStats
from sparsesim.prune.front import (Masks, prune_workload, score_weights, selection_bar,
                                   weight_masks)
from sparsesim.prune.schedule import imp_levels, iterative_levels
from sparsesim.prune.compact import compact
from sparsesim.prune.spec import COMPACTING, WEIGHT_GRANULARITIES, DynamicSpec, PruneSpec
from sparsesim.prune.torch.compact import chain_graph, compact_sequential
from sparsesim.prune.torch import graphs
from sparsesim.prune.torch.rebuild import Rebuilt, compact_masks
from sparsesim.prune.compact import Compaction
from sparsesim.prune.synthetic import Weights
from sparsesim.rules.keep import keep_count
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.network import Workload


def is_attention(module: nn.Module) -> bool:
    """The attention protocol: ``q``, ``k``, ``v``, ``o`` linears and an integer ``heads``."""
    return (all(isinstance(getattr(module, a, None), nn.Linear) for a in "qkvo")
            and isinstance(getattr(module, "heads", None), int))


@dataclass
class Bound:
    """A workload layer and the module(s) holding its weights (each tensor's ``.weight``)."""

    layer: Layer
    module: Any  # nn.Module; Any because torch types module attributes loosely
    tensors: dict[str, Any]


@dataclass
class Calibration:
    """What :meth:`TorchNet.calibrate` measured (numpy, per layer name)."""

    act_masks: dict[str, np.ndarray] = field(default_factory=dict)
    internal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    stats: dict[str, LayerStats] = field(default_factory=dict)
    received: dict[str, np.ndarray] = field(default_factory=dict)
    output: Any = None  # the model's output on the calibration inputs

    def act_density(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.act_masks.items()}


def _nz(x: torch.Tensor) -> torch.Tensor:
    return (x != 0).to(torch.float64)


def _effective(mod: Any) -> torch.Tensor:
    """``weight_orig · weight_mask`` when pruned (``.weight`` is refreshed only by a forward)."""
    if hasattr(mod, "weight_mask"):
        return (mod.weight_orig * mod.weight_mask).detach()
    return mod.weight.detach()


Loss = Callable[[torch.Tensor, slice], torch.Tensor]

UNKNOWN_GRAPH = ("the model is not a plain nn.Sequential chain and its graph (residual adds, "
                 "concats) could not be read from torch.export: shapes kept, pruned filters and "
                 "channels stay as zeros in the masks")


class TorchNet:
    """A model, its calibration inputs, and the workload it is on those inputs."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor, *, name: str = "model",
                 source: str = "") -> None:
        self.model = model.eval()
        self.inputs = inputs
        self.name = name
        self.source = source or f"torch.nn.Module {type(model).__name__}"
        self.bound: dict[str, Bound] = {}
        self.output: Any = None  # the model's output on the inputs, before any pruning
        self.last_output: Any = None  # its output in the last trace() measurement
        self.compacted: TorchNet | None = None  # the last trace()'s compacted model, if any
        self.compaction: Compaction | None = None  # the last trace()'s graph compaction
        self._rebuilt: Rebuilt | None = None
        self._discover()

    # --- discovery ---------------------------------------------------------------------

    def _discover(self) -> None:
        inner: set[int] = set()
        named = list(self.model.named_modules())
        for _, mod in named:
            if is_attention(mod):
                inner.update(id(getattr(mod, a)) for a in "qkvo")
        seen: list[tuple[str, Any, tuple[int, ...]]] = []
        handles = []

        def hook(name: str) -> Callable[..., None]:
            def fn(mod: nn.Module, args: tuple[Any, ...]) -> None:
                if any(n == name for n, _, _ in seen):
                    raise SparsesimError("module runs more than once per forward; sparsesim "
                                         "needs one layer per call", layer=name)
                seen.append((name, mod, tuple(args[0].shape)))
            return fn

        for name, mod in named:
            if id(mod) in inner:
                continue
            if isinstance(mod, (nn.Conv2d, nn.Linear)) or is_attention(mod):
                handles.append(mod.register_forward_pre_hook(hook(name)))
        try:
            with torch.no_grad():
                self.output = self.model(self.inputs)  # the dense output, kept for comparisons
        finally:
            for h in handles:
                h.remove()
        for name, mod, shape in seen:
            layer = _layer(name, mod, shape)
            tensors = ({t: getattr(mod, t) for t in "qkvo"} if is_attention(mod)
                       else {"w": mod})
            self.bound[name] = Bound(layer, mod, tensors)
        if not self.bound:
            raise SparsesimError("no conv, linear or attention layer ran", field="model")

    @property
    def workload(self) -> Workload:
        """The model's layers as they ran; with their edges when the model is a plain chain
        (``sparsesim.prune.torch.compact.chain_graph``), else the graph is unknown."""
        graph = chain_graph(self.model, {n: b.layer.op for n, b in self.bound.items()})
        return Workload(self.name, tuple(b.layer for b in self.bound.values()), self.source,
                        graph=graph)

    # --- weights and masks -------------------------------------------------------------

    def weights(self) -> Weights:
        """Effective weights (masks applied), numpy float32, in the layouts of the masks."""
        return {name: {t: _effective(m).float().numpy().copy() for t, m in b.tensors.items()}
                for name, b in self.bound.items()}

    def current_masks(self) -> Masks:
        """The applied keep-masks (all ones where nothing is pruned)."""
        out: Masks = {}
        for name, b in self.bound.items():
            out[name] = {}
            for t, m in b.tensors.items():
                mask = getattr(m, "weight_mask", None)
                out[name][t] = (np.ones(tuple(m.weight.shape), bool) if mask is None
                                else mask.detach().numpy().astype(bool))
        return out

    def apply_masks(self, masks: Masks) -> None:
        """Prune with ``torch.nn.utils.prune.custom_from_mask`` (or update its mask)."""
        for name, tensors in masks.items():
            for t, mask in tensors.items():
                mod: Any = self.bound[name].tensors[t]
                m = torch.as_tensor(np.ascontiguousarray(mask), dtype=mod.weight.dtype)
                if hasattr(mod, "weight_mask"):
                    mod.weight_mask.copy_(m)
                    with torch.no_grad():  # recompute weight = weight_orig * weight_mask now
                        mod.weight = mod.weight_orig * mod.weight_mask
                else:
                    tprune.custom_from_mask(mod, "weight", m)

    def make_permanent(self) -> None:
        """``torch.nn.utils.prune.remove`` on every pruned tensor."""
        for b in self.bound.values():
            for mod in b.tensors.values():
                if hasattr(mod, "weight_mask"):
                    tprune.remove(mod, "weight")

    # --- hooks -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _hooks(self, *, act_prune: ActPrune | None, act_skip: Sequence[str],
               on_input: Callable[[str, torch.Tensor], None] | None = None,
               on_o_input: Callable[[str, torch.Tensor], None] | None = None,
               on_taps: Callable[[str, tuple[torch.Tensor, ...]], None] | None = None
               ) -> Iterator[None]:
        handles = []
        first = next(iter(self.bound))

        def pre(name: str, layer: Layer) -> Callable[..., Any]:
            axis = layer.input_channel_axis
            prunes = (act_prune is not None and name != first
                      and not any(fnmatch(name, p) for p in act_skip))

            def fn(mod: nn.Module, args: tuple[Any, ...]) -> Any:
                x = args[0]
                if prunes:
                    assert act_prune is not None
                    keep = act_prune.mask(x.detach().float().numpy(), axis)
                    x = x * torch.as_tensor(keep, dtype=x.dtype)
                if on_input is not None:
                    on_input(name, x)
                return (x, *args[1:]) if prunes else None
            return fn

        for name, b in self.bound.items():
            handles.append(b.module.register_forward_pre_hook(pre(name, b.layer)))
            if isinstance(b.layer, Attention):
                if on_o_input is not None:
                    handles.append(b.module.o.register_forward_pre_hook(
                        lambda mod, args, n=name: on_o_input(n, args[0])))
                taps = getattr(b.module, "taps", None)
                if on_taps is not None and taps is not None:
                    handles.append(taps.register_forward_hook(
                        lambda mod, args, out, n=name: on_taps(n, args)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _score_masks(self, name: str, xs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
        """Non-zero patterns of the score operands ``(q, k, p, v)`` a tap saw, in the layer's
        :meth:`~sparsesim.workload.layers.Attention.activation_shapes`: K and V once per K/V
        head (the model repeats them for each query head of a group; the copies are equal)."""
        layer = self.bound[name].layer
        assert isinstance(layer, Attention)
        g = layer.group_size
        q, k, p, v = xs
        return {"q": (q != 0).numpy(), "k": (k[:, ::g] != 0).numpy(),
                "p": (p != 0).numpy(), "v": (v[:, ::g] != 0).numpy()}

    def set_attention_top_k(self, k: int | None) -> None:
        """Top-k attention on every attention module (``None``: full attention again)."""
        mods = [b.module for b in self.bound.values() if isinstance(b.layer, Attention)]
        if not mods:
            raise SparsesimError(f"{self.name} has no attention layer", field="attn_top_k")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise SparsesimError(f"must be a positive integer, got {k!r}", field="attn_top_k")
        for mod in mods:
            mod.top_k = k

    @property
    def attention_top_k(self) -> int | None:
        """The top-k every attention module applies (``None``: full attention)."""
        ks = {getattr(b.module, "top_k", None) for b in self.bound.values()
              if isinstance(b.layer, Attention)}
        return ks.pop() if len(ks) == 1 else None

    # --- calibration -------------------------------------------------------------------

    def calibrate(self, *, act_prune: ActPrune | None = None, act_skip: Sequence[str] = (),
                  norms: bool = False, masks: bool = True, attention: bool = False,
                  loss: Loss | None = None, micro_batch: int = 1,
                  progress: ProgressFactory | None = None) -> Calibration:
        """Forward the calibration inputs once with hooks (no grad); then, given ``loss``
        (``loss(output, part)``: the loss of the model's output on ``inputs[part]``), one
        backward per micro-batch of ``micro_batch`` samples for Taylor and Fisher.
        ``progress`` is told of each pass (the forward, then each micro-batch's backward)."""
        cal = Calibration()
        n = self.inputs.shape[0]
        passes = 1 + (-(-n // micro_batch) if loss is not None else 0)
        bar = progress(passes, "calibration passes") if progress is not None else None
        sq: dict[str, dict[str, torch.Tensor]] = {}

        def on_input(name: str, x: torch.Tensor) -> None:
            layer = self.bound[name].layer
            if masks:
                cal.act_masks[name] = (x != 0).numpy().reshape(layer.input_shape)
            if norms:
                xf = x.detach().double()
                if isinstance(layer, Conv2d):
                    s = xf.pow(2).sum(dim=(0, 2, 3))
                else:
                    s = xf.reshape(-1, xf.shape[-1]).pow(2).sum(dim=0)
                keys = "qkv" if isinstance(layer, Attention) else "w"
                for t in keys:
                    sq.setdefault(name, {})[t] = s

        def on_o(name: str, x: torch.Tensor) -> None:
            if masks:
                cal.internal.setdefault(name, {})["o_in"] = (x != 0).numpy()
            if norms:
                xf = x.detach().double()
                sq.setdefault(name, {})["o"] = xf.reshape(-1, xf.shape[-1]).pow(2).sum(dim=0)

        def on_taps(name: str, xs: tuple[torch.Tensor, ...]) -> None:
            if masks:
                cal.internal.setdefault(name, {}).update(self._score_masks(name, xs))
            if attention:
                p = xs[2]
                cal.received[name] = p.detach().mean(dim=(1, 2)).double().numpy()

        with torch.no_grad(), self._hooks(act_prune=act_prune, act_skip=act_skip,
                                          on_input=on_input, on_o_input=on_o, on_taps=on_taps):
            cal.output = self.model(self.inputs)
        if bar is not None:
            bar.update()
        stats: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for name, tensors in sq.items():
            for t, s in tensors.items():
                stats.setdefault(name, {}).setdefault("act_norms", {})[t] = (
                    s.sqrt().float().numpy())
        if loss is not None:
            for name, kind in self._gradients(loss, micro_batch, act_prune, act_skip,
                                              None if bar is None else bar.update).items():
                for k, v in kind.items():
                    stats.setdefault(name, {})[k] = v
        cal.stats = {name: LayerStats(grads=d.get("grads", {}), fisher=d.get("fisher", {}),
                                      act_norms=d.get("act_norms", {}))
                     for name, d in stats.items()}
        return cal

    def _gradients(self, loss: Loss, micro_batch: int,
                   act_prune: ActPrune | None, act_skip: Sequence[str],
                   tick: Callable[[], None] | None = None
                   ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        params: dict[tuple[str, str], Any] = {
            (name, t): m.weight_orig if hasattr(m, "weight_orig") else m.weight
            for name, b in self.bound.items() for t, m in b.tensors.items()}
        g_sum = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
        g_sq = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
        n = self.inputs.shape[0]
        steps = 0
        with self._hooks(act_prune=act_prune, act_skip=act_skip):
            for start in range(0, n, micro_batch):
                part = slice(start, min(n, start + micro_batch))
                self.model.zero_grad(set_to_none=True)
                value = loss(self.model(self.inputs[part]), part)
                value.backward()
                for k, p in params.items():
                    g = p.grad.detach().double() if p.grad is not None else torch.zeros_like(
                        g_sum[k])
                    g_sum[k] += g
                    g_sq[k] += g * g
                steps += 1
                if tick is not None:
                    tick()
        self.model.zero_grad(set_to_none=True)
        out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for (name, t) in params:
            d = out.setdefault(name, {})
            d.setdefault("grads", {})[t] = g_sum[(name, t)].float().numpy()
            d.setdefault("fisher", {})[t] = (g_sq[(name, t)] / steps).float().numpy()
        return out

    # --- pruning -----------------------------------------------------------------------

    def prune(self, spec: PruneSpec, cal: Calibration | None = None,
              progress: ProgressFactory | None = None) -> Masks:
        """Apply ``spec`` (a weight granularity) to the model; returns the keep-masks.

        Already-pruned weights stay pruned and count toward the sparsity (iterative runs).
        ``progress`` is told of each weight tensor scored, then selected.
        """
        if spec.granularity not in WEIGHT_GRANULARITIES:
            raise SparsesimError(f"{spec.granularity} pruning changes shapes: use trace()",
                                 field="granularity")
        wl = self.workload
        prior = self.current_masks()
        weights = self.weights()
        bar = selection_bar(wl, spec, progress, weights=weights)
        tick = None if bar is None else bar.update
        scores = score_weights(wl, spec, weights, None if cal is None else cal.stats, tick=tick)
        masks = weight_masks(wl, spec, scores, prior={k: prior[k] for k in scores}, tick=tick)
        # A target below what is already pruned (a tensor's share of a global level, the
        # zeros of a regularized run) must not revive weights: the prior masks stay.
        masks = {k: {t: m & prior[k][t] for t, m in v.items()} for k, v in masks.items()}
        self.apply_masks(masks)
        return masks

    def trace(self, spec: PruneSpec | None = None, *, act_prune: ActPrune | None = None,
              act_skip: Sequence[str] = (), cal: Calibration | None = None,
              meta: Mapping[str, Any] | None = None, dynamic: DynamicSpec | None = None
              ) -> Trace:
        """The trace of the model as it is now (masks applied), measured on the calibration
        inputs: weight masks = non-zero patterns, input masks measured. A shape granularity
        in ``spec`` (head, token, KV) reduces the layers; token pruning takes its dynamic
        per-layer keep ratios from the attention each token receives (``keep_mass``).
        ``dynamic`` adds the per-input ratios of :meth:`dynamic_ratios` as ``meta["dynamic"]``
        (its parameters as ``meta["dynamic_method"]``)."""
        top_k = self.attention_top_k
        if top_k is not None and spec is not None and spec.granularity not in \
                WEIGHT_GRANULARITIES:
            raise SparsesimError(f"top-k attention is measured on the model's own shapes; "
                                 f"{spec.granularity} pruning changes them: use a weight "
                                 "granularity", field="attn_top_k")
        if dynamic is not None and spec is not None and spec.granularity not in \
                WEIGHT_GRANULARITIES:
            raise SparsesimError(f"per-input ratios are measured on the model's own shapes; "
                                 f"{spec.granularity} pruning changes them: use a weight "
                                 "granularity", field="dynamic")
        measured = self.calibrate(act_prune=act_prune, act_skip=act_skip,
                                  attention=spec is not None and spec.granularity == "token")
        self.last_output = measured.output
        weights = self.weights()
        nonzero = {name: {t: w != 0 for t, w in tensors.items()}
                   for name, tensors in weights.items()}
        info: dict[str, Any] = {"source": self.source}
        if act_prune is not None:
            info["act_prune"] = act_prune.as_dict()
        if top_k is not None:  # the online unit's top-k finds P's zeros at run time
            info["attn_prune"] = {"kind": "topk", "k": top_k}
        if meta:
            info.update(meta)
        if dynamic is not None:
            info["dynamic"] = self.dynamic_ratios(dynamic, act_prune=act_prune,
                                                  act_skip=act_skip)
            info["dynamic_method"] = dynamic.as_dict()
        if spec is None or spec.granularity in WEIGHT_GRANULARITIES:
            layer_masks = {}
            for b in self.bound.values():
                w = {t: m for t, m in nonzero[b.layer.name].items() if not m.all()}
                x = measured.act_masks.get(b.layer.name)
                # An all-ones mask is dense, except that a padded conv needs it: the lowering
                # marks padding zeros only where an input mask is given.
                padded = isinstance(b.layer, Conv2d) and b.layer.reads_zeros
                x = None if x is None or (x.all() and not padded) else x
                internal = {t: m.reshape(b.layer.activation_shapes()[t])
                            for t, m in measured.internal.get(b.layer.name, {}).items()
                            if not m.all()}  # all ones: dense, nothing to store
                if w or x is not None or internal:
                    layer_masks[b.layer.name] = LayerMasks(w, x, internal)
            total = sum(m.size for t in nonzero.values() for m in t.values())
            kept = sum(int(np.count_nonzero(m)) for t in nonzero.values() for m in t.values())
            per_layer = {}
            for name, t in nonzero.items():
                size = sum(m.size for m in t.values())
                per_layer[name] = {
                    "weight_sparsity": 1 - sum(int(np.count_nonzero(m)) for m in t.values())
                    / size}
                if name in measured.act_masks:
                    per_layer[name]["act_density"] = float(measured.act_masks[name].mean())
            info = {"method": {} if spec is None else spec.as_dict(),
                    "seed": 0 if spec is None else spec.seed, "weight_sparsity": 1 - kept / total,
                    "layers": per_layer, **info}
            self.compacted = None
            self.compaction, self._rebuilt = None, None
            if spec is not None and spec.granularity in COMPACTING and spec.compact:
                if self.workload.graph is not None:
                    return self._compacted_trace(nonzero, info, act_prune=act_prune,
                                                 act_skip=act_skip, dynamic=dynamic)
                try:
                    graph = graphs.module_graph(self.model, self.inputs, {
                        n: b.layer.op for n, b in self.bound.items()})
                except SparsesimError as err:
                    info["compaction"] = {"compacted": False,
                                          "note": f"{UNKNOWN_GRAPH} ({err.message})"}
                else:
                    return self._graph_compacted_trace(graph, nonzero, layer_masks, info)
            elif spec is not None and spec.granularity in COMPACTING:
                info["compaction"] = {"compacted": False,
                                      "note": "shape kept (--keep-shape): pruned units stay as "
                                              "zeros in the masks, for hardware that cannot "
                                              "compact"}
            return Trace(self.workload, layer_masks, info)
        ratios = None
        if spec.granularity == "token":
            mass = float(info.get("keep_mass", 1 - spec.sparsity))
            ratios = {name: keep_ratio(r, mass) for name, r in measured.received.items()}
            info["keep_mass"] = mass
        return prune_workload(self.workload, spec, weights=weights, stats=None if cal is None
                              else cal.stats, act_masks=measured.act_masks, keep_ratios=ratios,
                              meta=info)

    def _graph_compacted_trace(self, graph: Any, nonzero: Masks,
                               layer_masks: Mapping[str, LayerMasks],
                               info: dict[str, Any]) -> Trace:
        """The trace compacted along the graph read from torch.export; the masked model
        stays the evaluated one (see the module docstring)."""
        from dataclasses import replace

        done = compact(replace(self.workload, graph=graph), nonzero)
        self.compaction = done
        for name, entry in done.layers.items():
            info["layers"].setdefault(name, {}).update(entry)
        info["compaction"] = {
            **done.summary, "graph": "read from torch.export",
            "real_model": "masked: computes what the compacted network does (a removed filter "
                          "is a constant channel, folded into its readers' bias); "
                          "sparsesim.prune.torch.rebuild runs the compacted network"}
        return Trace(done.workload, compact_masks(done, layer_masks), info)

    def rebuilt(self, *, act_prune: ActPrune | None = None,
                act_skip: Sequence[str] = ()) -> Rebuilt | None:
        """The compacted network of the last graph-compacted trace (``None`` if none),
        its folds read on the calibration inputs (with ``act_prune``, as the trace was)."""
        if self.compaction is None:
            return None
        if self._rebuilt is None:
            with self._hooks(act_prune=act_prune, act_skip=act_skip):
                self._rebuilt = Rebuilt(
                    self.model, {n: b.module for n, b in self.bound.items()},
                    {n: b.layer for n, b in self.bound.items()}, self.compaction, self.inputs)
        return self._rebuilt

    def _compacted_trace(self, nonzero: Masks, info: dict[str, Any], *,
                         act_prune: ActPrune | None, act_skip: Sequence[str],
                         dynamic: DynamicSpec | None) -> Trace:
        """The trace of the chain compacted as ``prune.compact`` compacts its workload: the
        real model is cut alike (``compact.compact_sequential``, kept in :attr:`compacted`)
        and measured itself, so the masks, activations and effectual MACs are the compacted
        model's; ``info`` (method, as-pruned weight sparsity) gains what was removed."""
        done = compact(self.workload, nonzero)
        small = TorchNet(compact_sequential(self.model, self.inputs, done.kept_outputs),
                         self.inputs, name=self.name, source=f"{self.source}, compacted")
        self.compacted = small
        measured = small.trace(None, act_prune=act_prune, act_skip=act_skip, dynamic=dynamic)
        for name, entry in measured.meta["layers"].items():
            if "act_density" in entry:
                info["layers"].setdefault(name, {})["act_density"] = entry["act_density"]
        for name, entry in done.layers.items():
            info["layers"].setdefault(name, {}).update(entry)
        if dynamic is not None:
            info["dynamic"] = measured.meta["dynamic"]
        summary = dict(done.summary)
        summary["real_model"] = "compacted, constants folded (sparsesim.prune.torch.compact)"
        wider = [x.name for x, y in zip(measured.workload.layers, done.workload.layers)
                 if (x.in_channels, x.out_channels) != (y.in_channels, y.out_channels)]
        if wider:  # a channel a pinned producer still writes, which its reader ignores
            summary["note"] = (f"{', '.join(wider)} read(s) channels their producer must keep "
                               "(zero weights there): simulated as the real model runs")
        info["compaction"] = summary
        return Trace(measured.workload, measured.masks, info)

    # --- dynamic (per-input) ratios -----------------------------------------------------

    def dynamic_ratios(self, spec: DynamicSpec, *, act_prune: ActPrune | None = None,
                       act_skip: Sequence[str] = ()) -> dict[str, Any]:
        """Per-input keep ratios of the ideal gates of ``spec`` (``sparsesim.prune.torch.gates``) on
        the calibration inputs: ``{"inputs": N, "layers": {layer: {"token_keep" |
        "head_keep" | "channel_keep": [N ratios]}}, "consumers": {conv: its only reader},
        "batched": true}`` (the workload is the batch; input i is its i-th element),
        the schema of a trace's ``meta["dynamic"]``.

        ``token_keep`` at an attention layer is the fraction of the sequence alive there,
        pruned after the layers before it (so none at the first one); ``head_keep`` the
        fraction of heads an input computes; ``channel_keep`` the fraction of a conv's output
        channels (ungrouped convs but the workload's last layer).
        """
        layers: dict[str, dict[str, list[float]]] = {}
        consumers: dict[str, str] = {}
        if (spec.token_threshold is not None or spec.token_schedule is not None
                or spec.head_threshold is not None):
            for name, kinds in self._attention_ratios(spec, act_prune, act_skip).items():
                layers.setdefault(name, {}).update(kinds)
        if spec.channel_threshold is not None:
            last = next(reversed(self.bound))
            gated = [name for name, b in self.bound.items() if isinstance(b.layer, Conv2d)
                     and b.layer.groups == 1 and name != last]
            if not gated:
                raise SparsesimError("no ungrouped conv before the last layer: channel gates "
                                     "do not apply", field="channel_threshold")
            gm, points = gates.gate_points(
                self.model, {n: b.layer for n, b in self.bound.items()}, gated)
            with torch.no_grad(), self._hooks(act_prune=act_prune, act_skip=act_skip):
                means = gates.channel_means(gm, points, self.inputs)
            for p in points:
                layers.setdefault(p.conv, {})["channel_keep"] = gates.fraction_kept(
                    means[p.conv], spec.channel_threshold, relative_to="max")
                if p.consumer is not None:
                    consumers[p.conv] = p.consumer
        # the trace's layers are the whole calibration batch: input i is batch element i
        return {"inputs": self.inputs.shape[0], "layers": layers, "consumers": consumers,
                "batched": True}

    def _attention_ratios(self, spec: DynamicSpec, act_prune: ActPrune | None,
                          act_skip: Sequence[str]) -> dict[str, dict[str, list[float]]]:
        """One forward: after each attention layer the tokens are pruned (and the modules
        told, ``key_keep``), the heads measured on the tokens alive there."""
        causal = {n: b.layer.causal for n, b in self.bound.items()
                  if isinstance(b.layer, Attention)}
        names = list(causal)
        if not names:
            raise SparsesimError("the model has no attention layer: token and head gates do "
                                 "not apply", field="dynamic")
        tokens = spec.token_threshold is not None or spec.token_schedule is not None
        fractions = (None if spec.token_schedule is None
                     else gates.schedule_fractions(spec.token_schedule, len(names) - 1))
        out: dict[str, dict[str, list[float]]] = {}
        state: dict[str, torch.Tensor] = {}

        def on_taps(name: str, xs: tuple[torch.Tensor, ...]) -> None:
            i = names.index(name)
            p, v = xs[2].detach().double(), xs[3].detach().double()
            b, l = p.shape[0], p.shape[-1]  # noqa: E741 - sequence length
            alive = state.setdefault("alive", torch.ones(b, l, dtype=torch.bool))
            p = gates.renormalised(p, alive, layer=name, field="dynamic")
            kinds = out.setdefault(name, {})
            if tokens and i > 0:
                kinds["token_keep"] = alive.double().mean(dim=-1).tolist()
            if spec.head_threshold is not None:
                norms = gates.head_norms(p, v, _effective(self.bound[name].tensors["o"]), alive)
                kinds["head_keep"] = gates.fraction_kept(norms, spec.head_threshold,
                                                         relative_to="mean")
            if not tokens or i == len(names) - 1:
                return
            score = state.setdefault("score", torch.zeros(b, l, dtype=torch.float64))
            score += gates.received(p, alive, causal=causal[name])
            if fractions is None:
                assert spec.token_threshold is not None
                alive = gates.keep_above(score, alive, spec.token_threshold)
            else:
                alive = gates.keep_top(score, alive,
                                       keep_count(l, density=fractions[i], at_least=1))
            state["alive"] = alive
            for n in names:  # the tokens pruned here are gone for the layers after
                if hasattr(self.bound[n].module, "key_keep"):
                    self.bound[n].module.key_keep = alive

        try:
            with torch.no_grad(), self._hooks(act_prune=act_prune, act_skip=act_skip,
                                              on_taps=on_taps):
                self.model(self.inputs)
        finally:
            for n in names:
                if hasattr(self.bound[n].module, "key_keep"):
                    self.bound[n].module.key_keep = None
        missing = [n for n in names if n not in out]
        if missing:
            raise SparsesimError("the attention module has no taps sub-module (see "
                                 "models.SelfAttention): its probabilities are not seen",
                                 layer=missing[0], field="dynamic")
        return {n: kinds for n, kinds in out.items() if kinds}

    # --- effectual MACs from the real tensors -------------------------------------------

    def effectual_macs(self, *, act_prune: ActPrune | None = None,
                       act_skip: Sequence[str] = ()) -> dict[tuple[str, str], int]:
        """Non-zero products per (layer, GEMM) — GEMMs named as the lowering names them
        (``conv``, ``fc``; attention ``q``, ``k``, ``v``, ``qk``, ``pv``, ``o``) — counted on
        the real activations and weights of the calibration batch."""
        counts: dict[tuple[str, str], float] = {}

        def add(key: tuple[str, str], value: torch.Tensor) -> None:
            counts[key] = counts.get(key, 0.0) + float(value)

        def on_input(name: str, x: torch.Tensor) -> None:
            b = self.bound[name]
            layer, mod = b.layer, b.module
            if isinstance(layer, Conv2d):
                y = F.conv2d(_nz(x), _nz(_effective(mod)), stride=mod.stride, padding=mod.padding,
                             groups=mod.groups)
                add((name, "conv"), y.sum())
                return
            x2 = _nz(x.reshape(-1, x.shape[-1]))
            for t in ("qkv" if isinstance(layer, Attention) else "w"):
                add((name, "fc" if t == "w" else t),
                    (x2 @ _nz(_effective(b.tensors[t])).T).sum())

        def on_o(name: str, x: torch.Tensor) -> None:
            w = _effective(self.bound[name].tensors["o"])
            add((name, "o"), (_nz(x.reshape(-1, x.shape[-1])) @ _nz(w).T).sum())

        def on_taps(name: str, xs: tuple[torch.Tensor, ...]) -> None:
            q, k, p, v = xs
            scores = _nz(q) @ _nz(k).transpose(-1, -2)
            if getattr(self.bound[name].module, "causal", False):  # future scores not needed
                scores = scores.tril(scores.shape[-1] - scores.shape[-2])
            add((name, "qk"), scores.sum())
            add((name, "pv"), (_nz(p) @ _nz(v)).sum())

        rebuilt = self.rebuilt(act_prune=act_prune, act_skip=act_skip)
        thin: dict[tuple[str, str], int] = {}
        active = contextlib.nullcontext() if rebuilt is None else rebuilt.active(thin)
        with torch.no_grad(), self._hooks(act_prune=act_prune, act_skip=act_skip,
                                          on_input=on_input, on_o_input=on_o,
                                          on_taps=on_taps), active:
            self.model(self.inputs)
        # a graph-compacted trace: the compacted layers' products, counted on their kept
        # channels (sparsesim.prune.torch.rebuild)
        return {**{k: int(round(v)) for k, v in counts.items()}, **thin}

    # --- schedules ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, torch.Tensor]:
        """All parameters and buffers by their unpruned names (a rewind point)."""
        state = {}
        for k, v in self.model.state_dict().items():
            if k.endswith("weight_mask"):
                continue
            state[k.removesuffix("_orig")] = v.detach().clone()
        return state

    def rewind(self, snapshot: Mapping[str, torch.Tensor]) -> None:
        """Load a snapshot's values into the model, keeping the current masks."""
        current = self.model.state_dict()
        with torch.no_grad():
            for k, v in snapshot.items():
                target = k + "_orig" if k + "_orig" in current else k
                current[target].copy_(v)
        for b in self.bound.values():
            for mod in b.tensors.values():
                if hasattr(mod, "weight_mask"):
                    with torch.no_grad():
                        mod.weight = mod.weight_orig * mod.weight_mask

    def run_schedule(self, spec: PruneSpec, schedule: str, *, steps: int = 3,
                     train_fn: Callable[[], None] | None = None,
                     evaluate: Callable[[], float] | None = None,
                     rewind_to: Mapping[str, torch.Tensor] | None = None,
                     cal_fn: Callable[[], Calibration | None] | None = None,
                     rate: float = 0.2) -> list[dict[str, Any]]:
        """One-shot, iterative (cubic levels, fine-tune after each) or IMP (``rate`` of the
        remaining weights per round, rewind to ``rewind_to``, retrain). Records per level."""
        if schedule == "oneshot":
            levels: tuple[float, ...] = (spec.sparsity,)
        elif schedule == "iterative":
            levels = iterative_levels(spec.sparsity, steps)
        elif schedule == "imp":
            if rewind_to is None:
                raise SparsesimError("IMP needs a rewind point (snapshot)", field="schedule")
            levels = imp_levels(steps, rate)
        else:
            raise SparsesimError(f"unknown schedule {schedule!r}; expected oneshot, iterative "
                                 "or imp", field="schedule")
        records: list[dict[str, Any]] = []
        if evaluate is not None:
            records.append({"level": 0.0, "sparsity": 0.0, "accuracy": evaluate(),
                            "stage": "dense"})
        for level in levels:
            cal = cal_fn() if cal_fn is not None else None
            from dataclasses import replace

            self.prune(replace(spec, sparsity=level) if spec.granularity != "nm" else spec, cal)
            if schedule == "imp":
                assert rewind_to is not None
                self.rewind(rewind_to)
            rec: dict[str, Any] = {"level": level, "sparsity": self.weight_sparsity()}
            if schedule != "oneshot" and train_fn is not None:
                if evaluate is not None and schedule == "iterative":
                    rec["accuracy_before_finetune"] = evaluate()
                train_fn()
            if evaluate is not None:
                rec["accuracy"] = evaluate()
            rec["stage"] = schedule
            records.append(rec)
        return records

    def weight_sparsity(self, *, skip: Sequence[str] = ()) -> float:
        w = [m for name, t in self.weights().items() if not any(fnmatch(name, p) for p in skip)
             for m in t.values()]
        total = sum(m.size for m in w)
        return 1 - sum(int(np.count_nonzero(m)) for m in w) / total


def keep_ratio(received: np.ndarray, mass: float) -> float:
    """Fraction of keys holding ``mass`` of the attention they receive (mean over the batch):
    the dynamic keep ratio of one layer."""
    ratios = []
    for row in np.atleast_2d(received):
        s = np.sort(row)[::-1]
        total = s.sum()
        need = int(np.searchsorted(np.cumsum(s), mass * total - 1e-12) + 1)
        ratios.append(min(need, row.size) / row.size)
    return float(np.mean(ratios))


def _layer(name: str, mod: Any, shape: tuple[int, ...]) -> Layer:
    if is_attention(mod):
        if len(shape) != 3:
            raise SparsesimError(f"attention input must be [b, l, e], got {list(shape)}",
                                 layer=name)
        b, l, e = shape  # noqa: E741 - sequence length, as in layers.Attention
        kv = getattr(mod, "kv_heads", None)
        return Attention(name, l=l, e=e, heads=mod.heads, b=b,
                         kv_heads=kv if kv and kv != mod.heads else None,
                         causal=bool(getattr(mod, "causal", False)),
                         bias=mod.q.bias is not None)
    if isinstance(mod, nn.Linear):
        tokens = 1
        for d in shape[:-1]:
            tokens *= d
        return Linear(name, in_features=mod.in_features, out_features=mod.out_features,
                      tokens=tokens, bias=mod.bias is not None)
    assert isinstance(mod, nn.Conv2d)
    if len(shape) != 4:
        raise SparsesimError(f"conv input must be [n, c, h, w], got {list(shape)}", layer=name)
    pad = mod.padding
    if (isinstance(pad, str) or pad[0] != pad[1] or mod.stride[0] != mod.stride[1]
            or mod.dilation != (1, 1) or mod.padding_mode != "zeros"):
        raise SparsesimError("sparsesim models square stride, symmetric zero padding and no "
                             f"dilation; got stride {mod.stride}, padding {pad}, dilation "
                             f"{mod.dilation}: pad with an nn.ZeroPad2d module instead",
                             layer=name, field="padding")
    n, c, h, w = shape
    return Conv2d(name, c=c, h=h, w=w, m=mod.out_channels, r=mod.kernel_size[0],
                  s=mod.kernel_size[1], n=n, stride=mod.stride[0], padding=int(pad[0]),
                  groups=mod.groups, bias=mod.bias is not None)


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
