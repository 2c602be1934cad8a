"""An N:M array runs a layer the pruning left dense (and, when the arch allows it, a sparse
layer that is not N:M) densely, says so in the row (``nm_mode``), and takes exactly the
dense array's cycles for it; a run that compresses nothing is refused."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sparsesim.api import simulate
from sparsesim.arch.config import with_overrides
from sparsesim.arch.pe import PeConfig
from sparsesim.errors import SparsesimError
from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm
from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.workload.network import Workload

NET = Workload("net", (Conv2d("conv1", c=3, h=10, w=10, m=8, r=3, s=3, padding=1),
                       Conv2d("conv2", c=8, h=10, w=10, m=16, r=3, s=3, padding=1),
                       Linear("fc", in_features=16, out_features=10, tokens=4)))


def _arch(kind, **pe):
    sets = {"pe.kind": kind, "memory.ideal": True, **{f"pe.{k}": v for k, v in pe.items()}}
    from sparsesim.arch.config import load_arch
    return with_overrides(load_arch("default"), sets)


def _rows(trace, kind, **pe):
    df = simulate(trace=trace, arch=_arch(kind, **pe)).df
    return df.set_index("layer")


def test_dense_first_conv_runs_densely_with_the_dense_arrays_cycles():
    trace = prune_workload(NET, PruneSpec(granularity="nm", nm=(2, 4), skip=("conv1",)))
    assert "conv1" not in trace.masks  # left dense by the pruning
    nm = _rows(trace, "nm")
    dense = _rows(trace, "dense")
    assert nm.loc["conv1", "nm_mode"] == "dense"
    assert nm.loc["conv1", "cycles"] == dense.loc["conv1", "cycles"]
    # closed form: conv1 is M = 100 pixels, K = 27, N = 8 on 32x32 os, dense
    assert nm.loc["conv1", "compute_cycles"] == plan(Gemm("conv1", "w", 100, 27, 8), "os",
                                                     32, 32).compute_cycles
    for name, k in (("conv2", 72), ("fc", 16)):  # K' = K/2 for 2:4 (K multiple of 4)
        assert nm.loc[name, "nm_mode"] == "nm"
        m, n = (100, 16) if name == "conv2" else (4, 10)
        assert nm.loc[name, "compute_cycles"] == plan(Gemm(name, "w", m, k // 2, n), "os",
                                                      32, 32).compute_cycles
    assert set(dense["nm_mode"]) == {"none"}


def test_non_conformant_layer_refused_unless_allowed():
    nm = prune_workload(Workload("a", NET.layers[1:]), PruneSpec(granularity="nm"))
    loose = prune_workload(Workload("b", NET.layers[:1]), PruneSpec(sparsity=0.5, seed=3))
    # conv1 unstructured 50 % (not 2:4), conv2 and fc 2:4
    trace = Trace(NET, {**loose.masks, **nm.masks})
    with pytest.raises(SparsesimError, match="not 2:4-conformant") as err:
        simulate(trace=trace, arch=_arch("nm"))
    assert err.value.layer == "conv1"
    allowed = _rows(trace, "nm", nm_nonconformant="dense")
    dense = _rows(trace, "dense")
    assert allowed.loc["conv1", "nm_mode"] == "dense"
    assert allowed.loc["conv1", "cycles"] == dense.loc["conv1", "cycles"]
    assert allowed.loc["conv1", "effectual_macs"] == dense.loc["conv1", "effectual_macs"]
    assert (allowed.loc[["conv2", "fc"], "nm_mode"] == "nm").all()


def test_a_run_that_compresses_nothing_is_refused():
    with pytest.raises(SparsesimError, match="every layer would run densely") as err:
        simulate(NET, _arch("nm"))
    assert err.value.field == "pe.kind"


def test_the_field_is_for_nm_arrays_only():
    with pytest.raises(SparsesimError, match="nm_nonconformant"):
        PeConfig(kind="skip", nm_nonconformant="dense")
    with pytest.raises(SparsesimError, match="unknown nm_nonconformant"):
        PeConfig(kind="nm", nm_nonconformant="maybe")


def test_cli_row_says_dense(tmp_path):
    trace = prune_workload(NET, PruneSpec(granularity="nm", skip=("conv1",)))
    path, out = tmp_path / "t.npz", tmp_path / "r.csv"
    trace.save(path)
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "run", "--trace", str(path),
                           "--set", "pe.kind=nm", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert dict(zip(df["layer"], df["nm_mode"])) == {"conv1": "dense", "conv2": "nm", "fc": "nm"}
    assert np.all(df["pe_kind"] == "nm")


def test_an_m_to_m_unit_is_the_dense_array_not_a_refused_run():
    """An n = m unit compresses nothing by its own ratio (K' = K): it runs, at the dense
    array's cycles (SCALE-Sim's N:M mode at 4:4 is its dense formula), where a 2:4 unit on
    the same dense weights is refused for changing nothing."""
    dense = simulate(NET, _arch("dense")).df.set_index("layer")
    mm = simulate(NET, _arch("nm", n=4, m=4)).df.set_index("layer")
    assert (mm.loc[dense.index, "compute_cycles"] == dense["compute_cycles"]).all()
    with pytest.raises(SparsesimError):
        simulate(NET, _arch("nm", n=2, m=4))
