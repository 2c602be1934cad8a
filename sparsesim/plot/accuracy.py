"""(f) The accuracy trade-off: accuracy vs latency and vs energy, for sweep points whose trace
carries an accuracy."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sparsesim.errors import SparsesimError
from sparsesim.plot.style import Encoding, at_most_three, need, ok_rows, varying_params


def accuracy_tradeoff(df: pd.DataFrame, *, accuracy: str = "accuracy") -> Figure:
    """(f) Accuracy vs latency and vs energy, for points whose trace carries accuracy."""
    df = ok_rows(df)
    need(df, [accuracy, "seconds"], "accuracy",  # a per-GEMM file has no accuracy
         numeric=[accuracy, "seconds", "energy_pj"])
    df = df[df[accuracy].notna()]
    if df.empty:
        raise SparsesimError("no point carries an accuracy (sweep over traces whose meta has "
                             "one)", field=accuracy)
    has_energy = "energy_pj" in df
    fig, axes = plt.subplots(1, 2 if has_energy else 1, figsize=(11 if has_energy else 6, 4.2),
                             squeeze=False, layout="constrained")
    # The traces (pruning levels) are the points along a line; the hardware makes the lines.
    keys = [k for k in varying_params(df, [accuracy])
            if k not in ("trace", "workload") and not k.startswith("sparsity.")]
    enc = Encoding(df, at_most_three(keys, accuracy))
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
