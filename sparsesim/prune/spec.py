"""What to prune and how: one frozen :class:`PruneSpec` per pruning run.

Counting conventions (the ones users know from ``torch.nn.utils.prune``):

* ``sparsity`` is the *amount removed*, a fraction in [0, 1): of the elements of a tensor
  (``unstructured``), of its filters, input channels or k×k blocks, of an attention layer's
  heads, of its tokens, of its keys/values. The count removed is ``round(sparsity · n)`` with
  Python's ``round`` (half to even), exactly as ``torch.nn.utils.prune`` computes
  ``nparams_toprune`` (:mod:`sparsesim.rules.keep`, the one count rule); at least one head,
  token, key or channel is always kept.
* A mask is ``True`` where the weight is *kept* (torch's ``weight_mask``: 1 keeps, 0 prunes).
* ``nm = (n, m)`` keeps ``n`` of every ``m`` consecutive weights along the reduction axis K
  (the GEMM's K, ordered as the lowering orders it: conv ``(c, r, s)``); a last, shorter
  group keeps ``min(n, its length)`` (:mod:`sparsesim.rules.nm`). ``sparsity`` is ignored
  for ``nm``. ``nm_layout = "channel"`` groups instead along the input channels at each
  kernel tap (NVIDIA ASP's layout: ``m`` consecutive channels ``c`` of one ``(r, s)``), the
  same groups as ``flat`` for layers whose input channel spans one K column (linear,
  attention, 1×1 convs); a tap's last short group keeps ``min(n, its length)``.
* Ties (equal scores) are broken by position: the lower flat index goes first.
* With a :class:`Regularizer` the model is first trained with a sparsity-inducing penalty
  over the granularity's units (``sparsesim.prune.torch.regularize``); the units it zeroed are
  pruned, then ``sparsity`` is a target the criterion cuts to if the zeros fall short
  (``sparsity = 0``: exactly the zeros).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sparsesim.errors import SparsesimError
from sparsesim.rules.nm import check_ratio

#: Weight granularities keep the layer shapes and zero the pruned weights in the masks;
#: shape granularities shrink the layers (the trace stores the reduced shapes).
WEIGHT_GRANULARITIES = ("unstructured", "nm", "filter", "channel", "block")
SHAPE_GRANULARITIES = ("head", "token", "kv")
#: Structured granularities whose removals leave the lowered shapes (``compact``); with
#: ``compact = False`` they keep the masked, uncompacted shapes.
COMPACTING = ("filter", "channel", "block", "head")
GRANULARITIES = WEIGHT_GRANULARITIES + SHAPE_GRANULARITIES
#: Granularities whose units hold several weights, scored by the power mean of order ``norm``.
NORMED = ("filter", "channel", "block", "head")
SCOPES = ("layer", "global")
COMPARE = ("tensor", "row")
DISTRIBUTIONS = ("normal", "uniform", "laplace")
#: How calibration statistics are measured on a real model (``calibration``): in one pass of
#: the dense model, or block by block on the already pruned model (Wanda's reference code).
CALIBRATIONS = ("once", "sequential")
#: Where N:M groups run (``nm_layout``): along the flattened K in the lowering's order, or
#: along input channels at each kernel tap (ASP).
NM_LAYOUTS = ("flat", "channel")
#: The penalty a regularized run trains with, by granularity: single weights → L1; whole
#: filters or input channels → group lasso (L1 is group lasso over groups of one weight).
PENALTIES = {"unstructured": "l1", "filter": "group_lasso", "channel": "group_lasso"}


@dataclass(frozen=True, slots=True)
class Regularizer:
    """Sparsity-inducing training before pruning (``sparsesim.prune.torch.regularize``).

    The penalty is ``lam · Σ_g √|g| · ‖w_g‖₂`` over the units ``g`` of the spec's granularity
    (:data:`PENALTIES`), per unskipped weight tensor; ``lam`` is in loss units per unit of
    weight norm. ``proximal`` applies it as a (group) soft-threshold after every optimizer
    step, which leaves exact zeros; otherwise its subgradient is added to the loss, which
    leaves weights near zero. A unit counts as zero (pruned) when the root-mean-square of its
    weights is at most ``tol`` (a single weight: ``|w| <= tol``); ``0`` keeps exact zeros only.
    """

    lam: float
    proximal: bool = True
    tol: float = 0.0

    def __post_init__(self) -> None:
        for name, low in (("lam", "> 0"), ("tol", ">= 0")):
            v = getattr(self, name)
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    or v < 0 or (name == "lam" and v == 0)):
                raise SparsesimError(f"must be a finite number {low}, got {v!r}", field=name)
        if not isinstance(self.proximal, bool):
            raise SparsesimError(f"must be true or false, got {self.proximal!r}",
                                 field="proximal")


@dataclass(frozen=True, slots=True)
class PruneSpec:
    """One pruning run.

    ``criterion`` scores weights (``sparsesim.prune.criteria.CRITERIA``); ``granularity`` says
    what is removed together; ``scope`` ``"layer"`` prunes every weight tensor to the same
    sparsity, ``"global"`` ranks the units of all tensors together (sizes differ, so unit
    scores are means: an L1 norm divided by the unit's size). ``compare = "row"`` ranks the
    weights of each output row separately (Wanda's per-output comparison; unstructured only);
    ``None`` takes the criterion's own group (:attr:`Criterion.compare`: ``"row"`` for Wanda,
    as its paper defines it) where it applies — unstructured, layer scope — else ``"tensor"``.
    ``norm`` is the order ``p >= 1`` of the norm a structured unit (filter, channel, block,
    head) is scored by: the power mean ``(mean over the unit of s^p)^(1/p)`` of its weights'
    scores ``s`` — with magnitude, ``p = 1`` is the L1 norm and ``p = 2`` the L2 norm, each
    over its unit's size (``size`` resp. ``√size``), so that units of different sizes compare
    globally on one scale.
    ``nm_layout`` says where N:M groups run (``flat``: along K as the lowering orders it;
    ``channel``: along input channels at each kernel tap, ASP's layout). ``skip`` lists layer names (fnmatch patterns) left dense. ``distribution`` is the law of
    synthetic weights when no real weights are given (Kaiming-scaled, seeded per layer).
    ``token_layers`` are the indices (among the attention layers) where token pruning drops
    ``sparsity`` of the tokens; ``None`` means every attention layer. ``regularizer`` trains
    the model with L1 (unstructured) or group lasso (filter, channel) first: real models only.
    ``compact`` (filter, channel, block, head) removes what is pruned from the shapes along
    the workload's graph (``sparsesim.prune.compact``); ``False`` keeps the masked shapes,
    for hardware that cannot compact. ``calibration = "sequential"`` measures a graph-captured
    model's statistics block by block, each block on the inputs of the already pruned earlier
    blocks (``sparsesim.prune.torch.sequential``; Wanda, layer scope); ``"once"``: one pass
    of the model as it is.
    """

    criterion: str = "magnitude"
    granularity: str = "unstructured"
    sparsity: float = 0.5
    nm: tuple[int, int] = (2, 4)
    nm_layout: str = "flat"
    block: int = 4
    scope: str = "layer"
    compare: str | None = None
    norm: float = 1
    skip: tuple[str, ...] = ()
    token_layers: tuple[int, ...] | None = None
    distribution: str = "normal"
    seed: int = 0
    regularizer: Regularizer | None = None
    compact: bool = True
    calibration: str = "once"

    def __post_init__(self) -> None:
        from sparsesim.prune.criteria import CRITERIA  # the registry lives with the functions

        if self.criterion not in CRITERIA:
            raise SparsesimError(f"unknown criterion {self.criterion!r}; expected one of "
                                 f"{', '.join(CRITERIA)}", field="criterion")
        _one_of(self.granularity, GRANULARITIES, "granularity")
        _one_of(self.scope, SCOPES, "scope")
        if self.compare is None:
            own = CRITERIA[self.criterion].compare
            fits = self.granularity == "unstructured" and self.scope == "layer"
            object.__setattr__(self, "compare", own if fits else "tensor")
        _one_of(str(self.compare), COMPARE, "compare")
        p = self.norm
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 1 <= p < math.inf:
            raise SparsesimError(f"must be a finite number >= 1, got {p!r}", field="norm")
        if p != 1 and self.granularity not in NORMED:
            raise SparsesimError(f"the unit norm scores {', '.join(NORMED)} units; "
                                 f"{self.granularity} pruning ranks single weights (or groups "
                                 "of tokens/keys by position), so a norm would change nothing",
                                 field="norm")
        _one_of(self.distribution, DISTRIBUTIONS, "distribution")
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise SparsesimError(f"must be in [0, 1), got {s!r}", field="sparsity")
        check_ratio(self.nm, field="nm")
        _one_of(self.nm_layout, NM_LAYOUTS, "nm_layout")
        _one_of(self.calibration, CALIBRATIONS, "calibration")
        if self.calibration == "sequential" and (CRITERIA[self.criterion].needs != "act_norms"
                                                 or self.scope != "layer"):
            raise SparsesimError(f"sequential calibration re-measures each block's inputs on "
                                 f"the pruned model: it needs a criterion that reads them "
                                 f"(wanda, not {self.criterion!r}) and scope 'layer'",
                                 field="calibration")
        if self.nm_layout != "flat" and self.granularity != "nm":
            raise SparsesimError(f"the N:M layout is for granularity 'nm', not "
                                 f"{self.granularity!r}", field="nm_layout")
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise SparsesimError(f"must be a positive integer, got {self.block!r}",
                                 field="block")
        if self.compare == "row" and self.granularity != "unstructured":
            raise SparsesimError("per-row comparison is for unstructured pruning",
                                 field="compare")
        if self.scope == "global" and (self.granularity == "nm" or self.compare == "row"
                                       or self.granularity in SHAPE_GRANULARITIES):
            raise SparsesimError(f"{self.granularity} pruning compares locally (per group, row "
                                 "or layer): use scope 'layer'", field="scope")
        if not isinstance(self.compact, bool):
            raise SparsesimError(f"must be true or false, got {self.compact!r}",
                                 field="compact")
        if not self.compact and self.granularity not in COMPACTING:
            raise SparsesimError(f"{self.granularity} pruning has no shapes to keep: keeping "
                                 f"the shape is for {', '.join(COMPACTING)}", field="compact")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise SparsesimError(f"must be a non-negative integer, got {self.seed!r}",
                                 field="seed")
        if self.token_layers is not None and self.granularity != "token":
            raise SparsesimError(f"token_layers choose where token pruning drops tokens; "
                                 f"granularity {self.granularity!r} would ignore them",
                                 field="token_layers")
        if self.regularizer is not None:
            if not isinstance(self.regularizer, Regularizer):
                raise SparsesimError(f"must be a Regularizer, got {self.regularizer!r}",
                                     field="regularizer")
            if self.granularity not in PENALTIES:
                raise SparsesimError(
                    f"regularization penalizes {', '.join(PENALTIES)} units, not "
                    f"{self.granularity!r}", field="granularity")

    @property
    def penalty(self) -> str | None:
        """``"l1"``, ``"group_lasso"`` or ``None`` (no regularized training)."""
        return None if self.regularizer is None else PENALTIES[self.granularity]

    def as_dict(self) -> dict[str, object]:
        """JSON-able parameters for the trace's ``meta.method``."""
        out: dict[str, object] = {
            "criterion": self.criterion, "granularity": self.granularity,
            "scope": self.scope, "seed": self.seed}
        if self.granularity == "nm":
            out["nm"] = f"{self.nm[0]}:{self.nm[1]}"
            if self.nm_layout != "flat":
                out["nm_layout"] = self.nm_layout
        else:
            out["sparsity"] = self.sparsity
        if self.granularity == "block":
            out["block"] = self.block
        if self.norm != 1:
            out["norm"] = self.norm
        if self.granularity in COMPACTING:
            out["compact"] = self.compact
        if self.compare != "tensor":
            out["compare"] = self.compare
        if self.skip:
            out["skip"] = list(self.skip)
        if self.token_layers is not None:
            out["token_layers"] = list(self.token_layers)
        if self.calibration != "once":
            out["calibration"] = self.calibration
        if self.regularizer is not None:
            r = self.regularizer
            out["regularizer"] = {"penalty": self.penalty, "lam": r.lam,
                                  "proximal": r.proximal, "tol": r.tol}
        return out


#: ``KIND:VALUE`` of ``sparsesim prune --dynamic``: the :class:`DynamicSpec` field each sets.
DYNAMIC_POLICIES = {"tokens": "token_threshold", "tokens-fixed": "token_schedule",
                    "heads": "head_threshold", "channels": "channel_threshold"}


@dataclass(frozen=True, slots=True)
class DynamicSpec:
    """Per-input (dynamic) keep ratios to measure on a real model's calibration inputs
    (``TorchNet.dynamic_ratios``); ``None`` leaves that kind out.

    * ``token_threshold`` θ ≥ 0: after each attention layer but the last, a sequence keeps
      the tokens whose cumulative importance (the attention they received, SpAtten) is at
      least θ × its mean over the tokens still alive (learned token pruning's rule): the
      ratio varies with the input.
    * ``token_schedule``: instead, fixed fractions of the sequence alive after each attention
      layer but the last (non-increasing), the top tokens by the same importance; one number
      is the fraction after the last, reached in equal steps in log. The same for every
      input: the control.
    * ``head_threshold`` τ ≥ 0: an input skips a head whose output norm (its context through
      its slice of ``W_O``, mean over the alive tokens) is below τ × the layer's mean.
    * ``channel_threshold`` θ in [0, 1): a conv computes an output channel for an image when
      the channel's spatially averaged activation after its BN and rectifier exceeds θ × the
      largest of the conv's channels (FBS's ideal gate; θ = 0 skips dead channels only).
    """

    token_threshold: float | None = None
    token_schedule: float | tuple[float, ...] | None = None
    head_threshold: float | None = None
    channel_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("token_threshold", "head_threshold", "channel_threshold"):
            v = getattr(self, name)
            top = 1 if name == "channel_threshold" else math.inf
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not 0 <= v < top):
                raise SparsesimError(f"must be a number in [0, {top:g}), got {v!r}", field=name)
        sched = self.token_schedule
        if sched is not None:
            values = sched if isinstance(sched, tuple) else (sched,)
            if not values or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                 or not 0 < v <= 1 for v in values):
                raise SparsesimError(f"fractions must be in (0, 1], got {sched!r}",
                                     field="token_schedule")
            if any(b > a for a, b in zip(values, values[1:])):
                raise SparsesimError(f"pruned tokens stay pruned: the fractions must not grow, "
                                     f"got {sched!r}", field="token_schedule")
            if self.token_threshold is not None:
                raise SparsesimError("a token threshold or a fixed schedule, not both",
                                     field="token_schedule")
        if all(getattr(self, f) is None for f in DYNAMIC_POLICIES.values()):
            raise SparsesimError("nothing to measure: give a token, head or channel policy",
                                 field="dynamic")

    @classmethod
    def parse(cls, items: Sequence[str]) -> DynamicSpec:
        """``["tokens:0.5", "heads:0.3"]``: ``KIND:VALUE`` with the kinds of
        :data:`DYNAMIC_POLICIES`."""
        fields: dict[str, float] = {}
        for text in items:
            kind, _, value = text.partition(":")
            if kind not in DYNAMIC_POLICIES:
                raise SparsesimError(f"unknown kind {kind!r} in {text!r}; expected one of "
                                     f"{', '.join(DYNAMIC_POLICIES)}", field="--dynamic")
            if DYNAMIC_POLICIES[kind] in fields:
                raise SparsesimError(f"{kind} given twice", field="--dynamic")
            try:
                fields[DYNAMIC_POLICIES[kind]] = float(value)
            except ValueError:
                raise SparsesimError(f"expected KIND:VALUE such as tokens:0.5, got {text!r}",
                                     field="--dynamic") from None
        return cls(**fields)

    def as_dict(self) -> dict[str, object]:
        """JSON-able parameters (the trace's ``meta.dynamic_method``)."""
        out: dict[str, object] = {}
        for name in DYNAMIC_POLICIES.values():
            v = getattr(self, name)
            if v is not None:
                out[name] = list(v) if isinstance(v, tuple) else v
        return out


def _one_of(value: str, allowed: tuple[str, ...], field: str) -> None:
    if value not in allowed:
        raise SparsesimError(f"unknown {field} {value!r}; expected one of {', '.join(allowed)}",
                             field=field)


def is_model_factory(value: str) -> bool:
    """``path/to/file.py:function``: the form a user's own model takes (``--model``), told
    from a shipped model's name without importing PyTorch."""
    path, sep, func = value.rpartition(":")
    return bool(sep and func and path.endswith(".py"))
