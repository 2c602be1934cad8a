"""Pruning criteria: a score per weight, higher = more important (the lowest are pruned).

=============  ==========================  ==============================================
name           score                       needs
=============  ==========================  ==============================================
``magnitude``  ``|w|`` (L1)                nothing
``random``     uniform ``[0, 1)``, seeded  nothing
``taylor``     ``|g·w|`` (first order)     ``grads``: ∂L/∂w summed over calibration batches
``fisher``     ``½·F·w²``                  ``fisher``: the diagonal empirical Fisher
                                           ``F = mean over micro-batches of g²``, which
                                           stands in for the Hessian diagonal (OBD)
``wanda``      ``|w_ij|·‖X_j‖₂``           ``act_norms``: the L2 norm of input feature j
                                           over all calibration tokens (conv: over all
                                           pixels of input channel c, the same for each of
                                           its r×s taps)
=============  ==========================  ==============================================

Wanda compares within each output row (Sun et al., ICLR 2024, arXiv 2306.11695, §3: the
weights feeding one output are ranked together): its :attr:`Criterion.compare` is ``"row"``, the
comparison group a :class:`~sparsesim.prune.spec.PruneSpec` takes when none is given for
unstructured, layer-scope pruning (``compare = "tensor"`` keeps the per-tensor rule, so the
effect of the comparison group can be studied; N:M compares within each group anyway).

*How ``‖X_j‖₂`` is accumulated.* Over every calibration token (a linear layer: all ``B·L``
rows; a conv: all ``N·H·W`` input pixels of channel j), the squared feature summed in float64
and its square root taken once. The authors' reference code (locuslab/wanda,
``lib/layerwrapper.py``, ``WrappedGPT.add_batch``) keeps a running mean over calibration
*samples* (sequences) of the per-sample squared norms, in float32: ``Σ ‖X_j‖² / nsamples``,
i.e. our ``‖X_j‖²`` divided by the number of samples. That factor is the same for every j of
every layer (all layers see the same samples), so the masks are identical; the scores differ by
``1/√nsamples``. Sequential calibration (each block's inputs from the already pruned earlier
blocks, as the reference ``prune_wanda`` does) is ``sparsesim.prune.torch.sequential``.
Statistics come from ``sparsesim.prune.torch.capture`` on a real model, or from any other
source as numpy arrays in the weight's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Conv2d, Layer, MatMul


@dataclass(frozen=True)
class LayerStats:
    """Calibration statistics of one layer, per weight tensor (``"w"``, ``"q"``, ...)."""

    grads: dict[str, np.ndarray] = field(default_factory=dict)
    fisher: dict[str, np.ndarray] = field(default_factory=dict)
    act_norms: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Criterion:
    """A scoring rule, the statistic it needs (``None``: weights alone) and the comparison
    group it is defined with (``"row"``: within each output row, unstructured only)."""

    name: str
    needs: str | None
    score: Callable[..., np.ndarray]
    compare: str = "tensor"


def _magnitude(w: np.ndarray, **_: object) -> np.ndarray:
    return np.abs(w)


def _random(w: np.ndarray, *, rng: np.random.Generator, **_: object) -> np.ndarray:
    return rng.random(w.shape, dtype=np.float32)


def _taylor(w: np.ndarray, *, stat: np.ndarray, **_: object) -> np.ndarray:
    return np.abs(stat * w)


def _fisher(w: np.ndarray, *, stat: np.ndarray, **_: object) -> np.ndarray:
    return 0.5 * stat * np.square(w)


def _wanda(w: np.ndarray, *, stat: np.ndarray, layer: Layer, **_: object) -> np.ndarray:
    return np.abs(w) * _broadcast_norms(layer, w, stat)


CRITERIA: dict[str, Criterion] = {
    c.name: c for c in (
        Criterion("magnitude", None, _magnitude),
        Criterion("random", None, _random),
        Criterion("taylor", "grads", _taylor),
        Criterion("fisher", "fisher", _fisher),
        Criterion("wanda", "act_norms", _wanda, compare="row"),
    )
}


def score(criterion: str, layer: Layer, tensor: str, w: np.ndarray, *,
          stats: LayerStats | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Scores of ``w`` (the ``tensor`` weights of ``layer``) in its own layout."""
    c = CRITERIA[criterion]
    stat = None
    if c.needs is not None:
        table = getattr(stats, c.needs) if stats is not None else {}
        if tensor not in table:
            raise SparsesimError(
                f"criterion {criterion!r} needs {c.needs} from calibration data: prune a real "
                "model (`sparsesim prune --model`, sparsesim.prune.torch.capture)",
                layer=layer.name, field=f"{c.needs}.{tensor}")
        stat = np.asarray(table[tensor])
        if c.needs != "act_norms" and stat.shape != w.shape:
            raise SparsesimError(f"shape {stat.shape} does not match the weights {w.shape}",
                                 layer=layer.name, field=f"{c.needs}.{tensor}")
    if rng is None:
        rng = np.random.default_rng(0)
    return c.score(w, stat=stat, rng=rng, layer=layer)


def _broadcast_norms(layer: Layer, w: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Input-feature norms laid out like ``w``: one per column of the GEMM's K."""
    norms = np.asarray(norms, dtype=np.float32)
    if isinstance(layer, Conv2d):
        if norms.shape != (layer.c,):
            raise SparsesimError(f"expected {layer.c} input-channel norms, got {norms.shape}",
                                 layer=layer.name, field="act_norms.w")
        g, cg, per_group = layer.groups, layer.c // layer.groups, layer.m // layer.groups
        rows = norms.reshape(g, cg)[np.arange(layer.m) // per_group]  # [m, c/g]
        return rows.reshape(rows.shape + (1,) * (w.ndim - 2))  # over the (t,) r, s taps
    if isinstance(layer, MatMul):
        if norms.shape != (w.shape[0],):
            raise SparsesimError(f"expected {w.shape[0]} input norms, got {norms.shape}",
                                 layer=layer.name, field="act_norms.w")
        return norms[:, None]
    if norms.shape != (w.shape[1],):
        raise SparsesimError(f"expected {w.shape[1]} input norms, got {norms.shape}",
                             layer=layer.name, field="act_norms")
    return norms[None, :]
