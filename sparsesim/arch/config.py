"""The whole accelerator (:class:`Arch`), loaded from TOML; presets shipped in the package.

An arch TOML has one table per concern, each read by its own frozen config — ``[array]`` and
``[precision]`` (:mod:`.array`), ``[pe]`` (:mod:`.pe`), ``[memory]`` (:mod:`.memory`),
``[online]`` (:mod:`.online`), ``[energy]`` (:mod:`.energy`), ``[area]`` (:mod:`.area`),
``[mapping]`` (:mod:`.mapping`). A field left out takes the value
of the preset named by ``[arch] base`` (the ``default`` preset unless given)::

    [arch]
    name = "my-array"
    base = "default"          # preset whose values fill what this file leaves out
    clock_hz = 1_000_000_000
    source = "where the numbers come from (paper, datasheet)"   # shown by `sparsesim archs`
    notes = "what the model cannot express of the real chip"    # optional, free text

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
    n = 2                     # nm: n multipliers per group of m elements along K
    m = 4
    nm_operand = "W"          # nm: whose N:M compresses K: W | A | both (joint)
    acc_entries = 1           # accumulator entries per PE (partial sums kept across steps)
    nm_nonconformant = "refuse"  # nm: a sparse, non-N:M layer: refuse | dense (run densely)

    [memory]                  # DRAM → SRAM (A, W, O buffers, double-buffered) → array
    ideal = false             # true: memory never stalls (the SCALE-Sim comparisons)
    dram = "custom"           # or ddr4 | lpddr4 | lpddr5 | hbm2 (sparsesim.arch.dram): its
                              # GB/s at clock_hz and its pJ/bit, then no dram_bytes_per_cycle
    dram_bytes_per_cycle = 16.0
    dram_latency_cycles = 100
    burst_bytes = 64          # transfers are whole bursts
    sram_kib_a = 512.0        # each buffer's total capacity: two halves of half the size
    sram_kib_w = 512.0
    sram_kib_o = 64.0
    format_a = "dense"        # storage formats, as sparsesim.formats.parse_format reads them
    format_w = "bitmap"
    format_o = "dense"
    decode_cycles_per_element = 0.03125
    conv_halo = "refetch"     # or line_buffer: conv tiles do not read their halos again

    [online]                  # the online pruning unit on the array's output path
    lanes = 32                # elements compared per cycle (threshold, N:M)
    sorter_width = 32         # top-k: width of the bitonic sorting network (a power of 2)

    [area]                    # silicon area and leakage (sparsesim.arch.area)
    node_nm = 45              # areas scaled by (node_nm / 45)²
    table = "my_area.toml"    # optional file of overrides of the 45 nm area table
    flop_um2 = 5.0            # any field of sparsesim.arch.area.AreaTable

    [mapping]                 # temporal loop order and tiles (sparsesim.mapping.loops)
    order = "scalesim"        # output_reuse | weight_reuse | input_reuse | ["n", "k", "m"]
    stream_tile = 0           # streamed-axis elements per DRAM→SRAM tile (0: tiling policy)

    [energy]                  # per-action energies in pJ over the 45 nm default table
    table = "my_energy.toml"  # optional file of overrides (relative to this file)
    dram_read_pj_per_bit = 20.0   # any field of sparsesim.arch.energy.EnergyTable

A table left out is the base preset's.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from sparsesim.arch.area import AreaConfig
from sparsesim.arch.array import ArrayConfig, PrecisionConfig
from sparsesim.arch.dram import CUSTOM, dram_tech
from sparsesim.arch.energy import EnergyConfig
from sparsesim.arch.mapping import MappingConfig
from sparsesim.arch.memory import MemoryConfig
from sparsesim.arch.online import OnlineConfig
from sparsesim.arch.pe import PeConfig
from sparsesim.arch.section import Section
from sparsesim.errors import SparsesimError
from sparsesim.files import read_toml


@dataclass(frozen=True, slots=True)
class Arch:
    """The whole accelerator: one frozen config per concern."""

    name: str = "default"
    clock_hz: float = 1e9
    array: ArrayConfig = ArrayConfig()
    precision: PrecisionConfig = PrecisionConfig()
    pe: PeConfig = PeConfig()
    memory: MemoryConfig = MemoryConfig()
    energy: EnergyConfig = EnergyConfig()
    online: OnlineConfig = OnlineConfig()
    area: AreaConfig = AreaConfig()
    mapping: MappingConfig = MappingConfig()
    description: str = ""
    source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.clock_hz, bool) or not isinstance(self.clock_hz, (int, float)) or not (
            0 < self.clock_hz < math.inf
        ):  # inf would make every time 0 s
            raise SparsesimError(f"must be a finite, positive number (Hz), got "
                                 f"{self.clock_hz!r}", field="arch.clock_hz")
        for op in ("a", "w", "o"):
            # The memory model alone runs unbounded buffers (timing studies); a whole arch
            # also prices SRAM accesses, and energy per bit of an infinite SRAM is undefined.
            if math.isinf(self.memory.sram_bytes(op)):
                raise SparsesimError("an unbounded SRAM has no energy per bit: give a finite "
                                     "size (a large one, e.g. 1e9, never limits the tiling)",
                                     field=f"memory.sram_kib_{op}")
        tech = dram_tech(self.memory.dram)
        if tech is not None:  # the technology's bandwidth, at this arch's clock
            object.__setattr__(self, "memory", replace(
                self.memory, dram_bytes_per_cycle=tech.bytes_per_cycle(self.clock_hz)))

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped dict this arch round-trips through."""
        return {
            "arch": {"name": self.name, "clock_hz": self.clock_hz,
                     "description": self.description, "source": self.source,
                     "notes": self.notes},
            "array": self.array.to_table(),
            "precision": self.precision.to_table(),
            "pe": self.pe.to_table(),
            "memory": self.memory.to_table(),
            "online": self.online.to_table(),
            "energy": self.energy.to_table(),
            "area": self.area.to_table(),
            "mapping": self.mapping.to_table(),
        }


_SECTIONS: dict[str, type[Section]] = {
    "array": ArrayConfig,
    "precision": PrecisionConfig,
    "pe": PeConfig,
    "memory": MemoryConfig,
    "energy": EnergyConfig,
    "online": OnlineConfig,
    "area": AreaConfig,
    "mapping": MappingConfig,
}
_ARCH_KEYS = frozenset({"name", "base", "clock_hz", "description", "source", "notes"})
_TEXT_KEYS = ("name", "description", "source", "notes")
"""``[arch]`` fields that are free text: a preset's identity and provenance, not inherited."""


def builtin_archs() -> list[str]:
    """Names of the presets shipped with the package."""
    root = resources.files("sparsesim.arch") / "presets"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def _preset_dict(name: str, *, file: str | None) -> dict[str, Any]:
    if name not in builtin_archs():
        raise SparsesimError(
            f"unknown arch preset {name!r}; presets: {', '.join(builtin_archs())}",
            file=file, field="arch.base" if file else "arch",
        )
    text = (resources.files("sparsesim.arch") / "presets" / f"{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def load_arch(spec: str | Path = "default") -> Arch:
    """A preset by name, or an arch TOML file by path."""
    path = Path(spec)
    if path.suffix.lower() == ".toml" or path.exists():
        file = str(path)
        data = read_toml(path, what="arch file")
        return arch_from_dict(_relative_to(data, path.parent), file=file)
    name = str(spec)
    # The default preset is complete by itself; every other file builds on a base.
    implicit = None if name == "default" else "default"
    return arch_from_dict(_preset_dict(name, file=None), file=f"{name}.toml",
                          implicit_base=implicit)


def _relative_to(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` with relative ``energy.table`` and ``area.table`` paths made relative to the
    arch file's folder."""
    for key in ("energy", "area"):
        section = data.get(key)
        if isinstance(section, Mapping) and isinstance(section.get("table"), str):
            table = section["table"]
            if table and not Path(table).is_absolute():
                data = {**data, key: {**section, "table": str(folder / table)}}
    return data


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
    for key in _TEXT_KEYS:
        if key in head and not isinstance(head[key], str):
            raise SparsesimError(f"must be a string, got {head[key]!r}", field=f"arch.{key}")
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
    # Hardware fields are inherited; the identity (name, description, source, notes) is not.
    merged_head = {"clock_hz": _table(base, "arch").get("clock_hz", 1e9), **head}
    merged_head.pop("base", None)
    sections: dict[str, Any] = {}  # one of each Section subclass, by key
    for key, cls in _SECTIONS.items():
        table = {**_table(base, key), **_table(data, key)}
        allowed = set(cls.keys())
        for field in table:
            if field not in allowed:
                raise SparsesimError(
                    f"unknown key; expected one of {', '.join(sorted(allowed))}",
                    field=f"{key}.{field}",
                )
        sections[key] = cls.from_table(table)
    given = _table(data, "memory")
    if sections["memory"].dram != CUSTOM and "dram_bytes_per_cycle" in given:
        raise SparsesimError(
            f"dram = {sections['memory'].dram!r} sets the bandwidth (its GB/s at clock_hz): "
            f"drop dram_bytes_per_cycle, or set dram = 'custom'",
            field="memory.dram_bytes_per_cycle")
    return Arch(
        name=str(merged_head.get("name", Path(file).stem if file else "arch")),
        clock_hz=merged_head.get("clock_hz", 1e9),
        description=str(merged_head.get("description", "")),
        source=str(merged_head.get("source", "")), notes=str(merged_head.get("notes", "")),
        **sections,
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
        if key.strip() == "arch.base":  # a base fills a file's gaps; an arch has none left
            raise SparsesimError("the base preset is the arch itself (--arch, or a sweep "
                                 "point's arch key: a preset or a file whose [arch] base names "
                                 "it), not an override", field="arch.base")
        if not name or table not in data:
            raise SparsesimError(f"expected TABLE.FIELD with TABLE one of {', '.join(data)}",
                                 field=key)
        data[table][name] = value
    if data["memory"].get("dram", CUSTOM) != CUSTOM and \
            "memory.dram_bytes_per_cycle" not in overrides:
        data["memory"].pop("dram_bytes_per_cycle", None)  # a technology's is derived
    return arch_from_dict(data, file=f"{arch.name} with overrides")
