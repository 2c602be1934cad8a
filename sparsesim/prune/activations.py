"""Activation sparsity: which input activations are zero, measured or imposed.

* :func:`nonzero` — the zeros a ReLU (or ReLU6) really produced on real inputs;
* :func:`threshold_mask` — a fixed threshold: ``|x| > t`` survives;
* :func:`dynamic_threshold_mask` — the threshold chosen per tensor so that ``round(amount ·
  size)`` entries go (torch's rounding, ties by position);
* :func:`topk_mask` — per row along ``axis`` (a token's or pixel's channels) keep the
  ``size − round(amount · size)`` largest ``|x|``;
* :func:`nm_activation_mask` — N:M along the channel axis: in every group of ``m``
  consecutive channels keep the ``n`` largest ``|x|`` (a shorter last group keeps
  ``min(n, length)``), the activation-side twin of N:M weights.

All return bool masks (True = non-zero, kept) of ``x``'s shape. Imposed masks are meant to be
*applied* (``x · mask``) before the layer, so accuracy reflects them;
``sparsesim.prune.torch.capture`` does that with forward pre-hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.names import OnlineKind, choices
from sparsesim.prune.select import lowest
from sparsesim.rules.keep import prune_count
from sparsesim.rules.nm import check_ratio, conformant_mask, parse_nm


def nonzero(x: np.ndarray) -> np.ndarray:
    return np.asarray(x) != 0


def threshold_mask(x: np.ndarray, threshold: float) -> np.ndarray:
    return np.abs(x) > threshold


def dynamic_threshold_mask(x: np.ndarray, amount: float) -> np.ndarray:
    a = np.abs(np.asarray(x)).ravel()
    return ~lowest(a, prune_count(a.size, amount)).reshape(np.shape(x))


def _rows(x: np.ndarray, axis: int) -> tuple[np.ndarray, tuple[int, ...]]:
    moved = np.moveaxis(np.abs(np.asarray(x)), axis, -1)
    return moved.reshape(-1, moved.shape[-1]), moved.shape


def _back(mask2d: np.ndarray, moved_shape: tuple[int, ...], axis: int) -> np.ndarray:
    return np.moveaxis(mask2d.reshape(moved_shape), -1, axis)


def topk_mask(x: np.ndarray, amount: float, axis: int = -1) -> np.ndarray:
    rows, shape = _rows(x, axis)
    count = prune_count(rows.shape[1], amount)
    keep = np.ones(rows.shape, dtype=bool)
    if count:
        order = np.argsort(rows, axis=1, kind="stable")[:, :count]
        np.put_along_axis(keep, order, False, axis=1)
    return _back(keep, shape, axis)


def nm_activation_mask(x: np.ndarray, n: int, m: int, axis: int = -1) -> np.ndarray:
    rows, shape = _rows(x, axis)
    return _back(conformant_mask(rows.shape, n, m, (1,), scores=rows), shape, axis)


@dataclass(frozen=True, slots=True)
class ActPrune:
    """Activation pruning imposed before each pruned layer: ``kind`` with its parameter.

    ``threshold:T`` (``|x| > T`` kept), ``dynamic:A`` (per-tensor threshold removing ``A``),
    ``topk:A`` (per row along channels, ``A`` removed), ``nm:N:M`` (along channels).
    """

    kind: str
    value: float = 0.0
    nm: tuple[int, int] = (2, 4)

    def __post_init__(self) -> None:
        if self.kind not in tuple(OnlineKind):
            raise SparsesimError(f"unknown activation pruning {self.kind!r}; expected one of "
                                 f"{choices(OnlineKind)}", field="act_prune")
        if self.kind in ("dynamic", "topk") and not 0 <= self.value < 1:
            raise SparsesimError(f"amount must be in [0, 1), got {self.value}",
                                 field="act_prune")
        check_ratio(self.nm, field="act_prune")

    @classmethod
    def parse(cls, text: str) -> ActPrune:
        """``"topk:0.5"``, ``"dynamic:0.3"``, ``"threshold:0.1"`` or ``"nm:2:4"``."""
        kind, _, rest = text.partition(":")
        if kind == "nm":
            return cls("nm", nm=parse_nm(rest, field="act_prune"))
        try:
            return cls(kind, float(rest))
        except ValueError:
            raise SparsesimError(f"expected threshold:T, dynamic:A, topk:A or nm:N:M, got "
                                 f"{text!r}", field="act_prune") from None

    def mask(self, x: np.ndarray, channel_axis: int) -> np.ndarray:
        if self.kind == "threshold":
            return threshold_mask(x, self.value)
        if self.kind == "dynamic":
            return dynamic_threshold_mask(x, self.value)
        if self.kind == "topk":
            return topk_mask(x, self.value, axis=channel_axis)
        return nm_activation_mask(x, *self.nm, axis=channel_axis)

    def as_dict(self) -> dict[str, object]:
        if self.kind == "nm":
            return {"kind": "nm", "nm": f"{self.nm[0]}:{self.nm[1]}"}
        return {"kind": self.kind, "value": self.value}
