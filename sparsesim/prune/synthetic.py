"""Synthetic weights for any workload: seeded, Kaiming-scaled, of a chosen distribution.

Every weight tensor of layer ``i`` is drawn from ``default_rng([seed, i])`` (so a layer's
weights do not depend on the others), with standard deviation ``sqrt(2 / fan_in)`` (He et
al., 2015; ``fan_in`` is the GEMM's K), as float32:

* ``normal``: N(0, σ²);  * ``uniform``: U(−√3·σ, √3·σ);  * ``laplace``: Laplace(0, σ/√2).

The scale differs between layers as in a trained network's initialisation, so global and
per-layer magnitude pruning disagree as they should.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sparsesim.prune.spec import DISTRIBUTIONS
from sparsesim.workload.network import Workload

Weights = dict[str, dict[str, np.ndarray]]


def synthetic_weights(workload: Workload, *, distribution: str = "normal",
                      seed: int = 0, tick: Callable[[], None] | None = None) -> Weights:
    """``{layer: {tensor: float32 array}}`` in the layouts of ``Layer.weight_shapes``;
    ``tick`` is called once per tensor drawn (a progress bar's ``update``)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}")
    out: Weights = {}
    for index, layer in enumerate(workload.layers):
        shapes = layer.weight_shapes()
        if not shapes:
            continue
        rng = np.random.default_rng([seed, index])
        tensors = {}
        for name, shape in shapes.items():
            fan_in = math.prod(shape[a] for a in layer.reduction_axes(name))
            std = math.sqrt(2.0 / fan_in)
            if distribution == "normal":
                w = rng.standard_normal(shape, dtype=np.float32)
                w *= np.float32(std)
            elif distribution == "uniform":
                w = rng.random(shape, dtype=np.float32)
                w = (w * 2 - 1) * np.float32(std * math.sqrt(3))
            else:
                w = rng.laplace(0.0, std / math.sqrt(2), shape).astype(np.float32)
            tensors[name] = w
            if tick is not None:
                tick()
        out[layer.name] = tensors
    return out
