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
from sparsesim.validation import run_checks
from sparsesim.validation.area import EYERISS_CORE_MM2, EYERISS_KGATES, eyeriss_estimate


def test_eyeriss_pe_array_within_the_stated_bands():
    kgates, core = eyeriss_estimate(AreaTable())
    assert 0.30 <= kgates / EYERISS_KGATES <= 1.0, kgates
    assert 0.10 <= core / EYERISS_CORE_MM2 <= 1.0, core
    # the hand figures in the module notes
    assert kgates / EYERISS_KGATES == pytest.approx(0.42, abs=0.01)
    assert core / EYERISS_CORE_MM2 == pytest.approx(0.21, abs=0.01)


def test_eyeriss_by_hand():
    """The estimate again from the table's published entries, independently of the code."""
    import math
    mult16 = 282.0 * (256 / 64) ** (math.log(3495 / 282) / math.log(16))  # power law in a·w
    add16 = 36.0 * 2 ** (math.log(137 / 36) / math.log(4))
    logic = 168 * (mult16 + add16 + 36 * 16 * 4.522)
    assert eyeriss_estimate(AreaTable())[0] == pytest.approx(logic / 0.798 / 1e3)


def test_sparsesim_validate_reports_the_area_check(tmp_path, monkeypatch):
    run = run_checks(fast=True, out_dir=tmp_path, only=["area"])
    assert [c.id for c in run.checks] == ["area.eyeriss_kgates", "area.eyeriss_core"]
    assert run.passed
    # a chip with a tenth of the logic would put ours above 100 %: the check can fail
    import sparsesim.validation.area as area
    monkeypatch.setattr(area, "EYERISS_KGATES", EYERISS_KGATES / 10)
    failed = run_checks(fast=True, out_dir=tmp_path, only=["area"])
    assert [c.passed for c in failed.checks] == [False, True]
