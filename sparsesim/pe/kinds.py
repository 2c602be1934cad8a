"""PE kinds: how many cycles a GEMM's folds take when PEs can exploit zeros (DESIGN.md §3).

One registry, one rule each:

* ``dense`` and ``gate``: every step issues — dense fold cycles (``gate`` differs in energy:
  a product whose ``operand`` is zero is clock-gated — ``A``: a zero activation, as
  Eyeriss gates on the activation alone; ``W``: a zero weight; ``both``: either — and the
  other products are full MACs);
* ``skip``: a fold takes its slowest synchronisation group's effectual steps plus the dense
  fill/drain; a step is effectual where the product's ``operand`` (A, W or both) is non-zero;
* ``nm``: ``n`` multipliers per group of ``m`` weights along K: K becomes
  ``floor(K/m)·n + min(n, K mod m)`` (SCALE-Sim's K′, :mod:`sparsesim.rules.nm`) wherever
  the dataflow maps K; non-conformant weights are an error naming the layer and group. Only a
  weight operand carries static N:M metadata, so GEMMs of two activations (attention's
  ``QKᵀ`` and ``PV``) run uncompressed, and so do a training step's backward GEMMs whose
  transposed weights are not N:M along their K (:mod:`sparsesim.engine.training`).

Effectual MACs are the products with both operands non-zero — ``Σ_k nnz(A[:, k])·nnz(W[k, :])``
— whatever the PE kind: the work the network really needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.arch.pe import PeConfig
from sparsesim.kernels.skip import fold_steps
from sparsesim.mapping.dataflows import Dataflow, FoldPlan, plan
from sparsesim.mapping.gemm import GemmOperands, OperandKind
from sparsesim.names import PeKind, check_complete
from sparsesim.rules.nm import Violation, check_conformant, compressed_k, first_violation


@dataclass(frozen=True, slots=True)
class ComputeResult:
    """Compute of all instances of one GEMM. Steps are stream steps (cycles) per fold.

    ``fold_cycles`` holds each instance's per-fold cycles in execution order (one array shared
    by all instances when there is one; ``None``: every fold takes ``plan.fold_cycles``).
    ``issued_macs`` are the products PEs multiply at full energy, ``gated_macs`` the ones a
    gating PE detects as zero and clock-gates.
    """

    plan: FoldPlan
    compute_cycles: int
    effectual_macs: int
    max_steps: int
    mean_steps: float
    issued_macs: int = 0
    gated_macs: int = 0
    fold_cycles: tuple[np.ndarray, ...] | None = None

    @property
    def load_imbalance(self) -> float:
        """Slowest group over the mean group, step-weighted over folds (1.0 = balanced)."""
        return self.max_steps / self.mean_steps if self.mean_steps else 1.0


def effectual_macs(ops: GemmOperands) -> int:
    """Products with both operands non-zero, over all instances."""
    if ops.a is None and ops.w is None:
        return ops.gemm.dense_macs
    return ops.total(lambda a, w: int(a.sum(axis=0, dtype=np.int64) @ w.sum(axis=1,
                                                                            dtype=np.int64)))


def _dense(ops: GemmOperands, p: FoldPlan, arch: Arch) -> ComputeResult:
    steps = ops.gemm.count * p.folds * p.extents[2]
    return ComputeResult(p, p.compute_cycles, effectual_macs(ops), steps, float(steps),
                         issued_macs=ops.gemm.dense_macs)


def _gate(ops: GemmOperands, p: FoldPlan, arch: Arch) -> ComputeResult:
    """Dense timing; the products whose ``operand`` (A, W or both) is zero are clock-gated."""
    c = _dense(ops, p, arch)
    issued = _issued(ops, arch.pe.operand)
    return replace(c, issued_macs=issued, gated_macs=ops.gemm.dense_macs - issued)


def _issued(ops: GemmOperands, operand: str) -> int:
    """Products a skipping or gating PE multiplies: those whose ``operand`` is non-zero
    (``both``: both are, the effectual MACs; ``A``: the activation is, whatever the weight)."""
    if operand == "both":
        return effectual_macs(ops)
    g = ops.gemm
    if operand == "A":
        return ops.total(lambda a, w: int(np.count_nonzero(a)) * g.n)
    return ops.total(lambda a, w: g.m * int(np.count_nonzero(w)))


_AXES = {"A": ("m", "k"), "W": ("k", "n")}
_GATED = {"A": "A", "W": "W", "both": "A or W"}


def _oriented(masks: dict[str, np.ndarray], first: str, second: str) -> np.ndarray | None:
    """The operand mask indexed by GEMM axes (first, second), transposed as needed."""
    for name, axes in _AXES.items():
        if axes == (first, second):
            return masks[name]
        if axes == (second, first):
            return masks[name].T
    return None


def _instance_steps(a: np.ndarray, w: np.ndarray, df: Dataflow, rows: int, cols: int,
                    pe: PeConfig) -> tuple[np.ndarray, float]:
    """(slowest group's steps per fold in execution order, Σ over folds of mean steps)."""
    if pe.operand == "A":
        w = np.ones_like(w)
    elif pe.operand == "W":
        a = np.ones_like(a)
    masks = {"A": a, "W": w}
    stationary = _oriented(masks, df.row_axis, df.col_axis)
    h = _oriented(masks, df.row_axis, df.stream_axis)
    assert h is not None
    if stationary is not None:
        mx, total, groups = fold_steps(h, stationary, stationary=True, rows=rows, cols=cols,
                                       sync=pe.sync)
    else:
        v = _oriented(masks, df.col_axis, df.stream_axis)
        assert v is not None
        mx, total, groups = fold_steps(h, v, stationary=False, rows=rows, cols=cols,
                                       sync=pe.sync)
    # [row folds, col folds] → execution order: column folds outer, row folds inner.
    return mx.T.ravel(), float((total / groups).sum())


def _skip(ops: GemmOperands, p: FoldPlan, arch: Arch) -> ComputeResult:
    if ops.a is None and ops.w is None:
        return _dense(ops, p, arch)
    a_cfg = arch.array
    df = p.dataflow
    g = ops.gemm
    instances = 1 if ops.shared else g.count
    max_steps, mean_steps = 0, 0.0
    per_fold = []
    fill = df.overhead_cycles(a_cfg.rows, a_cfg.cols)
    for i in range(instances):
        mx, mean = _instance_steps(*ops.instance(i), df, a_cfg.rows, a_cfg.cols, arch.pe)
        max_steps += int(mx.sum())
        mean_steps += mean
        per_fold.append(mx + fill)
    if ops.shared:
        max_steps *= g.count
        mean_steps *= g.count
    overhead = g.count * p.folds * fill
    return ComputeResult(p, max_steps + overhead, effectual_macs(ops), max_steps, mean_steps,
                         issued_macs=_issued(ops, arch.pe.operand), fold_cycles=tuple(per_fold))


def _nm(ops: GemmOperands, p: FoldPlan, arch: Arch) -> ComputeResult:
    g, pe = ops.gemm, arch.pe
    if g.w_kind is not OperandKind.WEIGHT:
        return _dense(ops, p, arch)
    if g.phase != "forward" and (ops.w is None or any(
            first_violation(w, pe.n, pe.m) is not None
            for w in (ops.w if ops.w.ndim == 3 else [ops.w]))):
        return _dense(ops, p, arch)  # backward: Wᵀ is N:M along N; the unit runs it dense
    if ops.w is None:  # dense weights: every group is full, the first one fails if any does
        group = min(pe.m, g.k)
        if group > pe.n:
            raise Violation(group=0, first=0, last=group - 1, column=0, count=group).error(
                pe.n, pe.m, tensor="W", layer=g.layer, field="W",
                context=" (the weights are dense: prune them, e.g. with a trace or an N:M "
                "weight mask)")
    else:
        for i in range(1 if ops.w.ndim == 2 else g.count):
            check_conformant(ops.w if ops.w.ndim == 2 else ops.w[i], pe.n, pe.m, tensor="W",
                             layer=g.layer, field="W",
                             context=f" (instance {i})" if i else "")
    compressed = replace(g, k=compressed_k(g.k, pe.n, pe.m))
    pc = replace(p, gemm=compressed)  # the unit's plan: the same array on K′
    steps = g.count * pc.folds * pc.extents[2]
    return ComputeResult(pc, pc.compute_cycles, effectual_macs(ops), steps, float(steps),
                         issued_macs=compressed.dense_macs)


@dataclass(frozen=True, slots=True)
class PeKindSpec:
    """One PE kind: its compute rule, and how a result table's title names the PEs."""

    compute: Callable[[GemmOperands, FoldPlan, Arch], ComputeResult]
    title: Callable[[PeConfig], str]


PE_KINDS: Mapping[PeKind, PeKindSpec] = MappingProxyType({
    PeKind.DENSE: PeKindSpec(_dense, lambda pe: "dense PEs"),
    PeKind.GATE: PeKindSpec(_gate, lambda pe: f"gating PEs (products with a zero "
                                              f"{_GATED[pe.operand]} gated)"),
    PeKind.SKIP: PeKindSpec(_skip, lambda pe: f"skipping PEs ({pe.operand} zeros, {pe.sync} sync)"),
    PeKind.NM: PeKindSpec(_nm, lambda pe: f"{pe.n}:{pe.m} PEs"),
})
check_complete(PE_KINDS, PeKind, "PE kind")


def compute(ops: GemmOperands, arch: Arch, fold_plan: FoldPlan | None = None) -> ComputeResult:
    """Compute cycles and effectual work of one GEMM (all instances) on ``arch``;
    ``fold_plan`` is the GEMM's plan on the array if the caller has built it already."""
    a = arch.array
    p = fold_plan or plan(ops.gemm, a.dataflow, a.rows, a.cols)
    return PE_KINDS[PeKind(arch.pe.kind)].compute(ops, p, arch)
