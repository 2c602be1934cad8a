"""Hardware configuration: frozen dataclasses loaded from TOML, presets shipped in the package.

An arch TOML has one table per concern; a field left out takes the value of the preset named
by ``[arch] base`` (the ``default`` preset unless given)::

    [arch]
    name = "my-array"
    base = "default"          # preset whose values fill what this file leaves out
    clock_hz = 1_000_000_000

    [array]
    rows = 32
    cols = 32
    dataflow = "os"           # os | ws | is

    [precision]
    a_bits = 8                # activation (A operand) bits
    w_bits = 8                # weight (W operand) bits
    o_bits = 8                # output bits written back

    [pe]
    kind = "skip"             # dense | gate | skip | nm
    operand = "both"          # skip: whose zeros are skipped: A | W | both
    sync = "row"              # skip: pe | row | col | wavefront
    n = 2                     # nm: n multipliers per group of m weights along K
    m = 4

Later concerns (PE kind, memory, energy) add their own tables the same way.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from sparsesim.errors import SparsesimError

DATAFLOW_NAMES = ("os", "ws", "is")
PE_KIND_NAMES = ("dense", "gate", "skip", "nm")
PE_OPERANDS = ("A", "W", "both")
PE_SYNCS = ("pe", "row", "col", "wavefront")


def _positive_int(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SparsesimError(f"must be a positive integer, got {value!r}", field=field)


@dataclass(frozen=True, slots=True)
class ArrayConfig:
    """A ``rows × cols`` systolic array and the dataflow it runs."""

    rows: int = 32
    cols: int = 32
    dataflow: str = "os"

    def __post_init__(self) -> None:
        _positive_int(self.rows, "array.rows")
        _positive_int(self.cols, "array.cols")
        if self.dataflow not in DATAFLOW_NAMES:
            raise SparsesimError(
                f"unknown dataflow {self.dataflow!r}; expected one of {', '.join(DATAFLOW_NAMES)}",
                field="array.dataflow",
            )


@dataclass(frozen=True, slots=True)
class PrecisionConfig:
    """Operand widths in bits: ``a`` activations, ``w`` weights, ``o`` outputs."""

    a_bits: int = 8
    w_bits: int = 8
    o_bits: int = 8

    def __post_init__(self) -> None:
        for f in ("a_bits", "w_bits", "o_bits"):
            _positive_int(getattr(self, f), f"precision.{f}")


@dataclass(frozen=True, slots=True)
class PeConfig:
    """What a PE does with zeros (DESIGN.md §3).

    ``kind``: ``dense`` computes everything; ``gate`` clock-gates products with a zero operand
    (dense cycles, less MAC energy); ``skip`` issues only effectual steps — products whose
    ``operand`` (``A``, ``W`` or ``both``) is non-zero — with PEs synchronised per ``sync``
    group (``pe``, ``row``, ``col`` or the whole ``wavefront`` of a fold); ``nm`` has ``n``
    multipliers per group of ``m`` weights along K (weights must be N:M-conformant).
    """

    kind: str = "dense"
    operand: str = "both"
    sync: str = "pe"
    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        for field, value, names in (("kind", self.kind, PE_KIND_NAMES),
                                    ("operand", self.operand, PE_OPERANDS),
                                    ("sync", self.sync, PE_SYNCS)):
            if value not in names:
                raise SparsesimError(f"unknown {field} {value!r}; expected one of "
                                     f"{', '.join(names)}", field=f"pe.{field}")
        _positive_int(self.n, "pe.n")
        _positive_int(self.m, "pe.m")
        if self.n > self.m:
            raise SparsesimError(f"N:M needs n <= m, got {self.n}:{self.m}", field="pe.n")


@dataclass(frozen=True, slots=True)
class Arch:
    """The whole accelerator: one frozen config per concern."""

    name: str = "default"
    clock_hz: float = 1e9
    array: ArrayConfig = ArrayConfig()
    precision: PrecisionConfig = PrecisionConfig()
    pe: PeConfig = PeConfig()
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.clock_hz, bool) or not isinstance(self.clock_hz, (int, float)) or not (
            self.clock_hz > 0
        ):
            raise SparsesimError(f"must be a positive number, got {self.clock_hz!r}",
                                 field="arch.clock_hz")

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped dict this arch round-trips through."""
        return {
            "arch": {"name": self.name, "clock_hz": self.clock_hz,
                     "description": self.description},
            "array": _as_dict(self.array),
            "precision": _as_dict(self.precision),
            "pe": _as_dict(self.pe),
        }


_SECTIONS: dict[str, type[ArrayConfig] | type[PrecisionConfig] | type[PeConfig]] = {
    "array": ArrayConfig,
    "precision": PrecisionConfig,
    "pe": PeConfig,
}
_ARCH_KEYS = frozenset({"name", "base", "clock_hz", "description"})


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def builtin_archs() -> list[str]:
    """Names of the presets shipped with the package."""
    root = resources.files("sparsesim") / "presets"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def _preset_dict(name: str, *, file: str | None) -> dict[str, Any]:
    if name not in builtin_archs():
        raise SparsesimError(
            f"unknown arch preset {name!r}; presets: {', '.join(builtin_archs())}",
            file=file, field="arch.base" if file else "arch",
        )
    text = (resources.files("sparsesim") / "presets" / f"{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def load_arch(spec: str | Path = "default") -> Arch:
    """A preset by name, or an arch TOML file by path."""
    path = Path(spec)
    if path.suffix.lower() == ".toml" or path.exists():
        if not path.is_file():
            raise SparsesimError("no such arch file", file=str(path))
        file = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise SparsesimError(f"malformed TOML: {err}", file=file) from None
        return arch_from_dict(data, file=file)
    name = str(spec)
    # The default preset is complete by itself; every other file builds on a base.
    implicit = None if name == "default" else "default"
    return arch_from_dict(_preset_dict(name, file=None), file=f"{name}.toml",
                          implicit_base=implicit)


def arch_from_dict(
    data: Mapping[str, Any], *, file: str | None = None, implicit_base: str | None = "default"
) -> Arch:
    """Build an arch from parsed TOML, filling omitted fields from its base preset."""
    try:
        return _arch_from_dict(data, file=file, implicit_base=implicit_base)
    except SparsesimError as err:
        raise err.located(file=file) from None


def _arch_from_dict(
    data: Mapping[str, Any], *, file: str | None, implicit_base: str | None
) -> Arch:
    for key in data:
        if key != "arch" and key not in _SECTIONS:
            raise SparsesimError(
                f"unknown table; expected arch, {', '.join(_SECTIONS)}", field=key
            )
    head = _table(data, "arch")
    for key in head:
        if key not in _ARCH_KEYS:
            raise SparsesimError(f"unknown key; expected one of {', '.join(sorted(_ARCH_KEYS))}",
                                 field=f"arch.{key}")
    base_name = head.get("base", implicit_base)
    base: Mapping[str, Any] = {}
    if base_name is not None:
        if not isinstance(base_name, str):
            raise SparsesimError(f"must be a preset name, got {base_name!r}", field="arch.base")
        if base_name not in builtin_archs():
            raise SparsesimError(
                f"unknown preset {base_name!r}; presets: {', '.join(builtin_archs())}",
                field="arch.base",
            )
        base = load_arch(base_name).to_dict()
    # Hardware fields are inherited; the identity (name, description) is not.
    merged_head = {"clock_hz": _table(base, "arch").get("clock_hz", 1e9), **head}
    merged_head.pop("base", None)
    sections = {}
    for key, cls in _SECTIONS.items():
        table = {**_table(base, key), **_table(data, key)}
        allowed = {f.name for f in fields(cls)}
        for field in table:
            if field not in allowed:
                raise SparsesimError(
                    f"unknown key; expected one of {', '.join(sorted(allowed))}",
                    field=f"{key}.{field}",
                )
        sections[key] = cls(**table)
    return Arch(
        name=str(merged_head.get("name", Path(file).stem if file else "arch")),
        clock_hz=merged_head.get("clock_hz", 1e9),
        description=str(merged_head.get("description", "")),
        **sections,  # type: ignore[arg-type]
    )


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, Mapping):
        raise SparsesimError("must be a table", field=key)
    return table


def with_overrides(arch: Arch, overrides: Mapping[str, Any]) -> Arch:
    """``arch`` with dotted fields replaced, e.g. ``{"pe.kind": "skip", "array.rows": 64}``."""
    data = arch.to_dict()
    for key, value in overrides.items():
        table, _, name = key.partition(".")
        if not name or table not in data:
            raise SparsesimError(f"expected TABLE.FIELD with TABLE one of {', '.join(data)}",
                                 field=key)
        data[table][name] = value
    return arch_from_dict(data, file=f"{arch.name} with overrides")
