"""Multi-token decode: a one-step decode workload unrolled over ``T`` generated tokens.

A decode workload simulates one autoregressive step: every attention layer takes ``l = 1``
new query token (per sequence of the batch) and attends ``kv_len`` keys and values, the
cached ones plus its own. Generating ``T`` tokens runs that step ``T`` times while the KV
cache grows by one entry per step: step ``t`` (``0 … T−1``) attends ``kv_len + t`` keys.
:func:`decode_steps` writes those steps out as explicit layers, named ``step{t}.{layer}``,
in generation order; everything else about a layer (its projections, MLP, heads kept,
causal flag) is the same at every step, and a step's new K/V rows are written by its K/V
projections (the KV-cache append, :mod:`sparsesim.mapping.lower`) before the next step
reads them. Steps run one after another, so the totals are the sum of ``T`` single-step
runs at those KV lengths.

Only a decode workload unrolls: it needs at least one attention layer, and every attention
layer must have ``l = 1`` (a prefill layer processes its prompt once, not per token).
``decode_tokens`` is ``[network] decode_tokens`` in a workload TOML and ``sparsesim run
--decode-tokens T`` on the command line.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Attention, Layer

if TYPE_CHECKING:  # network.py imports this module to apply [network] decode_tokens
    from sparsesim.workload.network import Workload

FIELD = "decode_tokens"


def step_name(step: int, layer: str) -> str:
    """The name of ``layer`` at decode step ``step``."""
    return f"step{step}.{layer}"


def decode_steps(workload: Workload, tokens: int, *, field: str = FIELD) -> Workload:
    """``workload`` (one decode step) unrolled over ``tokens`` generated tokens: step ``t``'s
    attention layers attend ``kv_len + t`` keys and values. Errors name ``field``."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise SparsesimError(f"must be a positive integer, got {tokens!r}", file=workload.file,
                             field=field)
    attention = [x for x in workload.layers if isinstance(x, Attention)]
    if not attention:
        raise SparsesimError(
            f"needs a decode workload (attention layers with l = 1); {workload.name} has no "
            "attention layer", file=workload.file, field=field)
    for layer in attention:
        if layer.l != 1:
            raise SparsesimError(
                f"needs a decode workload (one new token per step, l = 1), but this attention "
                f"layer has l = {layer.l}", file=workload.file, layer=layer.name, field=field)
    layers = tuple(_at_step(x, t) for t in range(tokens) for x in workload.layers)
    # The unrolled steps are renamed copies: their edges are not declared (graph unknown).
    return replace(workload, layers=layers, graph=None)


def _at_step(layer: Layer, step: int) -> Layer:
    """``layer`` at decode step ``step``: renamed; attention attends ``step`` more keys."""
    name = step_name(step, layer.name)
    if isinstance(layer, Attention):
        return replace(layer, name=name, kv_len=layer.keys + step)
    return replace(layer, name=name)
