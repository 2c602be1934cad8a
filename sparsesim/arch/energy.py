"""The energy table: energy per action in pJ, and the arch's overrides of it (pure data).

The default table is 45 nm, 0.9 V (M. Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014, Fig. 1.1.9): integer multiply 0.2 pJ (8 bit) and 3.1 pJ (32 bit),
integer add 0.03 pJ (8 bit) and 0.1 pJ (32 bit); a 64-bit SRAM read 10 pJ (8 KB), 20 pJ
(32 KB), 100 pJ (1 MB); DRAM 1.3–2.6 nJ per 64 bits. Checked against transcriptions of the
figure (a public gist of its table; a design-space tool's energy database: the same eight
numbers), not against the paper itself. Rules and assumptions on top of it:

- **MAC** at widths (a, w) = multiply + add. The multiply follows the power law through
  Horowitz's two points in the multiplier's size ``a·w`` (0.2 pJ at 8×8, 3.1 pJ at 32×32:
  exponent ≈ 1.98 in the width, close to the textbook quadratic); the add follows the power
  law through 0.03 pJ (8 bit) and 0.1 pJ (32 bit) at ``max(a, w)`` bits. int8: 0.23 pJ.
  ``mac_pj`` overrides the rule with one figure.
- **Gated MAC**: an operand-gated (clock-gated) MAC costs ``gated_mac_fraction`` = 10 % of a
  MAC — an assumption for the zero detection and the clock tree that still toggles; the
  figure is not in Horowitz's table. ``gated_mac_pj`` overrides it.
- **Register** access: ``reg_pj_per_bit`` × the wider operand's bits; 0.03 pJ/bit makes an
  int8 access ≈ one int8 MAC, Eyeriss's ratio (RF access ≈ 1× MAC; Chen et al., ISCA 2016,
  its table of energy normalised to a MAC in a 65 nm process — the ratio as recalled: the
  stored copies of the paper searched here name the table but do not carry its values).
- **SRAM** per bit read = Horowitz's 64-bit figure / 64, interpolated between his three sizes
  as a power law in size (linear in log–log), extrapolated with the end segments' slopes. The
  size is one half of the double-buffered operand buffer (the bank an access touches).
  Writes cost ``sram_write_factor`` (1.0: Horowitz gives reads only; assumed equal) × a read.
- **DRAM**: ``dram_read_pj_per_bit`` and ``dram_write_pj_per_bit``, each bit read or
  written priced by its own entry. Default (``[memory] dram = "custom"``): the midpoint of
  Horowitz's 1.3–2.6 nJ per 64 bits, 1.95 nJ / 64 = 30.47 pJ/bit, reads and writes alike; an
  arch that names a DRAM technology (:mod:`sparsesim.arch.dram`) takes its two figures.
- **Accumulator** access (the PE register level, :mod:`sparsesim.mapping.loops`): a partial
  sum drained from a PE accumulator to the O buffer or filled back costs ``acc_pj_per_bit``
  × the output width; 0.03 pJ/bit, the register figure above (an accumulator is a register
  file entry: Eyeriss's RF ≈ 1× MAC, Chen et al., ISCA 2016).
- **Decode**: ``decode_pj_per_element`` = 0.05 pJ per value whose position is decoded from
  metadata — an assumption: about one 16-bit add (the index arithmetic) per value.
- **Bitmap gathering**: a bitmap format's values are gathered by a popcount and prefix sum
  of each bitmap word the decoder reads (positions of the non-zeros); priced per 64-bit
  word as ``log2(64) = 6`` rows of a 64-bit add (a parallel-prefix adder tree), through the
  add power law: 6 × 0.18 = 1.10 pJ per word — an assumption built from Horowitz's adds.
  It is part of the ``decode`` component; ``popcount_pj_per_word`` overrides it.
- **Partial-sum merge** (dual-side skipping, :mod:`sparsesim.mapping.merge`): per merged partial
  sum a coordinate comparison of ``merge_coordinate_bits`` (16) and an add of the product's
  width ``a + w`` into its output's accumulator, both through the add power law above (int8:
  0.055 + 0.055 = 0.11 pJ) — an assumption built from Horowitz's adds (SCNN's
  crossbar and accumulator-bank wiring is not in it). ``merge_pj_per_psum`` overrides it.
- **Online pruning**: one comparison of the output width ``o_bits`` costs an add of that width
  (a comparator is a subtractor), through the same power law as the MAC's add.

The table's entries are :data:`ENERGY_TABLE_KEYS`; an arch's ``[energy]`` table (or a table
file it names) may set any of them. What a run's actions cost: :mod:`sparsesim.energy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from sparsesim.arch.dram import dram_tech
from sparsesim.arch.section import Section, number, table_overrides
from sparsesim.errors import SparsesimError
from sparsesim.units import power_law
from sparsesim.files import read_toml

if TYPE_CHECKING:
    from sparsesim.arch.config import Arch

_KIB = 1024.0


@dataclass(frozen=True, slots=True)
class EnergyTable:
    """Energy per action in pJ (45 nm defaults; see the module notes for each rule)."""

    mult_8b_pj: float = 0.2
    mult_32b_pj: float = 3.1
    add_8b_pj: float = 0.03
    add_32b_pj: float = 0.1
    mac_pj: float | None = None
    gated_mac_fraction: float = 0.1
    gated_mac_pj: float | None = None
    reg_pj_per_bit: float = 0.03
    sram_8kib_pj_per_64b: float = 10.0
    sram_32kib_pj_per_64b: float = 20.0
    sram_1mib_pj_per_64b: float = 100.0
    sram_write_factor: float = 1.0
    dram_read_pj_per_bit: float = 1950.0 / 64.0
    dram_write_pj_per_bit: float = 1950.0 / 64.0
    decode_pj_per_element: float = 0.05
    acc_pj_per_bit: float = 0.03
    merge_pj_per_psum: float | None = None
    popcount_pj_per_word: float | None = None
    merge_coordinate_bits: float = 16.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("mac_pj", "gated_mac_pj", "merge_pj_per_psum",
                                            "popcount_pj_per_word"):
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < 0):
                raise SparsesimError(f"must be a non-negative number (pJ), got {value!r}",
                                     field=f"energy.{f.name}")
        for name in ("mult_8b_pj", "mult_32b_pj", "add_8b_pj", "add_32b_pj",
                     "sram_8kib_pj_per_64b", "sram_32kib_pj_per_64b", "sram_1mib_pj_per_64b"):
            if getattr(self, name) <= 0:
                raise SparsesimError("an interpolation anchor must be positive, got 0",
                                     field=f"energy.{name}")
        if self.gated_mac_fraction > 1:
            raise SparsesimError(f"a fraction of a MAC must be <= 1, got "
                                 f"{self.gated_mac_fraction!r}", field="energy.gated_mac_fraction")

    def mac(self, a_bits: int, w_bits: int) -> float:
        """pJ of one full MAC with ``a_bits`` × ``w_bits`` operands."""
        if self.mac_pj is not None:
            return float(self.mac_pj)
        mult = power_law(a_bits * w_bits, 64.0, self.mult_8b_pj, 1024.0, self.mult_32b_pj)
        add = power_law(max(a_bits, w_bits), 8.0, self.add_8b_pj, 32.0, self.add_32b_pj)
        return mult + add

    def gated_mac(self, a_bits: int, w_bits: int) -> float:
        """pJ of one clock-gated MAC (an operand was zero)."""
        if self.gated_mac_pj is not None:
            return float(self.gated_mac_pj)
        return self.gated_mac_fraction * self.mac(a_bits, w_bits)

    def compare(self, bits: int) -> float:
        """pJ of one ``bits``-wide comparison (a subtractor: priced as an add)."""
        return power_law(bits, 8.0, self.add_8b_pj, 32.0, self.add_32b_pj)

    def merge(self, a_bits: int, w_bits: int) -> float:
        """pJ of merging one partial sum by coordinate: a compare and an accumulate."""
        if self.merge_pj_per_psum is not None:
            return float(self.merge_pj_per_psum)
        return self.compare(int(self.merge_coordinate_bits)) + self.compare(a_bits + w_bits)

    def popcount(self, word_bits: int) -> float:
        """pJ of popping one ``word_bits`` bitmap word: count and prefix sum."""
        if self.popcount_pj_per_word is not None:
            return float(self.popcount_pj_per_word)
        return math.log2(word_bits) * self.compare(word_bits)

    def register(self, bits: int) -> float:
        """pJ of one register-file access of ``bits`` bits."""
        return self.reg_pj_per_bit * bits

    def accumulator(self, bits: int) -> float:
        """pJ of one PE accumulator access of ``bits`` bits (a drain to or fill from SRAM)."""
        return self.acc_pj_per_bit * bits

    def sram_read_per_bit(self, size_bytes: float) -> float:
        """pJ per bit read from an SRAM of ``size_bytes`` (log–log interpolation)."""
        if not (0 < size_bytes < math.inf):
            raise SparsesimError(f"SRAM energy needs a finite, positive size, got {size_bytes!r} "
                                 "bytes")
        xs = (8 * _KIB, 32 * _KIB, 1024 * _KIB)
        ys = (self.sram_8kib_pj_per_64b, self.sram_32kib_pj_per_64b, self.sram_1mib_pj_per_64b)
        seg = 0 if size_bytes <= xs[1] else 1
        return power_law(size_bytes, xs[seg], ys[seg], xs[seg + 1], ys[seg + 1]) / 64.0

    def sram_write_per_bit(self, size_bytes: float) -> float:
        """pJ per bit written to an SRAM of ``size_bytes``."""
        return self.sram_write_factor * self.sram_read_per_bit(size_bytes)


ENERGY_TABLE_KEYS = tuple(f.name for f in fields(EnergyTable))
"""Every entry a table file or an arch's ``[energy]`` may set."""


def _table_from_mapping(data: Any, base: EnergyTable, *, file: str | None) -> EnergyTable:
    if not isinstance(data, dict):
        raise SparsesimError("an energy table must be a TOML table", file=file)
    # a table file may hold its entries at the top level or under [energy]
    entries = data["energy"] if set(data) == {"energy"} and isinstance(data["energy"], dict) \
        else data
    for key in entries:
        if key not in ENERGY_TABLE_KEYS:
            raise SparsesimError(f"unknown energy entry; expected one of "
                                 f"{', '.join(ENERGY_TABLE_KEYS)}", file=file,
                                 field=f"energy.{key}")
    try:
        return replace(base, **entries)
    except SparsesimError as err:
        raise err.located(file=file) from None


def load_energy_table(path: str | Path, base: EnergyTable | None = None) -> EnergyTable:
    """``base`` (the 45 nm defaults) with the entries of a TOML file replaced."""
    p = Path(path)
    file = str(p)
    data = read_toml(p, field="energy.table", what="energy table file")
    return _table_from_mapping(data, base or EnergyTable(), file=file)


def energy_table(arch: Arch) -> EnergyTable:
    """The arch's table: the 45 nm defaults, then the DRAM technology's entries (if the arch
    names one), then ``energy.table``'s file, then inline entries."""
    table = EnergyTable()
    tech = dram_tech(arch.memory.dram)
    if tech is not None:
        table = replace(table, dram_read_pj_per_bit=tech.read_pj_per_bit,
                        dram_write_pj_per_bit=tech.write_pj_per_bit)
    if arch.energy.table:
        table = load_energy_table(arch.energy.table, table)
    return _table_from_mapping(dict(arch.energy.overrides), table, file=None)


@dataclass(frozen=True, slots=True)
class EnergyConfig(Section):
    """An arch's ``[energy]`` table: overrides of the default 45 nm :class:`EnergyTable`.

    ``table`` is an optional TOML file of overrides (``""``: none), applied first; then
    ``overrides``, ``(entry, value)`` pairs naming entries of the table (pJ, or a plain ratio
    for ``gated_mac_fraction`` and ``sram_write_factor``). In TOML they sit beside ``table``,
    one key per entry (``dram_read_pj_per_bit = 20.0``); a ``None`` value keeps the table's. They
    are kept in table order, so equal overrides compare (and hash) equal however given.
    """

    table: str = ""
    overrides: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", table_overrides(
            self.table, self.overrides, ENERGY_TABLE_KEYS, "energy", self.keys()))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return ("table", *ENERGY_TABLE_KEYS)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Self:
        entries = {k: v for k, v in table.items() if k != "table"}
        return cls(table.get("table", ""), tuple(entries.items()))

    def to_table(self) -> dict[str, Any]:
        # TOML has no null: unset overrides are left out
        return {"table": self.table, **dict(self.overrides)}
