"""What to prune and how: one frozen :class:`PruneSpec` per pruning run.

Counting conventions (the ones users know from ``torch.nn.utils.prune``):

* ``sparsity`` is the *amount removed*, a fraction in [0, 1): of the elements of a tensor
  (``unstructured``), of its filters, input channels or k×k blocks, of an attention layer's
  heads, of its tokens, of its keys/values. The count removed is ``round(sparsity · n)`` with
  Python's ``round`` (half to even), exactly as ``torch.nn.utils.prune`` computes
  ``nparams_toprune``; at least one unit is always kept.
* A mask is ``True`` where the weight is *kept* (torch's ``weight_mask``: 1 keeps, 0 prunes).
* ``nm = (n, m)`` keeps ``n`` of every ``m`` consecutive weights along the reduction axis K
  (the GEMM's K, ordered as the lowering orders it: conv ``(c, r, s)``); a last, shorter
  group keeps ``min(n, its length)``. ``sparsity`` is ignored for ``nm``.
* Ties (equal scores) are broken by position: the lower flat index goes first.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.errors import SparsesimError

#: Weight granularities keep the layer shapes and zero the pruned weights in the masks;
#: shape granularities shrink the layers (the trace stores the reduced shapes).
WEIGHT_GRANULARITIES = ("unstructured", "nm", "filter", "channel", "block")
SHAPE_GRANULARITIES = ("head", "token", "kv")
GRANULARITIES = WEIGHT_GRANULARITIES + SHAPE_GRANULARITIES
SCOPES = ("layer", "global")
COMPARE = ("tensor", "row")
DISTRIBUTIONS = ("normal", "uniform", "laplace")


@dataclass(frozen=True, slots=True)
class PruneSpec:
    """One pruning run.

    ``criterion`` scores weights (``sparsesim.prune.criteria.CRITERIA``); ``granularity`` says
    what is removed together; ``scope`` ``"layer"`` prunes every weight tensor to the same
    sparsity, ``"global"`` ranks the units of all tensors together (sizes differ, so unit
    scores are means: an L1 norm divided by the unit's size). ``compare = "row"`` ranks the
    weights of each output row separately (Wanda's per-output comparison; unstructured only).
    ``skip`` lists layer names (fnmatch patterns) left dense. ``distribution`` is the law of
    synthetic weights when no real weights are given (Kaiming-scaled, seeded per layer).
    ``token_layers`` are the indices (among the attention layers) where token pruning drops
    ``sparsity`` of the tokens; ``None`` means every attention layer.
    """

    criterion: str = "magnitude"
    granularity: str = "unstructured"
    sparsity: float = 0.5
    nm: tuple[int, int] = (2, 4)
    block: int = 4
    scope: str = "layer"
    compare: str = "tensor"
    skip: tuple[str, ...] = ()
    token_layers: tuple[int, ...] | None = None
    distribution: str = "normal"
    seed: int = 0

    def __post_init__(self) -> None:
        from sparsesim.prune.criteria import CRITERIA  # the registry lives with the functions

        if self.criterion not in CRITERIA:
            raise SparsesimError(f"unknown criterion {self.criterion!r}; expected one of "
                                 f"{', '.join(CRITERIA)}", field="criterion")
        _one_of(self.granularity, GRANULARITIES, "granularity")
        _one_of(self.scope, SCOPES, "scope")
        _one_of(self.compare, COMPARE, "compare")
        _one_of(self.distribution, DISTRIBUTIONS, "distribution")
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise SparsesimError(f"must be in [0, 1), got {s!r}", field="sparsity")
        n, m = self.nm
        if not (isinstance(n, int) and isinstance(m, int) and 0 < n <= m):
            raise SparsesimError(f"must be N:M with 0 < N <= M, got {n}:{m}", field="nm")
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
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SparsesimError(f"must be an integer, got {self.seed!r}", field="seed")

    def as_dict(self) -> dict[str, object]:
        """JSON-able parameters for the trace's ``meta.method``."""
        out: dict[str, object] = {
            "criterion": self.criterion, "granularity": self.granularity,
            "scope": self.scope, "seed": self.seed}
        if self.granularity == "nm":
            out["nm"] = f"{self.nm[0]}:{self.nm[1]}"
        else:
            out["sparsity"] = self.sparsity
        if self.granularity == "block":
            out["block"] = self.block
        if self.compare != "tensor":
            out["compare"] = self.compare
        if self.skip:
            out["skip"] = list(self.skip)
        if self.token_layers is not None:
            out["token_layers"] = list(self.token_layers)
        return out


def _one_of(value: str, allowed: tuple[str, ...], field: str) -> None:
    if value not in allowed:
        raise SparsesimError(f"unknown {field} {value!r}; expected one of {', '.join(allowed)}",
                             field=field)
