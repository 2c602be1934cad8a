"""Dynamic (input-dependent) pruning: what each input of a batch costs, and the spread.

Three kinds, given per input and per layer as keep ratios (fractions in (0, 1]):

* ``channel_keep`` (conv without groups, linear): a small gate predicts which output channels
  to compute for this input (feature boosting and suppression, Gao et al., ICLR 2019). The
  layer computes only the kept filters; the skipped channels are zeros in the input of the
  layer that ``consumers`` names as reading this one's output alone (a plain chain, or
  conv1 → conv2 inside a residual block; not across a residual add, where the shortcut
  fills them in — the workload does not record its graph, so the map is explicit). The
  gate is simulated: its GEMV (the pooled input, ``c → m`` saliencies, per image) on the
  array and a top-k over the ``m`` saliencies in the online pruning unit.
* ``token_keep`` (attention): the fraction of the sequence's tokens still alive at this
  layer (learned token pruning, Kim et al., KDD 2022; SpAtten's cascade, Wang et al.,
  HPCA 2021). Pruned tokens stay pruned: the ratios must not grow along the network, and
  every later layer (attention and linear) runs on the kept tokens. Cost: a top-k over the
  tokens' importance per sequence (accumulating the importance from the attention
  probabilities is adds, not counted).
* ``head_keep`` (attention): the fraction of heads computed for this input; cost: a top-k
  over the heads.

A ratio becomes a count of channels, tokens or heads by
:func:`sparsesim.rules.keep.keep_count`, at least one.

A trace carries them in ``meta["dynamic"] = {"inputs": N, "layers": {name: {kind: [N
ratios]}}, "consumers": {gated layer: the layer reading its output}, "batched": bool}``
(``batched``: the trace's workload is the calibration batch — images ``n``, sequences
``b``, a linear layer's tokens — and input ``i`` runs its ``i``-th element alone);
:func:`synthetic_dynamic` draws seeded ones. :func:`run_dynamic` runs the machine once per
input (``sparsesim.simulate`` reports the distribution: mean, p50, p99, not only the mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.arch.energy import EnergyTable, energy_table
from sparsesim.engine.inference import (
    GemmResult,
    act_prune,
    layer_mappings,
    layers_with_masks,
    online_row,
    run,
    run_gemm,
    run_layers,
)
from sparsesim.checks import MAX_INPUTS, MAX_SEED, real, whole
from sparsesim.engine.memo import GemmMemo
from sparsesim.errors import SparsesimError
from sparsesim.mapping.lower import gemm_operands
from sparsesim.names import RowKind
from sparsesim.pe.online import OnlinePrune
from sparsesim.progress import ProgressFactory
from sparsesim.rules.keep import keep_count
from sparsesim.sparsity.masks import LayerMasks, SparsityModel
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Attention, Layer, Linear
from sparsesim.workload.network import Workload

DYNAMIC_KINDS: Mapping[str, Callable[[Layer], bool]] = {
    "channel_keep": lambda layer: layer.out_channels is not None,  # conv, linear
    "token_keep": lambda layer: isinstance(layer, Attention),
    "head_keep": lambda layer: isinstance(layer, Attention),
}
"""Each kind of keep ratio and which layers it applies to."""


@dataclass(frozen=True)
class DynamicInputs:
    """Per-input keep ratios of ``inputs`` calibration inputs: ``layers[name][kind]`` holds
    one ratio per input."""

    inputs: int
    layers: Mapping[str, Mapping[str, tuple[float, ...]]]
    consumers: Mapping[str, str] = field(default_factory=dict)
    batched: bool = False

    @classmethod
    def from_meta(cls, data: Any, workload: Workload, *, file: str | None = None
                  ) -> DynamicInputs:
        """Read and check ``meta["dynamic"]``: every error names the file, layer and field."""
        def fail(message: str, layer: str | None = None, fld: str = "dynamic") -> None:
            raise SparsesimError(message, file=file, layer=layer, field=fld)

        if not isinstance(data, Mapping) or not isinstance(data.get("layers"), Mapping):
            fail("expected {inputs: N, layers: {name: {kind: [ratios]}}}")
        n = data.get("inputs")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            fail(f"must be a positive integer, got {n!r}", fld="dynamic.inputs")
        names = {layer.name: layer for layer in workload.layers}
        layers: dict[str, dict[str, tuple[float, ...]]] = {}
        for name, kinds in data["layers"].items():
            if name not in names:
                fail("no such layer in the trace's workload", layer=name)
            if not isinstance(kinds, Mapping):
                fail("expected {kind: [ratios]}", layer=name)
            layers[name] = {}
            for kind, values in kinds.items():
                where = f"dynamic.{kind}"
                if kind not in DYNAMIC_KINDS:
                    fail(f"unknown kind; expected one of {', '.join(DYNAMIC_KINDS)}", name, where)
                if not DYNAMIC_KINDS[kind](names[name]):
                    fail(f"{kind} does not apply to a {names[name].op} layer", name, where)
                layer = names[name]
                if kind == "channel_keep" and not layer.cuts_outputs:
                    fail("channel gating of a grouped conv is not modelled", name, where)
                if not isinstance(values, (list, tuple)) or len(values) != n:
                    fail(f"expected {n} ratios, one per input", name, where)
                for v in values:
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                        fail(f"a keep ratio must be in (0, 1], got {v!r}", name, where)
                layers[name][kind] = tuple(float(v) for v in values)
        consumers = data.get("consumers", {})
        if not isinstance(consumers, Mapping):
            fail("expected {gated layer: consumer layer}", fld="dynamic.consumers")
        order = [layer.name for layer in workload.layers]
        for producer, consumer in consumers.items():
            if producer not in names or consumer not in names:
                fail(f"no such layer: {producer if producer not in names else consumer!r}",
                     producer, "dynamic.consumers")
            a, b = names[producer], names[consumer]
            width = a.out_channels
            if b.in_channels != width or order.index(consumer) <= order.index(producer):
                fail(f"{consumer!r} does not read {producer!r}'s {width} output channels after "
                     "it", producer, "dynamic.consumers")
        batched = data.get("batched", False)
        if not isinstance(batched, bool):
            fail(f"must be true or false, got {batched!r}", fld="dynamic.batched")
        if batched:
            for layer in workload.layers:
                if layer.batch % n:
                    fail(f"batch {layer.batch} is not {n} inputs", layer.name,
                         "dynamic.batched")
        out = cls(n, layers, dict(consumers), batched)
        out._check_cascade(workload, file)
        return out

    def _check_cascade(self, workload: Workload, file: str | None) -> None:
        alive = np.ones(self.inputs)
        for layer in workload.layers:
            keep = self.layers.get(layer.name, {}).get("token_keep")
            if keep is None:
                continue
            grows = np.flatnonzero(np.asarray(keep) > alive + 1e-12)
            if grows.size:
                i = int(grows[0])
                raise SparsesimError(
                    f"input {i} keeps {keep[i]:g} of the tokens here but only {alive[i]:g} "
                    "before: pruned tokens stay pruned", file=file, layer=layer.name,
                    field="dynamic.token_keep")
            alive = np.asarray(keep)

    def as_meta(self) -> dict[str, Any]:
        return {"inputs": self.inputs,
                "layers": {k: {kind: list(v) for kind, v in kinds.items()}
                           for k, kinds in self.layers.items()},
                "consumers": dict(self.consumers), "batched": self.batched}

    def keeps(self, i: int) -> dict[str, dict[str, float]]:
        """Input ``i``'s ratios: layer → kind → ratio."""
        return {name: {kind: v[i] for kind, v in kinds.items()}
                for name, kinds in self.layers.items()}


def synthetic_dynamic(workload: Workload, *, inputs: int = 32, channel_keep: float = 1.0,
                      token_keep: float = 1.0, head_keep: float = 1.0, spread: float = 0.1,
                      seed: int = 0, consumers: Mapping[str, str] | None = None
                      ) -> DynamicInputs:
    """Seeded per-input ratios around the given means (Beta-distributed, std ``spread``).

    Channel gates go on every ungrouped conv and linear layer but the last (the classifier's
    outputs are the logits). Tokens cascade: each attention layer keeps a per-input fraction
    of the tokens alive before it, so that the last one keeps ``token_keep`` on average
    (equal steps in log). ``consumers`` as in :class:`DynamicInputs` (default: none).
    """
    rng = np.random.default_rng(seed)

    def beta(mean: float, size: int) -> np.ndarray:
        if mean >= 1:
            return np.ones(size)
        std = min(spread, 0.99 * math.sqrt(mean * (1 - mean)))
        if std <= 0:
            return np.full(size, mean)
        kappa = mean * (1 - mean) / std**2 - 1
        return np.clip(rng.beta(mean * kappa, (1 - mean) * kappa, size), 1e-3, 1.0)

    attention = [layer for layer in workload.layers if isinstance(layer, Attention)]
    step = token_keep ** (1 / max(len(attention), 1))
    alive = np.ones(inputs)
    layers: dict[str, dict[str, tuple[float, ...]]] = {}
    last = workload.layers[-1].name if workload.layers else None
    for layer in workload.layers:
        kinds: dict[str, np.ndarray] = {}
        if isinstance(layer, Attention):
            if token_keep < 1:
                alive = alive * beta(step, inputs)
                kinds["token_keep"] = alive
            if head_keep < 1:
                kinds["head_keep"] = beta(head_keep, inputs)
        elif channel_keep < 1 and layer.name != last and layer.cuts_outputs:
            kinds["channel_keep"] = beta(channel_keep, inputs)
        if kinds:
            layers[layer.name] = {k: tuple(float(x) for x in v) for k, v in kinds.items()}
    return DynamicInputs(inputs, layers, dict(consumers or {}))




@dataclass(frozen=True)
class DynamicModel:
    """Seeded synthetic per-input ratios (:func:`synthetic_dynamic`'s parameters), checked
    when built: a sweep's ``dynamic.FIELD`` names these fields and nothing else."""

    inputs: int = 32
    channel_keep: float = 1.0
    token_keep: float = 1.0
    head_keep: float = 1.0
    spread: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        whole(self.inputs, "dynamic.inputs", low=1, high=MAX_INPUTS)
        whole(self.seed, "dynamic.seed", high=MAX_SEED)
        for name in ("channel_keep", "token_keep", "head_keep"):
            real(getattr(self, name), f"dynamic.{name}", low=0, high=1, low_open=True)
        real(self.spread, "dynamic.spread", low=0)

    def draw(self, workload: Workload, consumers: Mapping[str, str] | None = None
             ) -> DynamicInputs:
        return synthetic_dynamic(workload, inputs=self.inputs, channel_keep=self.channel_keep,
                                 token_keep=self.token_keep, head_keep=self.head_keep,
                                 spread=self.spread, seed=self.seed, consumers=consumers)


def _pick(total: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Which ``count`` of ``total`` channels/heads an input keeps (sorted indices)."""
    return np.sort(rng.choice(total, count, replace=False))


@dataclass(frozen=True)
class _Shaped:
    """A layer as one input runs it, its masks, and what its gate costs: the gate's GEMV
    (channel gating) and the top-k rankings ``(rows, length, kept)`` of the online unit."""

    layer: Layer
    masks: LayerMasks | None
    gate: Layer | None = None
    ranks: tuple[tuple[int, int, int], ...] = ()


def _attention(layer: Attention, masks: LayerMasks | None, tokens: int, heads: int
               ) -> tuple[Attention, LayerMasks | None]:
    """``layer`` on ``tokens`` query tokens and ``heads`` heads (the first ones: which heads
    and tokens an input keeps does not change the counts)."""
    new = replace(layer, l=tokens, heads_kept=heads,
                  kv_len=None if layer.kv_len is None else layer.kv_len - layer.l + tokens)
    if masks is None:
        return new, None
    d = layer.head_dim
    cut = {"q": (slice(0, heads * d), slice(None)), "k": (slice(0, new.e_kv), slice(None)),
           "v": (slice(0, new.e_kv), slice(None)), "o": (slice(None), slice(0, heads * d))}
    weights = {k: np.ascontiguousarray(w[cut[k]]) for k, w in masks.weights.items()}
    inputs = None if masks.inputs is None else masks.inputs[:, :tokens]
    return new, LayerMasks(weights, inputs)


def _element(layer: Layer, masks: LayerMasks | None, i: int, inputs: int
             ) -> tuple[Layer, LayerMasks | None]:
    """Batch element ``i`` of ``inputs`` alone: the layer at batch 1, its input mask's slice."""
    per = layer.batch // inputs
    shaped = layer.with_batch(per)
    if masks is None or masks.inputs is None:
        return shaped, masks
    return shaped, LayerMasks(masks.weights, masks.inputs[i * per:(i + 1) * per])


def _shape_input(layers: list[tuple[Layer, LayerMasks | None]],
                 keeps: dict[str, dict[str, float]], consumers: Mapping[str, str],
                 rng: np.random.Generator) -> list[_Shaped]:
    """The layers as one input (its ``keeps``) runs them, with the gates to simulate."""
    out: list[_Shaped] = []
    alive = 1.0  # fraction of the sequence's tokens still alive
    gated: dict[str, np.ndarray] = {}  # consumer → its producer's kept output channels
    for layer, masks in layers:
        k = keeps.get(layer.name, {})
        inputs = None if masks is None else masks.inputs
        weights = {} if masks is None else dict(masks.weights)
        if layer.name in gated:  # the channels its producer skipped are zeros of its input
            kept_channels = gated.pop(layer.name)
            base = np.ones(layer.input_shape, dtype=bool) if inputs is None else inputs
            view = [1] * base.ndim
            view[layer.input_channel_axis] = kept_channels.size
            inputs = base & kept_channels.reshape(view)
        if isinstance(layer, Attention):
            before = keep_count(layer.l, density=alive, at_least=1)
            alive = k.get("token_keep", alive)
            tokens = keep_count(layer.l, density=alive, at_least=1)
            heads = keep_count(layer.active_heads, density=k.get("head_keep", 1.0), at_least=1)
            m = None if masks is None and inputs is None else LayerMasks(weights, inputs)
            attention, m = _attention(layer, m, tokens, heads)
            ranks = []
            if "token_keep" in k:
                ranks.append((layer.b, before, tokens))
            if "head_keep" in k:
                ranks.append((layer.b, layer.active_heads, heads))
            out.append(_Shaped(attention, m, ranks=tuple(ranks)))
            continue
        if isinstance(layer, Linear) and alive < 1:
            tokens = keep_count(layer.tokens, density=alive, at_least=1)
            layer = replace(layer, tokens=tokens)
            inputs = None if inputs is None else inputs[:tokens]
        keep = k.get("channel_keep")
        if keep is None:
            out.append(_Shaped(layer, None if masks is None and inputs is None
                               else LayerMasks(weights, inputs)))
            continue
        total, c_in = layer.out_channels, layer.in_channels
        assert total is not None and c_in is not None  # DYNAMIC_KINDS: checked on reading
        kept = _pick(total, keep_count(total, density=keep, at_least=1), rng)
        if "w" in weights:
            weights["w"] = np.ascontiguousarray(weights["w"][kept])
        shaped = layer.with_out_channels(kept.size)
        # the gate reads the (pooled) input: in channels → out saliencies per batch element
        gate = Linear(f"{layer.name}.gate", c_in, total, tokens=layer.batch)
        if layer.name in consumers:
            gated[consumers[layer.name]] = np.isin(np.arange(total), kept)
        out.append(_Shaped(shaped, None if masks is None and inputs is None
                           else LayerMasks(weights, inputs), gate=gate,
                           ranks=((gate.tokens, total, kept.size),)))
    return out


def _gate_rows(network: str, s: _Shaped, arch: Arch, table: EnergyTable,
               memo: GemmMemo | None = None) -> list[GemmResult]:
    """The gate's GEMV on the array, then its top-k rankings in the online unit."""
    rows: list[GemmResult] = []
    producer = 0
    if s.gate is not None:
        [ops] = gemm_operands(s.gate, None)
        rows.append(run_gemm(ops, network=network, op="gate", arch=arch, table=table,
                             kind=RowKind.GATE, memo=memo))
        producer = rows[-1].cycles
    for n_rows, length, kept in s.ranks:
        rows.append(online_row(network, s.layer, OnlinePrune("topk"), rows=n_rows,
                               row_len=length, keep=kept, phase="forward",
                               producer_cycles=producer, arch=arch, table=table,
                               kind=RowKind.GATE))
    return rows


@dataclass(frozen=True)
class DynamicRun:
    """What :func:`run_dynamic` returns: the rows of each input's run, and the static run
    (no dynamic pruning) covering ``static_inputs`` inputs."""

    per_input: tuple[tuple[GemmResult, ...], ...]
    static: tuple[GemmResult, ...]
    static_inputs: int


def run_dynamic(workload: Workload, arch: Arch, dynamic: DynamicInputs, *,
                sparsity: SparsityModel | None = None, trace: Trace | None = None,
                seed: int = 0, memo: GemmMemo | None = None,
                progress: ProgressFactory | None = None) -> DynamicRun:
    """Run every input of ``dynamic`` on ``arch`` (static masks from ``trace`` or
    ``sparsity``); which channels and heads an input keeps is drawn with ``seed``. The online
    unit finds activation zeros per input as in the static run (:func:`act_prune`).
    ``memo``: GEMMs identical to one already run (in any input's run) reuse its row;
    ``progress`` gets one update per run: the static one, then each input."""
    base = list(layers_with_masks(workload, sparsity=sparsity, trace=trace))
    for layer, m in base:  # their shapes follow the layer's: a cut would need them cut too
        if m is not None and m.activations:
            raise SparsesimError("dynamic pruning with masked attention internals (Q, K, V, "
                                 "P, O input) is not modelled: drop one of them",
                                 layer=layer.name, field="dynamic")
    name = trace.workload.name if trace is not None else workload.name
    act = act_prune(sparsity, trace)
    table = energy_table(arch)
    mappings = layer_mappings(trace.workload if trace is not None else workload, arch)
    if dynamic.batched:  # each input alone at batch 1, nothing pruned: what it costs static
        static = [r for i in range(dynamic.inputs)
                  for r in run_layers(name, [_element(layer, m, i, dynamic.inputs)
                                             for layer, m in base], arch, act=act, table=table,
                                      memo=memo, mappings=mappings)]
    else:
        static = run(workload, arch, sparsity=sparsity, trace=trace, memo=memo)
    bar = progress(dynamic.inputs + 1, "runs (static, then per input)") if progress else None
    if bar is not None:
        bar.update()
    per_input = []
    for i in range(dynamic.inputs):
        rng = np.random.default_rng([seed, i])
        layers_i = [_element(layer, m, i, dynamic.inputs) for layer, m in base] \
            if dynamic.batched else base
        shaped = _shape_input(layers_i, dynamic.keeps(i), dynamic.consumers, rng)
        rows = run_layers(name, [(s.layer, s.masks) for s in shaped], arch, act=act,
                          table=table, memo=memo, mappings=mappings)
        for s in shaped:
            rows += _gate_rows(name, s, arch, table, memo)
        per_input.append(tuple(rows))
        if bar is not None:
            bar.update()
    return DynamicRun(tuple(per_input), tuple(static),
                      dynamic.inputs if dynamic.batched else 1)
