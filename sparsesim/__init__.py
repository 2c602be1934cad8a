"""sparsesim: a simulator of sparse DNN accelerators (systolic arrays, sparse formats, pruning).

>>> from sparsesim import simulate
>>> result = simulate("resnet18", "default")
>>> result.df        # one row per GEMM: shapes, folds, MACs, cycles, utilization, seconds

The names below are imported on first use (PEP 562), so that importing a submodule — the
CLI does on every start, ``sparsesim --help`` included — does not import pandas, Numba and
simpy before a simulation needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsesim.api import simulate
    from sparsesim.arch.config import Arch, load_arch
    from sparsesim.engine.dynamic import DynamicInputs, synthetic_dynamic
    from sparsesim.errors import SparsesimError
    from sparsesim.results import DynamicResult, SimResult
    from sparsesim.workload.network import Workload, load_workload

_HOME = {  # public name -> the module that defines it
    "simulate": "sparsesim.api",
    "Arch": "sparsesim.arch.config", "load_arch": "sparsesim.arch.config",
    "DynamicInputs": "sparsesim.engine.dynamic",
    "synthetic_dynamic": "sparsesim.engine.dynamic",
    "SparsesimError": "sparsesim.errors",
    "DynamicResult": "sparsesim.results", "SimResult": "sparsesim.results",
    "Workload": "sparsesim.workload.network", "load_workload": "sparsesim.workload.network",
}
__all__ = ["Arch", "DynamicInputs", "DynamicResult", "SimResult", "SparsesimError", "Workload",
           "load_arch", "load_workload", "simulate", "synthetic_dynamic"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, then keep the name here."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
