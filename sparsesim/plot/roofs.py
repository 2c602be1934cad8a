"""(e) The roofline: layers by operational intensity (effectual MACs per DRAM byte) vs attained
MACs per cycle, under the array's compute roof and the DRAM bandwidth roof (``sparsesim run
-o``; the roofs come from an arch)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsesim.plot.style import OKABE_ITO, need


def roofline(df: pd.DataFrame, *, peak_macs_per_cycle: float, dram_bytes_per_cycle: float
             ) -> Figure:
    """(e) Layers by operational intensity (MACs per DRAM byte) vs attained MACs per cycle."""
    values = ["effectual_macs", "cycles", "dram_read_bytes", "dram_write_bytes"]
    need(df, ["layer", *values], "roofline", numeric=values)
    per = df.groupby("layer", sort=False)[["effectual_macs", "cycles", "dram_read_bytes",
                                           "dram_write_bytes"]].sum()
    traffic = per["dram_read_bytes"] + per["dram_write_bytes"]
    oi = per["effectual_macs"] / traffic.clip(lower=1)
    attained = per["effectual_macs"] / per["cycles"].clip(lower=1)
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    knee = peak_macs_per_cycle / dram_bytes_per_cycle
    # The ridge is always in view (a big array's ridge lies beyond every layer's intensity:
    # its line and label were drawn outside the axes), with room on both sides of it.
    lo = max(min(oi.min(), knee) / 4, 1e-3)
    hi = max(oi.max(), knee) * 4
    xs = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(xs, np.minimum(peak_macs_per_cycle, dram_bytes_per_cycle * xs), color="#000000",
            label=f"roof: {peak_macs_per_cycle:g} MAC/cycle, {dram_bytes_per_cycle:g} B/cycle")
    ax.set_xlim(lo, hi)
    ax.axvline(knee, color="#999999", ls=":", lw=1)
    # The label below the roof, on the side of the ridge with more room (left of it when
    # the ridge is in the right half of the axis), so it never runs past the axes.
    left = np.log10(knee) > (np.log10(lo) + np.log10(hi)) / 2
    ax.annotate(f"ridge {knee:.3g} MAC/B", (knee, peak_macs_per_cycle), fontsize="small",
                textcoords="offset points", xytext=(-4 if left else 4, -12),
                ha="right" if left else "left", va="top", color="#555555")
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
