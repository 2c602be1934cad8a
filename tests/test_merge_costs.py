"""Partial-sum merge cost of dual-side skipping (sparsesim.mapping.merge), by hand on tiny GEMMs:
every issued product of a `skip`/`both` array whose reduction is spread over unsynchronised PEs
is one merged partial sum, priced by Horowitz's adds; other kinds, operands, dataflows and
syncs merge nothing and do not move."""

import math

import numpy as np
import pytest

from sparsesim.area import area_breakdown
from sparsesim.arch.area import AreaTable
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.engine.inference import run_gemm
from sparsesim.errors import SparsesimError
from sparsesim.mapping.gemm import Gemm, GemmOperands

# A is 4x4 (M x K), W is 4x4 (K x N); hand-picked zeros.
A = np.array([[1, 0, 1, 0],
              [1, 1, 0, 0],
              [0, 0, 1, 0],
              [1, 0, 0, 1]], dtype=bool)
W = np.array([[1, 1, 0, 0],
              [0, 1, 0, 0],
              [1, 0, 1, 1],
              [0, 0, 0, 1]], dtype=bool)
# Products with both non-zero: per k, nnz(A[:, k]) * nnz(W[k, :]):
# k=0: 3*2, k=1: 1*1, k=2: 2*3, k=3: 1*1  ->  6 + 1 + 6 + 1 = 14
BOTH_PRODUCTS = 14


def _add_pj(bits: int) -> float:
    """Horowitz's integer add (0.03 pJ at 8 bit, 0.1 pJ at 32 bit) as a power law in width."""
    return 0.03 * (bits / 8) ** (math.log(0.1 / 0.03) / math.log(4))


def _arch(**over):
    base = {"array.rows": 4, "array.cols": 4, "array.dataflow": "ws", "memory.ideal": True,
            "pe.kind": "skip", "pe.operand": "both", "pe.sync": "pe"}
    return with_overrides(load_arch("default"), {**base, **over})


def _row(arch):
    ops = GemmOperands(Gemm("l", "g", 4, 4, 4), A, W)
    return run_gemm(ops, network="t", op="matmul", arch=arch)


def test_ws_dual_side_skipping_merges_every_product_by_hand():
    row = _row(_arch())
    assert row.effectual_macs == BOTH_PRODUCTS
    # int8: a 16-bit coordinate compare + a 16-bit (a + w) accumulate per partial sum
    per_psum = _add_pj(16) + _add_pj(16)
    assert per_psum == pytest.approx(0.1096, abs=1e-4)
    assert row.energy["merge"] == pytest.approx(BOTH_PRODUCTS * per_psum, abs=2 ** -8)
    assert row.energy_pj == pytest.approx(sum(row.energy.values()))


@pytest.mark.parametrize("over", [
    {"array.dataflow": "os"},                   # K on the stream: each PE accumulates in place
    {"pe.sync": "col"},                         # ws: a column (one output's chain) in lockstep
    {"pe.sync": "wavefront"},
    {"pe.operand": "A"},                        # one-sided skipping: unchanged
    {"pe.operand": "W"},
    {"pe.kind": "dense"},
    {"pe.kind": "gate"},
])
def test_no_merge_where_partial_sums_stay_aligned(over):
    row = _row(_arch(**over))
    assert row.energy["merge"] == 0.0
    assert area_breakdown(_arch(**over)).area_mm2["merge"] == 0.0


def test_is_and_row_sync_merge_too():
    for over in ({"array.dataflow": "is"}, {"pe.sync": "row"}):
        assert _row(_arch(**over)).energy["merge"] > 0


def test_merge_energy_changes_nothing_else():
    """The merge adds its own component only: every other component, cycles and traffic are
    those of the same run priced with a zero merge cost."""
    with_cost = _row(_arch())
    free = _row(_arch(**{"energy.merge_pj_per_psum": 0.0}))
    assert free.energy["merge"] == 0.0
    assert with_cost.cycles == free.cycles and with_cost.traffic == free.traffic
    for k, v in free.energy.items():
        if k != "merge":
            assert with_cost.energy[k] == v
    assert with_cost.energy_pj - free.energy_pj == pytest.approx(with_cost.energy["merge"])


def test_a_narrow_merge_unit_is_on_the_critical_path():
    wide = _row(_arch())
    one_lane = _row(_arch(**{"pe.merge_lanes": 1}))
    # one partial sum per cycle: 14 merges against the array's compute cycles
    excess = max(0, BOTH_PRODUCTS - wide.compute_cycles)
    assert one_lane.cycles == wide.cycles + excess
    assert one_lane.compute_cycles == wide.compute_cycles + excess
    # enough lanes to keep up: nothing added
    fast = _row(_arch(**{"pe.merge_lanes": 14}))
    assert fast.cycles == wide.cycles
    assert one_lane.energy["merge"] == wide.energy["merge"]  # same merges, other timing


def test_merge_area_by_hand():
    t = AreaTable()
    arch = _arch()
    acc = 8 + 8 + 16  # int8 products into TPU-style 32-bit accumulators
    adder_16 = 36.0 * (16 / 8) ** (math.log(137 / 36) / math.log(4))
    lane = 137.0 + adder_16 + acc * 4.522  # acc adder (32 b), coordinate comparator, register
    assert t.adder(32) == pytest.approx(137.0)
    assert area_breakdown(arch).area_mm2["merge"] == pytest.approx(16 * lane * 1e-6)  # 4x4 PEs
    two = _arch(**{"pe.merge_lanes": 2})
    assert area_breakdown(two).area_mm2["merge"] == pytest.approx(2 * lane * 1e-6)


@pytest.mark.parametrize("over, words", [
    ({"pe.kind": "dense", "pe.merge_lanes": 4}, "kind 'skip' with operand 'both'"),
    ({"pe.operand": "A", "pe.merge_lanes": 4}, "kind 'skip' with operand 'both'"),
    ({"pe.merge_lanes": -1}, "whole number >= 0"),
    ({"pe.merge_lanes": 1.5}, "whole number >= 0"),
])
def test_bad_merge_lanes_are_one_line(over, words):
    with pytest.raises(SparsesimError) as err:
        _arch(**over)
    assert words in str(err.value) and "pe.merge_lanes" in str(err.value)
    assert "\n" not in str(err.value)
