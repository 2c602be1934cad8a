"""Area and leakage (45 nm table, CACTI fit, node rule) and the static energy they cost."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim import simulate
from sparsesim.arch.area import CACTI_45NM, AreaTable
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.area import AREA_COMPONENTS, area_breakdown, sparse_pe_um2
from sparsesim.errors import SparsesimError
from sparsesim.report import ENERGY_COLUMNS
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.workload.network import Workload

KIB = 1024
NET = Workload("tiny", (Conv2d("c1", c=8, h=16, w=16, m=40, r=3, s=3, padding=1),
                        Linear("fc", in_features=256, out_features=40, tokens=8)))
DFF, MUX2, NAND2 = 4.522, 1.862, 0.798  # NanGate 45 nm DFF_X1, MUX2_X1, NAND2_X1 (µm²)
LEAK = 77.86052e3 / 6351.338  # nW/µm²: Aladdin's TSMC 40 nm multiplier, 77.86 µW in 6351 µm²


def default(**over):
    return with_overrides(load_arch("default"), over)


def test_horowitz_anchors():
    t = AreaTable()
    assert t.multiplier(8, 8) == pytest.approx(282) and t.multiplier(32, 32) == pytest.approx(3495)
    assert t.adder(8) == pytest.approx(36) and t.adder(32) == pytest.approx(137)
    assert t.adder(16) == pytest.approx(math.sqrt(36 * 137))  # log–log between the anchors
    assert t.accumulator_bits(8, 8) == 32
    assert t.mac(8, 8) == pytest.approx(282 + 137)  # int8 multiply, 32-bit accumulate


def test_sram_fit_follows_the_cacti_runs():
    t = AreaTable()
    assert len(CACTI_45NM) == 16
    for kib, ports, mm2, mw in CACTI_45NM:  # bands stated in sparsesim.arch.area
        area_band, leak_band = (0.065, 0.12) if ports == 1 else (0.10, 0.13)
        assert t.sram_mm2(kib * KIB, ports) == pytest.approx(mm2, rel=area_band)
        assert t.sram_leak_mw(kib * KIB, ports) == pytest.approx(mw, rel=leak_band)
    with pytest.raises(SparsesimError):
        t.sram_mm2(math.inf)
    with pytest.raises(SparsesimError):
        t.sram_mm2(KIB, ports=3)


@settings(max_examples=30, deadline=None)
@given(st.floats(1, 1e5), st.floats(1.01, 8))
def test_sram_area_grows_with_size(kib, factor):
    t = AreaTable()
    assert t.sram_mm2(kib * KIB) < t.sram_mm2(kib * factor * KIB)
    assert t.sram_mm2(kib * KIB) < t.sram_mm2(kib * KIB, ports=2)


def test_default_arch_by_hand():
    b = area_breakdown(load_arch("default"))
    assert tuple(b.area_mm2) == AREA_COMPONENTS
    pes = 32 * 32
    mac_um2 = pes * (282 + 137)
    reg_um2 = pes * (8 + 8 + 32) * DFF
    # online unit: 32 comparators (8-bit adds) + a 32-wide bitonic network:
    # 16 compare-exchange units per stage, 5·6/2 = 15 stages; each a comparator and 2 muxes
    online_um2 = 32 * 36 + 16 * 15 * (36 + 2 * 8 * MUX2)
    assert b.area_mm2["mac"] == pytest.approx(mac_um2 * 1e-6)
    assert b.area_mm2["pe_registers"] == pytest.approx(reg_um2 * 1e-6)
    assert b.area_mm2["online"] == pytest.approx(online_um2 * 1e-6)
    assert b.area_mm2["sparse_pe"] == b.area_mm2["decoder"] == 0.0
    half = lambda kib: 0.2079 * (kib / 2 / 64) ** 0.9865  # noqa: E731
    assert b.area_mm2["sram_a"] == pytest.approx(2 * half(512))
    assert b.area_mm2["sram_o"] == pytest.approx(2 * half(64))
    assert b.total_mm2 == pytest.approx(sum(b.area_mm2.values()))
    leak_logic = (mac_um2 + reg_um2 + online_um2) * LEAK * 1e-6
    leak_sram = 2 * 0.001808 * ((256 / 64) ** 0.9503 * 2 + (32 / 64) ** 0.9503)
    assert b.leakage_w == pytest.approx((leak_logic + leak_sram) * 1e-3)


def test_sparse_pe_logic_by_kind():
    t = AreaTable()

    def pe(**over):
        return sparse_pe_um2(default(**over), t)

    assert pe() == 0.0
    assert pe(**{"pe.kind": "gate", "pe.operand": "A"}) == pytest.approx(8 * NAND2 + DFF)
    assert pe(**{"pe.kind": "gate", "pe.operand": "both"}) == pytest.approx(16 * NAND2 + DFF)
    queue = 4 * 16 * DFF + 3 * 16 * MUX2  # 4 entries of 8 value + 8 index bits, 4:1 read mux
    assert pe(**{"pe.kind": "skip", "pe.operand": "W", "pe.sync": "pe"}) == pytest.approx(
        8 * NAND2 + queue)
    assert pe(**{"pe.kind": "skip", "pe.operand": "both", "pe.sync": "row"}) == pytest.approx(
        2 * (8 * NAND2 + queue))
    assert pe(**{"pe.kind": "skip", "pe.operand": "both", "pe.sync": "wavefront"}) == \
        pytest.approx(16 * NAND2)
    # 2:4 weights: a 4:1 activation mux (3 MUX2 per bit) and a 2-bit index register
    nm = pe(**{"pe.kind": "nm", "pe.n": 2, "pe.m": 4})
    assert nm == pytest.approx(3 * 8 * MUX2 + 2 * DFF)
    assert pe(**{"pe.kind": "nm", "pe.n": 1, "pe.m": 8}) == pytest.approx(7 * 8 * MUX2 + 3 * DFF)
    dense = area_breakdown(default())
    stc = area_breakdown(default(**{"pe.kind": "nm", "pe.n": 2, "pe.m": 4}))
    assert stc.area_mm2["sparse_pe"] == pytest.approx(1024 * nm * 1e-6)
    assert stc.total_mm2 > dense.total_mm2


def test_metadata_formats_add_decoders():
    t = AreaTable()
    lane = t.adder(16) + 16 * DFF + 8 * MUX2
    popcount = 6 * t.adder(64)  # a bitmap lane's popcount/prefix unit: log2(64) 64-bit adds
    for fmt in ("bitmap", "rle", "csr", "nm:n=2,m=4"):
        b = area_breakdown(default(**{"memory.format_w": fmt}))
        per_lane = lane + (popcount if fmt == "bitmap" else 0.0)
        assert b.area_mm2["decoder"] == pytest.approx(32 * per_lane * 1e-6), fmt  # 1/32 per value
    both = area_breakdown(default(**{"memory.format_w": "bitmap", "memory.format_a": "bitmap",
                                     "memory.decode_cycles_per_element": 1 / 64}))
    assert both.area_mm2["decoder"] == pytest.approx(2 * 64 * (lane + popcount) * 1e-6)


def test_node_scales_every_area_quadratically():
    base = area_breakdown(default())
    small = area_breakdown(default(**{"area.node_nm": 22.5}))
    for k in AREA_COMPONENTS:
        assert small.area_mm2[k] == pytest.approx(base.area_mm2[k] / 4)
        assert small.leakage_mw[k] == pytest.approx(base.leakage_mw[k] / 4)


def test_area_table_overrides(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "area.toml").write_text("flop_um2 = 9.044\n")
    f = tmp_path / "a.toml"
    f.write_text('[area]\ntable = "t/area.toml"\nlogic_leak_nw_per_um2 = 0.0\n'
                 'sram_64kib_leak_mw = 1e-9\n')
    a = load_arch(f)
    b = area_breakdown(a)
    assert b.area_mm2["pe_registers"] == pytest.approx(2 * area_breakdown(default())
                                                        .area_mm2["pe_registers"])
    assert b.leakage_mw["mac"] == 0.0
    with pytest.raises(SparsesimError) as err:
        default(**{"area.flop": 1.0})
    assert err.value.field == "area.flop"
    with pytest.raises(SparsesimError) as err:
        default(**{"area.node_nm": 0})
    assert err.value.field == "area.node_nm"


def test_a_stalled_run_costs_more_energy():
    fast = simulate(NET, default(**{"memory.dram_bytes_per_cycle": 1000.0}))
    slow = simulate(NET, default(**{"memory.dram_bytes_per_cycle": 1.0}))
    f, s = fast.totals, slow.totals
    assert s["stall_cycles"] > f["stall_cycles"] and s["seconds"] > f["seconds"]
    # The same MACs: the same MAC and register energy. (SRAM and DRAM energies may differ:
    # the tiling takes the fastest candidate chunk, which depends on the bandwidth,
    # sparsesim.memory.tiling.)
    for c in ("energy_mac_pj", "energy_register_pj"):
        assert s[c] == f[c] > 0, c
    leak = area_breakdown(fast.arch).leakage_w
    for r in (f, s):
        assert r["energy_static_pj"] == pytest.approx(leak * r["seconds"] * 1e12, rel=1e-6)
    assert s["energy_static_pj"] - f["energy_static_pj"] == pytest.approx(
        leak * (s["seconds"] - f["seconds"]) * 1e12, rel=1e-6)
    assert s["energy_pj"] > f["energy_pj"]


def test_static_energy_per_row_and_power():
    r = simulate(NET, default())
    df = r.df
    leak = r.area.leakage_w
    assert list(df["energy_static_pj"]) == pytest.approx(list(leak * df["seconds"] * 1e12),
                                                         abs=0.01)
    assert (df["energy_pj"] == df[list(ENERGY_COLUMNS)].sum(axis=1)).all()
    t = r.totals
    assert t["power_avg_w"] == pytest.approx(t["energy_pj"] * 1e-12 / t["seconds"])
    per_row = df["energy_pj"] * 1e-12 / df["seconds"]
    assert t["power_peak_w"] == pytest.approx(per_row.max())
    assert t["power_peak_w"] >= t["power_avg_w"] > leak
    assert r.area_mm2 == pytest.approx(area_breakdown(r.arch).total_mm2)
    assert list(r.area_df["component"]) == list(AREA_COMPONENTS)
    assert "mm² at 45 nm" in r.table() and "peak" in r.table()


def test_archs_lists_area_and_leakage():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "archs"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("default "))
    b = area_breakdown(load_arch("default"))
    assert f"{b.total_mm2:.3g} (45 nm)" in line and "custom" in line
    assert "area mm²" in proc.stdout and "leakage" in proc.stdout
