"""Arch TOML: presets, inheritance from the default preset, and errors naming the field."""

import math

import pytest

from sparsesim.arch.array import ArrayConfig
from sparsesim.arch.config import Arch, arch_from_dict, builtin_archs, load_arch, with_overrides
from sparsesim.arch.energy import EnergyConfig
from sparsesim.arch.memory import MemoryConfig
from sparsesim.errors import SparsesimError


def test_presets_cover_the_issue():
    names = builtin_archs()
    arrays = {n: load_arch(n).array for n in names}
    assert arrays["default"] == ArrayConfig(32, 32, "os")
    assert any(a.rows == a.cols == 128 and a.dataflow == "ws" for a in arrays.values())
    assert any(a.rows != a.cols for a in arrays.values())


def test_missing_fields_come_from_the_default_preset(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[array]\nrows = 8\n')
    arch = load_arch(path)
    default = load_arch("default")
    assert arch.array == ArrayConfig(8, default.array.cols, default.array.dataflow)
    assert arch.clock_hz == default.clock_hz and arch.precision == default.precision
    assert arch.name == "mine"


def test_base_preset_and_round_trip():
    arch = arch_from_dict({"arch": {"base": "tpu_like", "name": "t"}, "array": {"cols": 64}})
    assert (arch.array.rows, arch.array.cols, arch.array.dataflow) == (128, 64, "ws")
    assert arch_from_dict(arch.to_dict()) == arch


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"array": {"rows": 0}}, "array.rows"),
        ({"array": {"dataflow": "rs"}}, "array.dataflow"),
        ({"array": {"rowz": 3}}, "array.rowz"),
        ({"pe": {"kind": "sparse"}}, "pe.kind"),
        ({"pe": {"sync": "warp"}}, "pe.sync"),
        ({"pe": {"kind": "nm", "n": 3, "m": 2}}, "pe.n"),
        ({"pe": {"kind": "nm", "nm_operand": "O"}}, "pe.nm_operand"),
        ({"pe": {"kind": "skip", "nm_operand": "A"}}, "pe.nm_operand"),
        ({"pe": {"kind": "gate", "nm_operand": "both"}}, "pe.nm_operand"),
        ({"cache": {"kib": 1}}, "cache"),
        ({"arch": {"clock_hz": -1}}, "arch.clock_hz"),
        ({"arch": {"base": "nope"}}, "arch.base"),
        ({"precision": {"w_bits": 2.5}}, "precision.w_bits"),
    ],
)
def test_bad_arch_fields(data, field):
    with pytest.raises(SparsesimError) as err:
        arch_from_dict(data, file="x.toml")
    assert err.value.field == field and err.value.file == "x.toml"


def test_arch_is_frozen():
    with pytest.raises(AttributeError):
        Arch().clock_hz = 2  # type: ignore[misc]


def test_presets_carry_realistic_memory():
    for name in builtin_archs():
        mem = load_arch(name).memory
        assert not mem.ideal
        assert 1 <= mem.dram_bytes_per_cycle <= 256 and 10 <= mem.dram_latency_cycles <= 1000
        assert mem.burst_bytes == 64
        assert all(math.isfinite(mem.sram_bytes(op)) for op in "awo")
    default = load_arch("default").memory
    assert default == MemoryConfig()  # the dataclass defaults are the default preset's
    assert (default.dram_bytes_per_cycle, default.dram_latency_cycles) == (16.0, 100)
    tpu = load_arch("tpu_like").memory
    assert tpu.sram_kib_a + tpu.sram_kib_o == 24 * 1024  # TPU v1's unified buffer
    assert tpu.dram_bytes_per_cycle == 48.0  # 34 GB/s at 700 MHz


def test_memory_and_energy_tables_round_trip(tmp_path):
    arch = arch_from_dict({"memory": {"ideal": True, "format_w": "nm:n=2,m=4",
                                      "sram_kib_o": 8},
                           "energy": {"dram_read_pj_per_bit": 20.0, "table": "/x/e.toml"}})
    assert arch.memory.ideal and arch.memory.format_spec("W") == "nm:n=2,m=4"
    assert arch.memory.sram_bytes("o") == 8 * 1024
    assert arch.energy.overrides == (("dram_read_pj_per_bit", 20.0),)
    assert arch_from_dict(arch.to_dict()) == arch
    assert "mac_pj" not in arch.to_dict()["energy"]  # TOML has no null
    changed = with_overrides(arch, {"memory.ideal": False, "energy.mac_pj": 0.3})
    assert dict(changed.energy.overrides) == {"mac_pj": 0.3, "dram_read_pj_per_bit": 20.0}
    # inherited from the base preset, overridden per field
    tpu = arch_from_dict({"arch": {"base": "tpu_like"}, "memory": {"sram_kib_w": 128}})
    assert tpu.memory.sram_kib_w == 128 and tpu.memory.dram_bytes_per_cycle == 48.0
    # unlimited figures for studies: inf in TOML
    path = tmp_path / "inf.toml"
    path.write_text("[memory]\ndram_bytes_per_cycle = inf\n")
    assert math.isinf(load_arch(path).memory.dram_bytes_per_cycle)


def test_relative_energy_table_is_resolved_against_the_arch_file(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[energy]\ntable = "e.toml"\n')
    assert load_arch(path).energy.table == str(tmp_path / "e.toml")
    assert Arch().energy == EnergyConfig()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"memory": {"ideal": "yes"}}, "memory.ideal"),
        ({"memory": {"dram_bytes_per_cycle": 0}}, "memory.dram_bytes_per_cycle"),
        ({"memory": {"dram_bytes_per_cycle": math.nan}}, "memory.dram_bytes_per_cycle"),
        ({"memory": {"dram_latency_cycles": -1}}, "memory.dram_latency_cycles"),
        ({"memory": {"dram_latency_cycles": 1.5}}, "memory.dram_latency_cycles"),
        ({"memory": {"burst_bytes": 0}}, "memory.burst_bytes"),
        ({"memory": {"sram_kib_a": -4}}, "memory.sram_kib_a"),
        ({"memory": {"sram_kib_o": True}}, "memory.sram_kib_o"),
        ({"memory": {"format_w": ""}}, "memory.format_w"),
        ({"memory": {"decode_cycles_per_element": math.inf}}, "memory.decode_cycles_per_element"),
        ({"memory": {"sram_kib": 64}}, "memory.sram_kib"),
        ({"energy": {"dram_read_pj_per_bit": -1}}, "energy.dram_read_pj_per_bit"),
        ({"energy": {"table": 3}}, "energy.table"),
        ({"energy": {"mac_energy": 1.0}}, "energy.mac_energy"),
    ],
)
def test_bad_memory_and_energy_fields(data, field):
    with pytest.raises(SparsesimError) as err:
        arch_from_dict(data, file="x.toml")
    assert err.value.field == field and err.value.file == "x.toml"


def test_set_arch_base_is_refused_not_ignored():
    """``--set arch.base=tpu_like`` used to exit 0 with the default preset's numbers: the base
    only fills a file's gaps, and an arch being overridden has none left."""
    with pytest.raises(SparsesimError, match="the base preset is the arch itself") as err:
        with_overrides(load_arch("default"), {"arch.base": "tpu_like"})
    assert err.value.field == "arch.base"


@pytest.mark.parametrize("over, field", [
    ({"arch.clock_hz": math.inf}, "arch.clock_hz"),      # every time would be 0 s
    ({"arch.clock_hz": math.nan}, "arch.clock_hz"),
    ({"memory.sram_kib_a": math.inf}, "memory.sram_kib_a"),  # no energy per bit
    ({"memory.sram_kib_o": math.inf}, "memory.sram_kib_o"),
])
def test_non_finite_sizes_and_clocks_are_refused_when_the_arch_is_built(over, field):
    with pytest.raises(SparsesimError) as err:
        with_overrides(load_arch("default"), over)
    assert err.value.field == field
