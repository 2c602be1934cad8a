"""Per-GEMM result rows seen per layer: a dynamic run's inputs averaged, layers in the order
they execute (a gate before the layer it gates). Shared by the layer and phase breakdowns."""

from __future__ import annotations

import pandas as pd


def mean_over_inputs(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A dynamic run's rows (one set per input) scaled to the mean input, and how many."""
    if "input" not in df or df["input"].nunique() <= 1:
        return df, 1
    n = int(df["input"].nunique())
    summed = [c for c in df.columns if (c.endswith(("cycles", "_pj", "_bytes", "macs"))
                                        or c == "seconds") and c != "fold_cycles"
              and df[c].dtype.kind in "if"]
    return df.assign(**{c: df[c] / n for c in summed}), n


def execution_order(names: list[str]) -> list[str]:
    """Layer names in first-seen order, a dynamic run's gate (``<layer>.gate``, whose rows
    come last) moved to just before the layer it gates, where it runs."""
    gates = {n.removesuffix(".gate"): n for n in names
             if n.endswith(".gate") and n.removesuffix(".gate") in names}
    out: list[str] = []
    for n in names:
        if n in gates.values():
            continue
        if n in gates:
            out.append(gates[n])
        out.append(n)
    return out
