"""The pruning front-end: criteria × granularity × scope × schedule → masks → a Trace.

Numpy only here (works on synthetic, seeded weights for every workload); the PyTorch side
(real ``torch.nn.Module``s, calibration hooks, gradients, fine-tuning, the shipped real
models) is ``sparsesim.prune.torch.capture``, ``models`` and ``pipelines``, which import torch
lazily (``pip install 'sparsesim[torch]'``); regularization-based pruning (L1, group lasso:
a :class:`Regularizer` in the spec) trains a real model, in ``sparsesim.prune.torch.regularize``.

>>> from sparsesim.prune import PruneSpec, prune_workload
>>> from sparsesim.workload.network import load_workload
>>> trace = prune_workload(load_workload("resnet50"), PruneSpec("magnitude", sparsity=0.8))
>>> trace.save("r50.npz")      # then: sparsesim run --trace r50.npz --arch default
"""

from sparsesim.prune.activations import (
    ActPrune,
    dynamic_threshold_mask,
    nm_activation_mask,
    nonzero,
    threshold_mask,
    topk_mask,
)
from sparsesim.prune.criteria import CRITERIA, LayerStats, score
from sparsesim.prune.front import mask_bits, prune_workload, score_weights, weight_masks
from sparsesim.prune.schedule import SCHEDULES, imp_levels, iterative_levels, one_shot, run_schedule
from sparsesim.prune.select import achieved_sparsity, keep_masks, lowest
from sparsesim.prune.spec import (
    DYNAMIC_POLICIES,
    GRANULARITIES,
    PENALTIES,
    SCOPES,
    DynamicSpec,
    PruneSpec,
    Regularizer,
)
from sparsesim.prune.structure import (
    prune_heads,
    prune_kv,
    prune_tokens,
    sequential_consumers,
    slim_channels,
    slim_workload,
)
from sparsesim.prune.synthetic import synthetic_weights

__all__ = [
    "ActPrune", "CRITERIA", "DYNAMIC_POLICIES", "DynamicSpec", "GRANULARITIES", "LayerStats",
    "PENALTIES", "PruneSpec",
    "Regularizer", "SCHEDULES", "SCOPES",
    "achieved_sparsity", "dynamic_threshold_mask", "imp_levels", "iterative_levels",
    "keep_masks", "lowest", "mask_bits", "nm_activation_mask", "nonzero",
    "one_shot", "prune_heads", "prune_kv", "prune_tokens", "prune_workload",
    "run_schedule", "score", "score_weights", "sequential_consumers", "slim_channels",
    "slim_workload", "synthetic_weights", "threshold_mask", "topk_mask", "weight_masks",
]
