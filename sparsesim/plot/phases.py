"""(g) The phase breakdown of a training step: per layer, cycles and energy stacked by phase,
the online pruning unit's rows apart (``sparsesim run --training -o``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsesim.names import RowKind
from sparsesim.plot.rows import execution_order, mean_over_inputs
from sparsesim.plot.style import OKABE_ITO, need


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
    online = df["kind"] == RowKind.ONLINE
    phase = df["phase"].astype(str)
    return phase.where(~online, phase + ": online pruning unit")


def phase_breakdown(df: pd.DataFrame, *, top: int | None = 40) -> Figure:
    """(g) A training step per layer: cycles and energy stacked by phase (forward, backward,
    update), the online pruning unit's rows apart (per-GEMM rows with a ``phase`` column).

    The legend gives each part's share of the whole step; parts too thin to see still have
    their share there.
    """
    need(df, ["phase", "layer", "kind", "cycles"], "phases", numeric=["cycles"])
    df, inputs = mean_over_inputs(df)
    parts = _phase_parts(df)
    order = [p for p in _PHASE_STYLE if (parts == p).any()]
    order += sorted(set(parts) - set(order))  # a phase this module does not know yet
    has_energy = "energy_pj" in df
    cols = ["cycles"] + (["energy_pj"] if has_energy else [])
    table = df.assign(_part=parts).pivot_table(index="layer", columns="_part", values=cols,
                                               aggfunc="sum", fill_value=0, sort=False)
    layer_order = execution_order(list(dict.fromkeys(df["layer"])))
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
                     + (f",\n{_pct(share.loc[p, 'energy_pj'])} of energy" if has_energy else ""))
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
    # two lines: one ran past the figure once it was drawn narrower than its default
    fig.suptitle(f"{network}: per-layer cycles{' and energy' if has_energy else ''} by phase\n"
                 f"({', '.join(notes)})")
    return fig
