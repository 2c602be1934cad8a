"""The online pruning unit: closed-form counts, overlap with the producer, rows in a run."""

import pytest

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.arch.energy import EnergyTable
from sparsesim.arch.online import OnlineConfig
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.pe.online import online_cost, quickselect_comparisons
from sparsesim.workload.network import Workload

UNIT = OnlineConfig(lanes=16, sorter_width=8)


def test_threshold_compares_each_element_once_at_lane_rate():
    c = online_cost("threshold", rows=10, row_len=33, unit=UNIT)
    assert (c.comparisons, c.hidden_cycles, c.serial_cycles) == (330, 21, 1)
    assert c.exposed_cycles(1000) == 1 and c.exposed_cycles(5) == 16 + 1


def test_dynamic_threshold_waits_for_its_quantile_pass():
    c = online_cost("dynamic", rows=4, row_len=16, unit=UNIT)
    assert c.comparisons == 128 and c.sram_reads == 64  # the second pass reads it back
    assert c.exposed_cycles(10_000) == 4 + 1  # the second pass cannot hide


def test_nm_ranks_each_group_pairwise():
    c = online_cost("nm", rows=3, row_len=10, unit=UNIT, nm=(2, 4))
    assert c.comparisons == 3 * 3 * 6  # ceil(10/4) groups per row, C(4, 2) comparisons each
    assert c.serial_cycles == 3  # log2(4) + 1


def test_topk_sorts_blocks_and_merges_them():
    # W = 8, s = 3: sort 4·6 = 24 comparators, merge 8 + 4·3 = 20; 20 channels → 3 blocks.
    c = online_cost("topk", rows=5, row_len=20, unit=UNIT, keep=6)
    assert c.comparisons == 5 * 3 * 44 and c.hidden_cycles == 15
    assert c.serial_cycles == 6 + 3 + 1
    assert c.register_accesses == 15 * 10 * 8  # every stage latches the block
    # k > W: quickselect on the buffered row, then a threshold pass; the median of n costs
    # about 2(1 + ln 2)·n ≈ 3.39·n comparisons (Knuth)
    wide = online_cost("topk", rows=5, row_len=20, unit=UNIT, keep=12)
    assert wide.comparisons == 5 * (quickselect_comparisons(20, 12) + 20)
    assert quickselect_comparisons(10_000, 5_000) == pytest.approx(3.386 * 10_000, rel=1e-3)
    assert wide.serial_cycles == -(-(quickselect_comparisons(20, 12) + 20) // 16) + 1


def test_bad_online_inputs_are_errors():
    with pytest.raises(SparsesimError):
        online_cost("median", rows=1, row_len=4, unit=UNIT)
    with pytest.raises(SparsesimError):
        online_cost("topk", rows=1, row_len=4, unit=UNIT, keep=5)
    with pytest.raises(SparsesimError) as err:
        OnlineConfig(sorter_width=12)
    assert err.value.field == "online.sorter_width"


NET = Workload("net", (Conv2d("c1", c=3, h=8, w=8, m=16, r=3, s=3, padding=1),
                       Conv2d("c2", c=16, h=8, w=8, m=32, r=3, s=3, padding=1),
                       Linear("fc", in_features=32, out_features=10, tokens=64)))


def test_online_rows_price_what_the_unit_did():
    arch = with_overrides(load_arch("default"), {"memory.ideal": True, "pe.kind": "skip",
                                                 "online.lanes": 4})
    free = simulate(NET, arch, sparsity=SparsityModel(act_density=0.25, seed=1)).df
    online = simulate(NET, arch, sparsity=SparsityModel(act_density=0.25, act_prune="topk",
                                                        seed=1)).df
    assert (free["count"] > 0).all()
    rows = online[online["kind"] == "online"]
    assert (rows["count"] == 0).all() and (online.loc[online["count"] > 0, "kind"] == "gemm").all()
    assert rows["layer"].tolist() == ["c2", "fc"]  # the first input is dense
    c2 = rows.iloc[0]
    cost = online_cost("topk", rows=64, row_len=16, keep=4, unit=arch.online)
    producer = online[online.layer == "c1"]["cycles"].sum()
    assert c2["elements"] == 16 * 64 and c2["M"] == 0 and c2["cycles"] == cost.exposed_cycles(producer)
    table = EnergyTable()
    assert c2["energy_online_pj"] == pytest.approx(cost.comparisons * table.compare(8),
                                                   abs=1 / 256)
    assert c2["energy_register_pj"] == pytest.approx(cost.register_accesses * table.register(8),
                                                     abs=1 / 256)
    assert c2["energy_pj"] == (c2["energy_online_pj"] + c2["energy_register_pj"]
                               + c2["energy_static_pj"])  # the arch leaks while it runs
    gemms = online[online["count"] > 0]
    assert gemms["effectual_macs"].sum() == pytest.approx(free["effectual_macs"].sum(), rel=0.2)
