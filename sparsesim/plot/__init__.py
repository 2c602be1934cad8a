"""Trade-off figures from result DataFrames: each function takes a frame, returns a Figure.

The frames are what the API and the CLI write: per-GEMM rows of ``simulate(...).df`` (or a
``sparsesim run -o`` CSV), sweep results (``sparsesim sweep``), the format study
(``sparsesim formats -o``). No simulation happens here. One module per figure; the shared look
in :mod:`~sparsesim.plot.style`; the kinds in :mod:`~sparsesim.plot.registry`.

The names below are imported on first use, so that importing this package (the CLI does, for
the kinds) does not import matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sparsesim.plot.registry import KINDS, PlotKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.figure import Figure

    from sparsesim.plot.accuracy import accuracy_tradeoff
    from sparsesim.plot.choices import formats_chosen
    from sparsesim.plot.formats import format_sizes
    from sparsesim.plot.front import pareto, pareto_mask
    from sparsesim.plot.latencies import draw_latency_distribution, latency, latency_stats
    from sparsesim.plot.layers import layer_breakdown
    from sparsesim.plot.phases import PHASES, phase_breakdown
    from sparsesim.plot.roofs import roofline
    from sparsesim.plot.sparsity import sparsity_tradeoff
    from sparsesim.plot.style import LINESTYLES, MARKERS, OKABE_ITO

    PLOTS: dict[str, Callable[..., Figure]]

_HOME = {  # public name -> its module; every kind's figure function is public too
    "OKABE_ITO": "style", "MARKERS": "style", "LINESTYLES": "style", "PHASES": "phases",
    "pareto_mask": "front", "latency_stats": "latencies",
    "draw_latency_distribution": "latencies",
    **{kind.function: kind.module for kind in KINDS.values()},
}

__all__ = ["KINDS", "PLOTS", "PlotKind", *_HOME]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use; ``PLOTS`` maps every kind to its function."""
    if name == "PLOTS":
        value: Any = {kind.name: kind.load() for kind in KINDS.values()}
    elif name in _HOME:
        value = getattr(importlib.import_module(f"sparsesim.plot.{_HOME[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
