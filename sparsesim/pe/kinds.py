"""PE kinds: how many cycles a GEMM's folds take when PEs can exploit zeros (DESIGN.md §3).

One registry, one rule each:

* ``dense`` and ``gate``: every step issues — dense fold cycles (``gate`` differs in energy:
  a product whose ``operand`` is zero is clock-gated — ``A``: a zero activation, as
  Eyeriss gates on the activation alone; ``W``: a zero weight; ``both``: either — and the
  other products are full MACs);
* ``skip``: a fold takes its slowest synchronisation group's effectual steps plus the dense
  fill/drain; a step is effectual where the product's ``operand`` (A, W or both) is non-zero;
* ``nm``: ``n`` multipliers per group of ``m`` elements along K: K becomes
  ``K′ = floor(K/m)·n + min(n, K mod m)`` (SCALE-Sim's K′, :mod:`sparsesim.rules.nm`)
  wherever the dataflow maps K (the stream for ``os``, the rows for ``ws``/``is``), on the
  operand(s) ``pe.nm_operand`` names (below). A named operand that is not N:M-conformant along
  K is an error naming the layer and group, unless ``pe.nm_nonconformant = "dense"`` lets the
  unit run that GEMM densely; a GEMM where no named operand carries N:M metadata runs
  uncompressed — among them a *dense* weight operand (no mask, or a mask without a zero: a
  layer the pruning left dense, such as a first conv), as sparse tensor cores run a dense
  layer with their dense instructions. An uncompressed GEMM takes exactly the dense array's
  cycles (every step issues on K, not K′) and its row says ``nm_mode = "dense"``
  (:class:`~sparsesim.names.NmMode`); a run in which no GEMM is compressed is refused
  (:func:`~sparsesim.engine.inference.run_layers`), since the N:M unit would change nothing.

N:M operands (``pe.nm_operand``):

* ``W`` (default): the weights' static metadata. Only a weight operand has it, so GEMMs of
  two activations (attention's ``QKᵀ`` and ``PV``) run uncompressed, and so do a training
  step's backward GEMMs whose transposed weights are not N:M along their K
  (:mod:`sparsesim.engine.training`). Each PE's weight slot names one of the ``m``
  activations of its group (a 2-bit index for 2:4 selecting through an ``m``:1 mux, as the
  A100 sparse tensor core does, Mishra et al., arXiv 2104.08378), so the activation side
  delivers whole groups; every slot is a full MAC, padding slots included (no zero detection).
* ``A``: the activations' metadata, produced at run time by the online unit
  (``act_prune = nm``: its selection cost keeps its own rows, :mod:`sparsesim.pe.online`) or
  given in a trace — N:M activations as JointNF prunes them (adaptive N:M on weights and input
  activations, 2024). The mirror image of ``W``: the activation row's slot index selects the
  weight of its group; every slot is a full MAC. Only an A operand with a mask carries
  metadata: GEMMs whose A nothing pruned (the network's first input, the O projection's
  input) run uncompressed, and so do attention's score GEMMs ``QKᵀ`` and ``PV`` (both
  operands activations the online unit does not prune; a causal P is structure, not N:M
  pruning); a run where no layer input is pruned is refused
  (:func:`~sparsesim.engine.inference.run_layers`). A convolution's A is the im2col of its
  input, K over ``(c/groups, r, s)``: channel-N:M activations are N:M along K only under a 1×1
  kernel (:meth:`~sparsesim.mapping.conv.Im2col.nm_hint`); anything else is the N:M error.
* ``both`` (joint): **the weight's slots set the cycles**; the activation's metadata is
  intersected with them. Both operands stream compressed (``n`` values + indices per group);
  a PE compares its weight slot's in-group index with the activation group's kept indices
  (or reads the activation's ``m``-bit group bitmap at that index): on a match, with a kept
  weight, it selects that activation (an ``n``:1 mux) and does a full MAC; otherwise an
  operand is zero and the MAC is clock-gated. So issued MACs are the effectual products and
  the other slots gated. Why the weight side: its indices are static, so the compressed
  weight layout and the fold plan are fixed offline and the run-time metadata is only
  looked up, never re-laid; and with the unit's one ``n:m`` both sides' K′ are the same
  number, so cycles do not depend on the choice. Why not fewer cycles: the intersection
  holds 0..n matches per group, different for every output (i, j) a PE computes; condensing to it
  (what the Dual-side Sparse Tensor Core does with bitmaps and an outer product, Wang et
  al., ISCA 2021) makes the streams variable-length — the ``skip`` kind with its sync
  groups, not a lockstep N:M array. A GEMM where only one operand carries metadata (an
  activation as W; an A nothing pruned) runs as that operand's mode.

The N:M operand sets compute only: the bytes moved are the storage formats' (``format_a``,
``format_w``, e.g. ``nm``), as for every PE kind.

Effectual MACs are the products with both operands non-zero — ``Σ_k nnz(A[:, k])·nnz(W[k, :])``
— whatever the PE kind: the work the network really needs. A GEMM with an output mask
(:attr:`~sparsesim.mapping.gemm.GemmOperands.o`: causal ``QKᵀ``, whose future scores softmax
discards) needs only the products of its unmasked outputs:
``Σ_{m,n} O[m, n]·Σ_k A[m, k]·W[k, n]``.

**Output masks, per kind.** ``skip``: a product whose output is masked is not effectual, so
it is skipped like a zero operand, whatever ``operand`` says (the mask is structure the
controller knows before the GEMM starts, as causal kernels skip the upper triangle): the step
rule holds with E[r, c] also requiring O[m, n] (the *gated* kernel shape of
:mod:`sparsesim.kernels.skip`), and the issued MACs are the products with the named operand
non-zero *and* the output needed. ``dense`` computes every product (dense cycles, dense
MACs); ``gate`` gates on zero operands only (an output mask is not an operand it sees:
dense cycles, the masked products with non-zero operands are full MACs); ``nm`` does not
compress by it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.arch.pe import PeConfig
from sparsesim.kernels.skip import fold_steps, gated_fold_steps
from sparsesim.mapping.dataflows import Dataflow, FoldPlan, plan
from sparsesim.mapping.gemm import GemmOperands, OperandKind
from sparsesim.names import NmMode, NmNonconformant, PeKind, PeOperand, check_complete
from sparsesim.rules.nm import compressed_k, first_violation


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
    nm_mode: str = NmMode.NONE

    @property
    def load_imbalance(self) -> float:
        """Slowest group over the mean group, step-weighted over folds (1.0 = balanced)."""
        return self.max_steps / self.mean_steps if self.mean_steps else 1.0


def _total(ops: GemmOperands,
           per_instance: Callable[[np.ndarray, np.ndarray, np.ndarray], int]) -> int:
    """``per_instance(a, w, o)`` summed over all instances, dense masks filled in (``o``
    only called for with an output mask; computed once when the instances share masks)."""
    g = ops.gemm
    ones = np.ones((g.m, g.n), dtype=bool)

    def one(i: int) -> int:
        o = ops.o_mask(i)
        return per_instance(*ops.instance(i), ones if o is None else o)
    if ops.shared:
        return g.count * one(0)
    return sum(one(i) for i in range(g.count))


def _needed_products(a: np.ndarray, w: np.ndarray, o: np.ndarray) -> int:
    """``Σ_{m,n} O[m, n]·Σ_k A[m, k]·W[k, n]`` (exact: float64 holds these counts)."""
    return int(round(float(((a.astype(np.float64) @ w.astype(np.float64)) * o).sum())))


def effectual_macs(ops: GemmOperands) -> int:
    """Products with both operands non-zero and their output needed, over all instances."""
    if ops.o is not None:
        return _total(ops, _needed_products)
    if ops.a is None and ops.w is None:
        return ops.gemm.dense_macs
    return ops.total(lambda a, w: int(a.sum(axis=0, dtype=np.int64) @ w.sum(axis=1,
                                                                            dtype=np.int64)))


def _dense(ops: GemmOperands, p: FoldPlan, arch: Arch) -> ComputeResult:
    steps = ops.gemm.count * p.folds * p.extents[2]
    return ComputeResult(p, p.compute_cycles, effectual_macs(ops), steps, float(steps),
                         issued_macs=ops.gemm.dense_macs)


def _gate(ops: GemmOperands, p: FoldPlan, arch: Arch) -> ComputeResult:
    """Dense timing; the products whose ``operand`` (A, W or both) is zero are clock-gated
    (an output mask is not an operand: its products are gated only for a zero operand)."""
    c = _dense(ops, p, arch)
    issued = _issued(replace(ops, o=None), arch.pe.operand)
    return replace(c, issued_macs=issued, gated_macs=ops.gemm.dense_macs - issued)


def _issued(ops: GemmOperands, operand: str) -> int:
    """Products a skipping or gating PE multiplies: those whose ``operand`` is non-zero
    (``both``: both are, the effectual MACs; ``A``: the activation is, whatever the weight)
    and, with an output mask, whose output is needed."""
    if operand == "both":
        return effectual_macs(ops)
    g = ops.gemm
    if ops.o is not None:
        if operand == "A":  # Σ_m nnz(A[m, :])·nnz(O[m, :])
            return _total(ops, lambda a, w, o: int(a.sum(axis=1, dtype=np.int64)
                                                   @ o.sum(axis=1, dtype=np.int64)))
        return _total(ops, lambda a, w, o: int(w.sum(axis=0, dtype=np.int64)
                                               @ o.sum(axis=0, dtype=np.int64)))
    if operand == "A":
        return ops.total(lambda a, w: int(np.count_nonzero(a)) * g.n)
    return ops.total(lambda a, w: g.m * int(np.count_nonzero(w)))


_AXES = {"A": ("m", "k"), "W": ("k", "n"), "O": ("m", "n")}
_GATED = {"A": "A", "W": "W", "both": "A or W"}
_NM_TITLE = {"A": "activations", "W": "weights", "both": "weights × activations"}


def _oriented(masks: dict[str, np.ndarray], first: str, second: str) -> np.ndarray | None:
    """The operand mask indexed by GEMM axes (first, second), transposed as needed."""
    for name, mask in masks.items():
        axes = _AXES[name]
        if axes == (first, second):
            return mask
        if axes == (second, first):
            return mask.T
    return None


def _instance_steps(a: np.ndarray, w: np.ndarray, o: np.ndarray | None, df: Dataflow,
                    rows: int, cols: int, pe: PeConfig) -> tuple[np.ndarray, float]:
    """(slowest group's steps per fold in execution order, Σ over folds of mean steps);
    ``o``: the output mask (``None``: every output needed)."""
    if pe.operand == "A":
        w = np.ones_like(w)
    elif pe.operand == "W":
        a = np.ones_like(a)
    masks = {"A": a, "W": w}
    if o is not None:  # A, W and O: one on each pair of the array's axes
        masks["O"] = o
        h, v, s = (_oriented(masks, x, y) for x, y in (
            (df.row_axis, df.stream_axis), (df.col_axis, df.stream_axis),
            (df.row_axis, df.col_axis)))
        assert h is not None and v is not None and s is not None
        mx, total, groups = gated_fold_steps(h, v, s, rows=rows, cols=cols, sync=pe.sync)
        return mx.T.ravel(), float((total / groups).sum())
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
    if ops.a is None and ops.w is None and ops.o is None:
        return _dense(ops, p, arch)
    a_cfg = arch.array
    df = p.dataflow
    g = ops.gemm
    instances = 1 if ops.shared else g.count
    max_steps, mean_steps = 0, 0.0
    per_fold = []
    fill = df.overhead_cycles(a_cfg.rows, a_cfg.cols)
    for i in range(instances):
        mx, mean = _instance_steps(*ops.instance(i), ops.o_mask(i), df, a_cfg.rows, a_cfg.cols,
                                   arch.pe)
        max_steps += int(mx.sum())
        mean_steps += mean
        per_fold.append(mx + fill)
    if ops.shared:
        max_steps *= g.count
        mean_steps *= g.count
    overhead = g.count * p.folds * fill
    return ComputeResult(p, max_steps + overhead, effectual_macs(ops), max_steps, mean_steps,
                         issued_macs=_issued(ops, arch.pe.operand), fold_cycles=tuple(per_fold))


def _conformant(mask: np.ndarray, k_axis: int, ops: GemmOperands, pe: PeConfig, tensor: str,
                hint: str = "") -> bool:
    """Whether every instance of ``mask`` is ``pe.n:pe.m``-conformant along K (its
    ``k_axis``). A forward GEMM's violation is the N:M error; a backward GEMM's (a transposed
    operand, N:M along another axis) returns False: the unit runs it uncompressed."""
    g = ops.gemm
    for i, x in enumerate([mask] if mask.ndim == 2 else mask):
        bad = first_violation(x, pe.n, pe.m, k_axis=k_axis)
        if bad is None:
            continue
        if g.phase != "forward" or pe.nm_nonconformant == NmNonconformant.DENSE:
            return False
        shape = x.shape if k_axis == 0 else x.shape[::-1]
        raise bad.error(pe.n, pe.m, tensor=tensor, shape=shape, layer=g.layer, field=tensor,
                        context=(f" (instance {i})" if i else "") + hint)
    return True


def _w_slots(ops: GemmOperands, pe: PeConfig) -> bool:
    """Whether the weights give the unit its slots: a weight operand's static N:M metadata.
    An activation as W (``QKᵀ``, ``PV``, a weight gradient's ``dO``) has none."""
    g = ops.gemm
    if g.w_kind is not OperandKind.WEIGHT or ops.w is None or bool(ops.w.all()):
        return False  # no weight metadata, or a layer left dense: run densely
    view = ops.view
    hint = view.im2col.nm_weight_hint(pe.m) if view is not None and view.operand == "A" \
        and not view.transposed else ""
    return _conformant(ops.w, 0, ops, pe, "W", hint)


def _a_slots(ops: GemmOperands, pe: PeConfig) -> bool:
    """Whether the activations give the unit its slots: their N:M metadata, found at run time
    by the online unit (``act_prune = nm``) or given in a trace. An A operand without a mask
    was pruned by nothing and has none (the network's first input, the O projection's
    input), and attention's score GEMMs (both operands activations: Q, and P whose causal
    mask is structure, not N:M pruning) are not the online unit's: those run uncompressed."""
    if ops.a is None or ops.gemm.w_kind is not OperandKind.WEIGHT:
        return False
    view = ops.view
    hint = ""
    if view is not None and view.operand == "A" and not view.transposed:
        hint = view.im2col.nm_hint(pe.m)
    return _conformant(ops.a, 1, ops, pe, "A",
                       hint or " (A is M×K: the column is a token or output pixel; prune the "
                       "activations N:M along K, e.g. act_prune = nm)")


# Per nm_operand, the operands whose N:M metadata sets the unit's slots.
_NM_SIDES: Mapping[PeOperand, tuple[Callable[[GemmOperands, PeConfig], bool], ...]] = \
    MappingProxyType({PeOperand.W: (_w_slots,), PeOperand.A: (_a_slots,),
                      PeOperand.BOTH: (_w_slots, _a_slots)})
check_complete(_NM_SIDES, PeOperand, "N:M operand")


def nm_reads_activations(pe: PeConfig) -> bool:
    """Whether an N:M unit set as ``pe`` compresses K by the activations' N:M metadata."""
    return PeKind(pe.kind) is PeKind.NM and _a_slots in _NM_SIDES[PeOperand(pe.nm_operand)]


def _nm(ops: GemmOperands, p: FoldPlan, arch: Arch) -> ComputeResult:
    """K → K′ where the named operand(s) carry N:M metadata; with both, the slots where the two
    index sets do not match (either operand zero) are clock-gated."""
    g, pe = ops.gemm, arch.pe
    sides = sum(side(ops, pe) for side in _NM_SIDES[PeOperand(pe.nm_operand)])  # all checked
    if not sides:
        return replace(_dense(ops, p, arch), nm_mode=NmMode.DENSE)
    compressed = replace(g, k=compressed_k(g.k, pe.n, pe.m))
    pc = replace(p, gemm=compressed)  # the unit's plan: the same array on K′
    steps = g.count * pc.folds * pc.extents[2]
    slots = compressed.dense_macs
    effectual = effectual_macs(ops)
    issued = effectual if sides == 2 else slots  # joint: only index matches are full MACs
    return ComputeResult(pc, pc.compute_cycles, effectual, steps, float(steps),
                         issued_macs=issued, gated_macs=slots - issued, nm_mode=NmMode.NM)


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
    PeKind.NM: PeKindSpec(_nm, lambda pe: f"{pe.n}:{pe.m} PEs (N:M {_NM_TITLE[pe.nm_operand]})"),
})
check_complete(PE_KINDS, PeKind, "PE kind")


def compute(ops: GemmOperands, arch: Arch, fold_plan: FoldPlan | None = None) -> ComputeResult:
    """Compute cycles and effectual work of one GEMM (all instances) on ``arch``;
    ``fold_plan`` is the GEMM's plan on the array if the caller has built it already."""
    a = arch.array
    p = fold_plan or plan(ops.gemm, a.dataflow, a.rows, a.cols)
    return PE_KINDS[PeKind(arch.pe.kind)].compute(ops, p, arch)
