"""The area model against a published chip: Eyeriss (Chen et al., "Eyeriss: An Energy-Efficient
Reconfigurable Accelerator for Deep Convolutional Neural Networks", IEEE JSSC 52(1), 2017,
chip summary table): TSMC 65 nm, core 3.5 mm × 3.5 mm, 1852 kgates of logic (NAND2
equivalents), 168 PEs of 16-bit fixed point, each with a 224 × 16 b filter scratchpad (SRAM)
and 12 × 16 b input and 24 × 16 b partial-sum scratchpads (registers), a 108 KB global buffer.

Our parts (the 45 nm area table: Horowitz's MAC, NanGate flip-flops, the CACTI SRAM fit) are
standard-cell and SRAM-macro area only: no wiring, clock tree, NoC, control, codecs or I/O.
So the check is one-sided and loose, stated here:

- the PE array's logic, in NAND2 equivalents, is 30–100 % of the chip's published 1852
  kgates (the PE array is most of the chip's logic, not all of it);
- the modelled core (PE array + spads + global buffer, scaled 45 → 65 nm by the node rule)
  is 10–100 % of the published 12.25 mm² core.

Disclosed: these bands were set after a first hand estimate (0.42 and 0.21), not before.
"""

import pytest

from sparsesim.arch.area import AreaTable

EYERISS_KGATES = 1852
EYERISS_CORE_MM2 = 3.5 * 3.5
PES = 168


def eyeriss_estimate(t: AreaTable) -> tuple[float, float]:
    """(PE-array logic in kgates, core mm² at 65 nm) from the area table's parts."""
    mac = t.multiplier(16, 16) + t.adder(16)          # 16-bit MAC, 16-bit partial sums
    spad_regs = t.registers((12 + 24) * 16)           # ifmap and psum scratchpads
    logic_um2 = PES * (mac + spad_regs)
    filter_spad_mm2 = t.sram_mm2(224 * 2)             # 224 × 16 b
    glb_mm2 = t.sram_mm2(108 * 1024)
    core_45 = logic_um2 * 1e-6 + PES * filter_spad_mm2 + glb_mm2
    return logic_um2 / t.gate_um2 / 1e3, core_45 * (65 / 45) ** 2


def test_eyeriss_pe_array_within_the_stated_bands():
    kgates, core = eyeriss_estimate(AreaTable())
    assert 0.30 <= kgates / EYERISS_KGATES <= 1.0, kgates
    assert 0.10 <= core / EYERISS_CORE_MM2 <= 1.0, core
    # the hand figures in the module notes
    assert kgates / EYERISS_KGATES == pytest.approx(0.42, abs=0.01)
    assert core / EYERISS_CORE_MM2 == pytest.approx(0.21, abs=0.01)
