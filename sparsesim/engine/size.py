"""Size guards (issue 17): how big a run is, estimated from the shapes before any mask is drawn
or any event runs, and refused in one line when it is beyond what this simulator does in a
sitting (a dense conv with 10⁶ channels, dense attention over 10⁷ tokens, a 10⁷³ GEMM), instead
of a ``MemoryError`` traceback or an hour without output.

Two measures, per pass over the network (a training step is three passes, a dynamic run one per
input, and its static reference):

- **elements**: the largest operand of any layer (its weights, input, output, or an attention
  internal such as the L×L probabilities), in elements. The engine may hold one ``bool`` per
  element (masks, their encodings), so this is bytes of memory; the limit is 2³¹ (2 GiB), the
  same as a trace's masks (:data:`sparsesim.sparsity.trace.MAX_TRACE_ELEMENTS`);
- **folds**: the array folds of every GEMM of the network on the arch
  (:func:`~sparsesim.mapping.dataflows.plan`), times their instances: each is at least one
  machine event (~10⁴–10⁵ a second). The limit, 5·10⁷, is ~60× a Llama-2-7B block on the
  16×16 ``gemmini_like`` array (856,064) and ~1.8× the whole 7B model's prefill there
  (27,906,048); Llama-2-70B's decode there (269,721,600) is refused — hours of simulation
  beyond it. With an explicit ``mapping.stream_tile`` each fold counts as its stream chunks
  (one machine step each).

Both are defaults, not laws: a caller raises them (``simulate(..., limits=SizeLimits(...))``,
``sparsesim run --max-elements / --max-folds``) when the machine has the memory or the time,
and each refusal names the limit it hit.
The number of layers a block expands to is guarded where blocks expand
(:data:`sparsesim.workload.network.MAX_LAYERS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparsesim.arch.config import Arch
from sparsesim.errors import SparsesimError
from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm
from sparsesim.mapping.lower import lower
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.workload.layers import Layer


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """The most elements one operand may have and the most folds one run may have."""

    elements: int = 2**31
    folds: int = 5 * 10**7

    def __post_init__(self) -> None:
        for name in ("elements", "folds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SparsesimError(f"must be a whole number >= 1, got {value!r}",
                                     field=f"limits.{name}")


LIMITS = SizeLimits()


@dataclass(frozen=True, slots=True)
class RunSize:
    """A run's size: its largest operand (elements, which layer and tensor) and its folds."""

    elements: int
    largest: tuple[str, str]
    folds: int


def _operands(layer: Layer) -> dict[str, tuple[int, ...]]:
    out = {f"weights.{k}": s for k, s in layer.weight_shapes().items()}
    out["inputs"] = layer.input_shape
    out.update({f"activations.{k}": s for k, s in layer.activation_shapes().items()})
    return out


def largest_operand(layers: list[Layer]) -> tuple[int, str, str]:
    """(elements, layer, tensor) of the largest operand of ``layers``: weights, inputs,
    attention internals, GEMM outputs."""
    best = (0, "", "")
    for layer in layers:
        sizes = {t: math.prod(s) for t, s in _operands(layer).items()}
        sizes.update({f"{g.name}.output": g.m * g.n for g in lower(layer)})
        for tensor, n in sizes.items():
            if n > best[0]:
                best = (n, layer.name, tensor)
    return best


def run_size(layers: list[Layer], arch: Arch) -> RunSize:
    """The size of one pass of ``layers`` (already shaped: token/head/KV pruning applied)."""
    a = arch.array
    tile = arch.mapping.stream_tile  # an explicit stream tile runs each fold in its chunks

    def steps(g: Gemm) -> int:
        p = plan(g, a.dataflow, a.rows, a.cols)
        return p.folds * (-(-p.extents[2] // tile) if tile else 1) * g.count

    folds = sum(steps(g) for layer in layers for g in lower(layer))
    elements, layer, tensor = largest_operand(layers)
    return RunSize(elements, (layer, tensor), folds)


def check_elements(layers: list[Layer], *, limits: SizeLimits = LIMITS,
                   file: str | None = None, per_element: str = "one byte each",
                   flag: str | None = "--max-elements") -> None:
    """Refuse layers whose largest operand is beyond ``limits.elements`` (memory: pruning's
    synthetic weights and every run's masks hold it whole), naming layer and tensor, and
    the ``flag`` that raises the limit (None: the command has none)."""
    elements, layer, tensor = largest_operand(layers)
    if elements > limits.elements:
        raise SparsesimError(
            f"{elements:,} elements, more than the limit of {limits.elements:,} (a run holds an "
            f"operand in memory, {per_element}): shrink the layer (channels, tokens, batch)"
            f"{', simulate a slice of it,' if flag else ' or simulate a slice of it'}"
            f"{f' or raise the limit ({flag})' if flag else ''}",
            file=file, layer=layer, field=tensor)


def check_size(layers: list[Layer], arch: Arch, *, passes: int = 1,
               sparsity: SparsityModel | None = None, limits: SizeLimits = LIMITS,
               file: str | None = None) -> RunSize:
    """Refuse a run beyond ``limits``, naming the layer, how big it is and what to change;
    ``passes``: how many times the network runs (training: 3, dynamic: per input)."""
    shaped = layers if sparsity is None else [sparsity.shape(layer) for layer in layers]
    check_elements(shaped, limits=limits, file=file)
    size = run_size(shaped, arch)
    total = size.folds * passes
    if total > limits.folds:
        raise SparsesimError(
            f"the run has {total:,} array folds{f' ({passes} passes)' if passes > 1 else ''}, "
            f"more than the limit of {limits.folds:,} (each one is simulated; 5e7 take hours): "
            f"shrink the network (layers, repeats, tokens), give a larger array, fewer inputs, "
            f"or raise the limit (--max-folds)",
            file=file, field="workload")
    return size
