"""A training step: each forward GEMM, its two backward GEMMs, and the weight update.

For a forward GEMM ``O[M×N] = A[M×K] · W[K×N]`` with output gradient ``dO`` (``dY``):

* input gradient ``dA[M×K] = dO[M×N] · Wᵀ[N×K]`` — the weight mask carries into it (``Wᵀ``),
  and so do the zeros of a pruned ``dO`` (its A operand);
* weight gradient ``dW[K×N] = Aᵀ[K×M] · dO[M×N]`` — the activation zeros carry into it
  (``Aᵀ``), and the pruned ``dO`` (its W operand).

So a dense step has exactly 3× the forward MACs (less the first layer's ``dA``, which a
training step skips: nothing needs the gradient of the network's input). For a convolution,
``A`` is the im2col matrix: ``dW`` reads the input feature map (``Aᵀ``) and ``dA`` is written
back through col2im; both move feature-map regions, as the forward pass does
(:class:`sparsesim.mapping.conv.ConvView`).
For attention's score GEMMs both operands are activations; ``dW`` is then a gradient of an
activation, and there is no weight update.

**Zeros known from the forward pass survive into the backward.** Outputs whose gradient is
zero by construction (:attr:`~sparsesim.mapping.gemm.GemmOperands.o_grad`, else the forward
output mask ``o``: ``QKᵀ``'s scores at future keys, and at keys top-k or a threshold
dropped, since the masked softmax's ``dS = P ⊙ (dP − Σ P·dP)`` is zero wherever P is) are
zeros of ``dO``: it is taken AND that mask. ``dO`` is the A operand of ``dA = dO·Wᵀ``
(``dQ = dS·K``) and the W operand of ``dW = Aᵀ·dO`` (``dKᵀ = Qᵀ·dS``), whose zeros a
skipping PE skips (per ``pe.operand``, as any operand zero) and a gating PE gates. A forward A whose zeros have zero gradient
(``GemmOperands.a_zero_grad``: ``PV``'s P, causal and pruned keys) makes ``dA`` (``dP``)
needed only where A is non-zero: A's mask becomes ``dA``'s output mask, skipped as the
forward's causal products are. Dense PEs compute every product, as in the forward pass.

Gradient pruning (structured data-gradient pruning) keeps a fraction of ``dO`` found at run
time, on the output path of the GEMM that produces it; :class:`GradientModel` draws that
mask, seeded per GEMM: ``unstructured`` (a threshold: exactly ``keep_count(M·N, density=d)``
kept), ``row`` (top-k of each row — a pixel's or token's channel vector), ``channel`` (whole
output channels: the top ``keep_count(N, density=d)`` by norm) or ``nm`` (N of every M along
the channels); top-k keeps at least one (:mod:`sparsesim.rules.keep`).

A weight's N:M mask runs along K; in ``dA`` the transposed weights are N:M along N, which an
N:M unit cannot use (transposable masks would be needed: Hubara et al., NeurIPS 2021), so the
``nm`` PE kind runs backward GEMMs densely unless their W operand happens to conform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sparsesim.checks import MAX_SEED, real, whole
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Layer
from sparsesim.mapping.conv import ConvView, Im2col
from sparsesim.mapping.gemm import Gemm, GemmOperands, OperandKind
from sparsesim.rules.keep import keep_count
from sparsesim.rules.nm import check_ratio, conformant_mask
from sparsesim.sparsity.masks import LayerMasks, exact_density_mask
from sparsesim.units import ceil_div

GRADIENT_STRUCTURES = ("unstructured", "row", "channel", "nm")
ONLINE_KIND = {"unstructured": "threshold", "row": "topk", "channel": "topk", "nm": "nm"}
"""The online pruning unit each gradient structure needs (:mod:`sparsesim.pe.online`)."""

OPTIMIZERS = {"sgd": (0, 1), "momentum": (1, 2), "adam": (2, 5)}
"""Optimizer → (state tensors per weight, update operations per weight counted as MACs:
SGD ``w −= η·g``; momentum adds ``v = μ·v + g``; Adam two moment updates, a square root, a
divide and the step — an assumption of about five MAC-equivalents)."""


@dataclass(frozen=True, slots=True)
class GradientModel:
    """Seeded pruned output gradients ``dO`` for a training step (``density`` kept)."""

    density: float = 1.0
    structure: str = "unstructured"
    nm: tuple[int, int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.structure not in GRADIENT_STRUCTURES:
            raise SparsesimError(f"unknown gradient structure {self.structure!r}; expected one "
                                 f"of {', '.join(GRADIENT_STRUCTURES)}", field="grad_structure")
        real(self.density, "grad_density", low=0, high=1, low_open=True)
        if self.structure == "nm":
            check_ratio(self.nm, field="grad_nm")
            if self.density != 1:
                raise SparsesimError("give grad_density or grad_nm, not both", field="grad_nm")
        elif self.nm is not None:
            raise SparsesimError(f"an N:M ratio goes with grad_structure 'nm', not "
                                 f"{self.structure!r}", field="grad_nm")
        whole(self.seed, "seed", high=MAX_SEED)

    @property
    def is_dense(self) -> bool:
        return self.structure != "nm" and self.density == 1

    @property
    def kept(self) -> float:
        """Fraction of ``dO`` kept."""
        return self.nm[0] / self.nm[1] if self.structure == "nm" and self.nm else self.density

    def draw(self, gemm: Gemm, index: int) -> np.ndarray | None:
        """``dO`` mask ``[count, M, N]`` of ``gemm`` (the ``index``-th GEMM of the network)."""
        if self.is_dense:
            return None
        rng = np.random.default_rng([self.seed, index])
        shape = (gemm.count, gemm.m, gemm.n)
        if self.structure == "unstructured":
            return exact_density_mask(shape, self.density, rng)
        top_k = keep_count(gemm.n, density=self.density, at_least=1)  # top-k of N is k:N
        if self.structure == "row":
            return conformant_mask(shape, top_k, gemm.n, (2,), rng=rng)
        if self.structure == "nm":
            assert self.nm is not None
            return conformant_mask(shape, *self.nm, (2,), rng=rng)
        channels = conformant_mask((gemm.count, gemm.n), top_k, gemm.n, (1,), rng=rng)
        return np.broadcast_to(channels[:, None, :], shape).copy()


@dataclass(frozen=True, slots=True)
class Training:
    """Simulate a training step: forward, backward (``dA`` and ``dW``) and the update.

    ``optimizer`` is ``sgd``, ``momentum`` or ``adam``; its state is ``state_bits`` wide per
    weight (fp32 by default). ``gradients`` prunes the output gradients.
    ``input_gradient`` also computes the gradient of the network's input (the first layer's
    ``dA``), which training does not need (saliency maps and adversarial training do).
    """

    gradients: GradientModel = GradientModel()
    optimizer: str = "sgd"
    state_bits: int = 32
    input_gradient: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise SparsesimError(f"unknown optimizer {self.optimizer!r}; expected one of "
                                 f"{', '.join(OPTIMIZERS)}", field="optimizer")
        if isinstance(self.state_bits, bool) or not isinstance(self.state_bits, int) or \
                self.state_bits <= 0:
            raise SparsesimError(f"must be a positive integer, got {self.state_bits!r}",
                                 field="state_bits")
        if not isinstance(self.input_gradient, bool):
            raise SparsesimError(f"must be true or false, got {self.input_gradient!r}",
                                 field="input_gradient")


def _transposed(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None else np.ascontiguousarray(np.swapaxes(mask, -1, -2))


def _squeezed(mask: np.ndarray | None) -> np.ndarray | None:
    """One shared 2-D mask when every instance has the same (a single instance)."""
    return mask[0] if mask is not None and mask.ndim == 3 and mask.shape[0] == 1 else mask


def backward_operands(ops: GemmOperands, grad: np.ndarray | None) -> list[GemmOperands]:
    """The input- and weight-gradient GEMMs of a forward GEMM, given the ``dO`` mask
    (``[count, M, N]`` or ``None`` for dense)."""
    g = ops.gemm
    dy = _squeezed(_needed(grad, ops.o if ops.o_grad is None else ops.o_grad))
    dx = Gemm(g.layer, f"{g.name}.dx", m=g.m, k=g.n, n=g.k, count=g.count, w_kind=g.w_kind,
              phase="backward")
    dw = Gemm(g.layer, f"{g.name}.dw", m=g.k, k=g.m, n=g.n, count=g.count,
              w_kind=OperandKind.ACTIVATION, phase="backward")
    dx_view = dw_view = None
    if ops.view is not None:
        dx_view = ConvView(Im2col(ops.view.im2col.layer), operand="O")  # dA is dense
        dw_view = ConvView(ops.view.im2col, operand="A", transposed=True)
    return [GemmOperands(dx, dy, _transposed(ops.w), dx_view,
                         o=ops.a if ops.a_zero_grad else None),
            GemmOperands(dw, _transposed(ops.a), dy, dw_view)]


def _needed(grad: np.ndarray | None, o: np.ndarray | None) -> np.ndarray | None:
    """The ``dO`` mask with the forward's unneeded outputs zeroed (their gradients are zero
    by construction): ``grad`` (``[count, M, N]``, ``None``: dense) AND ``o`` (``[M, N]`` or
    ``[count, M, N]``, ``None``: every output needed)."""
    if o is None:
        return grad
    if grad is None:
        return o
    needed: np.ndarray = grad & (o if o.ndim == 3 else o[None])
    return needed


@dataclass(frozen=True, slots=True)
class UpdateCost:
    """The weight update of one layer: weights touched, MAC-equivalent operations, bytes."""

    weights: int
    operations: int
    dram_read_bytes: int
    dram_write_bytes: int


def update_cost(layer: Layer, masks: LayerMasks | None, training: Training, *, w_bits: int,
                grad_bits: int) -> UpdateCost:
    """Read each kept weight, its gradient and optimizer state; write weight and state.

    Pruned weights stay zero and are not updated (their masks are fixed during the step).
    """
    shapes = layer.weight_shapes()
    weights = masks.weights if masks is not None else {}
    kept = sum(int(np.count_nonzero(weights[name])) if name in weights else math.prod(shape)
               for name, shape in shapes.items())
    states, ops = OPTIMIZERS[training.optimizer]
    state = states * training.state_bits
    read_bits = kept * (w_bits + grad_bits + state)
    write_bits = kept * (w_bits + state)
    return UpdateCost(kept, kept * ops, ceil_div(read_bits, 8), ceil_div(write_bits, 8))
