"""The GEMM every layer lowers to, and its operands' non-zero patterns.

Every layer becomes GEMMs ``O[M×N] = A[M×K] · W[K×N]`` (DESIGN.md §2; how each layer type
does: :mod:`sparsesim.mapping.lower`). A GEMM says what its operands hold (``W`` a weight or
an activation; ``A`` always an activation); :class:`GemmOperands` carries their masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from sparsesim.mapping.conv import ConvView


class OperandKind(str, Enum):
    """What a GEMM operand holds: stored weights or run-time activations."""

    WEIGHT = "weight"
    ACTIVATION = "activation"


@dataclass(frozen=True, slots=True)
class Gemm:
    """``count`` identical, independent GEMMs ``O[m×n] = A[m×k] · W[k×n]`` run one after another.

    ``count`` covers conv groups and attention's (batch × head) score GEMMs; ``w_kind`` says
    whether the K×N operand is a weight (A is always an activation). ``phase`` is
    ``forward`` or ``backward`` (a training step's gradient GEMMs, :mod:`sparsesim.engine.training`).
    """

    layer: str
    name: str
    m: int
    k: int
    n: int
    count: int = 1
    w_kind: OperandKind = OperandKind.WEIGHT
    phase: str = "forward"

    @property
    def dense_macs(self) -> int:
        return self.count * self.m * self.k * self.n

    def dim(self, axis: str) -> int:
        """The size of GEMM axis ``'m'``, ``'k'`` or ``'n'``."""
        return {"m": self.m, "k": self.k, "n": self.n}[axis]


@dataclass(frozen=True)
class GemmOperands:
    """A GEMM with the non-zero patterns of its operands.

    ``a`` is ``[count, M, K]`` (one mask per instance) or ``[M, K]`` (shared by all), ``w`` the
    same with ``[K, N]``; ``None`` means dense (all ones). ``view`` marks a convolution's
    im2col operand, whose memory traffic is the feature map's.

    ``o`` (``[M, N]``, shared, or ``[count, M, N]``; ``None``: every output needed) marks the
    outputs the network needs: a product ``A[m, k]·W[k, n]`` whose output ``(m, n)`` is masked
    (causal ``QKᵀ``'s future scores, which softmax discards) is not effectual, whatever its
    operands. A PE kind that knows it may skip such products (:mod:`sparsesim.pe.kinds`).

    For a training step (:mod:`sparsesim.engine.training`): ``o_grad`` (shaped as ``o``;
    ``None``: as ``o``) marks the outputs whose gradient may be non-zero — causal ``QKᵀ``'s
    scores: the visible ones, and with pruned probabilities only the kept ones, as the masked
    softmax's backward ``dS = P ⊙ (dP − Σ P·dP)`` is zero wherever P is. ``a_zero_grad`` says
    that A's zeros have a zero gradient by construction (``PV``'s P, by the same formula), so
    ``dA`` is needed only where A is non-zero.
    """

    gemm: Gemm
    a: np.ndarray | None = None
    w: np.ndarray | None = None
    view: ConvView | None = None
    o: np.ndarray | None = None
    o_grad: np.ndarray | None = None
    a_zero_grad: bool = False

    def masks(self, i: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both operand masks of instance ``i`` (``None``: dense)."""
        return (_pick(self.a, i), _pick(self.w, i))

    def o_mask(self, i: int) -> np.ndarray | None:
        """The output mask of instance ``i`` (``None``: every output needed)."""
        return _pick(self.o, i)

    def instance(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Both operand masks of instance ``i``, dense ones filled in."""
        g = self.gemm
        a, w = self.masks(i)
        return (np.ones((g.m, g.k), dtype=bool) if a is None else a,
                np.ones((g.k, g.n), dtype=bool) if w is None else w)

    def total(self, per_instance: Callable[[np.ndarray, np.ndarray], int]) -> int:
        """``per_instance(a, w)`` summed over all instances (computed once when shared)."""
        if self.shared:
            return self.gemm.count * per_instance(*self.instance(0))
        return sum(per_instance(*self.instance(i)) for i in range(self.gemm.count))

    @property
    def shared(self) -> bool:
        """All instances have the same masks (compute once, multiply by ``count``)."""
        return all(x is None or x.ndim == 2 for x in (self.a, self.w, self.o))


def _pick(mask: np.ndarray | None, i: int) -> np.ndarray | None:
    return mask if mask is None or mask.ndim == 2 else mask[i]
