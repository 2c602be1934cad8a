"""(a) The format-size figure: bits per element of every format vs sparsity (the format
study, ``sparsesim formats -o``), drawn by the study's own ``plot_crossover``."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sparsesim.plot.style import need


def format_sizes(df: pd.DataFrame) -> Figure:
    """(a) Bits per element of every format vs sparsity, crossovers marked (format study)."""
    from sparsesim.formats.study import plot_crossover

    need(df, ["format", "value_bits", "sparsity", "bits_per_element"], "format-size",
         numeric=["value_bits", "sparsity", "bits_per_element"])
    return plot_crossover(df)
