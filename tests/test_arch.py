"""Arch TOML: presets, inheritance from the default preset, and errors naming the field."""

import pytest

from sparsesim.arch import Arch, ArrayConfig, arch_from_dict, builtin_archs, load_arch
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
        ({"memory": {"ideal": True}}, "memory"),
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
