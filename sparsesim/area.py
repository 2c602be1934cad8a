"""Area and leakage of an arch, part by part (pure: the arch and its area table → mm², mW).

The parts' figures are the arch's area table (:mod:`sparsesim.arch.area`: 45 nm sources, the
node rule, the overrides); this module says which parts an arch has and how many. Every
count below is a modelling choice:

- ``mac``: one MAC per PE (``rows × cols``), the multiplier and its accumulator adder.
- ``pe_registers``: per PE the A and W operand registers and its ``pe.acc_entries`` accumulators
  (at least one: the MAC's own, also when ``acc_entries = 0`` keeps no partial sums across steps).
- ``sparse_pe`` (by PE kind; ``dense``: none):
  ``gate`` — per PE a zero detector on each gated operand (``A``, ``W``: one; ``both``: two)
  and one clock-gating cell (priced as a flip-flop);
  ``skip`` — per PE a zero detector on each skipped operand, and unless the array moves in
  lockstep (``sync = wavefront``: one global step-skip, no staging) an operand queue per
  skipped operand: ``skip_queue_depth`` entries of value + ``queue_index_bits`` coordinate
  bits, with its read multiplexer (SparTen-like decoupled PEs; the same storage whether a
  queue serves one PE or one lane of a row/column group);
  ``nm`` — per PE an ``m``:1 multiplexer selecting the partner operand of each compressed
  one (``W``: the activation; ``A``: the weight; ``both``: both, plus a comparator of the two
  ``log2 m``-bit indices) and an index register of ``ceil(log2 m)`` bits per compressed
  operand (the STC-style 2:4 design).
- ``merge``: the partial-sum merge unit of a dual-side skipping array that merges
  (:func:`sparsesim.mapping.merge.merges`; else none): per lane (``pe.merge_lanes``, 0: one
  per PE) an adder of the accumulator width, a comparator of ``merge_coordinate_bits`` and an
  accumulator register (SCNN-style coordinate-addressed accumulators).
- ``sram_a``, ``sram_w``, ``sram_o``: each buffer's two halves, single-ported banks (one half
  is filled while the other is read), by :meth:`~sparsesim.arch.area.AreaTable.sram_mm2`.
- ``decoder``: per operand whose storage format carries metadata, a decoder of
  ``1 / decode_cycles_per_element`` lanes (the arch's decode rate; free decoding, rate 0, is
  priced as one lane per array row); a lane is a ``decoder_index_bits`` adder and index
  register and a value multiplexer — one rule for every metadata format, as the decode energy;
  a lane of a format that gathers by popcount (bitmap) adds its popcount/prefix unit,
  ``log2(64)`` rows of a 64-bit adder (the energy table's rule for it).
- ``online``: the online pruning unit the arch has: ``lanes`` comparators of ``o_bits`` and a
  bitonic network of ``sorter_width`` (``w/2 · log2 w · (log2 w + 1)/2`` compare-exchange
  units, each a comparator and two ``o_bits`` multiplexers). Always present: it is part of
  the arch whether a run uses it or not.

Leakage: logic parts at the table's density per µm², SRAM banks from the CACTI fit; both at
45 nm density, scaled with the area to ``node_nm``. Areas ignore wiring, clock tree and
placement density (standard-cell area only): published block areas are larger.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sparsesim.arch.area import AreaTable, area_table
from sparsesim.arch.config import Arch
from sparsesim.errors import SparsesimError
from sparsesim.formats import parse_format
from sparsesim.formats.bitmap import POPCOUNT_WORD_BITS
from sparsesim.mapping.merge import merge_lanes, merges
from sparsesim.names import PeKind, PeOperand, Sync

AREA_COMPONENTS = ("mac", "pe_registers", "sparse_pe", "merge", "sram_a", "sram_w", "sram_o",
                   "decoder", "online")
"""Keys of :class:`AreaBreakdown`'s parts, in report order."""

_SRAM = {"sram_a": "a", "sram_w": "w", "sram_o": "o"}


@dataclass(frozen=True, slots=True)
class AreaBreakdown:
    """mm² and leakage mW per part (keys :data:`AREA_COMPONENTS`) at the arch's node."""

    area_mm2: dict[str, float]
    leakage_mw: dict[str, float]

    @property
    def total_mm2(self) -> float:
        return math.fsum(self.area_mm2.values())

    @property
    def leakage_w(self) -> float:
        """Total leakage power in W."""
        return math.fsum(self.leakage_mw.values()) * 1e-3


def _operands(operand: str) -> tuple[str, ...]:
    return ("a", "w") if operand == PeOperand.BOTH else (operand.lower(),)


def _bits(arch: Arch, op: str) -> int:
    return int(getattr(arch.precision, f"{op}_bits"))


def _dense_um2(arch: Arch, t: AreaTable) -> float:
    return 0.0


def _gate_um2(arch: Arch, t: AreaTable) -> float:
    ops = _operands(arch.pe.operand)
    return sum(t.zero_detect(_bits(arch, o)) for o in ops) + t.registers(1)


def _skip_um2(arch: Arch, t: AreaTable) -> float:
    ops = _operands(arch.pe.operand)
    um2 = sum(t.zero_detect(_bits(arch, o)) for o in ops)
    if arch.pe.sync != Sync.WAVEFRONT:  # lockstep needs no staging
        for o in ops:
            entry = _bits(arch, o) + t.queue_index_bits
            um2 += t.registers(t.skip_queue_depth * entry) + t.mux(t.skip_queue_depth, entry)
    return um2


def _nm_um2(arch: Arch, t: AreaTable) -> float:
    pe = arch.pe
    index = max(1, math.ceil(math.log2(pe.m)))
    compressed = _operands(pe.nm_operand)
    partner = {"w": "a", "a": "w"}
    um2 = sum(t.mux(pe.m, _bits(arch, partner[o])) + t.registers(index) for o in compressed)
    if len(compressed) == 2:
        um2 += t.adder(index)  # the two indices compared
    return um2


_SPARSE_PE: dict[PeKind, Callable[[Arch, AreaTable], float]] = {
    PeKind.DENSE: _dense_um2, PeKind.GATE: _gate_um2, PeKind.SKIP: _skip_um2,
    PeKind.NM: _nm_um2,
}
"""One PE's sparse logic in µm², per PE kind (module notes)."""


def sparse_pe_um2(arch: Arch, t: AreaTable) -> float:
    """µm² of one PE's sparse logic (module notes), 0 for a dense PE."""
    rule = _SPARSE_PE.get(PeKind(arch.pe.kind))
    if rule is None:
        raise SparsesimError(f"no area rule for PE kind {arch.pe.kind!r}", field="pe.kind")
    return rule(arch, t)


def _has_metadata(spec: str) -> bool:
    """Whether a format stores metadata a decoder must expand (probed on a sparse tile)."""
    mask = np.eye(8, dtype=bool)
    mask[:, :4] |= np.eye(8, 4, -4, dtype=bool)  # 2 of every 4 along K: N:M formats fit too
    _, meta = parse_format(spec).bits(mask, value_bits=8)
    return bool(meta > 0)


def decoder_um2(arch: Arch, t: AreaTable) -> float:
    """µm² of the metadata decoders (module notes)."""
    mem = arch.memory
    rate = mem.decode_cycles_per_element
    lanes = math.ceil(1.0 / rate) if rate > 0 else arch.array.rows
    um2 = 0.0
    for op in ("a", "w", "o"):
        if _has_metadata(mem.format_spec(op)):
            lane = (t.adder(t.decoder_index_bits) + t.registers(t.decoder_index_bits)
                    + t.mux(2, _bits(arch, op)))
            if parse_format(mem.format_spec(op)).popcount_gather:
                lane += math.log2(POPCOUNT_WORD_BITS) * t.adder(POPCOUNT_WORD_BITS)
            um2 += lanes * lane
    return um2


def merge_um2(arch: Arch, t: AreaTable) -> float:
    """µm² of the partial-sum merge unit (module notes), 0 where the PEs merge nothing."""
    if not merges(arch):
        return 0.0
    acc = t.accumulator_bits(arch.precision.a_bits, arch.precision.w_bits)
    lane = t.adder(acc) + t.adder(t.merge_coordinate_bits) + t.registers(acc)
    return merge_lanes(arch) * lane


def online_um2(arch: Arch, t: AreaTable) -> float:
    """µm² of the online pruning unit: comparators and the bitonic sorting network."""
    o, u = arch.precision.o_bits, arch.online
    stages = int(math.log2(u.sorter_width))
    exchanges = (u.sorter_width // 2) * stages * (stages + 1) // 2
    return u.lanes * t.adder(o) + exchanges * (t.adder(o) + 2 * t.mux(2, o))


def area_breakdown(arch: Arch, table: AreaTable | None = None) -> AreaBreakdown:
    """mm² and leakage mW of every part of ``arch`` (``table``: its area table)."""
    t = table or area_table(arch)
    a, p = arch.array, arch.precision
    pes = a.rows * a.cols
    logic_um2 = {
        "mac": pes * t.mac(p.a_bits, p.w_bits),
        "pe_registers": pes * t.registers(p.a_bits + p.w_bits + max(arch.pe.acc_entries, 1)
                                          * t.accumulator_bits(p.a_bits, p.w_bits)),
        "sparse_pe": pes * sparse_pe_um2(arch, t),
        "merge": merge_um2(arch, t),
        "decoder": decoder_um2(arch, t),
        "online": online_um2(arch, t),
    }
    scale = arch.area.scale
    area: dict[str, float] = {}
    leak: dict[str, float] = {}
    for key in AREA_COMPONENTS:
        if key in _SRAM:
            half = arch.memory.sram_bytes(_SRAM[key]) / 2
            try:
                area[key] = 2 * t.sram_mm2(half) * scale
                leak[key] = 2 * t.sram_leak_mw(half) * scale
            except SparsesimError as err:
                raise err.located(field=f"memory.sram_kib_{_SRAM[key]}") from None
        else:
            area[key] = logic_um2[key] * 1e-6 * scale
            leak[key] = t.logic_leak_mw(logic_um2[key]) * scale
    return AreaBreakdown(area, leak)


@lru_cache(maxsize=64)
def leakage_w(arch: Arch) -> float:
    """The arch's total leakage power in W (cached: every result row of a run needs it)."""
    return area_breakdown(arch).leakage_w
