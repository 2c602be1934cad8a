"""Regularization-based pruning: train with a sparsity-inducing penalty, prune what it zeroed.

The penalty (``PruneSpec.regularizer``) is ``λ · Σ_g √|g| · ‖w_g‖₂`` over the units ``g`` of
every unskipped conv/linear weight tensor, units as ``select.py`` defines them: single
weights (``unstructured``, where it is L1, ``λ · Σ|w|``), output filters / rows (``filter``)
or input channels (``channel``, a conv's ``r·s`` taps of one channel in every filter): group
lasso (Yuan & Lin 2006; on deep networks Wen et al. 2016, Scardapane et al. 2017). The
``√|g|`` weight makes groups of different sizes cost the same per weight.

**Proximal updates are the default** (``Regularizer.proximal``): after each SGD step on the
loss alone, every unit is group-soft-thresholded, ``w_g ← w_g · max(0, 1 − η·λ·√|g| / ‖w_g‖₂)``
(η the learning rate; for single weights ``sign(w)·max(|w| − η·λ, 0)``), the proximal
operator of the penalty. It puts weights and groups at *exactly* zero, so the mask is the
zeros the training made, with no threshold to tune. The subgradient alternative (penalty in
the loss, ``proximal=False``) minimises the same objective but only jitters around zero, so
its zeros are decided by ``Regularizer.tol``, which then acts as a magnitude cut.

The regularized phase uses SGD with heavy-ball momentum (on the loss's gradient; the
proximal step follows the update): with one scalar step size ``η·λ`` is the exact threshold
and ``λ`` means the same in both modes. Under Adam's per-coordinate steps it would not be
(the group prox in Adam's metric has no closed form), so Adam is left to the dense training.
Batch norms use their running statistics during it (``freeze_bn``): with batch statistics
the loss does not change when a weight tensor before a BN is scaled, so the penalty shrinks
it for free while its gradients grow as ``1/‖w‖``; zeros then come and go, and sparsity is
not monotone in λ (digits CNN, 10 epochs at η = 0.01: conv3 reached 36 % zeros at λ = 0.01
and 27 % at λ = 0.03 with batch statistics; 31 % and 67 % with running ones).

After training, a unit is pruned when the root-mean-square of its weights is at most ``tol``
(``0``: exact zeros). If ``PruneSpec.sparsity`` asks for more, the spec's criterion cuts the
regularized weights to it (``TorchNet.prune``: unit scores are mean scores, the L1 norm per
weight for magnitude); the zeros stay pruned and count toward the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsesim.errors import SparsesimError
from sparsesim.prune.front import Masks
from sparsesim.prune.spec import PruneSpec, Regularizer
from sparsesim.prune.torch.capture import Calibration, TorchNet


def unit_dims(granularity: str, ndim: int) -> tuple[int, ...]:
    """Axes one unit spans in a weight ``[out, in, *kernel]``: none for single weights, all
    but the output axis for a filter, all but the input axis for an input channel."""
    if granularity == "unstructured":
        return ()
    if granularity == "filter":
        return tuple(range(1, ndim))
    if granularity == "channel":
        return (0, *range(2, ndim))
    raise SparsesimError(f"no penalty for {granularity!r} units", field="granularity")


def unit_norms(w: torch.Tensor, granularity: str) -> tuple[torch.Tensor, int]:
    """``‖w_g‖₂`` per unit (shaped to broadcast against ``w``) and the unit size ``|g|``."""
    dims = unit_dims(granularity, w.dim())
    if not dims:
        return w.abs(), 1
    # vector_norm's gradient at a zero group is 0: a valid subgradient, not NaN
    return (torch.linalg.vector_norm(w, dim=dims, keepdim=True),
            math.prod(w.shape[d] for d in dims))


def penalty(weights: Sequence[torch.Tensor], granularity: str, lam: float) -> torch.Tensor:
    """``lam · Σ_g √|g| · ‖w_g‖₂`` over all ``weights`` (differentiable)."""
    total = torch.zeros(())
    for w in weights:
        norms, size = unit_norms(w, granularity)
        total = total + math.sqrt(size) * norms.sum()
    return lam * total


@torch.no_grad()
def prox_(weights: Sequence[torch.Tensor], granularity: str, threshold: float) -> None:
    """In place, the proximal step of :func:`penalty` with ``lam · step = threshold``: each
    unit shrinks by ``threshold·√|g|`` in norm, to exactly zero if it is smaller."""
    for w in weights:
        norms, size = unit_norms(w, granularity)
        t = threshold * math.sqrt(size)
        w.mul_(torch.clamp(1 - t / norms.clamp_min(torch.finfo(w.dtype).tiny), min=0))


def penalized(net: TorchNet, spec: PruneSpec) -> list[torch.Tensor]:
    """The trainable weight tensors the penalty acts on (``weight_orig`` once masked)."""
    out = []
    for name, b in net.bound.items():
        if any(fnmatch(name, p) for p in spec.skip):
            continue
        for mod in b.tensors.values():
            out.append(mod.weight_orig if hasattr(mod, "weight_orig") else mod.weight)
    return out


def _regularizer(spec: PruneSpec) -> Regularizer:
    if spec.regularizer is None:
        raise SparsesimError("regularized pruning needs PruneSpec.regularizer",
                             field="regularizer")
    return spec.regularizer


def train_regularized(net: TorchNet, x: torch.Tensor, y: torch.Tensor, spec: PruneSpec, *,
                      epochs: int, lr: float = 0.01, momentum: float = 0.9, batch: int = 64,
                      seed: int = 0, freeze_bn: bool = True,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], Any] = F.cross_entropy,
                      on_epoch: Callable[[], None] | None = None) -> None:
    """Train ``net.model`` on ``(x, y)`` for ``epochs`` with ``loss_fn`` and the spec's
    penalty: SGD (``lr``, ``momentum``, mini-batches of ``batch``, shuffled with ``seed``) and
    a proximal step after each update, or the penalty added to the loss (``proximal=False``);
    ``freeze_bn`` keeps batch norms on their running statistics; ``on_epoch`` is called
    after each epoch (a progress bar's ``update``)."""
    reg = _regularizer(spec)
    weights = penalized(net, spec)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD([p for p in net.model.parameters() if p.requires_grad], lr=lr,
                          momentum=momentum)
    net.model.train()
    if freeze_bn:
        for m in net.model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                m.eval()
    try:
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=gen).split(batch):
                opt.zero_grad()
                loss = loss_fn(net.model(x[idx]), y[idx])
                if not reg.proximal:
                    loss = loss + penalty(weights, spec.granularity, reg.lam)
                loss.backward()
                opt.step()
                if reg.proximal:
                    prox_(weights, spec.granularity, lr * reg.lam)
            if on_epoch is not None:
                on_epoch()
    finally:
        net.model.eval()


def zero_masks(net: TorchNet, spec: PruneSpec) -> Masks:
    """Keep-masks of the unskipped tensors: a unit is pruned when the RMS of its (effective)
    weights is at most ``regularizer.tol``."""
    tol = _regularizer(spec).tol
    out: Masks = {}
    for name, tensors in net.weights().items():
        if any(fnmatch(name, p) for p in spec.skip):
            continue
        out[name] = {}
        for t, w in tensors.items():
            norms, size = unit_norms(torch.from_numpy(w).double(), spec.granularity)
            keep = (norms / math.sqrt(size) > tol).expand(w.shape)
            out[name][t] = keep.numpy().copy()
    return out


def prune_regularized(net: TorchNet, spec: PruneSpec, cal: Calibration | None = None) -> Masks:
    """Prune the units training zeroed, then cut to ``spec.sparsity`` with the spec's
    criterion if the zeros fall short; applies and returns the keep-masks."""
    net.apply_masks(zero_masks(net, spec))
    if spec.sparsity > 0:
        net.prune(spec, cal)
    return net.current_masks()

