"""(i) The storage-format choice per GEMM and operand (``sparsesim run -o``): which format
each operand's tiles are stored in — with an ``auto`` format, what it picked per tile (a
split cell: the share of the tiles each format won) — from the ``format_{a,w,o}_chosen``
columns (:func:`sparsesim.formats.auto.chosen_text`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sparsesim.formats.auto import parse_chosen
from sparsesim.plot.style import OKABE_ITO, need

CHOSEN = {"A": "format_a_chosen", "W": "format_w_chosen", "O": "format_o_chosen"}
"""Operand → the result column naming the format its tiles are stored in."""
_OPERAND_TEXT = {"A": "A (inputs)", "W": "W (weights)", "O": "O (outputs)"}


def _shares(cell: object) -> dict[str, float]:
    """A cell's formats and the share of the tiles each holds (one format: all of them)."""
    text = "" if pd.isna(cell) else str(cell)
    counts = parse_chosen(text)
    if counts is None:
        return {text: 1.0}
    total = sum(counts.values())
    return {name: n / total for name, n in counts.items()} if total else {}


def formats_chosen(df: pd.DataFrame) -> Figure:
    """(i) One row per GEMM (first input of a dynamic run), one column per operand, coloured
    by the format its tiles are stored in; a split cell shows an ``auto`` format's per-tile
    mix (share of the tiles)."""
    need(df, ["layer", "gemm", *CHOSEN.values()], "formats-chosen")
    rows = df
    if "count" in rows:  # GEMMs only: rows beside the array store no tiles
        rows = rows[rows["count"] > 0]
    if "input" in rows and rows["input"].nunique() > 1:
        rows = rows[rows["input"] == rows["input"].iloc[0]]
    need(rows, ["layer"], "formats-chosen")
    phases = rows["phase"].nunique() if "phase" in rows else 1
    per_layer = rows.groupby("layer", sort=False)["gemm"].transform("size")
    labels = [(f"{r.phase}: " if phases > 1 else "") + (f"{r.layer}.{r.gemm}" if n > 1
                                                        else str(r.layer))
              for r, n in zip(rows.itertuples(), per_layer, strict=True)]
    cells = [[_shares(cell) for cell in rows[CHOSEN[op]]] for op in CHOSEN]
    names = sorted({name for column in cells for cell in column for name in cell})
    colour = {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(names)}
    hatch = {name: ("" if i < len(OKABE_ITO) else "//") for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.24 * len(rows) + 1.6)), layout="constrained")
    for j, column in enumerate(cells):
        for i, cell in enumerate(column):
            left = float(j)
            for name, share in sorted(cell.items(), key=lambda kv: (-kv[1], kv[0])):
                ax.barh(i, 0.92 * share, left=left + 0.04, height=0.8, color=colour[name],
                        hatch=hatch[name], edgecolor="white", linewidth=0.5)
                left += 0.92 * share
    ax.set_xlim(0, len(CHOSEN))
    ax.set_xticks([j + 0.5 for j in range(len(CHOSEN))], [_OPERAND_TEXT[op] for op in CHOSEN])
    ax.set_yticks(range(len(rows)), labels, fontsize="small")
    ax.set_ylim(len(rows) - 0.5, -0.5)  # execution order, top to bottom
    ax.set_xlabel("operand (a split cell: share of its tiles per format)")
    ax.set_ylabel("GEMM (execution order)")
    ax.tick_params(axis="x", length=0)
    ax.legend(handles=[Patch(facecolor=colour[n], hatch=hatch[n], edgecolor="white", label=n)
                       for n in names], title="stored as", loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small",
              title_fontsize="small")
    network = rows["network"].iloc[0] if "network" in rows else ""
    ax.set_title(f"{network}: storage format per GEMM and operand", fontsize="medium")
    return fig
