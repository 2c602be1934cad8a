"""The machine that runs a lowered workload and returns one result row per GEMM.

Compute timing is the dense fold model of ``lower.py`` (exactly SCALE-Sim v3's cycles).
Memory is ideal here — it never stalls — so ``stall_cycles`` is 0 and ``cycles`` equals
``compute_cycles``; the DRAM → SRAM model adds stalls without changing this interface.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsesim.arch import Arch
from sparsesim.lower import Gemm, lower, plan
from sparsesim.workload import Workload


@dataclass(frozen=True, slots=True)
class GemmResult:
    """One GEMM (all ``count`` instances) of one layer on one arch. Cycles are clock cycles."""

    network: str
    layer: str
    op: str
    gemm: str
    count: int
    m: int
    k: int
    n: int
    dataflow: str
    rows: int
    cols: int
    folds: int
    fold_cycles: int
    dense_macs: int
    cycles: int
    compute_cycles: int
    stall_cycles: int
    utilization: float
    seconds: float


def run_gemm(gemm: Gemm, *, network: str, op: str, arch: Arch) -> GemmResult:
    a = arch.array
    p = plan(gemm, a.dataflow, a.rows, a.cols)
    compute = p.compute_cycles
    stall = 0  # ideal memory
    cycles = compute + stall
    return GemmResult(
        network=network, layer=gemm.layer, op=op, gemm=gemm.name, count=gemm.count,
        m=gemm.m, k=gemm.k, n=gemm.n, dataflow=a.dataflow, rows=a.rows, cols=a.cols,
        folds=gemm.count * p.folds, fold_cycles=p.fold_cycles, dense_macs=gemm.dense_macs,
        cycles=cycles, compute_cycles=compute, stall_cycles=stall,
        utilization=gemm.dense_macs / (cycles * a.rows * a.cols),
        seconds=cycles / arch.clock_hz,
    )


def run(workload: Workload, arch: Arch) -> list[GemmResult]:
    """Every GEMM of every layer, in execution order (layers run one after another)."""
    return [
        run_gemm(gemm, network=workload.name, op=layer.op, arch=arch)
        for layer in workload.layers
        for gemm in lower(layer)
    ]
