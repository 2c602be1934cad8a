"""(c) The layer breakdown: per layer, cycles (compute, stall) and energy by component
(per-GEMM rows, ``sparsesim run -o``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsesim.plot.rows import execution_order, mean_over_inputs
from sparsesim.plot.style import OKABE_ITO, need


def layer_breakdown(df: pd.DataFrame, *, top: int | None = 40) -> Figure:
    """(c) Per layer: stacked cycles (compute, stall) and energy by component (per-GEMM rows).

    A training step's rows (a ``phase`` column with more than one value) are summed per
    layer — forward, backward and update together, said in the title; the ``phases`` plot
    splits them. A dynamic run's rows (an ``input`` column) are averaged over the inputs.
    """
    need(df, ["layer", "compute_cycles", "stall_cycles"], "layer breakdown",
         numeric=["compute_cycles", "stall_cycles"])
    df, inputs = mean_over_inputs(df)
    phases = list(df["phase"].unique()) if "phase" in df else []
    layers = df.groupby("layer", sort=False)
    cyc = layers[["compute_cycles", "stall_cycles"]].sum()
    cyc = cyc.loc[execution_order(list(cyc.index))]
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
