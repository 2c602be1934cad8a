"""The Python entry point: ``simulate(workload, arch)`` → a result with a tidy ``.df``.

One function for every kind of run: static inference, a training step, and dynamic
(per-input) pruning — given as ``dynamic`` or carried by the trace's ``meta`` — which runs
the machine once per input and returns a :class:`~sparsesim.results.DynamicResult`.
"""

from __future__ import annotations

from pathlib import Path
from typing import overload

from sparsesim.arch.config import Arch, load_arch
from sparsesim.engine.dynamic import DynamicInputs, run_dynamic
from sparsesim.engine.inference import run
from sparsesim.engine.memo import GemmMemo
from sparsesim.engine.size import LIMITS, SizeLimits, check_size
from sparsesim.engine.training import Training
from sparsesim.errors import SparsesimError
from sparsesim.progress import ProgressFactory
from sparsesim.results import DynamicResult, SimResult
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.workload.network import Workload, load_workload


@overload
def simulate(workload: Workload | str | Path = ..., arch: Arch | str | Path = ..., *,
             sparsity: SparsityModel | None = ..., trace: None = ...,
             training: Training | None = ..., dynamic: None = ...,
             dynamic_seed: int = ..., memo: bool = ...,
             progress: ProgressFactory | None = ...,
             limits: SizeLimits = ...) -> SimResult: ...
@overload
def simulate(workload: Workload | str | Path = ..., arch: Arch | str | Path = ..., *,
             sparsity: SparsityModel | None = ..., trace: Trace | str | Path | None = ...,
             training: Training | None = ..., dynamic: DynamicInputs,
             dynamic_seed: int = ..., memo: bool = ...,
             progress: ProgressFactory | None = ...,
             limits: SizeLimits = ...) -> DynamicResult: ...
@overload
def simulate(workload: Workload | str | Path = ..., arch: Arch | str | Path = ..., *,
             sparsity: SparsityModel | None = ..., trace: Trace | str | Path | None = ...,
             training: Training | None = ..., dynamic: DynamicInputs | None = ...,
             dynamic_seed: int = ..., memo: bool = ...,
             progress: ProgressFactory | None = ...,
             limits: SizeLimits = ...) -> SimResult | DynamicResult: ...


def simulate(workload: Workload | str | Path = "resnet18",
             arch: Arch | str | Path = "default", *,
             sparsity: SparsityModel | None = None,
             trace: Trace | str | Path | None = None,
             training: Training | None = None,
             dynamic: DynamicInputs | None = None,
             dynamic_seed: int = 0,
             memo: bool = True,
             progress: ProgressFactory | None = None,
             limits: SizeLimits = LIMITS) -> SimResult | DynamicResult:
    """Run a workload (object, built-in name or file) on an arch (object, preset or file).

    Masks come from ``trace`` (a :class:`Trace` or its file; its layers replace the
    workload's) or are drawn from ``sparsity``; with neither, everything is dense.
    ``training`` simulates a whole training step (forward, backward, weight update).
    ``dynamic`` (or a trace whose ``meta`` carries it) runs one input at a time, each with
    its own keep ratios; which channels and heads an input keeps is drawn with
    ``dynamic_seed``. ``memo`` simulates identical GEMMs (repeated blocks, equal layers)
    once in this call (:mod:`sparsesim.engine.memo`); ``False`` simulates every one — the
    same result, for checking it. ``progress``
    (:mod:`sparsesim.progress`) is told of each layer (each run, when dynamic). ``limits``: how
    big a run may be before it is refused (:mod:`sparsesim.engine.size`). The result's ``trace_meta`` is the trace's ``meta``; masks drawn from ``sparsity`` record
    its ``mask_draw_version`` there.
    """
    ar = arch if isinstance(arch, Arch) else load_arch(arch)
    file = str(trace) if isinstance(trace, (str, Path)) else None
    tr = trace if trace is None or isinstance(trace, Trace) else load_trace(trace, packed=True)
    if tr is not None and sparsity is not None and not sparsity.is_dense:
        raise SparsesimError("a trace carries its own masks: drop the sparsity model",
                             file=file, field="sparsity")
    if tr is not None:
        wl = tr.workload
    else:
        wl = workload if isinstance(workload, Workload) else load_workload(workload)
    meta = dict(tr.meta) if tr is not None else {}
    if tr is None and sparsity is not None and not sparsity.is_dense:  # how its masks were drawn
        meta["mask_draw_version"] = sparsity.mask_draw_version

    def size_of(passes: int) -> None:  # before any mask is drawn (sparsesim.engine.size)
        check_size(list(wl.layers), ar, passes=passes, sparsity=sparsity, limits=limits,
                   file=file if tr is not None else wl.file)

    if dynamic is None and "dynamic" in meta:
        dynamic = DynamicInputs.from_meta(meta["dynamic"], wl, file=file)
    elif dynamic is not None and tr is None:
        DynamicInputs.from_meta(dynamic.as_meta(), wl)  # the same checks as from a trace
    if not isinstance(limits, SizeLimits):
        raise SparsesimError(f"must be a SizeLimits, got {type(limits).__name__}", field="limits")
    if not isinstance(memo, bool):
        raise SparsesimError(f"must be true or false, got {memo!r}", field="memo")
    cache = GemmMemo() if memo else None
    if dynamic is None:
        size_of(1 if training is None else 3)  # forward; + input and weight gradients
        if training is not None and tr is not None:
            check_training_trace(tr, file)
        rows = run(wl, ar, sparsity=sparsity, trace=tr, training=training, memo=cache,
                   progress=progress)
        return SimResult(wl, ar, tuple(rows), meta)
    if training is not None:
        raise SparsesimError("a training step with dynamic (per-input) pruning is not "
                             "modelled: simulate one or the other", field="training")
    size_of(2 * dynamic.inputs if dynamic.batched else dynamic.inputs + 1)  # + the static runs
    meta["dynamic"] = dynamic.as_meta()
    if sparsity is not None and sparsity.act_prune != "none":  # the online unit runs per input
        n, m = sparsity.act_nm or (2, 4)
        meta["act_prune"] = {"kind": sparsity.act_prune, "nm": f"{n}:{m}"}
    out = run_dynamic(wl, ar, dynamic, sparsity=sparsity, trace=tr, seed=dynamic_seed,
                      memo=cache, progress=progress)
    return DynamicResult.of(wl, ar, out, meta)


def check_training_trace(trace: Trace, file: str | Path | None = None) -> None:
    """A training step needs the activations' zeros (they shape the weight gradients): a
    trace with no activation data for any layer but the first cannot say what ``dW`` skips."""
    later = [layer.name for layer in trace.workload.layers[1:]]
    if later and not any(trace.masks.get(name) is not None
                         and trace.masks[name].inputs is not None for name in later):
        raise SparsesimError(
            "a training step needs activation data (the input zeros shape the weight "
            "gradients), but this trace has none: prune with calibration inputs, or simulate "
            "inference", file=None if file is None else str(file), field="inputs")
