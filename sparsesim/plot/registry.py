"""The plot kinds: one entry per figure — the name the CLI offers, where its function lives,
and which results it draws. ``sparsesim.plot.PLOTS``, the CLI's choices and its help all read
this table, so adding a figure is its module plus one line here.

No matplotlib here: the CLI lists the kinds on every start and imports a figure's module
only to draw it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True, slots=True)
class PlotKind:
    """A figure: ``sparsesim.plot.<module>.<function>(df, **options) -> Figure``."""

    name: str
    """What ``sparsesim plot NAME`` calls it."""
    module: str
    """Its module in :mod:`sparsesim.plot` (named apart from the function, which the package
    re-exports under its own name)."""
    function: str
    results: str
    """The results it draws, as the command that writes them (the CLI's help)."""

    def load(self) -> Callable[..., Figure]:
        """The figure function (imports its module, and with it matplotlib)."""
        func: Callable[..., Figure] = getattr(
            importlib.import_module(f"sparsesim.plot.{self.module}"), self.function)
        return func


KINDS: dict[str, PlotKind] = {kind.name: kind for kind in (
    PlotKind("formats", "formats", "format_sizes", "sparsesim formats -o"),
    PlotKind("sparsity", "sparsity", "sparsity_tradeoff", "sparsesim sweep results"),
    PlotKind("layers", "layers", "layer_breakdown", "sparsesim run -o"),
    PlotKind("pareto", "front", "pareto", "sparsesim sweep results"),
    PlotKind("roofline", "roofs", "roofline", "sparsesim run -o"),
    PlotKind("accuracy", "accuracy", "accuracy_tradeoff", "sparsesim sweep results"),
    PlotKind("phases", "phases", "phase_breakdown", "sparsesim run --training -o"),
    PlotKind("latency", "latencies", "latency", "sparsesim run --dynamic N -o"),
    PlotKind("formats-chosen", "choices", "formats_chosen",
             "sparsesim run -o, e.g. with --set memory.format_w=auto"),
)}
"""Plot kinds by name, in the order the CLI lists them."""
