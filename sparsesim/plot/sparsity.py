"""(b) The sparsity trade-off: latency and energy vs sparsity, one line per design (sweep
results)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sparsesim.plot.style import (SWEEP_KEY, Encoding, at_most_three, need, ok_rows,
                                    plain_log_ticks, varying_params)


def sparsity_tradeoff(df: pd.DataFrame, *, x: str = "sparsity.weight_density",
                      series: Sequence[str] | None = None) -> Figure:
    """(b) Latency and energy vs sparsity, one line per PE kind / format (sweep results).

    ``x`` is a density column (plotted as sparsity = 1 − density) or a sparsity column.
    """
    df = ok_rows(df)
    need(df, [x, "seconds", SWEEP_KEY], "sparsity trade-off", numeric=[x, "seconds"])
    keys = list(series) if series is not None else varying_params(df, [x])
    has_energy = "energy_pj" in df
    fig, axes = plt.subplots(1, 2 if has_energy else 1, figsize=(11 if has_energy else 6, 4.2),
                             squeeze=False, layout="constrained")
    xs = (1 - df[x].astype(float)) * 100 if "density" in x else df[x].astype(float) * 100
    data = df.assign(_x=xs)
    groups = list(data.groupby(keys, sort=True)) if keys else [((), data)]
    enc = Encoding(data, at_most_three(keys, x))
    panels = [("seconds", 1e3, "latency (ms)"), ("energy_pj", 1e-9, "energy (mJ)")]
    for ax, (col, scale, label) in zip(axes[0], panels[: 2 if has_energy else 1]):
        for _, g in groups:
            g = g.sort_values("_x")
            ax.plot(g["_x"], g[col] * scale, markersize=5, **enc.style(g.iloc[0]))
        ax.set_xlabel("weight sparsity (%)" if "weight" in x else f"{x} sparsity (%)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.grid(True, which="both", alpha=0.25)
    network = df["network"].iloc[0] if "network" in df else ""
    fig.suptitle(f"{network}: latency{' and energy' if has_energy else ''} vs sparsity")
    enc.legend(axes[0][-1])
    return fig
