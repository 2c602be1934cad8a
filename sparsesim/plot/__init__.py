"""Trade-off figures from result DataFrames: each function takes a frame, returns a Figure.

The frames are what the API and the CLI write: per-GEMM rows of ``simulate(...).df`` (or a
``sparsesim run -o`` CSV), sweep results (``sparsesim sweep``), the format study
(``sparsesim formats -o``). No simulation happens here. Colours are Okabe–Ito (colour-blind
safe); every axis names its unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files, not windows: the CLI and tests run headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

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
    from sparsesim.formats.study import plot_crossover

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


def _mean_over_inputs(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A dynamic run's rows (one set per input) scaled to the mean input, and how many."""
    if "input" not in df or df["input"].nunique() <= 1:
        return df, 1
    n = int(df["input"].nunique())
    summed = [c for c in df.columns if (c.endswith(("cycles", "_pj", "_bytes", "macs"))
                                        or c == "seconds") and c != "fold_cycles"
              and df[c].dtype.kind in "if"]
    return df.assign(**{c: df[c] / n for c in summed}), n


def _execution_order(names: list[str]) -> list[str]:
    """Layer names in first-seen order, a dynamic run's gate (``<layer>.gate``, whose rows
    come last) moved to just before the layer it gates, where it runs."""
    gates = {n.removesuffix(".gate"): n for n in names
             if n.endswith(".gate") and n.removesuffix(".gate") in names}
    out: list[str] = []
    for n in names:
        if n in gates.values():
            continue
        if n in gates:
            out.append(gates[n])
        out.append(n)
    return out


def layer_breakdown(df: pd.DataFrame, *, top: int | None = 40) -> Figure:
    """(c) Per layer: stacked cycles (compute, stall) and energy by component (per-GEMM rows).

    A training step's rows (a ``phase`` column with more than one value) are summed per
    layer — forward, backward and update together, said in the title; the ``phases`` plot
    splits them. A dynamic run's rows (an ``input`` column) are averaged over the inputs.
    """
    _need(df, ["layer", "compute_cycles", "stall_cycles"], "layer breakdown")
    df, inputs = _mean_over_inputs(df)
    phases = list(df["phase"].unique()) if "phase" in df else []
    layers = df.groupby("layer", sort=False)
    cyc = layers[["compute_cycles", "stall_cycles"]].sum()
    cyc = cyc.loc[_execution_order(list(cyc.index))]
    energy_cols = [c for c in df.columns if c.startswith("energy_") and c != "energy_pj"
                   and c.endswith("_pj")]
    # Eleven components, seven colours a reader can tell apart: MACs, registers, each SRAM
    # (read + write), DRAM, decode.
    groups_of = {"mac": "MAC (full + gated)", "gated_mac": "MAC (full + gated)",
                 "register": "registers", "dram": "DRAM", "decode": "format decode",
                 "online": "online pruning unit"}
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
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
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
    notes = []
    if len(phases) > 1:
        notes.append(f"training step: {' + '.join(phases)} summed per layer "
                     "(plot 'phases' splits them)")
    if inputs > 1:
        notes.append(f"mean of {inputs} inputs")
    if top is not None and len(layers) > top:
        notes.append(f"largest {top} layers")
    fig.suptitle(f"{network}: per-layer cycles{' and energy' if energy_cols else ''}"
                 + (f"\n{'; '.join(notes)}" if notes else ""))
    return fig


PHASES = ("forward", "backward", "update")
"""A training step's phases in execution order (the ``phase`` column of a run's rows)."""

_PHASE_STYLE = {  # colour per phase; the online pruning unit's rows hatched in a paler twin
    "forward": (OKABE_ITO[0], ""), "forward: online pruning unit": (OKABE_ITO[5], "////"),
    "backward": (OKABE_ITO[1], ""), "backward: online pruning unit": (OKABE_ITO[3], "////"),
    "update": (OKABE_ITO[2], ""),
}


def _pct(fraction: float) -> str:
    """A share as people read it: 61 %, 4.2 %, 0.013 %."""
    p = 100 * float(fraction)
    return f"{p:.0f} %" if p >= 10 else f"{p:.1f} %" if p >= 1 else f"{p:.2g} %"


def _phase_parts(df: pd.DataFrame) -> pd.Series:
    """Each row's part of the step: its phase, or ``<phase>: online pruning unit``."""
    online = (df["count"] == 0) & df["gemm"].astype(str).str.startswith("online_") \
        if "count" in df and "gemm" in df else pd.Series(False, index=df.index)
    phase = df["phase"].astype(str)
    return phase.where(~online, phase + ": online pruning unit")


def phase_breakdown(df: pd.DataFrame, *, top: int | None = 40) -> Figure:
    """(g) A training step per layer: cycles and energy stacked by phase (forward, backward,
    update), the online pruning unit's rows apart (per-GEMM rows with a ``phase`` column).

    The legend gives each part's share of the whole step; parts too thin to see still have
    their share there.
    """
    _need(df, ["phase", "layer", "cycles"], "phases")
    df, inputs = _mean_over_inputs(df)
    parts = _phase_parts(df)
    order = [p for p in _PHASE_STYLE if (parts == p).any()]
    order += sorted(set(parts) - set(order))  # a phase this module does not know yet
    has_energy = "energy_pj" in df
    cols = ["cycles"] + (["energy_pj"] if has_energy else [])
    table = df.assign(_part=parts).pivot_table(index="layer", columns="_part", values=cols,
                                               aggfunc="sum", fill_value=0, sort=False)
    layer_order = _execution_order(list(dict.fromkeys(df["layer"])))
    table = table.reindex(layer_order)
    if top is not None and len(table) > top:
        keep = set(table["cycles"].sum(axis=1).nlargest(top).index)
        table = table.loc[[name for name in table.index if name in keep]]
    totals = df.assign(_part=parts).groupby("_part")[cols].sum()
    rows = len(cols)
    fig, axes = plt.subplots(rows, 1, figsize=(max(8, 0.3 * len(table) + 4), 3.6 * rows),
                             squeeze=False, sharex=True, layout="constrained")
    pos = np.arange(len(table))
    panels = [("cycles", 1e-3, "cycles (thousands)"), ("energy_pj", 1e-6, "energy (µJ)")]
    for ax, (col, scale, label) in zip(axes[:, 0], panels[:rows]):
        bottom = np.zeros(len(table))
        for i, part in enumerate(order):
            colour, hatch = _PHASE_STYLE.get(part, (OKABE_ITO[4 + i % 4], ""))
            values = table[(col, part)].to_numpy(float) * scale
            ax.bar(pos, values, bottom=bottom, color=colour, hatch=hatch, edgecolor="white",
                   linewidth=0, label=part)
            bottom += values
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    share = totals / totals.sum()
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=_PHASE_STYLE.get(p, (OKABE_ITO[4], ""))[0], edgecolor="white",
                     hatch=_PHASE_STYLE.get(p, ("", ""))[1],
                     label=f"{p}: {_pct(share.loc[p, 'cycles'])} of cycles"
                     + (f", {_pct(share.loc[p, 'energy_pj'])} of energy" if has_energy else ""))
               for p in order]
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize="small",
               title="part of the step (share of its total)", title_fontsize="small")
    axes[-1][0].set_xticks(pos, table.index, rotation=90, fontsize="small")
    axes[-1][0].set_xlabel("layer (forward execution order)")
    network = df["network"].iloc[0] if "network" in df else ""
    total_cycles = float(totals["cycles"].sum())
    notes = [f"step {total_cycles / 1e6:.3g} M cycles"]
    if has_energy:
        notes.append(f"{float(totals['energy_pj'].sum()) * 1e-9:.3g} mJ")
    if inputs > 1:
        notes.append(f"mean of {inputs} inputs")
    if top is not None and len(layer_order) > top:
        notes.append(f"largest {top} of {len(layer_order)} layers")
    fig.suptitle(f"{network}: per-layer cycles{' and energy' if has_energy else ''} by phase "
                 f"({', '.join(notes)})")
    return fig


def _gate_rows(df: pd.DataFrame) -> pd.Series:
    """Rows of dynamic pruning's gates: the gate GEMVs (``op == "gate"``) and the online
    unit's top-k rankings (``gemm == "online_topk"``; with top-k activation pruning in the
    same run those would count here too — the CSV does not tell them apart)."""
    gate = pd.Series(False, index=df.index)
    if "op" in df:
        gate |= df["op"].astype(str) == "gate"
    if "gemm" in df:
        gate |= df["gemm"].astype(str) == "online_topk"
    return gate


def latency_stats(seconds: np.ndarray) -> dict[str, float]:
    """Mean, p50 and p99 (numpy's linear interpolation, as ``DynamicResult.summary``)."""
    v = np.asarray(seconds, dtype=float)
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99))}


def _time_unit(seconds: float) -> tuple[float, str]:
    return (1e3, "ms") if seconds >= 1e-3 else (1e6, "µs")


_STAT_STYLE: dict[str, tuple[str, Any]] = {"mean": ("#000000", "--"), "p50": (OKABE_ITO[0], "-"),
               "p99": (OKABE_ITO[3], ":"), "static": ("#777777", "-.")}


def draw_latency_distribution(ax: plt.Axes, series: Mapping[str, np.ndarray], *,
                              static_seconds: float | None = None,
                              bins: int | None = None) -> dict[str, dict[str, float]]:
    """Histograms of per-input latencies (seconds), one per ``series`` entry, on ``ax``, with
    each one's mean, p50 and p99 (and the static run, when given) as vertical lines, each
    annotated with its value; returns the stats per series (seconds).

    One series named ``""``: the statistics take their own colours. Otherwise each series
    has a colour, the statistics a line style each, and a legend right of the axes says so.
    Each line's and label's ``gid`` is ``stat`` (one unnamed series) or ``series:stat``.
    """
    stats = {name: latency_stats(v) for name, v in series.items()}
    every = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    scale, unit = _time_unit(float(np.median(every)))
    plain = list(series) == [""]
    colours = {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(series)}
    for name, v in series.items():
        n_bins = bins or int(np.clip(np.sqrt(len(v)) * 2, 5, 30))
        ax.hist(np.asarray(v, dtype=float) * scale, bins=n_bins, edgecolor="white",
                color=OKABE_ITO[5] if plain else colours[name], alpha=1.0 if plain else 0.55,
                label=name or "inputs")
    marks = [(name, stat, value) for name, st in stats.items() for stat, value in st.items()]
    if static_seconds is not None:
        marks.append(("", "static", float(static_seconds)))
    from matplotlib.transforms import blended_transform_factory

    text_at = blended_transform_factory(ax.transData, ax.transAxes)
    xs = [value * scale for *_, value in marks] + list(every * scale)
    lo, hi = min(xs), max(xs)
    span = hi - lo or max(hi, 1e-12)
    ax.set_xlim(lo - 0.04 * span, hi + 0.04 * span)
    fig = ax.get_figure(root=True)
    if fig is not None:
        fig.draw_without_rendering()  # lay out first: label sizes in axes units are final
    to_axes = ax.transAxes.inverted()
    boxes: list[tuple[float, float, float, float]] = []
    lowest = 1.0
    for name, stat, value in sorted(marks, key=lambda m: m[2]):
        colour, style = _STAT_STYLE[stat]
        if not plain and stat != "static":
            colour = colours[name]
        gid = stat if plain or stat == "static" else f"{name}:{stat}"
        x = value * scale
        ax.axvline(x, color=colour, linestyle=style, linewidth=1.4, gid=gid)
        right = x < lo + 0.7 * span
        label = ax.annotate(f"{stat} {x:.4g} {unit}", (x, 0.97), xycoords=text_at,
                            xytext=(3 if right else -3, 0), textcoords="offset points",
                            ha="left" if right else "right", va="top", fontsize="small",
                            color=colour, gid=gid, bbox={"facecolor": "white", "edgecolor": "none",
                                                         "pad": 0.5, "alpha": 0.85})
        # move each label down a line until it clears the labels placed before it
        for level in range(len(marks)):
            label.xy = (x, 0.97 - 0.085 * level)
            b = label.get_window_extent().transformed(to_axes)
            box = (b.x0 - 0.01, b.y0, b.x1 + 0.01, b.y1)
            if not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3]
                       for o in boxes):
                break
        boxes.append(box)
        lowest = min(lowest, box[1])
    tallest = max((p.get_height() for p in ax.patches if isinstance(p, Rectangle)),
                  default=1.0)
    ax.set_ylim(0, tallest / max(lowest - 0.04, 0.25))  # the bars stay below the labels
    if not plain:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles: list[Patch | Line2D] = [Patch(color=colours[n], alpha=0.55, label=n)
                                         for n in series]
        handles += [Line2D([], [], color="#333333", linestyle=_STAT_STYLE[k][1], label=k)
                    for k in ("mean", "p50", "p99")]
        if static_seconds is not None:
            c, st = _STAT_STYLE["static"]
            handles.append(Line2D([], [], color=c, linestyle=st, label="static run"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False, fontsize="small")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"latency per input ({unit})")
    ax.set_ylabel("inputs")
    ax.grid(True, axis="y", alpha=0.3)
    return stats


def latency(df: pd.DataFrame, *, static_seconds: float | None = None) -> Figure:
    """(h) A dynamic run (per-GEMM rows with an ``input`` column): the distribution of
    per-input latency (sum of ``seconds``) with mean, p50 and p99 marked, and — when the
    rows include the gates — each input's latency split into the layers and the gates.

    ``static_seconds`` draws the static run (no dynamic pruning) as a reference line.
    """
    _need(df, ["input", "seconds"], "latency")
    if "network" in df and df["network"].nunique() > 1:
        raise SparsesimError(f"rows of {df['network'].nunique()} networks: filter to one",
                             field="network")
    gate = _gate_rows(df)
    per = df.groupby("input")["seconds"].sum()
    gates = df[gate].groupby("input")["seconds"].sum().reindex(per.index, fill_value=0.0)
    has_gates = bool(gate.any())
    fig, axes = plt.subplots(1, 2 if has_gates else 1, figsize=(12 if has_gates else 6.5, 4.2),
                             squeeze=False, layout="constrained")
    stats = draw_latency_distribution(axes[0][0], {"": per.to_numpy()},
                                      static_seconds=static_seconds)[""]
    scale, unit = _time_unit(float(per.median()))
    axes[0][0].set_title(f"{len(per)} inputs", fontsize="small")
    if has_gates:
        ax = axes[0][1]
        order = per.sort_values().index
        pos = np.arange(len(order))
        body = (per - gates).loc[order].to_numpy() * scale
        ax.bar(pos, body, color=OKABE_ITO[0], width=0.85, label="layers")
        ax.bar(pos, gates.loc[order].to_numpy() * scale, bottom=body, color=OKABE_ITO[1],
               width=0.85, label="gates (GEMV + top-k)")
        if static_seconds is not None:
            c, s = _STAT_STYLE["static"]
            ax.axhline(static_seconds * scale, color=c, linestyle=s, label="static run")
        ax.set_xticks(pos, [str(i) for i in order], rotation=90, fontsize="x-small")
        ax.set_xlabel("input (sorted by latency)")
        ax.set_ylabel(f"latency ({unit})")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  fontsize="small")
        share = 100 * gates.sum() / per.sum() if per.sum() else 0.0
        ax.set_title(f"gates: mean {gates.mean() * scale:.3g} {unit}, {share:.2g} % of the "
                     "latency", fontsize="small")
    network = df["network"].iloc[0] if "network" in df else ""
    fig.suptitle(f"{network}: latency per input under dynamic pruning (mean "
                 f"{stats['mean'] * scale:.4g} {unit}, p99 {stats['p99'] * scale:.4g} {unit})")
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
    "phases": phase_breakdown,
    "latency": latency,
}
