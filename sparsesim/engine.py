"""The machine that runs a lowered workload and returns one result row per GEMM.

Compute timing comes from the PE kind (``compute.py``): dense folds exactly as SCALE-Sim v3
counts them, or the zero-skipping / N:M rules on the layer's real or modelled masks. Memory
is ideal here — it never stalls — so ``stall_cycles`` is 0 and ``cycles`` equals
``compute_cycles``; the DRAM → SRAM model adds stalls without changing this interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sparsesim.arch import Arch
from sparsesim.compute import compute
from sparsesim.layers import Layer
from sparsesim.lower import GemmOperands, gemm_operands
from sparsesim.masks import LayerMasks, SparsityModel, check_masks
from sparsesim.trace import Trace
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
    pe_kind: str
    folds: int
    fold_cycles: int
    dense_macs: int
    effectual_macs: int
    a_density: float
    w_density: float
    cycles: int
    compute_cycles: int
    stall_cycles: int
    load_imbalance: float
    utilization: float
    seconds: float


def _density(mask: np.ndarray | None) -> float:
    return 1.0 if mask is None else float(np.count_nonzero(mask)) / max(mask.size, 1)


def run_gemm(ops: GemmOperands, *, network: str, op: str, arch: Arch) -> GemmResult:
    a = arch.array
    gemm = ops.gemm
    c = compute(ops, arch)
    stall = 0  # ideal memory
    cycles = c.compute_cycles + stall
    return GemmResult(
        network=network, layer=gemm.layer, op=op, gemm=gemm.name, count=gemm.count,
        m=gemm.m, k=gemm.k, n=gemm.n, dataflow=a.dataflow, rows=a.rows, cols=a.cols,
        pe_kind=arch.pe.kind, folds=gemm.count * c.plan.folds, fold_cycles=c.plan.fold_cycles,
        dense_macs=gemm.dense_macs, effectual_macs=c.effectual_macs,
        a_density=_density(ops.a), w_density=_density(ops.w), cycles=cycles,
        compute_cycles=c.compute_cycles, stall_cycles=stall, load_imbalance=c.load_imbalance,
        utilization=c.effectual_macs / (cycles * a.rows * a.cols) if cycles else 0.0,
        seconds=cycles / arch.clock_hz,
    )


def layers_with_masks(workload: Workload, *, sparsity: SparsityModel | None = None,
                      trace: Trace | None = None) -> Iterator[tuple[Layer, LayerMasks | None]]:
    """Each layer (after shape pruning) with its masks: from the trace, else the model."""
    if trace is not None:
        for layer in trace.workload.layers:
            yield layer, trace.masks.get(layer.name)
        return
    for index, layer in enumerate(workload.layers):
        if sparsity is None or sparsity.is_dense:
            yield layer, None
            continue
        shaped = sparsity.shape(layer)
        masks = sparsity.masks(shaped, index)
        check_masks(shaped, masks)
        yield shaped, masks


def run(workload: Workload, arch: Arch, *, sparsity: SparsityModel | None = None,
        trace: Trace | None = None) -> list[GemmResult]:
    """Every GEMM of every layer, in execution order (layers run one after another)."""
    name = trace.workload.name if trace is not None else workload.name
    return [
        run_gemm(ops, network=name, op=layer.op, arch=arch)
        for layer, masks in layers_with_masks(workload, sparsity=sparsity, trace=trace)
        for ops in gemm_operands(layer, masks)
    ]
