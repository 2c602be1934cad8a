"""Trade-off figures from result DataFrames: each function takes a frame, returns a Figure.

The frames are what the API and the CLI write: per-GEMM rows of ``simulate(...).df`` (or a
``sparsesim run -o`` CSV), sweep results (``sparsesim sweep``), the format study
(``sparsesim formats -o``). No simulation happens here. Colours are Okabe–Ito (colour-blind
safe); every axis names its unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files, not windows: the CLI and tests run headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sparsesim.errors import SparsesimError  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df]
    if missing:
        raise SparsesimError(f"the {what} plot needs column(s) {', '.join(missing)}; got "
                             f"{', '.join(map(str, df.columns))}", field=missing[0])


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df


LINESTYLES = ("-", "--", ":", "-.")


class _Encoding:
    """Series keys → visual channels: colour for the 1st key, line style for the 2nd, marker
    for the 3rd (further keys go into the colour's label), with a legend per channel."""

    def __init__(self, df: pd.DataFrame, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        self.values = {k: sorted(df[k].astype(str).unique()) for k in self.keys}

    def style(self, row: pd.Series) -> dict[str, object]:
        out: dict[str, object] = {"color": OKABE_ITO[0], "linestyle": "-", "marker": "o"}
        for key, channel, palette in zip(self.keys, ("color", "linestyle", "marker"),
                                         (OKABE_ITO, LINESTYLES, MARKERS)):
            out[channel] = palette[self.values[key].index(str(row[key])) % len(palette)]
        return out

    def legend(self, ax: plt.Axes) -> None:
        from matplotlib.lines import Line2D

        handles: list[Line2D] = []
        for key, channel in zip(self.keys, ("color", "linestyle", "marker")):
            handles.append(Line2D([], [], linestyle="none", label=key.split(".")[-1] + ":"))
            for i, value in enumerate(self.values[key]):
                kw: dict[str, object] = {"color": "#555555", "linestyle": "-", "marker": None}
                if channel == "color":
                    kw["color"] = OKABE_ITO[i % len(OKABE_ITO)]
                elif channel == "linestyle":
                    kw["linestyle"] = LINESTYLES[i % len(LINESTYLES)]
                else:
                    kw.update(marker=MARKERS[i % len(MARKERS)], linestyle="none")
                handles.append(Line2D([], [], label=f"  {value}", **kw))  # type: ignore[arg-type]
        if handles:
            ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                      frameon=False, fontsize="small", handlelength=2.5)


def _at_most_three(keys: Sequence[str], x: str) -> list[str]:
    """Colour, line style and marker can tell three parameters apart, not more."""
    if len(keys) > 3:
        raise SparsesimError(f"at most 3 parameters may vary besides {x}, got {', '.join(keys)}"
                             "; filter the results or pass series=", field="series")
    return list(keys)


def _series_label(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={row[k]}" for k in keys)


def _varying(df: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Parameter columns (sweep inputs) that take more than one value."""
    result_cols = {"network", "layers", "dense_macs", "effectual_macs", "cycles",
                   "compute_cycles", "stall_cycles", "utilization", "seconds", "point_id",
                   "status", "error", "elapsed_s", "energy_pj", "dram_read_bytes",
                   "dram_write_bytes", "accuracy"}
    cols = [c for c in df.columns if c not in result_cols and c not in exclude
            and not c.startswith(("energy_", "dram_", "sram_"))]
    varying = [c for c in cols if df[c].astype(str).nunique() > 1]
    # The PE kind and the formats are what readers compare first: give them colour.
    first = ("pe.kind", "memory.format_w", "memory.format_a", "array.dataflow")
    return sorted(varying, key=lambda c: first.index(c) if c in first else len(first))


def _plain_log_ticks(ax: plt.Axes, axis: str = "y") -> None:
    """Log axes with ordinary numbers (2, 5, 10) instead of 2×10⁰."""
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _: object) -> str:  # label the 2s and 5s between decades only
        lead = f"{v:.0e}"[0]
        return f"{v:g}" if lead in "25" else ""

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(minor))


def format_sizes(df: pd.DataFrame) -> Figure:
    """(a) Bits per element of every format vs sparsity, crossovers marked (format study)."""
    from sparsesim.format_study import plot_crossover

    _need(df, ["format", "value_bits", "sparsity", "bits_per_element"], "format-size")
    return plot_crossover(df)


def sparsity_tradeoff(df: pd.DataFrame, *, x: str = "sparsity.weight_density",
                      series: Sequence[str] | None = None) -> Figure:
    """(b) Latency and energy vs sparsity, one line per PE kind / format (sweep results).

    ``x`` is a density column (plotted as sparsity = 1 − density) or a sparsity column.
    """
    df = _ok(df)
    _need(df, [x, "seconds"], "sparsity trade-off")
    keys = list(series) if series is not None else _varying(df, [x])
    has_energy = "energy_pj" in df
    fig, axes = plt.subplots(1, 2 if has_energy else 1, figsize=(11 if has_energy else 6, 4.2),
                             squeeze=False, layout="constrained")
    xs = (1 - df[x].astype(float)) * 100 if "density" in x else df[x].astype(float) * 100
    data = df.assign(_x=xs)
    groups = list(data.groupby(keys, sort=True)) if keys else [((), data)]
    enc = _Encoding(data, _at_most_three(keys, x))
    panels = [("seconds", 1e3, "latency (ms)"), ("energy_pj", 1e-9, "energy (mJ)")]
    for ax, (col, scale, label) in zip(axes[0], panels[: 2 if has_energy else 1]):
        for _, g in groups:
            g = g.sort_values("_x")
            ax.plot(g["_x"], g[col] * scale, markersize=5, **enc.style(g.iloc[0]))
        ax.set_xlabel("weight sparsity (%)" if "weight" in x else f"{x} sparsity (%)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.grid(True, which="both", alpha=0.25)
    network = df["network"].iloc[0] if "network" in df else ""
    fig.suptitle(f"{network}: latency{' and energy' if has_energy else ''} vs sparsity")
    enc.legend(axes[0][-1])
    return fig


def layer_breakdown(df: pd.DataFrame, *, top: int | None = 40) -> Figure:
    """(c) Per layer: stacked cycles (compute, stall) and energy by component (per-GEMM rows)."""
    _need(df, ["layer", "compute_cycles", "stall_cycles"], "layer breakdown")
    layers = df.groupby("layer", sort=False)
    cyc = layers[["compute_cycles", "stall_cycles"]].sum()
    energy_cols = [c for c in df.columns if c.startswith("energy_") and c != "energy_pj"
                   and c.endswith("_pj")]
    # Eleven components, seven colours a reader can tell apart: MACs, registers, each SRAM
    # (read + write), DRAM, decode.
    groups_of = {"mac": "MAC (full + gated)", "gated_mac": "MAC (full + gated)",
                 "register": "registers", "dram": "DRAM", "decode": "format decode"}
    if top is not None and len(cyc) > top:
        keep = (cyc.sum(axis=1)).nlargest(top).index
        cyc = cyc.loc[[name for name in cyc.index if name in keep]]
    rows = 2 if energy_cols else 1
    fig, axes = plt.subplots(rows, 1, figsize=(max(8, 0.28 * len(cyc) + 3), 3.6 * rows),
                             squeeze=False, sharex=True, layout="constrained")
    pos = np.arange(len(cyc))
    ax = axes[0][0]
    ax.bar(pos, cyc["compute_cycles"] / 1e3, color=OKABE_ITO[0], label="compute")
    ax.bar(pos, cyc["stall_cycles"] / 1e3, bottom=cyc["compute_cycles"] / 1e3,
           color=OKABE_ITO[3], label="stall (waiting on memory)")
    ax.set_ylabel("cycles (thousands)")
    ax.legend(loc="upper right", frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    if energy_cols:
        per_layer = layers[energy_cols].sum().loc[cyc.index] / 1e6
        grouped: dict[str, np.ndarray] = {}
        for col in energy_cols:
            part = col.removeprefix("energy_").removesuffix("_pj")
            name = groups_of.get(part, f"SRAM {part.split('_')[1].upper()}"
                                 if part.startswith("sram_") else part)
            grouped[name] = grouped.get(name, 0) + per_layer[col].to_numpy()
        bottom = np.zeros(len(per_layer))
        ax = axes[1][0]
        for i, (name, values) in enumerate(grouped.items()):
            ax.bar(pos, values, bottom=bottom, color=OKABE_ITO[i % len(OKABE_ITO)], label=name)
            bottom += values
        ax.set_ylabel("energy (µJ)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
                  fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    axes[-1][0].set_xticks(pos, cyc.index, rotation=90, fontsize="small")
    axes[-1][0].set_xlabel("layer (execution order)")
    network = df["network"].iloc[0] if "network" in df else ""
    fig.suptitle(f"{network}: per-layer cycles{' and energy' if energy_cols else ''}"
                 f"{f' (largest {top} layers)' if top is not None and len(layers) > top else ''}")
    return fig


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points not dominated (no other point is ≤ in both and < in one); lower is better."""
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        dominated = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        keep[i] = not dominated.any()
    return keep


def pareto(df: pd.DataFrame, *, x: str = "seconds", y: str = "energy_pj",
           label: Sequence[str] | None = None) -> Figure:
    """(d) Design points in latency × energy; the Pareto front in colour, dominated in grey.

    Workload-side parameters (``workload``, ``trace``, ``sparsity.*``) are not design
    choices: each of their combinations gets its own panel and its own front.
    """
    df = _ok(df)
    _need(df, [x, y], "Pareto")
    varying = _varying(df, [])
    facets = [c for c in varying if c in ("workload", "trace") or c.startswith("sparsity.")]
    design = list(label) if label is not None else [c for c in varying if c not in facets]
    groups = list(df.groupby(facets, sort=True)) if facets else [((), df)]
    if len(groups) > 9:
        raise SparsesimError(f"{len(groups)} workload/sparsity combinations: filter the results "
                             "to at most 9", field=",".join(facets))
    cols = min(3, len(groups))
    nrows = -(-len(groups) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols + 1.5, 4.2 * nrows),
                             squeeze=False, layout="constrained")
    sx = 1e6 if x == "seconds" else 1.0
    sy = 1e-6 if y == "energy_pj" else 1.0
    kinds = sorted(df[design[0]].astype(str).unique()) if design else []
    for ax, (key, g) in zip(axes.ravel(), groups):
        xv, yv = g[x].to_numpy(float) * sx, g[y].to_numpy(float) * sy
        front = pareto_mask(xv, yv)
        ax.scatter(xv[~front], yv[~front], color="#BBBBBB", s=16, zorder=1)
        order = np.argsort(xv[front])
        ax.plot(xv[front][order], yv[front][order], color="#333333", lw=1, zorder=2)
        for (_, row), px, py in zip(g[front].iloc[order].iterrows(), xv[front][order],
                                    yv[front][order]):
            c = OKABE_ITO[kinds.index(str(row[design[0]])) % len(OKABE_ITO)] if design else \
                OKABE_ITO[0]
            ax.scatter([px], [py], color=c, s=36, zorder=3, edgecolor="black", linewidth=0.5)
            text = _series_label(row, design[1:]) if len(design) > 1 else ""
            ax.annotate(text, (px, py), textcoords="offset points", xytext=(6, 3),
                        fontsize="x-small")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax, "x")
        _plain_log_ticks(ax, "y")
        ax.grid(True, which="both", alpha=0.25)
        ax.set_xlabel("latency (µs)" if x == "seconds" else x)
        ax.set_ylabel("energy (µJ)" if y == "energy_pj" else y)
        title = _series_label(g.iloc[0], facets) if facets else "all points"
        ax.set_title(f"{title}\n{int(front.sum())} on the front, {int((~front).sum())} dominated",
                     fontsize="small")
    for ax in axes.ravel()[len(groups):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="none", color="#BBBBBB", label="dominated")]
    handles += [Line2D([], [], marker="o", linestyle="none", color=OKABE_ITO[i % 8],
                       markeredgecolor="black", label=f"front: {design[0].split('.')[-1]}={k}")
                for i, k in enumerate(kinds)]
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize="small")
    fig.suptitle("design space (lower-left is better); front points labelled with their design")
    return fig


def roofline(df: pd.DataFrame, *, peak_macs_per_cycle: float, dram_bytes_per_cycle: float
             ) -> Figure:
    """(e) Layers by operational intensity (MACs per DRAM byte) vs attained MACs per cycle."""
    _need(df, ["layer", "effectual_macs", "cycles", "dram_read_bytes", "dram_write_bytes"],
          "roofline")
    per = df.groupby("layer", sort=False)[["effectual_macs", "cycles", "dram_read_bytes",
                                           "dram_write_bytes"]].sum()
    traffic = per["dram_read_bytes"] + per["dram_write_bytes"]
    oi = per["effectual_macs"] / traffic.clip(lower=1)
    attained = per["effectual_macs"] / per["cycles"].clip(lower=1)
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    lo, hi = max(oi.min() / 4, 1e-3), oi.max() * 4
    xs = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(xs, np.minimum(peak_macs_per_cycle, dram_bytes_per_cycle * xs), color="#000000",
            label=f"roof: {peak_macs_per_cycle:g} MAC/cycle, {dram_bytes_per_cycle:g} B/cycle")
    knee = peak_macs_per_cycle / dram_bytes_per_cycle
    ax.axvline(knee, color="#999999", ls=":", lw=1)
    ax.annotate(f"ridge {knee:.3g} MAC/B", (knee, peak_macs_per_cycle), fontsize="small",
                textcoords="offset points", xytext=(4, -12), color="#555555")
    ax.scatter(oi, attained, color=OKABE_ITO[0], s=22, label="layers", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operational intensity (effectual MACs per DRAM byte)")
    ax.set_ylabel("attained performance (effectual MACs per cycle)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", frameon=False)
    network = df["network"].iloc[0] if "network" in df else ""
    ax.set_title(f"{network}: roofline of the layers")
    return fig


def accuracy_tradeoff(df: pd.DataFrame, *, accuracy: str = "accuracy") -> Figure:
    """(f) Accuracy vs latency and vs energy, for points whose trace carries accuracy."""
    df = _ok(df)
    _need(df, [accuracy, "seconds"], "accuracy")
    df = df[df[accuracy].notna()]
    has_energy = "energy_pj" in df
    fig, axes = plt.subplots(1, 2 if has_energy else 1, figsize=(11 if has_energy else 6, 4.2),
                             squeeze=False, layout="constrained")
    # The traces (pruning levels) are the points along a line; the hardware makes the lines.
    keys = [k for k in _varying(df, [accuracy])
            if k not in ("trace", "workload") and not k.startswith("sparsity.")]
    enc = _Encoding(df, _at_most_three(keys, accuracy))
    groups = list(df.groupby(keys, sort=True)) if keys else [((), df)]
    for ax, (col, scale, label) in zip(axes[0], [("seconds", 1e6, "latency (µs)"),
                                                 ("energy_pj", 1e-6, "energy (µJ)")]):
        for _, g in groups:
            g = g.sort_values(col)
            ax.plot(g[col] * scale, g[accuracy] * 100, **enc.style(g.iloc[0]))
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, alpha=0.3)
    enc.legend(axes[0][-1])
    fig.suptitle("accuracy vs hardware cost")
    return fig


PLOTS = {
    "formats": format_sizes,
    "sparsity": sparsity_tradeoff,
    "layers": layer_breakdown,
    "pareto": pareto,
    "roofline": roofline,
    "accuracy": accuracy_tradeoff,
}
