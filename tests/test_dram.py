"""DRAM technologies: bandwidth from GB/s at the arch clock, separate read/write energies."""

import pytest

from sparsesim import simulate
from sparsesim.arch.config import arch_from_dict, load_arch, with_overrides
from sparsesim.arch.dram import DRAM_TECHS
from sparsesim.arch.energy import energy_table
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.workload.network import Workload

NET = Workload("tiny", (Conv2d("c1", c=8, h=16, w=16, m=40, r=3, s=3, padding=1),
                        Linear("fc", in_features=256, out_features=40, tokens=8)))

# Peak GB/s by hand from the interface: MT/s × bytes per transfer.
PEAK_GB_S = {"ddr4": 3200e6 * 8 / 1e9, "lpddr4": 3200e6 * 4 / 1e9,
             "lpddr5": 6400e6 * 4 / 1e9, "hbm2": 8 * 128 * 2e9 / 8 / 1e9}


def test_default_arch_is_unchanged():
    a = load_arch("default")
    t = energy_table(a)
    assert a.memory.dram == "custom" and a.memory.dram_bytes_per_cycle == 16.0
    assert t.dram_read_pj_per_bit == t.dram_write_pj_per_bit == 1950 / 64


@pytest.mark.parametrize("name", sorted(DRAM_TECHS))
def test_bandwidth_follows_the_clock(name):
    tech = DRAM_TECHS[name]
    assert tech.gb_per_s == pytest.approx(PEAK_GB_S[name])
    a = with_overrides(load_arch("default"), {"memory.dram": name})
    assert a.memory.dram_bytes_per_cycle == pytest.approx(PEAK_GB_S[name])  # 1 GHz
    slow = with_overrides(a, {"arch.clock_hz": 500e6})
    assert slow.memory.dram_bytes_per_cycle == pytest.approx(2 * PEAK_GB_S[name])
    t = energy_table(a)
    assert (t.dram_read_pj_per_bit, t.dram_write_pj_per_bit) == (tech.read_pj_per_bit,
                                                                 tech.write_pj_per_bit)
    assert arch_from_dict(a.to_dict()) == a  # round trip keeps the derived bandwidth
    assert tech.source and tech.interface


def test_tpu_like_with_hbm2():
    a = with_overrides(load_arch("tpu_like"), {"memory.dram": "hbm2"})  # 700 MHz
    assert a.memory.dram_bytes_per_cycle == pytest.approx(256e9 / 700e6)


def test_file_selects_a_technology(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('[memory]\ndram = "lpddr4"\n[energy]\ndram_write_pj_per_bit = 9.5\n')
    a = load_arch(f)
    assert a.memory.dram_bytes_per_cycle == pytest.approx(12.8)
    t = energy_table(a)
    assert (t.dram_read_pj_per_bit, t.dram_write_pj_per_bit) == (8.0, 9.5)  # override wins


def test_bandwidth_beside_a_technology_is_refused(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('[memory]\ndram = "ddr4"\ndram_bytes_per_cycle = 4.0\n')
    with pytest.raises(SparsesimError) as err:
        load_arch(f)
    assert err.value.field == "memory.dram_bytes_per_cycle" and err.value.file == str(f)
    a = with_overrides(load_arch("default"), {"memory.dram": "ddr4"})
    with pytest.raises(SparsesimError, match="drop dram_bytes_per_cycle"):
        with_overrides(a, {"memory.dram_bytes_per_cycle": 4.0})
    back = with_overrides(a, {"memory.dram": "custom", "memory.dram_bytes_per_cycle": 4.0})
    assert back.memory.dram_bytes_per_cycle == 4.0


def test_unknown_technology():
    with pytest.raises(SparsesimError) as err:
        with_overrides(load_arch("default"), {"memory.dram": "ddr9"})
    assert err.value.field == "memory.dram" and "lpddr4" in str(err.value)


def test_reads_and_writes_priced_apart():
    base = with_overrides(load_arch("default"), {"energy.dram_read_pj_per_bit": 1.0,
                                                 "energy.dram_write_pj_per_bit": 3.0})
    df = simulate(NET, base).df
    for r in df.itertuples():
        assert r.energy_dram_pj == pytest.approx(8 * r.dram_read_bytes * 1.0
                                                 + 8 * r.dram_write_bytes * 3.0, abs=0.01)
    assert (df["dram_write_bytes"] > 0).all()


def test_technology_changes_cycles_and_energy():
    slow = simulate(NET, with_overrides(load_arch("default"), {"memory.dram": "lpddr4"})).totals
    fast = simulate(NET, with_overrides(load_arch("default"), {"memory.dram": "hbm2"})).totals
    assert fast["cycles"] < slow["cycles"]
    assert slow["dram_read_bytes"] == fast["dram_read_bytes"]
    bits = 8 * (slow["dram_read_bytes"] + slow["dram_write_bytes"])
    assert slow["energy_dram_pj"] == pytest.approx(8.0 * bits, abs=0.01)
    assert fast["energy_dram_pj"] == pytest.approx(3.9 * bits, abs=0.01)
