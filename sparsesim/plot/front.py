"""(d) The Pareto front: design points in latency × energy, the non-dominated ones in colour
(sweep results); under a budget (:mod:`sparsesim.budget`) the fronts are over the points within
it, the others shown as over budget, with area on an axis."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsesim.budget import Constraint, budget_text, parse_budget, within_budget
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


AREA_PAIRS = (("seconds", "energy_pj"), ("seconds", "area_mm2"), ("energy_pj", "area_mm2"))
"""The panels of a budgeted front: latency × energy, and each against silicon area."""

_LABELS = {"seconds": ("latency (µs)", 1e6), "energy_pj": ("energy (µJ)", 1e-6),
           "area_mm2": ("area (mm²)", 1.0), "power_avg_w": ("average power (W)", 1.0)}


def pareto(df: pd.DataFrame, *, x: str = "seconds", y: str = "energy_pj",
           label: Sequence[str] | None = None,
           budget: Sequence[Constraint] | str | None = None) -> Figure:
    """(d) Design points in latency × energy; the Pareto front in colour, dominated in grey.

    Workload-side parameters (``workload``, ``trace``, ``sparsity.*``) are not design
    choices: each of their combinations gets its own panel row and its own front.

    ``budget`` (constraints, or their text ``"area_mm2<=2"``; by default the ``budget`` the
    rows were judged under, if any): fronts are drawn over the points within it only, the
    others are crosses marked "over budget" (never dropped), and each row of panels adds
    latency × area and energy × area (:data:`AREA_PAIRS`) when the rows have ``area_mm2``.
    """
    df = ok_rows(df)
    need(df, [x, y, SWEEP_KEY], "Pareto", numeric=[x, y])
    constraints = _budget(df, budget)
    varying = varying_params(df, [])
    facets = [c for c in varying if c in ("workload", "trace") or c.startswith("sparsity.")]
    design = list(label) if label is not None else [c for c in varying if c not in facets]
    groups = list(df.groupby(facets, sort=True)) if facets else [((), df)]
    if len(groups) > 9:
        raise SparsesimError(f"{len(groups)} workload/sparsity combinations: filter the results "
                             "to at most 9", field=",".join(facets))
    pairs: tuple[tuple[str, str], ...] = ((x, y),)
    if constraints is not None and "area_mm2" in df:
        need(df, ["area_mm2"], "Pareto under a budget", numeric=["area_mm2"])
        pairs = ((x, y), *(p for p in AREA_PAIRS if p != (x, y)))
    inside = (within_budget(df, constraints) if constraints is not None
              else pd.Series(True, index=df.index))
    if len(pairs) > 1:
        cols, nrows = len(pairs), len(groups)
        panels = [(g, pair) for g in groups for pair in pairs]
    else:
        cols = min(3, len(groups))
        nrows = -(-len(groups) // cols)
        panels = [(g, pairs[0]) for g in groups]
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols + 1.5, 4.2 * nrows),
                             squeeze=False, layout="constrained")
    kinds = sorted(df[design[0]].astype(str).unique()) if design else []
    drawn: set[str] = set()  # the kinds on some front: the only ones the legend lists
    marks = {"dominated": False, "over": False}
    for ax, ((key, g), (px_col, py_col)) in zip(axes.ravel(), panels):
        _panel(ax, g, inside.loc[g.index].to_numpy(bool), px_col, py_col, design, kinds, drawn,
               marks)
        title = series_label(g.iloc[0], facets) if facets else "all points"
        ax.set_title(f"{title}\n{ax.get_title()}", fontsize="small")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="none", color="#BBBBBB",
                      label="dominated")] if marks["dominated"] else []
    if marks["over"]:
        handles.append(Line2D([], [], marker="x", linestyle="none", color="#999999",
                              label="over budget"))
    handles += [Line2D([], [], marker="o", linestyle="none", color=OKABE_ITO[i % 8],
                       markeredgecolor="black", label=f"front: {design[0].split('.')[-1]}={k}")
                for i, k in enumerate(kinds) if k in drawn]  # colours stay fixed per kind
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize="small")
    under = f" under the budget {budget_text(constraints)}" if constraints else ""
    fig.suptitle(f"design space{under} (lower-left is better); front points labelled, where "
                 f"there is room, with "
                 "their design")
    return fig


def _budget(df: pd.DataFrame, budget: Sequence[Constraint] | str | None
            ) -> tuple[Constraint, ...] | None:
    """The constraints to draw under: given, or the one budget the rows were judged under."""
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])
               and c not in ("within_budget",)]
    if isinstance(budget, str):
        return parse_budget(budget, numeric, field="--budget")
    if budget is not None:
        return tuple(budget)
    if "budget" not in df:
        return None
    texts = {str(t) for t in df["budget"].dropna() if str(t)}
    if not texts:
        return None
    if len(texts) > 1:
        raise SparsesimError(f"rows judged under {len(texts)} budgets ({', '.join(sorted(texts))}):"
                             " give --budget", field="budget")
    return parse_budget(texts.pop(), numeric, field="budget")


def _label_room(xv: np.ndarray, yv: np.ndarray, fx: np.ndarray, fy: np.ndarray,
                width: float = 0.8, height: float = 0.07) -> list[bool]:
    """Which front points (in drawing order) get their label: a label runs right of its point,
    up to ``width`` of the panel wide and ``height`` high (log axes, fractions of the panel's
    data span); a point whose label would overlap one already placed stays unlabelled (its
    colour still says its kind)."""
    def frac(v: np.ndarray, all_: np.ndarray) -> np.ndarray:
        lo, hi = np.log(all_.min()), np.log(all_.max())
        return (np.log(v) - lo) / (hi - lo) if hi > lo else np.zeros_like(v)

    px, py = frac(fx, xv), frac(fy, yv)
    placed: list[tuple[float, float]] = []
    out = []
    for x, y in zip(px, py):
        free = all(abs(x - a) > width or abs(y - b) > height for a, b in placed)
        if free:
            placed.append((x, y))
        out.append(free)
    return out


def _panel(ax: plt.Axes, g: pd.DataFrame, inside: np.ndarray, x: str, y: str,
           design: Sequence[str], kinds: Sequence[str], drawn: set[str],
           marks: dict[str, bool]) -> None:
    """One panel: the front of the points ``inside`` the budget, the rest in grey."""
    xlabel, sx = _LABELS.get(x, (x, 1.0))
    ylabel, sy = _LABELS.get(y, (y, 1.0))
    xv, yv = g[x].to_numpy(float) * sx, g[y].to_numpy(float) * sy
    front = np.zeros(len(g), dtype=bool)
    if inside.any():
        front[inside] = pareto_mask(xv[inside], yv[inside])
    dominated = inside & ~front
    marks["dominated"] |= bool(dominated.any())
    marks["over"] |= bool((~inside).any())
    ax.scatter(xv[dominated], yv[dominated], color="#BBBBBB", s=16, zorder=1)
    ax.scatter(xv[~inside], yv[~inside], color="#999999", marker="x", s=16, zorder=1,
               linewidths=0.8)
    order = np.argsort(xv[front])
    ax.plot(xv[front][order], yv[front][order], color="#333333", lw=1, zorder=2)
    room = _label_room(xv, yv, xv[front][order], yv[front][order])
    for (_, row), px, py, free in zip(g[front].iloc[order].iterrows(), xv[front][order],
                                      yv[front][order], room):
        c = OKABE_ITO[kinds.index(str(row[design[0]])) % len(OKABE_ITO)] if design else \
            OKABE_ITO[0]
        if design:
            drawn.add(str(row[design[0]]))
        ax.scatter([px], [py], color=c, s=36, zorder=3, edgecolor="black", linewidth=0.5)
        text = series_label(row, design[1:]) if len(design) > 1 and free else ""
        ax.annotate(text, (px, py), textcoords="offset points", xytext=(6, 3),
                    fontsize="x-small")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax, "x")
    plain_log_ticks(ax, "y")
    ax.grid(True, which="both", alpha=0.25)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    over = int((~inside).sum())
    ax.set_title(f"{int(front.sum())} on the front, {int(dominated.sum())} dominated"
                 + (f", {over} over budget" if over else ""), fontsize="small")
