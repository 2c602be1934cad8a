"""Sequential (block-by-block) calibration of a graph-captured model, as Wanda's reference
``prune_wanda`` does for a language model's decoder layers (Sun et al., ICLR 2024).

The captured layers are cut into *blocks* in execution order (:func:`blocks`); block b's
calibration statistics (Wanda's ``‖X_j‖₂``) are measured with every earlier block already
pruned, so each block's inputs are those of the pruned model — one forward of the whole graph
per block on the calibration inputs (``export.run`` with the masks chosen so far), not one for
the whole model. Within a block, every layer is scored on the same pass (the reference code
too prunes a decoder layer's linears together, from inputs computed before any of them is
pruned). :class:`~sparsesim.prune.spec.PruneSpec` refuses it without a criterion whose score
reads the layer inputs (``act_norms``: Wanda) or with global scope: with weights-only scores
the order would change nothing, and a global ranking across blocks is not block by block.

*Blocks.* A layer's name is its module path (``encoder.layer.3.attention.self.query``); its
block is the path up to its first *indexed* component — a number (``layer.3``, ``h.0``) or a
name ending in ``_<number>`` (``encoder_layer_3``) — so a transformer's layers and a ResNet's
stage blocks (``layer1.0``) each form one block. Layers with no indexed component (a stem,
embeddings, a classifier head) are blocks of their own. Consecutive layers with the same key
form a block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sparsesim.errors import SparsesimError
from sparsesim.prune.criteria import LayerStats
from sparsesim.prune.front import Masks, score_weights, weight_masks
from sparsesim.prune.spec import PruneSpec
from sparsesim.prune.torch.export import Captured, run
from sparsesim.workload.network import Workload

_INDEXED = re.compile(r"\d+|.*_\d+")


def block_key(name: str) -> str:
    """The block a layer named by its module path belongs to (itself if none is indexed)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if _INDEXED.fullmatch(part):
            return ".".join(parts[:i + 1])
    return name


def blocks(names: Sequence[str]) -> list[list[str]]:
    """Layer names cut into consecutive blocks of equal :func:`block_key`."""
    out: list[list[str]] = []
    last = None
    for name in names:
        key = block_key(name)
        if not out or key != last:
            out.append([])
        out[-1].append(name)
        last = key
    return out


def sequential_masks(cap: Captured, spec: PruneSpec) -> tuple[Masks, int]:
    """Keep-masks of every weight layer, block by block on the pruned model's inputs, and the
    number of blocks (= calibration passes)."""
    if spec.calibration != "sequential":
        raise SparsesimError("the spec calibrates once", field="calibration")
    weights = cap.weights()
    layers = {layer.name: layer for layer in cap.workload.layers}
    chosen: Masks = {}
    cut = blocks([layer.name for layer in cap.workload.layers if layer.name in weights])
    for block in cut:
        measured = run(cap.graph, cap.args, cap.kwargs, masks=dict(chosen), norms=True)
        stats = {n: LayerStats(act_norms={"w": measured.norms[n]}) for n in block}
        part = Workload(cap.workload.name, tuple(layers[n] for n in block), cap.workload.source)
        chosen.update(weight_masks(part, spec, score_weights(part, spec, weights, stats)))
    return chosen, len(cut)


__all__ = ["block_key", "blocks", "sequential_masks"]
