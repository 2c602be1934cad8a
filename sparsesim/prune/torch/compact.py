"""Compacting a real model the way its trace is compacted, where its graph is known.

The graph of an arbitrary ``torch.nn.Module`` is not known from its modules (a residual add
or a concat lives in ``forward``), so only a plain chain is compacted: an ``nn.Sequential``
whose children are convolutions with ``groups = 1``, linear layers, and per-channel modules
(:data:`PER_CHANNEL`: batch-norm, rectifiers and other element-wise activations, pooling,
flatten, dropout). Its edges are the chain's (:func:`chain_graph`); any other model keeps its
shape and its trace says so (``sparsesim.prune.torch.capture.TorchNet.trace``).

:func:`compact_sequential` cuts the model as ``sparsesim.prune.compact`` cut the trace: each
weight layer keeps the filters the trace kept, and reads only the channels still produced.
A channel that is no longer produced was either unread (its weights zero: nothing changes)
or input-independent (a dead filter's bias through batch-norm and rectifier); its values,
read on the calibration inputs, are folded into the reader's bias, the trace's rule: a
scalar ``b[o] += Σ_taps W[o, j, ·] · v_j`` where that is exact, else a per-pixel bias map
(:class:`FoldedConv2d`, ``conv(map_j, W[:, j])`` with the conv's own padding), so the
compacted model computes what the masked one did, up to float rounding. A channel that is
removed but differs between inputs is a bug in the compaction and raises.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.common_types import _size_2_t

from sparsesim.errors import SparsesimError
from sparsesim.workload.graph import NETWORK_INPUT, Graph, Node

#: modules that keep channel ``j`` in channel ``j`` (or, flatten, in its features)
PER_CHANNEL: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)


def is_chain(model: nn.Module) -> bool:
    """A flat ``nn.Sequential`` of plain convs, linears and :data:`PER_CHANNEL` modules."""
    if not isinstance(model, nn.Sequential):
        return False
    for mod in model.children():
        if isinstance(mod, nn.Conv2d):
            if mod.groups != 1:
                return False
        elif not isinstance(mod, (nn.Linear, *PER_CHANNEL)):
            return False
    return True


def chain_graph(model: nn.Module, layers: Mapping[str, str]) -> Graph | None:
    """The edges of ``model`` if it is a chain (each weight layer reads the previous one; the
    first the network input), else ``None``. ``layers``: bound layer name → op, in order."""
    if not is_chain(model):
        return None
    nodes, prev = [], NETWORK_INPUT
    for name, op in layers.items():
        nodes.append(Node(name, op, (prev,)))
        prev = name
    return Graph(tuple(nodes))


@torch.no_grad()
def compact_sequential(model: nn.Module, inputs: torch.Tensor,
                       kept_outputs: Mapping[str, np.ndarray]) -> nn.Sequential:
    """A copy of the chain ``model`` with only ``kept_outputs`` filters of each named layer
    (all where not named), constants folded (see the module docstring); ``inputs`` are the
    calibration inputs the constants are read on."""
    if not is_chain(model):
        raise SparsesimError("only a plain nn.Sequential chain is compacted", field="model")
    seen: dict[str, torch.Tensor] = {}
    handles = [mod.register_forward_pre_hook(
        lambda m, args, n=name: seen.__setitem__(n, args[0].detach()))
        for name, mod in model.named_children()]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    out: list[tuple[str, nn.Module]] = []
    present: np.ndarray | None = None  # indices (original units) the current tensor still has
    for name, mod in model.named_children():
        x = seen.get(name)
        if x is None:
            raise SparsesimError("module did not run in the forward", layer=name, field="model")
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            new, present = _cut(name, mod, x, present, kept_outputs.get(name))
            out.append((name, new))
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out.append((name, mod if present is None else _cut_norm(mod, present)))
        else:
            if isinstance(mod, nn.Flatten) and present is not None and x.ndim > 2:
                span = int(np.prod(x.shape[2:]))  # PyTorch's (c, h, w) order
                present = (present[:, None] * span + np.arange(span)[None, :]).ravel()
            out.append((name, mod))
    return nn.Sequential(OrderedDict(out))


class FoldedConv2d(nn.Conv2d):
    """A conv plus a fixed per-pixel bias map ``[M, E, F]``: the exact fold of an
    input-independent channel where padding meets it (see the module docstring)."""

    def __init__(self, *args: Any, bias_map: torch.Tensor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("bias_map", bias_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + cast(torch.Tensor, self.bias_map)


def _cut(name: str, mod: nn.Conv2d | nn.Linear, x: torch.Tensor, present: np.ndarray | None,
         keep_out: np.ndarray | None) -> tuple[nn.Module, np.ndarray]:
    """The layer reading only ``present`` input units, writing only ``keep_out`` filters,
    with the absent inputs' contribution in its bias (a map where it varies over pixels);
    returns it and its kept filters."""
    w = mod.weight.detach()
    units = w.shape[1]
    have = np.arange(units) if present is None else present
    absent = torch.as_tensor(np.setdiff1d(np.arange(units), have))
    x = x.double()
    conv = isinstance(mod, nn.Conv2d)
    fold: torch.Tensor | None = None  # [M] or [M, E, F]
    if absent.numel():
        part = x[:, absent] if conv else x[..., absent]
        # input-independent on the calibration inputs: the same for every sample (and token)
        rows = part.reshape(-1, *part.shape[-1:]) if not conv else part
        spread = float((rows.amax(dim=0) - rows.amin(dim=0)).abs().max())
        if spread > 1e-5 * (float(rows.abs().max()) + 1.0):
            raise SparsesimError("an input channel was removed but is not the same for every "
                                 "input (neither unread nor constant)", layer=name,
                                 field="compaction")
        w_abs = w.double()[:, absent]
        if conv:
            assert isinstance(mod, nn.Conv2d)
            out = F.conv2d(part[:1], w_abs, None, mod.stride, cast(Any, mod.padding),
                           mod.dilation)[0]
            flat = out.reshape(out.shape[0], -1)
            fold = flat[:, 0] if bool(((flat.amax(1) - flat.amin(1)).abs() <= 1e-9 * (
                flat.abs().amax(1) + 1.0)).all()) else out
        else:
            fold = w_abs @ rows[0]
    kept = np.arange(w.shape[0]) if keep_out is None else np.asarray(keep_out)
    ko, ki = torch.as_tensor(kept), torch.as_tensor(have)
    scalar = fold is not None and fold.ndim == 1 and bool((fold != 0).any())
    has_bias = mod.bias is not None or scalar
    new: nn.Conv2d | nn.Linear
    if isinstance(mod, nn.Conv2d):
        args = (len(have), len(kept), cast(_size_2_t, mod.kernel_size),
                cast(_size_2_t, mod.stride), cast(Any, mod.padding),
                cast(_size_2_t, mod.dilation))
        if fold is not None and fold.ndim == 3:
            new = FoldedConv2d(*args, bias=mod.bias is not None,
                               bias_map=fold[ko].to(w.dtype).contiguous())
        else:
            new = nn.Conv2d(*args, bias=has_bias)
    else:
        new = nn.Linear(len(have), len(kept), bias=has_bias)
    new.weight.data.copy_(w[ko][:, ki])
    if new.bias is not None:
        bias = torch.zeros(w.shape[0], dtype=torch.float64) if mod.bias is None \
            else mod.bias.detach().double()
        if scalar:
            assert fold is not None
            bias = bias + fold
        new.bias.data.copy_(bias[ko].to(w.dtype))
    return new.eval(), kept


def _cut_norm(mod: nn.BatchNorm1d | nn.BatchNorm2d, present: np.ndarray) -> nn.Module:
    idx = torch.as_tensor(present)
    new = type(mod)(len(present), eps=mod.eps, momentum=mod.momentum, affine=mod.affine,
                    track_running_stats=mod.track_running_stats)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        src = getattr(mod, attr)
        if src is not None:
            getattr(new, attr).data.copy_(src.detach()[idx])
    return new.eval()
