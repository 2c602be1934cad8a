"""The look every figure shares: Okabe–Ito colours (colour-blind safe), markers and line
styles, the series encoding (which parameter gets colour, line style, marker), plain log ticks,
and the input checks that turn a wrong results file into one error naming the column.

Every axis names its unit. Importing this module selects the Agg backend (files, not windows),
except inside a Jupyter kernel, whose inline backend shows the figures in the notebook.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # a notebook keeps its inline backend: figures show there
    matplotlib.use("Agg")  # files, not windows: the CLI and tests run headless

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import Locator, LogLocator, MaxNLocator  # noqa: E402

from sparsesim.errors import SparsesimError  # noqa: E402


OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")


class Encoding:
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


def at_most_three(keys: Sequence[str], x: str) -> list[str]:
    """Colour, line style and marker can tell three parameters apart, not more."""
    if len(keys) > 3:
        raise SparsesimError(f"at most 3 parameters may vary besides {x}, got {', '.join(keys)}"
                             "; filter the results or pass series=", field="series")
    return list(keys)


def series_label(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={row[k]}" for k in keys)


def varying_params(df: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Parameter columns (sweep inputs) that take more than one value."""
    result_cols = {"network", "layers", "dense_macs", "effectual_macs", "cycles",
                   "compute_cycles", "stall_cycles", "utilization", "seconds", "point_id",
                   "status", "error", "elapsed_s", "energy_pj", "dram_read_bytes",
                   "dram_write_bytes", "accuracy", "area_mm2", "leakage_w", "power_avg_w",
                   "power_peak_w", "within_budget", "budget"}
    cols = [c for c in df.columns if c not in result_cols and c not in exclude
            and not c.startswith(("energy_", "dram_", "sram_"))]
    varying = [c for c in cols if df[c].astype(str).nunique() > 1]
    # The PE kind and the formats are what readers compare first: give them colour.
    first = ("pe.kind", "memory.format_w", "memory.format_a", "array.dataflow")
    return sorted(varying, key=lambda c: first.index(c) if c in first else len(first))


def plain_log_ticks(ax: plt.Axes, axis: str = "y") -> None:
    """Log axes with ordinary numbers (2, 5, 10) instead of 2×10⁰, and at least two labelled
    ticks whatever the range: an axis spanning a decade or more gets the decades and the 2s
    and 5s between them; a narrower one (a sweep whose energies differ by 30 %) gets evenly
    spaced plain numbers, where the decade ticks would have left one label, or none."""
    from matplotlib.ticker import FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis

    def minor(v: float, _: object) -> str:  # label the 2s and 5s between decades only
        lead = f"{v:.0e}"[0]
        return f"{v:g}" if lead in "25" else ""

    target.set_major_locator(_PlainLogLocator(minor=False))
    target.set_minor_locator(_PlainLogLocator(minor=True))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(minor))


def _narrow(vmin: float, vmax: float) -> bool:
    """Whether a positive log range spans less than a decade."""
    lo, hi = sorted((vmin, vmax))
    return bool(lo > 0 and hi / lo < 10)


class _PlainLogLocator(Locator):
    """Log ticks (decades; 2–9 between them as minors) on a range of a decade or more; evenly
    spaced round numbers (``MaxNLocator``) and no minors on a narrower one."""

    def __init__(self, *, minor: bool) -> None:
        self.minor = minor
        self.log = LogLocator(subs=tuple(range(2, 10)) if minor else (1.0,))
        self.even = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10])

    def set_axis(self, axis: Any) -> None:
        super().set_axis(axis)
        self.log.set_axis(axis)
        self.even.set_axis(axis)

    def __call__(self) -> Sequence[float]:
        vmin, vmax = self.axis.get_view_interval()  # type: ignore[union-attr]
        return self.tick_values(vmin, vmax)

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        if not _narrow(vmin, vmax):
            return list(self.log.tick_values(vmin, vmax))
        if self.minor:
            return []
        lo, hi = sorted((vmin, vmax))
        return [v for v in self.even.tick_values(lo, hi) if v > 0]


SWEEP_KEY = "point_id"
"""The column only sweep results have (one row per point): the sparsity and Pareto figures
need it (the accuracy figure needs ``accuracy``, which per-GEMM files lack), so a
per-GEMM ``run -o`` file — which has latency and energy columns too, one row per GEMM — is
refused instead of drawn as if its GEMMs were design points."""


def need(df: pd.DataFrame, columns: Sequence[str], what: str,
         numeric: Sequence[str] = ()) -> None:
    """Raise naming the first of ``columns`` that ``df`` lacks (``what``: the plot's name), or
    the first cell of a ``numeric`` column that is not a number: a figure of strings (an
    accuracy column of records, say) is refused, not drawn as a category axis."""
    missing = [c for c in columns if c not in df]
    if missing:
        raise SparsesimError(f"the {what} plot needs column(s) {', '.join(missing)}; got "
                             f"{', '.join(map(str, df.columns))}", field=missing[0])
    if df.empty:
        raise SparsesimError(f"the {what} plot has no rows to draw", field=columns[0]
                             if columns else None)
    for column in numeric:
        if column not in df or pd.api.types.is_numeric_dtype(df[column]) and not \
                pd.api.types.is_bool_dtype(df[column]):
            continue
        values = df[column]
        bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
        if pd.api.types.is_bool_dtype(values) or bad.any():
            row = int(bad.to_numpy().argmax()) if bad.any() else 0
            cell = str(values.iloc[row])
            cell = cell if len(cell) <= 40 else cell[:39] + "…"
            raise SparsesimError(f"the {what} plot needs numbers in column {column!r}; row "
                                 f"{row + 1} holds {cell!r}", field=column)


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The sweep points that ran (``status`` ok); every row of a frame without a status."""
    return df[df["status"] == "ok"] if "status" in df else df
