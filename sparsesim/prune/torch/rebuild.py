"""The compacted network of a hooked model, run for real: the proof that the compaction holds.

A model whose graph is read from ``torch.export`` (:mod:`sparsesim.prune.torch.graphs`) is not
cut module by module (its residual adds and concats live in ``forward``); its trace is
compacted (:func:`compact_masks`) and the masked model is what is evaluated: it computes what
the compacted network computes, a removed filter being a constant channel whose contribution
every reader gets as bias. :class:`Rebuilt` shows it on the real tensors: with forward hooks,
each compacted layer reads only its kept input channels with its kept weights (the compacted
trace's GEMM), adds the fold of the channels it no longer reads (their values on the
calibration inputs times its weights there: a scalar per output where that is the same at
every position, else a per-pixel map, computed once), and writes only its kept filters —
the removed ones are NaN. A NaN that reaches a kept channel or the output means something
needed a removed channel; a fold that differs between calibration inputs raises. Its
:meth:`Rebuilt.effectual_macs` counts the compacted GEMMs' non-zero products on those tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sparsesim.errors import SparsesimError
from sparsesim.prune.compact import DEPTHWISE, Compaction, role
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.workload.layers import Conv2d, Layer


def compact_masks(done: Compaction, measured: Mapping[str, LayerMasks]) -> dict[str, LayerMasks]:
    """The masks of the compacted layers: compacted weight masks, the measured input masks
    cut to the kept input channels, internal masks as measured."""
    out: dict[str, LayerMasks] = {}
    for layer in done.workload.layers:
        name = layer.name
        lm = measured.get(name)
        x = None if lm is None else lm.inputs
        if x is not None and name in done.kept_inputs:
            x = np.take(x, done.kept_inputs[name], axis=layer.input_channel_axis)
        padded = isinstance(layer, Conv2d) and layer.reads_zeros
        if x is not None and bool(x.all()) and not padded:
            x = None
        w = {t: m for t, m in done.masks.get(name, {}).items() if not m.all()}
        act = {} if lm is None else dict(lm.activations)
        if w or x is not None or act:
            out[name] = LayerMasks(w, x, act)
    return out


def _weight(mod: Any) -> torch.Tensor:
    if hasattr(mod, "weight_mask"):
        return (mod.weight_orig * mod.weight_mask).detach()
    return mod.weight.detach()


def _apply(mod: Any, x: torch.Tensor, w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    if isinstance(mod, torch.nn.Conv2d):
        return F.conv2d(x, w, None, mod.stride, mod.padding, mod.dilation, groups)
    return x @ w.T


class Rebuilt:
    """The compacted network of ``model`` (hooked modules by layer name) per ``done``."""

    def __init__(self, model: torch.nn.Module, modules: Mapping[str, Any],
                 layers: Mapping[str, Layer], done: Compaction, inputs: torch.Tensor) -> None:
        self.model, self.done = model, done
        names = set(done.kept_inputs) | set(done.kept_outputs)
        self.cut: dict[str, dict[str, Any]] = {}
        seen: dict[str, torch.Tensor] = {}
        handles = [modules[n].register_forward_pre_hook(
            lambda m, args, n=n: seen.__setitem__(n, args[0].detach())) for n in names]
        try:
            with torch.no_grad():
                model(inputs)
        finally:
            for h in handles:
                h.remove()
        for name in sorted(names):
            mod, layer = modules[name], layers[name]
            axis = 1 if isinstance(mod, torch.nn.Conv2d) else -1
            w = _weight(mod).double()
            units = w.shape[1] if role(layer) != DEPTHWISE else w.shape[0]
            keep_in = done.kept_inputs.get(name, np.arange(units))
            keep_out = done.kept_outputs.get(name, np.arange(w.shape[0]))
            entry: dict[str, Any] = {"mod": mod, "axis": axis, "keep_in": keep_in,
                                     "keep_out": keep_out, "fold": None,
                                     "depthwise": role(layer) == DEPTHWISE}
            if not entry["depthwise"]:
                absent = np.setdiff1d(np.arange(units), keep_in)
                if absent.size:
                    x = seen[name].double()
                    part = torch.zeros_like(x)
                    idx = torch.as_tensor(absent)
                    part.index_copy_(axis % x.ndim, idx, x.index_select(axis % x.ndim, idx))
                    contrib = _apply(mod, part, w)  # [n, M, E, F] or [..., M]
                    ref = contrib[:1]
                    scale = float(contrib.abs().max()) + 1.0
                    if float((contrib - ref).abs().max()) > 1e-6 * scale:
                        raise SparsesimError("a removed input channel is not the same for "
                                             "every calibration input", layer=name,
                                             field="compaction")
                    fold = ref[0]  # [M, E, F] (conv) or [tokens..., M] (linear)
                    if not isinstance(mod, torch.nn.Conv2d):
                        flat = fold.reshape(-1, fold.shape[-1])
                        if float((flat - flat[:1]).abs().max()) > 1e-6 * scale:
                            raise SparsesimError("a removed input feature differs between "
                                                 "tokens", layer=name, field="compaction")
                        fold = flat[0]
                    entry["fold"] = fold
            self.cut[name] = entry

    def _thin(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The compacted GEMM's input, weights and output (kept channels only)."""
        e = self.cut[name]
        mod, axis = e["mod"], e["axis"] % x.ndim
        ki, ko = torch.as_tensor(e["keep_in"]), torch.as_tensor(e["keep_out"])
        w = _weight(mod)
        xs = x.index_select(axis, ki)
        if e["depthwise"]:
            ws = w[ki]
            y = _apply(mod, xs, ws, groups=len(ki))
            bias = None if mod.bias is None else mod.bias.detach()[ki]
        else:
            ws = w[ko][:, ki]
            y = _apply(mod, xs, ws)
            bias = None if mod.bias is None else mod.bias.detach()[ko]
            if e["fold"] is not None:
                f = e["fold"].to(y.dtype)
                y = y + (f[ko] if not isinstance(mod, torch.nn.Conv2d) else f[ko][None])
        if bias is not None:
            y = y + (bias[None, :, None, None] if isinstance(mod, torch.nn.Conv2d) else bias)
        return xs, ws, y

    @contextlib.contextmanager
    def active(self, counts: dict[tuple[str, str], int] | None = None) -> Iterator[None]:
        """While active, the model computes the compacted network (removed channels NaN);
        ``counts`` gets the compacted GEMMs' effectual MACs."""
        handles = []
        for name, e in self.cut.items():
            def hook(mod: Any, args: tuple[Any, ...], out: torch.Tensor, name: str = name,
                     e: dict[str, Any] = e) -> torch.Tensor:
                xs, ws, y = self._thin(name, args[0])
                if counts is not None:
                    nz = (xs != 0).double()
                    groups = len(e["keep_in"]) if e["depthwise"] else 1
                    ones = _apply(mod, nz, (ws != 0).double(), groups)
                    counts[(name, "conv" if isinstance(mod, torch.nn.Conv2d) else "fc")] = \
                        int(round(float(ones.sum())))
                axis = e["axis"] % out.ndim
                full = torch.full_like(out, float("nan"))
                keep = torch.as_tensor(e["keep_in"] if e["depthwise"] else e["keep_out"])
                return full.index_copy(axis, keep, y.to(out.dtype))
            handles.append(e["mod"].register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> Any:
        with self.active():
            return self.model(x)
