"""(h) The latency distribution of a dynamic run: per-input latency with mean, p50 and p99
(``sparsesim run --dynamic N -o``), and the histogram drawing other studies reuse. Latencies
are in seconds; the axes pick ms or µs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sparsesim.errors import SparsesimError
from sparsesim.names import RowKind
from sparsesim.plot.style import OKABE_ITO, need


def latency_stats(seconds: np.ndarray) -> dict[str, float]:
    """Mean, p50 and p99 (numpy's linear interpolation, as ``DynamicResult.summary``)."""
    v = np.asarray(seconds, dtype=float)
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99))}


def _time_unit(seconds: float) -> tuple[float, str]:
    return (1e3, "ms") if seconds >= 1e-3 else (1e6, "µs")


_STAT_STYLE: dict[str, tuple[str, Any]] = {"mean": ("#000000", "--"), "p50": (OKABE_ITO[0], "-"),
               "p99": (OKABE_ITO[3], ":"), "static": ("#777777", "-.")}


_LINE_PT = 12.0
"""Vertical step between the statistics' labels (points): one small-font line and a gap."""


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
        # Each label on its own line, a line (in points) below the one before: labels never
        # meet, whatever the figure's size (a placement found at one size — moving a label
        # down only where it hit another — overlapped once the figure was drawn smaller).
        label = ax.annotate(f"{stat} {x:.4g} {unit}", (x, 0.97), xycoords=text_at,
                            xytext=(3 if right else -3, -_LINE_PT * len(boxes)),
                            textcoords="offset points",
                            ha="left" if right else "right", va="top", fontsize="small",
                            color=colour, gid=gid, bbox={"facecolor": "white", "edgecolor": "none",
                                                         "pad": 0.5, "alpha": 0.85})
        b = label.get_window_extent().transformed(to_axes)
        boxes.append((b.x0, b.y0, b.x1, b.y1))
        lowest = min(lowest, b.y0)
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
    rows include the gates (``kind`` gate) — each input's latency split into the layers and
    the gates.

    ``static_seconds`` draws the static run (no dynamic pruning) as a reference line.
    """
    need(df, ["input", "seconds", "kind"], "latency", numeric=["seconds"])
    if "network" in df and df["network"].nunique() > 1:
        raise SparsesimError(f"rows of {df['network'].nunique()} networks: filter to one",
                             field="network")
    gate = df["kind"] == RowKind.GATE  # the gate GEMVs and their rankings, nothing else
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
