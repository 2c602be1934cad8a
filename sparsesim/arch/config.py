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

    [memory]                  # DRAM → SRAM (A, W, O buffers, double-buffered) → array
    ideal = false             # true: memory never stalls (the SCALE-Sim comparisons)
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

    [energy]                  # per-action energies in pJ over the 45 nm default table
    table = "my_energy.toml"  # optional file of overrides (relative to this file)
    dram_pj_per_bit = 20.0    # any field of sparsesim.energy.EnergyTable

A table left out is the base preset's.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from sparsesim.errors import SparsesimError
from sparsesim.names import DataflowName, Operand, PeKind, PeOperand, Sync, choices
from sparsesim.rules.nm import check_ratio



def _positive_int(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SparsesimError(f"must be a positive integer, got {value!r}", field=field)


def _number(value: Any, field: str, *, positive: bool, finite: bool = True) -> None:
    """A real number (bool is not one), > 0 if ``positive`` else >= 0; ``inf`` if not ``finite``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)
    if ok:
        ok = (value > 0 if positive else value >= 0) and (not finite or math.isfinite(value))
    if not ok:
        kind = "positive" if positive else "non-negative"
        extra = "" if finite else " (inf allowed)"
        raise SparsesimError(f"must be a {kind} number{extra}, got {value!r}", field=field)


@dataclass(frozen=True, slots=True)
class ArrayConfig:
    """A ``rows × cols`` systolic array and the dataflow it runs."""

    rows: int = 32
    cols: int = 32
    dataflow: str = "os"

    def __post_init__(self) -> None:
        _positive_int(self.rows, "array.rows")
        _positive_int(self.cols, "array.cols")
        if self.dataflow not in tuple(DataflowName):
            raise SparsesimError(
                f"unknown dataflow {self.dataflow!r}; expected one of {choices(DataflowName)}",
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
        for field, value, names in (("kind", self.kind, PeKind),
                                    ("operand", self.operand, PeOperand),
                                    ("sync", self.sync, Sync)):
            if value not in tuple(names):
                raise SparsesimError(f"unknown {field} {value!r}; expected one of "
                                     f"{choices(names)}", field=f"pe.{field}")
        _positive_int(self.n, "pe.n")
        _positive_int(self.m, "pe.m")
        check_ratio((self.n, self.m), field="pe.n")


CONV_HALOS = ("refetch", "line_buffer")


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """DRAM channel and on-chip buffers (DESIGN.md §3 Memory).

    ``ideal`` memory never stalls: cycles are the compute cycles (traffic is still counted).
    Otherwise one DRAM channel moves ``dram_bytes_per_cycle`` (``inf`` allowed: unlimited)
    after ``dram_latency_cycles``, in whole bursts of ``burst_bytes``. ``sram_kib_{a,w,o}``
    is each operand buffer's *total* capacity in KiB (``inf`` allowed); it is double-buffered,
    two halves of half that size, so one tile may be at most half of it. ``format_{a,w,o}``
    is the operand's storage format in DRAM and SRAM (a spec :func:`sparsesim.formats.
    parse_format` reads; checked when memory is simulated, so this module does not import
    formats). ``decode_cycles_per_element``: cycles a decoder spends per stored value of a
    tile whose format carries metadata (default 1/32: one value per array row per cycle on
    the default 32×32 array, so decoding keeps pace with a dense fold). ``conv_halo``: a conv
    tile's input region overlaps its neighbours' (the halo of its windows): ``refetch`` reads
    the whole region for every tile; ``line_buffer`` keeps the rows already read on chip, so
    a tile reads only the pixels no earlier tile read (each input pixel once per pass).
    """

    ideal: bool = False
    dram_bytes_per_cycle: float = 16.0
    dram_latency_cycles: int = 100
    burst_bytes: int = 64
    sram_kib_a: float = 512.0
    sram_kib_w: float = 512.0
    sram_kib_o: float = 64.0
    format_a: str = "dense"
    format_w: str = "dense"
    format_o: str = "dense"
    decode_cycles_per_element: float = 0.03125
    conv_halo: str = "refetch"

    def __post_init__(self) -> None:
        if self.conv_halo not in CONV_HALOS:
            raise SparsesimError(f"unknown conv_halo {self.conv_halo!r}; expected one of "
                                 f"{', '.join(CONV_HALOS)}", field="memory.conv_halo")
        if not isinstance(self.ideal, bool):
            raise SparsesimError(f"must be true or false, got {self.ideal!r}",
                                 field="memory.ideal")
        _number(self.dram_bytes_per_cycle, "memory.dram_bytes_per_cycle", positive=True,
                finite=False)
        if (isinstance(self.dram_latency_cycles, bool)
                or not isinstance(self.dram_latency_cycles, int) or self.dram_latency_cycles < 0):
            raise SparsesimError(f"must be a non-negative integer, got "
                                 f"{self.dram_latency_cycles!r}",
                                 field="memory.dram_latency_cycles")
        _positive_int(self.burst_bytes, "memory.burst_bytes")
        for op in (o.lower() for o in Operand):
            _number(getattr(self, f"sram_kib_{op}"), f"memory.sram_kib_{op}", positive=True,
                    finite=False)
            fmt = getattr(self, f"format_{op}")
            if not isinstance(fmt, str) or not fmt.strip():
                raise SparsesimError(f"must be a format spec such as 'dense' or 'bitmap', "
                                     f"got {fmt!r}", field=f"memory.format_{op}")
        _number(self.decode_cycles_per_element, "memory.decode_cycles_per_element",
                positive=False)

    def sram_bytes(self, operand: str) -> float:
        """Total capacity in bytes of operand ``a``, ``w`` or ``o``'s buffer (may be inf)."""
        return float(getattr(self, f"sram_kib_{operand.lower()}")) * 1024.0

    def format_spec(self, operand: str) -> str:
        """The storage-format spec of operand ``a``, ``w`` or ``o``."""
        return str(getattr(self, f"format_{operand.lower()}"))


@dataclass(frozen=True, slots=True)
class OnlineConfig:
    """The unit that prunes activations (or gradients) at run time, on the output path.

    ``lanes`` comparators take that many elements per cycle (threshold, N:M selection);
    top-k runs rows through a bitonic sorting network ``sorter_width`` elements wide
    (a power of two). Costs: :mod:`sparsesim.pe.online`.
    """

    lanes: int = 32
    sorter_width: int = 32

    def __post_init__(self) -> None:
        _positive_int(self.lanes, "online.lanes")
        _positive_int(self.sorter_width, "online.sorter_width")
        if self.sorter_width & (self.sorter_width - 1):
            raise SparsesimError(f"a bitonic network's width is a power of 2, got "
                                 f"{self.sorter_width}", field="online.sorter_width")


ENERGY_OVERRIDE_KEYS = (
    "mult_8b_pj", "mult_32b_pj", "add_8b_pj", "add_32b_pj", "mac_pj", "gated_mac_fraction",
    "gated_mac_pj", "reg_pj_per_bit", "sram_8kib_pj_per_64b", "sram_32kib_pj_per_64b",
    "sram_1mib_pj_per_64b", "sram_write_factor", "dram_pj_per_bit", "decode_pj_per_element",
)
"""The fields of :class:`sparsesim.energy.EnergyTable` (a test keeps the two lists equal)."""


@dataclass(frozen=True, slots=True)
class EnergyConfig:
    """Overrides of the default 45 nm energy table (:mod:`sparsesim.energy`).

    ``table`` is an optional TOML file of overrides (``""``: none), applied first; every other
    field, when set, overrides that entry of the table (pJ, or a plain ratio for
    ``gated_mac_fraction`` and ``sram_write_factor``). ``None`` keeps the table's value.
    """

    table: str = ""
    mult_8b_pj: float | None = None
    mult_32b_pj: float | None = None
    add_8b_pj: float | None = None
    add_32b_pj: float | None = None
    mac_pj: float | None = None
    gated_mac_fraction: float | None = None
    gated_mac_pj: float | None = None
    reg_pj_per_bit: float | None = None
    sram_8kib_pj_per_64b: float | None = None
    sram_32kib_pj_per_64b: float | None = None
    sram_1mib_pj_per_64b: float | None = None
    sram_write_factor: float | None = None
    dram_pj_per_bit: float | None = None
    decode_pj_per_element: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.table, str):
            raise SparsesimError(f"must be a file path, got {self.table!r}", field="energy.table")
        for key in ENERGY_OVERRIDE_KEYS:
            value = getattr(self, key)
            if value is not None:
                _number(value, f"energy.{key}", positive=False)

    @property
    def overrides(self) -> dict[str, float]:
        """The entries this arch sets, by table field."""
        return {k: getattr(self, k) for k in ENERGY_OVERRIDE_KEYS if getattr(self, k) is not None}


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
            "memory": _as_dict(self.memory),
            "online": _as_dict(self.online),
            # TOML has no null: unset overrides are left out
            "energy": {"table": self.energy.table, **self.energy.overrides},
        }


_SECTIONS: dict[str, type[Any]] = {
    "array": ArrayConfig,
    "precision": PrecisionConfig,
    "pe": PeConfig,
    "memory": MemoryConfig,
    "energy": EnergyConfig,
    "online": OnlineConfig,
}
_ARCH_KEYS = frozenset({"name", "base", "clock_hz", "description"})


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


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
        if not path.is_file():
            raise SparsesimError("no such arch file", file=str(path))
        file = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise SparsesimError(f"malformed TOML: {err}", file=file) from None
        return arch_from_dict(_relative_to(data, path.parent), file=file)
    name = str(spec)
    # The default preset is complete by itself; every other file builds on a base.
    implicit = None if name == "default" else "default"
    return arch_from_dict(_preset_dict(name, file=None), file=f"{name}.toml",
                          implicit_base=implicit)


def _relative_to(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` with a relative ``energy.table`` path made relative to the arch file's folder."""
    energy = data.get("energy")
    if isinstance(energy, Mapping) and isinstance(energy.get("table"), str):
        table = energy["table"]
        if table and not Path(table).is_absolute():
            return {**data, "energy": {**energy, "table": str(folder / table)}}
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
