"""Energy: the 45 nm table (Horowitz, ISSCC 2014), overrides, and exact breakdowns."""

import math
from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsesim.arch.array import PrecisionConfig
from sparsesim.arch.config import Arch, arch_from_dict, load_arch, with_overrides
from sparsesim.arch.energy import (
    ENERGY_TABLE_KEYS,
    EnergyConfig,
    EnergyTable,
    energy_table,
    load_energy_table,
)
from sparsesim.arch.memory import MemoryConfig
from sparsesim.energy import (
    ENERGY_COMPONENTS,
    QUANTUM_PJ,
    ActionCounts,
    energy_breakdown,
    total_energy_pj,
)
from sparsesim.errors import SparsesimError
from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm
from sparsesim.memory import actions, fold_schedule, simulate_gemm

KIB = 1024


def test_defaults_are_horowitz_45nm():
    t = EnergyTable()
    # int8 MAC = 8-bit mult + 8-bit add; int32 = 32-bit mult + 32-bit add
    assert t.mac(8, 8) == pytest.approx(0.2 + 0.03)
    assert t.mac(32, 32) == pytest.approx(3.1 + 0.1)
    assert t.mac(8, 8) < t.mac(8, 16) < t.mac(16, 16) < t.mac(32, 32)
    assert t.gated_mac(8, 8) == pytest.approx(0.1 * 0.23)
    # 64-bit SRAM reads: 10 / 20 / 100 pJ at 8 KB / 32 KB / 1 MB
    for size, pj in ((8 * KIB, 10), (32 * KIB, 20), (1024 * KIB, 100)):
        assert t.sram_read_per_bit(size) * 64 == pytest.approx(pj)
        assert t.sram_write_per_bit(size) == t.sram_read_per_bit(size)
    sizes = [1 * KIB, 4 * KIB, 16 * KIB, 256 * KIB, 4096 * KIB]
    per_bit = [t.sram_read_per_bit(s) for s in sizes]
    assert per_bit == sorted(per_bit) and per_bit[0] > 0
    # log–log between anchors: 16 KiB is the geometric mean of the 8 and 32 KiB figures
    assert t.sram_read_per_bit(16 * KIB) * 64 == pytest.approx(math.sqrt(10 * 20))
    # DRAM: the midpoint of 1.3–2.6 nJ per 64 bits
    assert t.dram_read_pj_per_bit * 64 == t.dram_write_pj_per_bit * 64 == pytest.approx(1950)


def test_override_rules():
    t = EnergyTable(mac_pj=1.0, gated_mac_pj=0.5, sram_write_factor=2.0)
    assert t.mac(8, 8) == t.mac(32, 32) == 1.0 and t.gated_mac(16, 16) == 0.5
    assert t.sram_write_per_bit(8 * KIB) == 2 * t.sram_read_per_bit(8 * KIB)
    assert EnergyTable(gated_mac_fraction=0.5).gated_mac(8, 8) == pytest.approx(0.115)


@pytest.mark.parametrize(("entries", "field"), [
    ({"dram_read_pj_per_bit": -1.0}, "energy.dram_read_pj_per_bit"),
    ({"mult_8b_pj": 0.0}, "energy.mult_8b_pj"),
    ({"gated_mac_fraction": 1.5}, "energy.gated_mac_fraction"),
    ({"reg_pj_per_bit": "x"}, "energy.reg_pj_per_bit"),
])
def test_bad_table_entries_name_the_field(entries, field):
    with pytest.raises(SparsesimError) as err:
        EnergyTable(**entries)
    assert err.value.field == field


@pytest.mark.parametrize("entry", ENERGY_TABLE_KEYS)
def test_every_table_entry_is_an_arch_override(tmp_path, entry):
    """The override names are the table's fields: each reaches the table, from a TOML file,
    from ``--set energy.<entry>`` and through ``to_dict``."""
    default = getattr(EnergyTable(), entry)
    value = 0.05 if default is None else default / 2
    path = tmp_path / "a.toml"
    path.write_text(f"[energy]\n{entry} = {value!r}\n")
    arch = load_arch(path)
    assert getattr(energy_table(arch), entry) == value
    assert arch.to_dict()["energy"] == {"table": "", entry: value}
    assert arch_from_dict(arch.to_dict()) == arch
    set_ = with_overrides(Arch(), {f"energy.{entry}": value})
    assert set_.energy == arch.energy and getattr(energy_table(set_), entry) == value


def test_energy_config_is_order_free_and_hashable():
    a = EnergyConfig(overrides=(("mac_pj", 0.5), ("add_8b_pj", 0.1), ("dram_read_pj_per_bit", None)))
    b = EnergyConfig(overrides=(("add_8b_pj", 0.1), ("mac_pj", 0.5)))
    assert a == b and hash(a) == hash(b) and a.overrides == (("add_8b_pj", 0.1), ("mac_pj", 0.5))
    assert hash(Arch(energy=a)) == hash(Arch(energy=b))
    with pytest.raises(SparsesimError) as err:
        EnergyConfig(overrides=(("mac_energy", 1.0),))
    assert err.value.field == "energy.mac_energy"


def test_table_file_overrides_and_errors(tmp_path):
    good = tmp_path / "e.toml"
    good.write_text("dram_read_pj_per_bit = 20.0\nmac_pj = 0.5\n")
    t = load_energy_table(good)
    assert t.dram_read_pj_per_bit == 20.0 and t.mac(8, 8) == 0.5
    assert t.sram_8kib_pj_per_64b == EnergyTable().sram_8kib_pj_per_64b
    nested = tmp_path / "n.toml"
    nested.write_text("[energy]\ndecode_pj_per_element = 0.2\n")
    assert load_energy_table(nested).decode_pj_per_element == 0.2
    bad = tmp_path / "bad.toml"
    bad.write_text("dram_pj = 20.0\n")
    with pytest.raises(SparsesimError) as err:
        load_energy_table(bad)
    assert err.value.field == "energy.dram_pj" and err.value.file == str(bad)
    neg = tmp_path / "neg.toml"
    neg.write_text("add_8b_pj = -2\n")
    with pytest.raises(SparsesimError) as err:
        load_energy_table(neg)
    assert err.value.field == "energy.add_8b_pj" and err.value.file == str(neg)
    with pytest.raises(SparsesimError) as err:
        load_energy_table(tmp_path / "missing.toml")
    assert err.value.file.endswith("missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("dram_read_pj_per_bit = = 1\n")
    with pytest.raises(SparsesimError, match="malformed TOML"):
        load_energy_table(broken)


def test_arch_energy_table_then_inline_overrides(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "e.toml").write_text("dram_read_pj_per_bit = 20.0\nreg_pj_per_bit = 0.1\n")
    arch_file = tmp_path / "a.toml"
    arch_file.write_text('[energy]\ntable = "tables/e.toml"\ndram_read_pj_per_bit = 10.0\n')
    arch = load_arch(arch_file)  # the table path is relative to the arch file
    t = energy_table(arch)
    assert t.dram_read_pj_per_bit == 10.0 and t.reg_pj_per_bit == 0.1
    assert energy_table(load_arch("default")) == EnergyTable()


counts = st.integers(0, 10**10)  # totals stay below 2**44 pJ, where sums are exact


@given(st.builds(ActionCounts, *([counts] * len(fields(ActionCounts)))),
       st.sampled_from(["default", "tpu_like", "gemmini_like"]), st.randoms())
def test_components_sum_exactly_to_the_total(actions_, preset, rnd):
    arch = load_arch(preset)
    b = energy_breakdown(actions_, EnergyTable(), arch)
    assert tuple(b) == ENERGY_COMPONENTS
    values = list(b.values())
    total = total_energy_pj(b)
    assert sum(values) == total  # plain left-to-right float addition
    rnd.shuffle(values)
    assert sum(values) == total == math.fsum(values)  # in any order
    assert np.sum(np.array(values)) == total
    assert all(v / QUANTUM_PJ == int(v / QUANTUM_PJ) for v in values)
    t = EnergyTable()
    assert b["mac"] == pytest.approx(actions_.macs * t.mac(8, 8), abs=QUANTUM_PJ)
    assert b["dram"] == pytest.approx(actions_.dram_read_bits * t.dram_read_pj_per_bit
                                      + actions_.dram_write_bits * t.dram_write_pj_per_bit,
                                      abs=QUANTUM_PJ)


def test_breakdown_uses_widths_and_buffer_sizes():
    base = Arch(memory=MemoryConfig(sram_kib_a=16.0, sram_kib_w=2048.0))
    a = ActionCounts(macs=1000, sram_a_read_bits=64_000, sram_w_read_bits=64_000)
    b = energy_breakdown(a, EnergyTable(), base)
    assert b["sram_a_read"] == pytest.approx(1000 * 10, abs=QUANTUM_PJ)  # a half: 8 KiB
    assert b["sram_w_read"] == pytest.approx(1000 * 100, abs=QUANTUM_PJ)  # a half: 1 MiB
    wide = replace(base, precision=PrecisionConfig(16, 16, 16))
    assert energy_breakdown(a, EnergyTable(), wide)["mac"] > b["mac"]
    with pytest.raises(SparsesimError) as err:  # an arch cannot price an unbounded SRAM
        Arch(memory=MemoryConfig(sram_kib_o=math.inf))
    assert err.value.field == "memory.sram_kib_o"


def test_action_counts_reject_bad_values_and_add():
    with pytest.raises(SparsesimError):
        ActionCounts(macs=-1)
    with pytest.raises(SparsesimError):
        ActionCounts(macs=1.5)  # type: ignore[arg-type]
    assert ActionCounts(macs=1, dram_read_bits=8) + ActionCounts(macs=2) == ActionCounts(
        macs=3, dram_read_bits=8)


def test_a_gated_run_spends_less_mac_energy():
    """Gating turns the non-effectual MACs of a sparse GEMM into cheap gated ones."""
    rng = np.random.default_rng(5)
    m, k, n = 64, 96, 48
    a_mask, w_mask = rng.random((m, k)) < 0.6, rng.random((k, n)) < 0.3
    dense_macs = m * k * n
    effectual = int(a_mask.sum(axis=0) @ w_mask.sum(axis=1))
    arch = arch_from_dict({"memory": {"format_w": "bitmap"}})
    r = simulate_gemm(fold_schedule(plan(Gemm("L", "g", m, k, n), "os", 32, 32), arch,
                                    a_mask, w_mask), arch.memory)
    table = energy_table(arch)
    dense = energy_breakdown(actions(r, macs=dense_macs), table, arch)
    gated = energy_breakdown(actions(r, macs=effectual, gated_macs=dense_macs - effectual),
                             table, arch)
    assert gated["mac"] + gated["gated_mac"] < dense["mac"]
    assert total_energy_pj(gated) < total_energy_pj(dense)
    for key in ENERGY_COMPONENTS:
        if key not in ("mac", "gated_mac"):
            assert gated[key] == dense[key]
    assert dense["decode"] > 0 and dense["dram"] > 0  # bitmap W is decoded; DRAM traffic


def test_ideal_and_simulated_runs_share_the_action_counts_when_memory_is_unbounded():
    arch = Arch()
    s = fold_schedule(plan(Gemm("L", "g", 40, 50, 60), "ws", 32, 32), arch)
    inf = math.inf
    real = simulate_gemm(s, replace(arch.memory, sram_kib_a=inf, sram_kib_w=inf, sram_kib_o=inf))
    ideal = simulate_gemm(s, replace(arch.memory, ideal=True))
    assert actions(real, macs=5) == actions(ideal, macs=5)

