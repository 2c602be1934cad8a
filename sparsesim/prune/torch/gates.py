"""Ideal dynamic gates on a real model: which tokens, heads and channels each input keeps.

The rules :meth:`TorchNet.dynamic_ratios <sparsesim.prune.torch.capture.TorchNet.dynamic_ratios>`
applies to every calibration input (a sequence, an image), as pure functions of the tensors
one forward produces:

* tokens — a token's importance at a layer is the attention probability it receives, mean
  over heads and the alive queries (in a causal layer those at or after it), renormalised
  over the alive keys; it accumulates over the layers (SpAtten's cumulative importance, Wang et al., HPCA 2021). After each layer a
  sequence keeps its tokens whose cumulative importance is at least θ × the mean over its
  alive tokens (the threshold rule of learned token pruning, Kim et al., KDD 2022), or a
  fixed count (the top ones). A pruned token stays pruned; the model's attention modules stop
  attending it (``SelfAttention.key_keep``).
* heads — the norm of a head's output, ``‖ctx_h · W_O[:, h]ᵀ‖₂`` mean over the alive tokens:
  what skipping the head removes from the residual stream (Kobayashi et al., EMNLP 2020, show
  the norm, not the attention pattern, tells which heads matter; a low-entropy head that parks
  its attention on a separator often writes almost nothing).
* channels — the spatially averaged activation after a conv's batch-norm and rectifier
  (``|·|`` when no rectifier follows); a channel counts when above θ × the largest: the gate
  a perfectly trained saliency predictor would learn (feature boosting and suppression, Gao
  et al., ICLR 2019). Where the conv's channels end up is read from the model's ``torch.fx``
  graph: the consumer is recorded only when one conv or linear layer reads them alone
  (through zero padding or pooling, never across an add).

At least one token, head and channel is kept per input and layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Layer

# --- tokens and heads ------------------------------------------------------------------------


def renormalised(p: torch.Tensor, alive: torch.Tensor, *, layer: str | None = None,
                 field: str | None = None) -> torch.Tensor:
    """Attention probabilities ``p`` [b, h, l, l] over the ``alive`` [b, l] keys only (what
    the model computes once the pruned tokens are gone; unchanged if it already masked them).
    Token pruning follows one sequence through every layer: an ``alive`` of another length is
    refused, naming ``layer`` and ``field``."""
    b, l = p.shape[0], p.shape[-1]  # noqa: E741 - sequence length
    if alive.shape != (b, l):
        raise SparsesimError(f"token pruning follows one sequence of {alive.shape[1]} "
                             f"tokens through the attention layers, not {l}", layer=layer,
                             field=field)
    a = alive.to(p.dtype)[:, None, None, :]
    kept = p * a
    return kept / kept.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def received(p: torch.Tensor, alive: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
    """Attention each key receives [b, l]: mean over heads and the alive queries of ``p``
    (already renormalised over the alive keys); sums to 1 over the alive keys. ``causal``:
    mean over the alive queries that can see the key (at or after it), else a late token
    would rank low for being late, and a threshold would keep a prefix."""
    a = alive.to(p.dtype)
    total = (p * a[:, None, :, None]).sum(dim=(1, 2))
    seeing = a.flip(-1).cumsum(dim=-1).flip(-1) if causal else a.sum(dim=-1, keepdim=True)
    return total / (p.shape[1] * seeing.clamp_min(1))


def keep_above(score: torch.Tensor, alive: torch.Tensor, theta: float) -> torch.Tensor:
    """The alive tokens [b, l] whose ``score`` is at least ``theta`` × the mean over the alive
    ones of its row; the best one always."""
    a = alive.to(score.dtype)
    mean = (score * a).sum(dim=-1, keepdim=True) / a.sum(dim=-1, keepdim=True)
    keep = alive & (score >= theta * mean)
    return keep | _best(score, alive)


def keep_top(score: torch.Tensor, alive: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` alive tokens of each row with the highest ``score`` (ties: lower index)."""
    order = torch.argsort(torch.where(alive, -score, torch.inf), dim=-1, stable=True)
    keep = torch.zeros_like(alive)
    keep.scatter_(-1, order[:, :count], True)
    return (keep & alive) | _best(score, alive)


def _best(score: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    best = torch.where(alive, score, -torch.inf).argmax(dim=-1, keepdim=True)
    return torch.zeros_like(alive).scatter_(-1, best, True)


def head_norms(p: torch.Tensor, v: torch.Tensor, w_o: torch.Tensor,
               alive: torch.Tensor) -> torch.Tensor:
    """Norm of each head's output [b, h]: ``‖(p_h v_h) W_O[:, h]ᵀ‖₂`` per token, mean over the
    ``alive`` tokens. ``v`` [b, h, l, d] per query head (grouped K/V already repeated)."""
    h, d = v.shape[1], v.shape[3]
    ctx = p @ v
    out = torch.einsum("bhld,ehd->bhle", ctx, w_o.reshape(w_o.shape[0], h, d).to(ctx.dtype))
    a = alive.to(ctx.dtype)[:, None, :]
    return (out.norm(dim=-1) * a).sum(dim=-1) / a.sum(dim=-1)


def fraction_kept(values: torch.Tensor, threshold: float, *, relative_to: str) -> list[float]:
    """Per row of ``values`` [n, m], the fraction of its entries kept: ``>= threshold × mean``
    (``relative_to="mean"``) or ``> threshold × max`` (``"max"``); at least one."""
    if relative_to == "mean":
        kept = values >= threshold * values.mean(dim=-1, keepdim=True)
    else:
        kept = values > threshold * values.amax(dim=-1, keepdim=True)
    counts = kept.sum(dim=-1).clamp_min(1)
    return [int(c) / values.shape[-1] for c in counts]


def schedule_fractions(schedule: float | Sequence[float], decisions: int) -> list[float]:
    """Fractions of the sequence alive after each of ``decisions`` pruning layers: as given,
    or from the last one, in equal steps in log."""
    if isinstance(schedule, (int, float)):
        return [float(schedule) ** ((k + 1) / decisions) for k in range(decisions)]
    if len(schedule) != decisions:
        raise SparsesimError(f"{len(schedule)} fractions for {decisions} pruning layers (every "
                             "attention layer but the last)", field="token_schedule")
    return [float(f) for f in schedule]


# --- channels -----------------------------------------------------------------------------

_RECTIFIERS: tuple[Any, ...] = (F.relu, F.relu6, torch.relu)
_RECTIFIER_MODULES = (nn.ReLU, nn.ReLU6)
_RECTIFIER_METHODS = ("relu",)
# Modules after which a zero channel is still a zero channel, the same one.
_PASS_MODULES = (nn.ZeroPad2d, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class GatePoint:
    """Where a conv's gate is measured: the fx node after its BN and rectifier; which layer
    reads its channels alone (``None``: several readers, an add, or a reshape in between)."""

    conv: str
    node: str
    rectified: bool
    consumer: str | None


def gate_points(model: nn.Module, layers: Mapping[str, Layer], gated: Sequence[str]
                ) -> tuple[fx.GraphModule, list[GatePoint]]:
    """The ``torch.fx`` graph of ``model`` and the gate point of each conv in ``gated``
    (``layers``: every workload layer by module name, the candidate consumers)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types; the user needs to know which model
        raise SparsesimError(f"channel gating reads the model's graph, and torch.fx cannot "
                             f"trace {type(model).__name__}: {err}", field="dynamic") from None
    modules = dict(gm.named_modules())
    nodes = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}

    def only_user(n: fx.Node) -> fx.Node | None:
        return next(iter(n.users)) if len(n.users) == 1 else None

    def is_module(n: fx.Node | None, kinds: tuple[type, ...]) -> bool:
        return (n is not None and n.op == "call_module"
                and isinstance(modules[str(n.target)], kinds))

    def is_rectifier(n: fx.Node | None) -> bool:
        return n is not None and (
            (n.op == "call_function" and any(n.target is f for f in _RECTIFIERS))
            or (n.op == "call_method" and n.target in _RECTIFIER_METHODS)
            or is_module(n, _RECTIFIER_MODULES))

    points = []
    for name in gated:
        if name not in nodes:
            raise SparsesimError("the conv is not a node of the model's fx graph", layer=name,
                                 field="dynamic")
        point = nodes[name]
        nxt = only_user(point)
        if is_module(nxt, (nn.BatchNorm2d,)):
            assert nxt is not None
            point, nxt = nxt, only_user(nxt)
        rectified = is_rectifier(nxt)
        if rectified:
            assert nxt is not None
            point, nxt = nxt, only_user(nxt)
        while is_module(nxt, _PASS_MODULES):
            assert nxt is not None
            nxt = only_user(nxt)
        consumer = None
        if nxt is not None and nxt.op == "call_module" and str(nxt.target) in layers:
            reader, conv = layers[str(nxt.target)], layers[name]
            # the reader takes the gated channels as its own (attention has no input channels)
            consumer = str(nxt.target) if reader.in_channels == conv.out_channels else None
        points.append(GatePoint(name, point.name, rectified, consumer))
    return gm, points


class _Probe(fx.Interpreter):
    """Runs the graph and keeps, at each gate point, the spatial mean per (image, channel)."""

    def __init__(self, gm: fx.GraphModule, points: Sequence[GatePoint]) -> None:
        super().__init__(gm)
        self.want = {p.node: p.rectified for p in points}
        self.means: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.want:
            x = out.detach().double()
            self.means[n.name] = (x if self.want[n.name] else x.abs()).mean(dim=(2, 3))
        return out


def channel_means(gm: fx.GraphModule, points: Sequence[GatePoint],
                  inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Spatially averaged activation [n, m] at each conv's gate point, on ``inputs``."""
    probe = _Probe(gm, points)
    probe.run(inputs)
    return {p.conv: probe.means[p.node] for p in points}


class _Gate(fx.Interpreter):
    """Runs the graph and zeroes, at each gate point, the channels of an image whose spatial
    mean is at or below ``theta`` × the largest (the gate :func:`fraction_kept` counts)."""

    def __init__(self, gm: fx.GraphModule, points: Sequence[GatePoint], theta: float) -> None:
        super().__init__(gm)
        self.want = {p.node: p.rectified for p in points}
        self.theta = theta

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.want:
            x = out.detach().double()
            means = (x if self.want[n.name] else x.abs()).mean(dim=(2, 3))
            keep = means > self.theta * means.amax(dim=-1, keepdim=True)
            out = out * keep.to(out.dtype)[:, :, None, None]
        return out


def gated_forward(gm: fx.GraphModule, points: Sequence[GatePoint], inputs: torch.Tensor,
                  theta: float) -> torch.Tensor:
    """The model's output with every gate point's weak channels zeroed per image: what the
    network computes when each input skips the channels its ideal gate turns off."""
    return _Gate(gm, points, theta).run(inputs)
