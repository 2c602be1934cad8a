"""(d) The Pareto front: design points in latency × energy, the non-dominated ones in colour
(sweep results)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsesim.errors import SparsesimError
from sparsesim.plot.style import (OKABE_ITO, SWEEP_KEY, need, ok_rows, plain_log_ticks,
                                    series_label, varying_params)


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
    df = ok_rows(df)
    need(df, [x, y, SWEEP_KEY], "Pareto", numeric=[x, y])
    varying = varying_params(df, [])
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
    drawn: set[str] = set()  # the kinds on some front: the only ones the legend lists
    dominated = 0
    for ax, (key, g) in zip(axes.ravel(), groups):
        xv, yv = g[x].to_numpy(float) * sx, g[y].to_numpy(float) * sy
        front = pareto_mask(xv, yv)
        dominated += int((~front).sum())
        ax.scatter(xv[~front], yv[~front], color="#BBBBBB", s=16, zorder=1)
        order = np.argsort(xv[front])
        ax.plot(xv[front][order], yv[front][order], color="#333333", lw=1, zorder=2)
        for (_, row), px, py in zip(g[front].iloc[order].iterrows(), xv[front][order],
                                    yv[front][order]):
            c = OKABE_ITO[kinds.index(str(row[design[0]])) % len(OKABE_ITO)] if design else \
                OKABE_ITO[0]
            if design:
                drawn.add(str(row[design[0]]))
            ax.scatter([px], [py], color=c, s=36, zorder=3, edgecolor="black", linewidth=0.5)
            text = series_label(row, design[1:]) if len(design) > 1 else ""
            ax.annotate(text, (px, py), textcoords="offset points", xytext=(6, 3),
                        fontsize="x-small")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax, "x")
        plain_log_ticks(ax, "y")
        ax.grid(True, which="both", alpha=0.25)
        ax.set_xlabel("latency (µs)" if x == "seconds" else x)
        ax.set_ylabel("energy (µJ)" if y == "energy_pj" else y)
        title = series_label(g.iloc[0], facets) if facets else "all points"
        ax.set_title(f"{title}\n{int(front.sum())} on the front, {int((~front).sum())} dominated",
                     fontsize="small")
    for ax in axes.ravel()[len(groups):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="none", color="#BBBBBB",
                      label="dominated")] if dominated else []
    handles += [Line2D([], [], marker="o", linestyle="none", color=OKABE_ITO[i % 8],
                       markeredgecolor="black", label=f"front: {design[0].split('.')[-1]}={k}")
                for i, k in enumerate(kinds) if k in drawn]  # colours stay fixed per kind
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize="small")
    fig.suptitle("design space (lower-left is better); front points labelled with their design")
    return fig
