"""Area against a published chip: Eyeriss's PE array and core, from the 45 nm area table.

Chen et al., "Eyeriss: An Energy-Efficient Reconfigurable Accelerator for Deep Convolutional
Neural Networks", IEEE JSSC 52(1), 2017, chip summary: TSMC 65 nm, core 3.5 mm × 3.5 mm,
1852 kgates of logic (NAND2 equivalents), 168 PEs of 16-bit fixed point, each with a
224 × 16 b filter scratchpad (SRAM) and 12 × 16 b input and 24 × 16 b partial-sum scratchpads
(registers), a 108 KB global buffer. The area table's parts (Horowitz's MAC, NanGate
flip-flops, the CACTI SRAM fit; :mod:`sparsesim.arch.area`) are standard-cell and SRAM-macro
area only — no wiring, clock tree, NoC, control, codecs or I/O — so the bands are one-sided
and loose: the PE array's logic is 30–100 % of the published kgates (the PE array is most
of the chip's logic, not all of it) and the modelled core (PE array + scratchpads + global
buffer, scaled 45 → 65 nm by the node rule) 10–100 % of the published core. *Disclosed:*
the bands were set after a first hand estimate (0.42 and 0.21), not before.
"""

from __future__ import annotations

from sparsesim.arch.area import REFERENCE_NODE_NM, AreaTable
from sparsesim.validation.registry import Check, Context, Group, add_group, pct, register

EYERISS_KGATES = 1852
EYERISS_CORE_MM2 = 3.5 * 3.5
EYERISS_PES = 168
EYERISS_NODE_NM = 65.0
BANDS = {"kgates": (0.30, 1.0), "core": (0.10, 1.0)}
"""Ours over theirs, inclusive (module notes)."""

SOURCE = ("Chen et al., Eyeriss, IEEE JSSC 52(1) 2017, chip summary: 65 nm, 3.5 × 3.5 mm core, "
          "1852 kgates, 168 PEs, 108 KB global buffer")

add_group("area", Group("Area against a published chip", __doc__.split("\n\n", 1)[1]))


def eyeriss_estimate(t: AreaTable) -> tuple[float, float]:
    """(PE-array logic in kgates, core mm² at 65 nm) from the area table's parts."""
    mac = t.multiplier(16, 16) + t.adder(16)          # 16-bit MAC, 16-bit partial sums
    spad_regs = t.registers((12 + 24) * 16)           # ifmap and psum scratchpads
    logic_um2 = EYERISS_PES * (mac + spad_regs)
    filter_spad_mm2 = t.sram_mm2(224 * 2)             # 224 × 16 b
    glb_mm2 = t.sram_mm2(108 * 1024)
    core_45 = logic_um2 * 1e-6 + EYERISS_PES * filter_spad_mm2 + glb_mm2
    return logic_um2 / t.gate_um2 / 1e3, core_45 * (EYERISS_NODE_NM / REFERENCE_NODE_NM) ** 2


@register("area", fast=True)
def _area_eyeriss(ctx: Context) -> list[Check]:
    kgates, core = eyeriss_estimate(AreaTable())
    rows = []
    for key, ours, theirs, what, unit in (
            ("kgates", kgates, EYERISS_KGATES, "Eyeriss PE-array logic (NAND2 equivalents)",
             "kgates"),
            ("core", core, EYERISS_CORE_MM2, "Eyeriss core area at 65 nm (node rule from 45 nm)",
             "mm²")):
        lo, hi = BANDS[key]
        ratio = ours / theirs
        rows.append(Check(
            id=f"area.eyeriss_{key}", group="area", what=what, anchor=f"{theirs:g} {unit}",
            source=SOURCE, ours=f"{ours:.3g} {unit} ({pct(ratio)} of theirs)",
            tolerance=f"{pct(lo)}–{pct(hi)} of theirs (parts only: one-sided)",
            passed=lo <= ratio <= hi))
    return rows
