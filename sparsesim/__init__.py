"""sparsesim: a simulator of sparse DNN accelerators (systolic arrays, sparse formats, pruning).

>>> from sparsesim import simulate
>>> result = simulate("resnet18", "default")
>>> result.df        # one row per GEMM: shapes, folds, MACs, cycles, utilization, seconds
"""

from sparsesim.api import simulate
from sparsesim.arch.config import Arch, load_arch
from sparsesim.engine.dynamic import DynamicInputs, synthetic_dynamic
from sparsesim.errors import SparsesimError
from sparsesim.results import DynamicResult, SimResult
from sparsesim.workload.network import Workload, load_workload

__all__ = ["Arch", "DynamicInputs", "DynamicResult", "SimResult", "SparsesimError", "Workload",
           "load_arch", "load_workload", "simulate", "synthetic_dynamic"]
__version__ = "0.1.0"
