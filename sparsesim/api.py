"""The Python entry point: ``simulate(workload, arch)`` → a result with a tidy ``.df``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from sparsesim.arch.config import Arch, load_arch
from sparsesim.engine.inference import GemmResult, run
from sparsesim.errors import SparsesimError
from sparsesim.names import PeKind
from sparsesim.pe.kinds import PE_KINDS
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.report import layer_frame, phase_frame, render_table, to_frame, totals
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.engine.training import Training
from sparsesim.units import fmt_si
from sparsesim.workload.network import Workload, load_workload


@dataclass(frozen=True)
class SimResult:
    """What one simulation returns: the rows, and frames built from them on demand."""

    workload: Workload
    arch: Arch
    rows: tuple[GemmResult, ...]
    trace_meta: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def df(self) -> pd.DataFrame:
        """One row per GEMM (schema in ``sparsesim.report``)."""
        return to_frame(self.rows)

    @cached_property
    def layers(self) -> pd.DataFrame:
        """One row per layer."""
        return layer_frame(self.df)

    @cached_property
    def phases(self) -> pd.DataFrame:
        """One row per phase: forward (and for a training step backward, update)."""
        return phase_frame(self.df)

    @property
    def totals(self) -> dict[str, float]:
        return totals(self.df)

    def _memory_text(self) -> str:
        m = self.arch.memory
        if m.ideal:
            return "ideal memory"
        return (f"DRAM {m.dram_bytes_per_cycle:g} B/cycle, SRAM A/W/O {m.sram_kib_a:g}/"
                f"{m.sram_kib_w:g}/{m.sram_kib_o:g} KiB, formats {m.format_a}/{m.format_w}/"
                f"{m.format_o}")

    def table(self) -> str:
        a = self.arch.array
        pe = self.arch.pe
        kind = PE_KINDS[PeKind(pe.kind)].title(pe)
        title = (f"{self.workload.name} on {self.arch.name}: {a.rows}×{a.cols} {a.dataflow}, "
                 f"{kind}, {fmt_si(self.arch.clock_hz, 'Hz')}, {self._memory_text()}")
        return render_table(self.df, title=title)


def simulate(workload: Workload | str | Path = "resnet18",
             arch: Arch | str | Path = "default", *,
             sparsity: SparsityModel | None = None,
             trace: Trace | str | Path | None = None,
             training: Training | None = None) -> SimResult:
    """Run a workload (object, built-in name or file) on an arch (object, preset or file).

    Masks come from ``trace`` (a :class:`Trace` or its file; its layers replace the
    workload's) or are drawn from ``sparsity``; with neither, everything is dense.
    ``training`` simulates a whole training step (forward, backward, weight update).
    """
    ar = arch if isinstance(arch, Arch) else load_arch(arch)
    tr = trace if trace is None or isinstance(trace, Trace) else load_trace(trace)
    if tr is not None:
        wl = tr.workload
    else:
        wl = workload if isinstance(workload, Workload) else load_workload(workload)
    meta = dict(tr.meta) if tr is not None else {}
    if "dynamic" in meta:
        raise SparsesimError("this trace carries per-input (dynamic) pruning: run it with "
                             "sparsesim.dynamic.simulate_any (or `sparsesim run`)",
                             field="dynamic")
    if training is not None and tr is not None:
        check_training_trace(tr, trace if isinstance(trace, (str, Path)) else None)
    rows = run(wl, ar, sparsity=sparsity, trace=tr, training=training)
    return SimResult(wl, ar, tuple(rows), meta)


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
