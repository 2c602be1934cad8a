"""Validation: the simulator's numbers against anchors nobody here wrote (issue 9).

Each check compares what the simulator reports with an external anchor — SCALE-Sim v3's own
output, a closed form of DESIGN.md written again independently, a bound that follows from the
hardware's arithmetic, a published trend or system result — under a tolerance fixed before the
run, and returns frozen :class:`Check` rows (pass or fail, never tuned after the fact).
:func:`run_checks` runs the registry (all of it, or the fast subset the test suite runs);
:func:`write_report` writes the markdown report: one table row per check, then a section per
group saying what was set up and why the numbers differ where they do, with the figures
linked relatively.

One module per idea:

* ``registry`` — result rows, anchors and sources, the run context, the check registry and
  running it (how to add a check is written there);
* one module per check group, each with its checks, its report section and its figure:
  ``scalesim`` (dense cycles and traffic against SCALE-Sim's committed reports; the
  comparison helpers shared with ``tests/test_scalesim.py``), ``scalesim_nm`` (its N:M mode),
  ``scalesim_stall`` (its bandwidth-limited mode), ``scalesim_live`` (SCALE-Sim run now),
  ``formulas`` (the seed's closed forms), ``nm`` (N:M bounds), ``sparseloop`` (Sparseloop's
  Figure 1 trend), ``systems`` (Cnvlutin and SCNN in shape), ``area`` (Eyeriss's area);
* ``report`` — the markdown report; ``data`` — where the oracle files are;
  ``scalesim_runner`` — running SCALE-Sim itself.
"""

from __future__ import annotations

from sparsesim.validation.registry import (
    ANCHORS,
    CHECKS,
    GROUPS,
    SOURCES,
    Check,
    CheckSpec,
    Context,
    ValidationRun,
    register,
    run_checks,
)

# The check modules register their checks and report sections on import: this order is the
# report's order (keep it; an import sorter must not reorder these lines).
# isort: off
from sparsesim.validation import scalesim  # noqa: F401
from sparsesim.validation import scalesim_nm  # noqa: F401
from sparsesim.validation import scalesim_stall  # noqa: F401
from sparsesim.validation import scalesim_live  # noqa: F401
from sparsesim.validation import formulas  # noqa: F401
from sparsesim.validation import nm  # noqa: F401
from sparsesim.validation import registers  # noqa: F401
from sparsesim.validation import sparseloop  # noqa: F401
from sparsesim.validation import systems  # noqa: F401
from sparsesim.validation import area  # noqa: F401
# isort: on

from sparsesim.validation.nm import byte_ratio
from sparsesim.validation.report import render_report, write_report
from sparsesim.validation.scalesim import (
    TRAFFIC_RULES,
    oracle_workload,
    scalesim_arch,
    scalesim_comparison,
    traffic_mismatches,
)
from sparsesim.validation.scalesim_runner import scalesim_python

__all__ = [
    "ANCHORS",
    "CHECKS",
    "GROUPS",
    "SOURCES",
    "TRAFFIC_RULES",
    "Check",
    "CheckSpec",
    "Context",
    "ValidationRun",
    "byte_ratio",
    "oracle_workload",
    "register",
    "render_report",
    "run_checks",
    "scalesim_arch",
    "scalesim_comparison",
    "scalesim_python",
    "traffic_mismatches",
    "write_report",
]
