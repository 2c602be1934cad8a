"""The machine that runs a lowered workload and returns one result row per GEMM.

Per GEMM: the PE kind (:mod:`sparsesim.pe.kinds`) gives each fold's compute cycles — dense
folds exactly as SCALE-Sim v3 counts them, or the zero-skipping / N:M rules on the layer's real
or modelled masks; the memory system (:mod:`sparsesim.memory`, simpy) runs those folds with
their tiles in the storage formats, DRAM → SRAM → array, and adds the stalls; the energy model
(:mod:`sparsesim.energy`, on the arch's :mod:`sparsesim.arch.energy` table) prices the
actions, and the arch's leakage (:mod:`sparsesim.area`) for the time each row takes, stalls
included. Instances of a GEMM (conv groups, attention heads) run one after another, each from
cold buffers; instances that share their masks are simulated once, and so is a GEMM
identical to one already run (same shape, arch, masks: :mod:`sparsesim.engine.memo`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.arch.energy import EnergyTable, energy_table
from sparsesim.arch.mapping import MappingConfig
from sparsesim.area import leakage_w
from sparsesim.pe.kinds import ComputeResult, compute, nm_reads_activations
from sparsesim.mapping.merge import merge_excess_cycles, merged_psums
from sparsesim.energy import ENERGY_COMPONENTS, ActionCounts, energy_breakdown
from sparsesim.errors import SparsesimError
from sparsesim.formats.auto import chosen_text
from sparsesim.workload.layers import Layer
from sparsesim.mapping.dataflows import FoldPlan, plan
from sparsesim.mapping.gemm import GemmOperands
from sparsesim.mapping.lower import gemm_operands
from sparsesim.sparsity.masks import (
    LayerMasks,
    PackedLayerMasks,
    SparsityModel,
    as_bool,
    check_masks,
)
from sparsesim.memory import (
    OPERANDS,
    MemoryResult,
    OperandTraffic,
    actions,
)
from sparsesim.memory.tiling import simulate_tiled
from sparsesim.names import NmMode, OnlineKind, PeKind, RowKind
from sparsesim.pe.online import OnlinePrune, online_cost
from sparsesim.progress import Progress, ProgressFactory
from sparsesim.rules.nm import parse_nm
from sparsesim.sparsity.trace import Trace
from sparsesim.engine.memo import GemmMemo, gemm_key
from sparsesim.engine.training import ONLINE_KIND, Training, backward_operands, update_cost
from sparsesim.workload.network import Workload


@dataclass(frozen=True, slots=True)
class GemmResult:
    """One row: a GEMM (all ``count`` instances) of one layer on one arch, or work beside the
    array. Cycles are clock cycles.

    ``format_{a,w,o}_chosen``: the format each operand's tiles are stored in — the
    format, or ``mixed: bitmap 12, rle 4`` where an ``auto`` format picked per tile
    (:func:`~sparsesim.formats.auto.chosen_text`; empty beside the array).

    ``kind`` (a :class:`~sparsesim.names.RowKind`) says what the row accounts for: a GEMM on
    the array, the online pruning unit, an optimizer update, or a dynamic gate (its GEMV on
    the array and its ranking in the online unit). Rows beside the array have no GEMM
    (``count`` 0, ``m = k = n = 0``) and count the ``elements`` their unit processed.
    """

    network: str
    layer: str
    op: str
    gemm: str
    kind: str
    phase: str
    count: int
    m: int
    k: int
    n: int
    elements: int
    dataflow: str
    rows: int
    cols: int
    pe_kind: str
    nm_mode: str
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
    dram_read_bytes: int
    dram_write_bytes: int
    traffic: dict[str, int]
    energy_pj: float
    energy: dict[str, float]
    events: int
    format_a_chosen: str = ""
    format_w_chosen: str = ""
    format_o_chosen: str = ""


TRAFFIC_FIELDS = tuple(f.name for f in fields(OperandTraffic)
                       if f.name not in ("fetches", "popcount_words"))
"""Per-operand traffic columns (suffixed ``_a``, ``_w``, ``_o``) of every result row."""


def _density(mask: np.ndarray | None) -> float:
    return 1.0 if mask is None else float(np.count_nonzero(mask)) / max(mask.size, 1)


def _memory_fold_cycles(memory_plan: FoldPlan, c: ComputeResult, i: int) -> np.ndarray | None:
    """Instance ``i``'s compute cycles per fold of the memory tiling (``None``: dense folds).

    N:M compresses K: when that changes the fold count (K on the rows), the compressed
    cycles are spread evenly over the folds of the weights as stored."""
    if c.fold_cycles is not None:
        return c.fold_cycles[0 if len(c.fold_cycles) == 1 else i]
    if c.plan.fold_cycles == memory_plan.fold_cycles and c.plan.folds == memory_plan.folds:
        return None
    total = c.plan.folds * c.plan.fold_cycles
    folds = memory_plan.folds
    out = np.full(folds, total // folds, dtype=np.int64)
    out[: total % folds] += 1
    return out


def _sum_memory(results: list[MemoryResult], repeat: int) -> MemoryResult:
    """Instances one after another: cycles and traffic add up (``repeat`` copies of each)."""
    traffic = {}
    for op in OPERANDS:
        traffic[op.lower()] = OperandTraffic(*(
            repeat * sum(getattr(r.operand(op), f) for r in results)
            for f in OperandTraffic.__dataclass_fields__))

    def total(name: str) -> int:
        values: list[int] = [getattr(r, name) for r in results]
        return repeat * sum(values)

    chosen: dict[str, dict[str, int]] = {}
    for r in results:
        for op, tiles in r.chosen.items():
            into = chosen.setdefault(op, {})
            for spec, n in tiles.items():
                into[spec] = into.get(spec, 0) + repeat * n
    return MemoryResult(total("cycles"), total("compute_cycles"), total("stall_cycles"),
                        total("decode_stall_cycles"), traffic["a"], traffic["w"], traffic["o"],
                        total("events"), chosen=chosen,
                        accumulator_accesses=total("accumulator_accesses"))


def _simulate_memory(ops: GemmOperands, memory_plan: FoldPlan, c: ComputeResult, arch: Arch
                     ) -> MemoryResult:
    shared = ops.shared and (c.fold_cycles is None or len(c.fold_cycles) == 1)
    instances = 1 if shared else ops.gemm.count
    results = []
    for i in range(instances):
        a_mask, w_mask = ops.masks(i)
        results.append(simulate_tiled(memory_plan, arch, a_mask, w_mask,
                                      compute_cycles=_memory_fold_cycles(memory_plan, c, i),
                                      o_mask=ops.o_mask(i), view=ops.view, group=i))
    return _sum_memory(results, ops.gemm.count if shared else 1)


def run_gemm(ops: GemmOperands, *, network: str, op: str, arch: Arch,
             table: EnergyTable | None = None, kind: RowKind = RowKind.GEMM,
             memo: GemmMemo | None = None) -> GemmResult:
    """One GEMM on ``arch``; ``table`` is the arch's energy table (read once per run). With
    ``memo``, a GEMM identical to one it holds is not simulated again: its row is reused
    with this GEMM's labels."""
    table = table or energy_table(arch)
    if memo is None:
        return _simulate_gemm(ops, network=network, op=op, arch=arch, table=table, kind=kind)
    key = gemm_key(ops, arch, table)
    row = memo.get(key)
    if row is None:
        row = _simulate_gemm(ops, network=network, op=op, arch=arch, table=table, kind=kind)
        memo.put(key, row)
        return row
    g = ops.gemm
    return replace(row, network=network, layer=g.layer, op=op, gemm=g.name, kind=kind.value,
                   traffic=dict(row.traffic), energy=dict(row.energy))


def _simulate_gemm(ops: GemmOperands, *, network: str, op: str, arch: Arch,
                   table: EnergyTable, kind: RowKind) -> GemmResult:
    a = arch.array
    gemm = ops.gemm
    fold_plan = plan(gemm, a.dataflow, a.rows, a.cols)  # built once: compute and memory share it
    c = compute(ops, arch, fold_plan)
    mem = _simulate_memory(ops, fold_plan, c, arch)
    # the same folds; a reordered loop adds only the fill/drain of fold revisits
    assert mem.compute_cycles >= c.compute_cycles, "memory ran other folds than compute"
    stall = mem.stall_cycles
    psums = merged_psums(arch, fold_plan.dataflow, c.issued_macs)
    merge_cycles = merge_excess_cycles(arch, psums, c.compute_cycles)  # behind the array
    cycles = mem.cycles + merge_cycles
    counts = replace(actions(mem, macs=c.issued_macs, gated_macs=c.gated_macs,
                             register_accesses=3 * c.issued_macs), merged_psums=psums)
    energy = energy_breakdown(counts, table, arch, leakage_w=leakage_w(arch),
                              seconds=cycles / arch.clock_hz)
    traffic = {f"{name}_{o.lower()}": getattr(mem.operand(o), name)
               for o in OPERANDS for name in TRAFFIC_FIELDS}
    return GemmResult(
        network=network, layer=gemm.layer, op=op, gemm=gemm.name, kind=kind.value,
        phase=gemm.phase, count=gemm.count, m=gemm.m, k=gemm.k, n=gemm.n, elements=0, dataflow=a.dataflow, rows=a.rows, cols=a.cols,
        pe_kind=arch.pe.kind, nm_mode=c.nm_mode, folds=gemm.count * c.plan.folds,
        fold_cycles=c.plan.fold_cycles,
        dense_macs=gemm.dense_macs, effectual_macs=c.effectual_macs,
        a_density=_density(ops.a), w_density=_density(ops.w), cycles=cycles,
        compute_cycles=mem.compute_cycles + merge_cycles, stall_cycles=stall,
        load_imbalance=c.load_imbalance,
        utilization=c.effectual_macs / (cycles * a.rows * a.cols) if cycles else 0.0,
        seconds=cycles / arch.clock_hz, dram_read_bytes=mem.dram_read_bytes,
        dram_write_bytes=mem.dram_write_bytes, traffic=traffic,
        energy_pj=math.fsum(energy[k] for k in ENERGY_COMPONENTS), energy=energy,
        events=mem.events, **{f"format_{op.lower()}_chosen": chosen_text(mem.chosen.get(op, {}))
                              for op in OPERANDS},
    )


def check_sparse_attention(workload: Workload, sparsity: SparsityModel) -> None:
    """Sparse-attention options must prune something: refused on a network without
    attention, and a top-k that keeps every key of every attention layer."""
    field = "attn_top_k" if sparsity.attn_top_k is not None else "attn_density"
    keys = [sparsity.shape(x).activation_shapes()["p"][-1] for x in workload.layers
            if "p" in x.activation_shapes()]
    if not keys:
        raise SparsesimError(f"network {workload.name!r} has no attention layer: {field} "
                             "would change nothing", field=field)
    if sparsity.attn_top_k is not None and sparsity.attn_top_k >= max(keys):
        raise SparsesimError(f"top-{sparsity.attn_top_k} keeps every key (attention layers "
                             f"attend at most {max(keys)}): it would change nothing",
                             field=field)


def layers_with_masks(workload: Workload, *, sparsity: SparsityModel | None = None,
                      trace: Trace | None = None) -> Iterator[tuple[Layer, LayerMasks | None]]:
    """Each layer (after shape pruning) with its masks: from the trace, else the model."""
    if trace is not None:
        for layer in trace.workload.layers:
            yield layer, as_bool(trace.masks.get(layer.name))  # packed: unpacked per layer
        return
    if sparsity is not None and sparsity.sparse_attention:
        check_sparse_attention(workload, sparsity)
    for index, layer in enumerate(workload.layers):
        if sparsity is None or sparsity.is_dense:
            yield layer, None
            continue
        shaped = sparsity.shape(layer)
        masks = sparsity.masks(shaped, index)
        check_masks(shaped, masks)
        yield shaped, masks


def layer_mappings(workload: Workload, arch: Arch) -> dict[str, Arch]:
    """The arch each layer with a ``mapping`` override in ``workload`` runs its GEMMs on: the
    arch's ``[mapping]`` with the layer's fields replaced (a bad field names the workload's
    file, the layer and ``mapping.<field>``)."""
    out = {}
    for name, override in workload.mappings:
        fields_ = dict(override)
        unknown = [k for k in fields_ if k not in MappingConfig.keys()]
        try:
            if unknown:
                raise SparsesimError(f"unknown key; expected one of "
                                     f"{', '.join(MappingConfig.keys())}",
                                     field=f"mapping.{unknown[0]}")
            config = MappingConfig.from_table({**arch.mapping.to_table(), **fields_})
        except SparsesimError as err:
            raise err.located(file=workload.file, layer=name) from None
        out[name] = replace(arch, mapping=config)
    return out


def draw_trace(workload: Workload, sparsity: SparsityModel, *, packed: bool = False) -> Trace:
    """The layers and masks a run with ``sparsity`` would draw, as a trace: draw once, run
    many archs on it (sweeps, benchmarks) with the same numbers as direct runs; its ``meta``
    records the model's ``mask_draw_version``. ``packed``: each layer's masks are packed as
    they are drawn (:attr:`Trace.packed`), so a whole LLM's fit in memory."""
    layers: list[Layer] = []
    masks: dict[str, LayerMasks | PackedLayerMasks] = {}
    for layer, m in layers_with_masks(workload, sparsity=sparsity):
        layers.append(layer)
        if m is not None:
            masks[layer.name] = PackedLayerMasks.of(m) if packed else m
    return Trace(Workload(workload.name, tuple(layers), workload.source, workload.file,
                          mappings=workload.mappings), masks,
                 {"mask_draw_version": sparsity.mask_draw_version}, packed=packed)


def _side_row(network: str, layer: Layer, gemm: str, phase: str, kind: RowKind, *,
              cycles: int, elements: int, counts: ActionCounts, arch: Arch, table: EnergyTable,
              dram_read: int = 0, dram_write: int = 0, stall: int = 0) -> GemmResult:
    """A row for work beside the array's GEMMs (online pruning, weight update): no GEMM
    (``count`` 0, no shape), no MACs on the array, ``elements`` processed, its own cycles
    (``stall`` of them waiting for memory) and energy."""
    a = arch.array
    energy = energy_breakdown(counts, table, arch, leakage_w=leakage_w(arch),
                              seconds=cycles / arch.clock_hz)
    traffic = {f"{name}_{o.lower()}": 0 for o in OPERANDS for name in TRAFFIC_FIELDS}
    traffic["dram_read_data_bytes_w"], traffic["dram_write_data_bytes_w"] = dram_read, dram_write
    return GemmResult(
        network=network, layer=layer.name, op=layer.op, gemm=gemm, kind=kind.value,
        phase=phase, count=0, m=0, k=0, n=0, elements=elements, dataflow=a.dataflow, rows=a.rows, cols=a.cols,
        pe_kind=arch.pe.kind, nm_mode=NmMode.NONE, folds=0, fold_cycles=0, dense_macs=0,
        effectual_macs=0,
        a_density=1.0, w_density=1.0, cycles=cycles, compute_cycles=cycles - stall,
        stall_cycles=stall,
        load_imbalance=1.0, utilization=0.0, seconds=cycles / arch.clock_hz,
        dram_read_bytes=dram_read, dram_write_bytes=dram_write, traffic=traffic,
        energy_pj=math.fsum(energy[k] for k in ENERGY_COMPONENTS), energy=energy, events=0)


def online_row(network: str, layer: Layer, prune: OnlinePrune, *, rows: int, row_len: int,
               keep: int | None = None, phase: str, producer_cycles: int, arch: Arch,
               table: EnergyTable, kind: RowKind = RowKind.ONLINE) -> GemmResult:
    """The online pruning unit on ``rows × row_len`` outputs of a producer that ran
    ``producer_cycles`` (``keep``: top-k's k per row)."""
    cost = online_cost(prune.kind, rows=rows, row_len=row_len, unit=arch.online, keep=keep,
                       nm=prune.nm)
    return _side_row(network, layer, f"online_{prune.kind}", phase, kind,
                     cycles=cost.exposed_cycles(producer_cycles), elements=cost.elements,
                     counts=ActionCounts(comparisons=cost.comparisons,
                                         register_accesses=cost.register_accesses,
                                         sram_o_read_bits=cost.sram_reads * arch.precision.o_bits),
                     arch=arch, table=table)


def _mask_online_row(network: str, layer: Layer, mask: np.ndarray, axis: int,
                     prune: OnlinePrune, phase: str, producer_cycles: int, arch: Arch,
                     table: EnergyTable) -> GemmResult:
    """The unit finding ``mask``'s zeros, rows along ``axis`` (a pixel's or token's channels)."""
    row_len = mask.shape[axis]
    rows = mask.size // max(row_len, 1)
    keep = int(np.count_nonzero(mask)) // max(rows, 1) if prune.kind == "topk" else None
    return online_row(network, layer, prune, rows=rows, row_len=row_len, keep=keep, phase=phase,
                      producer_cycles=producer_cycles, arch=arch, table=table)


def _update_row(network: str, layer: Layer, masks: LayerMasks | None, training: Training,
                arch: Arch, table: EnergyTable) -> GemmResult:
    """The optimizer step: a vector unit of ``cols`` lanes streams weights, gradients and
    state from DRAM and back; with real memory it waits for the bytes."""
    p, mem = arch.precision, arch.memory
    u = update_cost(layer, masks, training, w_bits=p.w_bits, grad_bits=p.o_bits)
    cycles = compute = -(-u.weights // arch.array.cols)
    if not mem.ideal and u.weights:
        moved = u.dram_read_bytes + u.dram_write_bytes
        cycles = max(cycles, math.ceil(moved / mem.dram_bytes_per_cycle)) + mem.dram_latency_cycles
    counts = ActionCounts(macs=u.operations, dram_read_bits=8 * u.dram_read_bytes,
                          dram_write_bits=8 * u.dram_write_bytes)
    return _side_row(network, layer, "update", "update", RowKind.UPDATE, cycles=cycles, elements=u.weights,
                     counts=counts, arch=arch, table=table, dram_read=u.dram_read_bytes,
                     dram_write=u.dram_write_bytes, stall=cycles - compute)


@dataclass(frozen=True, slots=True)
class AttnPrune:
    """How attention probabilities are pruned at run time: ``threshold`` (a threshold on P)
    or ``topk`` (the ``k`` largest of each query row), by the online unit on ``QKᵀ``'s
    output path (softmax's input: scores rank as their probabilities do)."""

    kind: str
    k: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in (OnlineKind.THRESHOLD, OnlineKind.TOPK):
            raise SparsesimError(f"attention probabilities are pruned by threshold or topk, "
                                 f"not {self.kind!r}", field="attn_prune.kind")
        if (self.kind == OnlineKind.TOPK) != (self.k is not None) or (
                self.k is not None and (isinstance(self.k, bool) or not isinstance(self.k, int)
                                        or self.k < 1)):
            raise SparsesimError(f"topk takes a positive integer k (and only it), got "
                                 f"{self.k!r}", field="attn_prune.k")


def attn_prune(sparsity: SparsityModel | None, trace: Trace | None) -> AttnPrune | None:
    """How attention probabilities are found at run time, if they are pruned (a trace's
    ``meta["attn_prune"]``: ``{"kind": "topk", "k": K}`` or ``{"kind": "threshold"}``)."""
    if trace is not None:
        spec = trace.meta.get("attn_prune")
        if not spec:
            return None
        if not isinstance(spec, dict):
            raise SparsesimError("expected {kind, k}", file=trace.workload.file,
                                 field="meta.attn_prune")
        try:
            return AttnPrune(str(spec.get("kind")), spec.get("k"))
        except SparsesimError as err:
            raise err.located(file=trace.workload.file) from None
    if sparsity is None or not sparsity.sparse_attention:
        return None
    if sparsity.attn_top_k is not None:
        return AttnPrune(OnlineKind.TOPK, sparsity.attn_top_k)
    return AttnPrune(OnlineKind.THRESHOLD)


def attn_prune_meta(sparsity: SparsityModel) -> dict[str, object]:
    """A trace's ``meta["attn_prune"]`` for P masks drawn with ``sparsity``."""
    if sparsity.attn_top_k is not None:
        return {"kind": str(OnlineKind.TOPK), "k": sparsity.attn_top_k}
    return {"kind": str(OnlineKind.THRESHOLD), "density": sparsity.attn_density}


def _attn_online_row(network: str, layer: Layer, prune: AttnPrune, layer_rows: list[GemmResult],
                     arch: Arch, table: EnergyTable) -> list[GemmResult]:
    """``layer_rows`` with the online unit's selection of P inserted after the ``QKᵀ`` rows
    (row ``online_{kind}_p``): ``b·heads·l`` rows of ``kv`` scores, hidden behind those
    GEMMs but for its pipeline depth."""
    b, heads, queries, keys = layer.activation_shapes()["p"]
    qk = [i for i, r in enumerate(layer_rows) if r.gemm.startswith("qk")]
    producer = sum(layer_rows[i].cycles for i in qk)
    keep = None if prune.k is None else min(prune.k, keys)
    row = online_row(network, layer, OnlinePrune(prune.kind), rows=b * heads * queries,
                     row_len=keys, keep=keep, phase="forward", producer_cycles=producer,
                     arch=arch, table=table)
    at = qk[-1] + 1
    return [*layer_rows[:at], replace(row, gemm=f"{row.gemm}_p"), *layer_rows[at:]]


def act_prune(sparsity: SparsityModel | None, trace: Trace | None) -> OnlinePrune | None:
    """How activation zeros are found at run time, if they are (``None``: free ReLU zeros)."""
    if trace is not None:
        spec = trace.meta.get("act_prune")
        if not spec:
            return None
        return OnlinePrune(str(spec["kind"]), parse_nm(spec.get("nm", "2:4"),
                                                      field="meta.act_prune.nm"))
    if sparsity is None or sparsity.act_prune == "none":
        return None
    return OnlinePrune(sparsity.act_prune, sparsity.act_nm or (2, 4))


def run(workload: Workload, arch: Arch, *, sparsity: SparsityModel | None = None,
        trace: Trace | None = None, training: Training | None = None,
        memo: GemmMemo | None = None, progress: ProgressFactory | None = None
        ) -> list[GemmResult]:
    """Every GEMM of every layer, in execution order (layers run one after another);
    ``progress`` is told of each layer's forward GEMMs.

    With ``training``: the forward pass, then per layer from the last the online pruning of
    its output gradient (if pruned), its backward GEMMs and its weight update. The first
    layer's input gradient (of the network's input) is computed only if
    ``training.input_gradient``. ``memo``: GEMMs identical to one already simulated reuse
    its row (``None``: every GEMM simulated; the same rows either way).
    """
    name = trace.workload.name if trace is not None else workload.name
    count = len((trace.workload if trace is not None else workload).layers)
    layers = layers_with_masks(workload, sparsity=sparsity, trace=trace)
    return run_layers(name, layers, arch, act=act_prune(sparsity, trace), training=training,
                      attn=attn_prune(sparsity, trace), memo=memo,
                      bar=progress(count, "layers") if progress else None,
                      mappings=layer_mappings(trace.workload if trace else workload, arch))


def _check_nm_used(arch: Arch, rows: list[GemmResult]) -> None:
    """An N:M array that compressed no GEMM would change nothing: refused, not run densely
    (an ``m:m`` unit compresses nothing by its own ratio: it is the dense array, not refused)."""
    if (arch.pe.kind == PeKind.NM and arch.pe.n < arch.pe.m and rows
            and all(r.nm_mode != NmMode.NM for r in rows)):
        raise SparsesimError(
            f"no GEMM has {arch.pe.nm_operand} operands with N:M metadata: every layer would "
            f"run densely on the {arch.pe.n}:{arch.pe.m} unit (prune the weights N:M, e.g. "
            f"`sparsesim prune --granularity nm`, or give a weight_nm model)",
            field="pe.kind")


def run_layers(name: str, layers: Iterable[tuple[Layer, LayerMasks | None]], arch: Arch, *,
               act: OnlinePrune | None = None, training: Training | None = None,
               table: EnergyTable | None = None, attn: AttnPrune | None = None,
               memo: GemmMemo | None = None, bar: Progress | None = None,
               mappings: dict[str, Arch] | None = None) -> list[GemmResult]:
    """:func:`run` on layers already shaped and masked (``name``: the network's); ``act``
    says how the online unit finds the activation zeros (``None``: they are free), ``attn``
    how it prunes the attention probabilities of layers whose P is masked, ``memo`` holds
    the GEMMs already simulated; ``mappings`` the arch of each layer whose mapping is
    overridden (:func:`layer_mappings`: its GEMMs, forward and backward, run on it).

    *Layers are streamed* for inference: each layer's masks are drawn (or taken from the
    trace), simulated and dropped before the next layer's are drawn, so a run holds one
    layer's masks at a time (Llama-2-7B at 50 % weights: ~0.1 GB of bool masks instead of
    the 6.6 GB of the whole model). A training step keeps every layer's masks: its backward
    pass, from the last layer, reads each layer's forward operands again. So does an arch
    whose PEs compress K by the activations' N:M, which must know before the first layer that
    some layer's activations are pruned."""
    mappings = mappings or {}
    table = table or energy_table(arch)  # may read an override file: once, not per GEMM
    if training is not None or nm_reads_activations(arch.pe):
        layers = list(layers)
    if nm_reads_activations(arch.pe) and all(m is None or m.inputs is None for _, m in layers):
        raise SparsesimError(  # else the option would be accepted and change nothing
            f"nm_operand {arch.pe.nm_operand!r} compresses K by the activations' N:M, but no "
            f"layer's input is pruned: prune them N:M along K (act_prune = nm, act_nm = N:M; "
            f"the network's first input stays dense unless dense_first_input is false) or "
            f"give a trace with activation masks", field="pe.nm_operand")
    rows: list[GemmResult] = []
    forward: list[list[GemmOperands]] = []
    for layer, masks in layers:
        if act is not None and masks is not None and masks.inputs is not None and rows:
            rows.append(_mask_online_row(name, layer, masks.inputs, layer.input_channel_axis,
                                         act, "forward", rows[-1].cycles, arch, table))
        ops_list = gemm_operands(layer, masks)
        forward.append(ops_list if training is not None else [])
        layer_rows = [run_gemm(ops, network=name, op=layer.op,
                               arch=mappings.get(layer.name, arch), table=table,
                               memo=memo) for ops in ops_list]
        if attn is not None and masks is not None and "p" in masks.activations:
            layer_rows = _attn_online_row(name, layer, attn, layer_rows, arch, table)
        rows += layer_rows
        if bar is not None:
            bar.update()
    _check_nm_used(arch, rows)
    if training is None:
        return rows
    grads = training.gradients
    index = sum(len(f) for f in forward)
    producer = 0  # cycles of the GEMM whose outputs are the next dO (none for the loss's)
    assert isinstance(layers, list)  # kept above for the backward pass
    for (layer, masks), ops_list in zip(reversed(layers), reversed(forward), strict=True):
        for ops in reversed(ops_list):
            index -= 1
            grad = grads.draw(ops.gemm, index)
            if grad is not None:
                prune = OnlinePrune(ONLINE_KIND[grads.structure], grads.nm or (2, 4))
                rows.append(_mask_online_row(name, layer, grad, -1, prune, "backward",
                                             producer, arch, table))
            dx_ops, dw_ops = backward_operands(ops, grad)
            first = layer is layers[0][0]
            layer_arch = mappings.get(layer.name, arch)
            if not first or training.input_gradient:
                rows.append(run_gemm(dx_ops, network=name, op=layer.op, arch=layer_arch,
                                     table=table, memo=memo))
                producer = rows[-1].cycles
            rows.append(run_gemm(dw_ops, network=name, op=layer.op, arch=layer_arch,
                                 table=table, memo=memo))
        if layer.weight_shapes():
            rows.append(_update_row(name, layer, masks, training, arch, table))
    return rows
