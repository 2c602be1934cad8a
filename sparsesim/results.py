"""What a simulation returns: the result rows, and the frames and tables built from them.

:class:`SimResult` is one run (static or a training step); :class:`DynamicResult` one run
per input of a dynamically pruned network, with the distribution over the inputs beside
the static run.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsesim.arch.config import Arch
from sparsesim.area import AREA_COMPONENTS, AreaBreakdown, area_breakdown
from sparsesim.engine.dynamic import DynamicRun
from sparsesim.engine.inference import GemmResult
from sparsesim.errors import SparsesimError
from sparsesim.frames import write_frame
from sparsesim.names import PeKind, RowKind
from sparsesim.pe.kinds import PE_KINDS
from sparsesim.report import layer_frame, phase_frame, power, render_table, to_frame, totals
from sparsesim.units import fmt_si
from sparsesim.workload.network import Workload


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

    @cached_property
    def area(self) -> AreaBreakdown:
        """Area (mm²) and leakage (mW) of the arch, per part (:mod:`sparsesim.area`)."""
        return area_breakdown(self.arch)

    @property
    def area_mm2(self) -> float:
        """Total area of the arch in mm² at its ``[area] node_nm``."""
        return self.area.total_mm2

    @property
    def area_df(self) -> pd.DataFrame:
        """One row per part: ``component``, ``area_mm2``, ``leakage_mw``."""
        return area_frame(self.area)

    def _memory_text(self) -> str:
        m = self.arch.memory
        if m.ideal:
            return "ideal memory"
        return (f"DRAM {m.dram_bytes_per_cycle:g} B/cycle, SRAM A/W/O {m.sram_kib_a:g}/"
                f"{m.sram_kib_w:g}/{m.sram_kib_o:g} KiB, formats {m.format_a}/{m.format_w}/"
                f"{m.format_o}")

    @property
    def title(self) -> str:
        """What ran on what: the network, the array, the PE kind, clock and memory."""
        a = self.arch.array
        pe = self.arch.pe
        kind = PE_KINDS[PeKind(pe.kind)].title(pe)
        return (f"{self.workload.name} on {self.arch.name}: {a.rows}×{a.cols} {a.dataflow}, "
                f"{kind}, {fmt_si(self.arch.clock_hz, 'Hz')}, {self._memory_text()}")

    def table(self) -> str:
        return render_table(self.df, title=self.title) + "\n" + power_line(self.arch, self.area,
                                                                           self.df)

    def _repr_html_(self) -> str:
        """Jupyter shows a result as its title, totals and per-layer table (HTML)."""
        return _html(self.title, pd.DataFrame([self.totals]), self.layers, "layers")

    def to_parquet(self, path: str | Path) -> Path:
        """Write :attr:`df` (one row per GEMM) as Parquet (needs pyarrow: the ``parquet``
        extra)."""
        return _to_parquet(self.df, path)

    def to_file(self, path: str | Path) -> Path:
        """Write :attr:`df` as CSV, Parquet or JSON records by ``path``'s extension (what
        ``sparsesim run -o`` writes)."""
        return write_frame(self.df, path)


def _html(title: str, head: pd.DataFrame, layers: pd.DataFrame, what: str) -> str:
    """A result as HTML: the title, the whole-run numbers, then the layers (folded)."""
    return (f"<p><b>{html.escape(title)}</b></p>{head.to_html(index=False)}"
            f"<details><summary>{len(layers)} {html.escape(what)}</summary>"
            f"{layers.to_html(index=False)}</details>")


def _to_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """``df`` as Parquet at ``path``; another extension is refused (``to_file`` picks the
    format by extension), so the file's name never misstates its content."""
    if Path(path).suffix.lower() not in (".parquet", ".pq"):
        raise SparsesimError("a Parquet file is named .parquet or .pq; to_file writes CSV or "
                             "JSON", file=str(path))
    return write_frame(df, path)


def area_frame(area: AreaBreakdown) -> pd.DataFrame:
    """One row per part of an arch: ``component``, ``area_mm2``, ``leakage_mw``."""
    return pd.DataFrame({"component": list(AREA_COMPONENTS),
                         "area_mm2": [area.area_mm2[k] for k in AREA_COMPONENTS],
                         "leakage_mw": [area.leakage_mw[k] for k in AREA_COMPONENTS]})


def power_line(arch: Arch, area: AreaBreakdown, df: pd.DataFrame) -> str:
    """The summary line under a result table: area, leakage, average and peak power."""
    p = power(df)
    parts = ", ".join(f"{k} {v:.3g}" for k, v in area.area_mm2.items() if v)
    return (f"area {area.total_mm2:.3g} mm² at {arch.area.node_nm:g} nm ({parts}); leakage "
            f"{fmt_si(area.leakage_w, 'W')}; power {fmt_si(p['power_avg_w'], 'W')} average, "
            f"{fmt_si(p['power_peak_w'], 'W')} peak")


def _percentile(values: pd.Series, q: float) -> float:
    return float(np.percentile(values.to_numpy(dtype=float), q)) if len(values) else 0.0


@dataclass(frozen=True)
class DynamicResult:
    """One run per input: ``df`` has every row with its ``input``; ``per_input`` one row per
    input (latency, energy, traffic, the gates' share); ``summary`` the distribution, beside
    the static run per input."""

    workload: Workload
    arch: Arch
    df: pd.DataFrame
    static: SimResult
    trace_meta: dict[str, Any] = field(default_factory=dict)
    static_inputs: int = 1
    """Inputs the static run covers (a batched trace: each element alone, summed)."""

    @classmethod
    def of(cls, workload: Workload, arch: Arch, run: DynamicRun, meta: dict[str, Any]
           ) -> DynamicResult:
        """The result of :func:`~sparsesim.engine.dynamic.run_dynamic`'s rows."""
        frames = []
        for i, rows in enumerate(run.per_input):
            frame = to_frame(rows)
            frame.insert(0, "input", i)
            frames.append(frame)
        static = SimResult(workload, arch, run.static, meta)
        return cls(workload, arch, pd.concat(frames, ignore_index=True), static, meta,
                   run.static_inputs)

    @cached_property
    def per_input(self) -> pd.DataFrame:
        df = self.df
        gate = df["kind"] == RowKind.GATE
        out = df.groupby("input").agg(cycles=("cycles", "sum"), seconds=("seconds", "sum"),
                                      energy_pj=("energy_pj", "sum"),
                                      effectual_macs=("effectual_macs", "sum"),
                                      dram_bytes=("dram_read_bytes", "sum"))
        out["dram_bytes"] += df.groupby("input")["dram_write_bytes"].sum()
        out["gate_cycles"] = df[gate].groupby("input")["cycles"].sum()
        out["gate_energy_pj"] = df[gate].groupby("input")["energy_pj"].sum()
        return out.fillna(0).reset_index()

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Mean, p50, p99, min and max over the inputs of each per-input metric, and the
        static run (no dynamic pruning) beside them."""
        p = self.per_input
        static = {k: v / self.static_inputs for k, v in totals(self.static.df).items()}
        rows = []
        for metric in ("cycles", "seconds", "energy_pj", "effectual_macs", "dram_bytes",
                       "gate_cycles", "gate_energy_pj"):
            v = p[metric]
            special = {"dram_bytes": static["dram_read_bytes"] + static["dram_write_bytes"],
                       "gate_cycles": 0.0, "gate_energy_pj": 0.0}
            base = special[metric] if metric in special else static[metric]
            rows.append({"metric": metric, "mean": float(v.mean()), "p50": _percentile(v, 50),
                         "p99": _percentile(v, 99), "min": float(v.min()),
                         "max": float(v.max()), "static": float(base)})
        return pd.DataFrame(rows)

    @property
    def layers(self) -> pd.DataFrame:
        """Per layer, the mean over inputs."""
        frame = layer_frame(self.df)
        inputs = self.df["input"].nunique()
        summed = [c for c in frame.columns if frame[c].dtype.kind in "if"
                  and c not in ("rows", "cols", "utilization")]
        frame[summed] = frame[summed] / inputs
        return frame

    @property
    def totals(self) -> dict[str, float]:
        """Means over the inputs (as a static run's totals), plus ``cycles_p50``,
        ``cycles_p99`` and ``inputs``."""
        out = {k: v / self.df["input"].nunique() for k, v in totals(self.df).items()}
        out["utilization"] = totals(self.df)["utilization"]
        out.update(power(self.df))  # a ratio: not divided by the inputs
        out["cycles_p50"] = _percentile(self.per_input["cycles"], 50)
        out["cycles_p99"] = _percentile(self.per_input["cycles"], 99)
        out["inputs"] = float(self.df["input"].nunique())
        return out

    @property
    def phases(self) -> pd.DataFrame:
        return phase_frame(self.df)

    @property
    def title(self) -> str:
        return (f"{self.workload.name} on {self.arch.name}: dynamic pruning over "
                f"{self.df['input'].nunique()} inputs")

    def _repr_html_(self) -> str:
        """Jupyter: the title, the distribution over the inputs, the mean layers (HTML)."""
        return _html(self.title, self.summary, self.layers, "layers (mean per input)")

    def to_parquet(self, path: str | Path) -> Path:
        """Write :attr:`df` (every input's rows, with ``input``) as Parquet."""
        return _to_parquet(self.df, path)

    def to_file(self, path: str | Path) -> Path:
        """Write :attr:`df` as CSV, Parquet or JSON records by ``path``'s extension."""
        return write_frame(self.df, path)

    def table(self) -> str:
        s = self.summary.set_index("metric")
        head = "".join(f"{c:>12}" for c in ("mean", "p50", "p99", "min", "max", "static"))
        lines = [self.title, f"{'':14}{head}"]
        units = {"seconds": "s", "energy_pj": "J", "dram_bytes": "B", "gate_energy_pj": "J"}
        for metric, r in s.iterrows():
            scale = 1e-12 if metric.endswith("_pj") else 1.0
            cells = [fmt_si(r[c] * scale, units.get(metric, "")) for c in
                     ("mean", "p50", "p99", "min", "max", "static")]
            lines.append(f"{metric:14}" + "".join(f"{c:>12}" for c in cells))
        speed = s.loc["cycles", "static"] / s.loc["cycles", "mean"] if s.loc["cycles", "mean"] \
            else 0.0
        def share(part: str, whole: str) -> float:
            return 100 * s.loc[part, "mean"] / s.loc[whole, "mean"] if s.loc[whole, "mean"] \
                else 0.0

        lines.append(f"mean speed-up over the static run: {speed:.2f}×; the gates take "
                     f"{share('gate_cycles', 'cycles'):.2g} % of the cycles and "
                     f"{share('gate_energy_pj', 'energy_pj'):.2g} % of the energy")
        return "\n".join(lines)
