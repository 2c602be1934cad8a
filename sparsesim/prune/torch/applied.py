"""The evaluated model carries every pruning its trace records, so its accuracy is the pruned
network's, not the dense one's.

Weight masks (every weight granularity) and removed channels (slimming; structured pruning
compacted along a chain, ``sparsesim.prune.torch.compact``) are in the model itself. The rest acts in the forward, through hooks on a :class:`TorchNet`'s modules:

* ``heads`` — a pruned head's output is zeroed before the O projection (what removing the
  head from Q, K, V, QKᵀ, PV and O computes); the heads kept are the trace's ``kept_heads``.
* ``tokens`` — after each attention layer the sequence keeps the trace's ``tokens_kept``
  tokens, those with the largest cumulative attention received (SpAtten's importance, the rule
  of the dynamic token gate, ``gates.received`` / ``gates.keep_top``), chosen per input. A
  dropped token is attended by no later layer (``SelfAttention.key_keep``) and is left out of
  the output: the metric reads only the tokens alive after the last attention layer
  (:attr:`Forward.alive`) — what a network that physically dropped them outputs.
* ``kv`` — each attention layer attends only its ``kv_kept`` keys/values, per input those
  receiving the most attention in that layer in a first forward without KV pruning (a
  heavy-hitter rule, H2O-like). A query still attends itself (no empty softmax row: the one
  key a causal first query can see), so a query may see one key more than the simulator's
  ``kv_len``.
* ``act_prune`` — the same thresholding / top-k / N:M the trace's input masks were measured
  with, applied in forward pre-hooks (``TorchNet._hooks``), the network input left dense.
* ``attn_prune`` — top-k attention (``TorchNet.set_attention_top_k``, the trace's
  ``meta["attn_prune"]``): it lives in the attention modules themselves, so the forward
  applies it as it is; it is listed so that the number says it includes it.
* dynamic gates (:class:`~sparsesim.prune.spec.DynamicSpec`), per input with the rules of
  ``gates``: tokens as above but by threshold or fixed fractions (none after the last layer,
  as ``TorchNet.dynamic_ratios`` measures them); heads whose output norm is below τ × the
  layer's mean are zeroed; a conv's output channels at or below θ × its largest spatial mean
  (after BN and rectifier) are zeroed, through the model's ``torch.fx`` graph.

:meth:`Applied.includes` names what a number measured this way includes; the pipelines put
that list in each accuracy row (``includes``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from sparsesim.errors import SparsesimError
from sparsesim.prune.activations import ActPrune
from sparsesim.prune.spec import WEIGHT_GRANULARITIES, DynamicSpec, PruneSpec
from sparsesim.prune.torch import gates
from sparsesim.prune.torch.capture import TorchNet, _effective
from sparsesim.rules.keep import keep_count
from sparsesim.workload.layers import Attention, Conv2d

Call = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Applied:
    """What the evaluated forward applies beyond the model's own weights.

    ``weights``: the weight granularity already applied as masks (``None``: no weight
    pruning, e.g. sparsity 0); ``removed``: structure cut out of the model itself
    (``"slimming"``, ``"compaction"``); ``heads``, ``tokens``, ``kv``: per attention layer, the
    kept query-head indices, the tokens alive after it, the keys kept; ``attn_prune``: how the
    attention probabilities are pruned (``"topk"``; ``None``: full attention).
    """

    weights: str | None = None
    removed: str | None = None
    heads: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    tokens: Mapping[str, int] = field(default_factory=dict)
    kv: Mapping[str, int] = field(default_factory=dict)
    act_prune: ActPrune | None = None
    dynamic: DynamicSpec | None = None
    attn_prune: str | None = None

    @classmethod
    def of(cls, spec: PruneSpec | None, meta: Mapping[str, Any], *,
           act_prune: ActPrune | None = None, dynamic: DynamicSpec | None = None,
           removed: str | None = None) -> Applied:
        """From a run's spec and its trace's ``meta["layers"]`` (kept heads, tokens, KV)."""
        layers: Mapping[str, Mapping[str, Any]] = meta.get("layers", {})
        weights = None
        if spec is not None and spec.granularity in WEIGHT_GRANULARITIES and (
                spec.granularity == "nm" or spec.sparsity > 0 or spec.regularizer is not None):
            weights = spec.granularity
        gran = None if spec is None else spec.granularity
        # only the layers that lose something: a pruning that removes nothing is not included
        heads = {n: tuple(int(i) for i in r["kept_heads"]) for n, r in layers.items()
                 if gran == "head" and "kept_heads" in r and r["heads_kept"] < r["heads"]}
        tokens = {n: int(r["tokens_kept"]) for n, r in layers.items()
                  if gran == "token" and "tokens_kept" in r and r["tokens_kept"] < r["tokens"]}
        kv = {n: int(r["kv_kept"]) for n, r in layers.items()
              if gran == "kv" and "kv_kept" in r and r["kv_kept"] < r["kv"]}
        attn = meta.get("attn_prune")
        return cls(weights, removed, heads, tokens, kv, act_prune, dynamic,
                   None if not attn else str(attn["kind"]))

    def includes(self) -> list[str]:
        """The prunings a metric measured with this forward includes, e.g.
        ``["weights:unstructured", "act_prune:topk"]``; ``[]``: the dense model."""
        out = []
        if self.weights is not None:
            out.append(f"weights:{self.weights}")
        if self.removed is not None:
            out.append(f"removed:{self.removed}")
        for name, kind in (("heads", self.heads), ("tokens", self.tokens), ("kv", self.kv)):
            if kind:
                out.append(name)
        if self.act_prune is not None:
            out.append(f"act_prune:{self.act_prune.kind}")
        if self.attn_prune is not None:
            out.append(f"attn_prune:{self.attn_prune}")
        d = self.dynamic
        if d is not None:
            if d.token_threshold is not None or d.token_schedule is not None:
                out.append("dynamic:tokens")
            if d.head_threshold is not None:
                out.append("dynamic:heads")
            if d.channel_threshold is not None:
                out.append("dynamic:channels")
        return out


@dataclass
class Forward:
    """The pruned model's output and, with token pruning, the tokens alive at its end [b, l]
    (``None``: every token)."""

    output: torch.Tensor
    alive: torch.Tensor | None


def _default_call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


@torch.no_grad()
def forward(net: TorchNet, applied: Applied, x: torch.Tensor,
            call: Call = _default_call) -> Forward:
    """Run ``x`` through ``net``'s model with everything ``applied`` says (see the module
    docstring). ``call(model, x)`` is what the metric reads (default ``model(x)``; a
    sentence encoder's token states before pooling, say)."""
    kv_keep: dict[str, torch.Tensor] = {}
    if applied.kv:
        received: dict[str, torch.Tensor] = {}
        _run(net, replace(applied, kv={}), x, call, received=received)
        for name, count in applied.kv.items():
            r = received[name]
            kv_keep[name] = gates.keep_top(r, torch.ones_like(r, dtype=torch.bool),
                                           min(count, r.shape[-1]))
    return _run(net, applied, x, call, kv_keep=kv_keep)


def _run(net: TorchNet, applied: Applied, x: torch.Tensor, call: Call, *,
         kv_keep: Mapping[str, torch.Tensor] | None = None,
         received: dict[str, torch.Tensor] | None = None) -> Forward:
    attention = {n: b for n, b in net.bound.items() if isinstance(b.layer, Attention)}
    causal = {n: b.layer.causal for n, b in net.bound.items() if isinstance(b.layer, Attention)}
    names = list(attention)
    for n in list(applied.heads) + list(applied.tokens) + list(applied.kv):
        if n not in attention:
            raise SparsesimError("the trace prunes an attention layer the model lacks",
                                 layer=n, field="layers")
    d = applied.dynamic
    dyn_tokens = d is not None and (d.token_threshold is not None
                                    or d.token_schedule is not None)
    fractions = (gates.schedule_fractions(d.token_schedule, len(names) - 1)
                 if d is not None and d.token_schedule is not None else None)
    state: dict[str, torch.Tensor] = {}
    head_mask: dict[str, torch.Tensor] = {}
    handles = []

    def set_key_keep(n: str, alive: torch.Tensor | None) -> None:
        mod = attention[n].module
        keep = None if kv_keep is None else kv_keep.get(n)
        if alive is not None:
            keep = alive if keep is None else keep & alive
        if hasattr(mod, "key_keep"):
            mod.key_keep = keep

    def on_taps(n: str, xs: tuple[torch.Tensor, ...]) -> None:
        i = names.index(n)
        p, v = xs[2].detach().double(), xs[3].detach().double()
        b, l = p.shape[0], p.shape[-1]  # noqa: E741 - sequence length
        alive = state.get("alive", torch.ones(b, l, dtype=torch.bool))
        p = gates.renormalised(p, alive, layer=n, field="tokens")
        if received is not None:
            received[n] = gates.received(p, alive, causal=causal[n])
        h = p.shape[1]
        keep_h = torch.ones(b, h, dtype=torch.bool)
        if n in applied.heads:
            static = torch.zeros(h, dtype=torch.bool)
            static[list(applied.heads[n])] = True
            keep_h &= static[None, :]
        if d is not None and d.head_threshold is not None:
            norms = gates.head_norms(p, v, _effective(attention[n].tensors["o"]), alive)
            dyn = norms >= d.head_threshold * norms.mean(dim=-1, keepdim=True)
            dyn |= torch.zeros_like(dyn).scatter_(-1, norms.argmax(dim=-1, keepdim=True), True)
            keep_h &= dyn
        if not bool(keep_h.all()):
            head_mask[n] = keep_h
        count: int | None = None
        if n in applied.tokens:
            count = applied.tokens[n]
        elif dyn_tokens and i < len(names) - 1:
            count = -1  # the gate's own rule
        if count is None:
            return
        score = state.setdefault("score", torch.zeros(b, l, dtype=torch.float64))
        score += gates.received(p, alive, causal=causal[n])
        if count >= 0:
            alive = gates.keep_top(score, alive, count)
        elif fractions is not None:
            alive = gates.keep_top(score, alive, keep_count(l, density=fractions[i], at_least=1))
        else:
            assert d is not None and d.token_threshold is not None
            alive = gates.keep_above(score, alive, d.token_threshold)
        state["alive"] = alive
        for later in names[i + 1:]:
            set_key_keep(later, alive)

    def on_o(n: str, args: tuple[Any, ...]) -> Any:
        if n not in head_mask:
            return None
        ctx = args[0]
        b, _, hd = ctx.shape
        mask = head_mask[n].to(ctx.dtype)
        mask = mask.repeat_interleave(hd // mask.shape[1], dim=1)[:, None, :]
        return (ctx * mask, *args[1:])

    for n, bnd in attention.items():
        set_key_keep(n, None)
        if getattr(bnd.module, "taps", None) is None:
            raise SparsesimError("the attention module has no taps sub-module (see "
                                 "models.SelfAttention): heads, tokens and KV entries cannot "
                                 "be pruned in its forward", layer=n, field="model")
        handles.append(bnd.module.taps.register_forward_hook(
            lambda mod, args, out, n=n: on_taps(n, args)))
        handles.append(bnd.module.o.register_forward_pre_hook(
            lambda mod, args, n=n: on_o(n, args)))
    try:
        with net._hooks(act_prune=applied.act_prune, act_skip=()):
            if d is not None and d.channel_threshold is not None:
                out = _gated_channels(net, d.channel_threshold, x, call)
            else:
                out = call(net.model, x)
    finally:
        for h in handles:
            h.remove()
        for n in names:
            if hasattr(attention[n].module, "key_keep"):
                attention[n].module.key_keep = None
    return Forward(out, state.get("alive"))


def _gated_channels(net: TorchNet, theta: float, x: torch.Tensor, call: Call) -> torch.Tensor:
    """The forward with each ungrouped conv's (but the last layer's) weak channels zeroed
    per input, as ``TorchNet.dynamic_ratios`` gates them."""
    if call is not _default_call:
        raise SparsesimError("channel gates run the model's own forward graph",
                             field="channel_threshold")
    last = next(reversed(net.bound))
    gated = [n for n, b in net.bound.items() if isinstance(b.layer, Conv2d)
             and b.layer.groups == 1 and n != last]
    gm, points = gates.gate_points(net.model, {n: b.layer for n, b in net.bound.items()},
                                   gated)
    return gates.gated_forward(gm, points, x, theta)
