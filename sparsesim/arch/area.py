"""The area table: silicon area and leakage per hardware part at 45 nm, and the arch's overrides.

Sources of the 45 nm defaults (what an accelerator is built from):

- **MAC** at widths (a, w): a multiplier and an accumulator adder. Areas are Horowitz's
  (M. Horowitz, "Computing's energy problem", ISSCC 2014, Fig. 1.1.9, 45 nm): integer multiply
  282 µm² (8 bit) and 3495 µm² (32 bit), integer add 36 µm² (8 bit) and 137 µm² (32 bit).
  *Not verified*: the sources searched for this table (a transcription of the figure's energy
  column, the energy table's) did not carry its area column; these four figures are as
  recalled and stay unconfirmed until read from the paper.
  As in the energy table, the multiplier follows the power law through the two points in its
  size ``a·w`` and the adder in its width; the adder is as wide as the accumulator,
  ``a + w + accumulator_guard_bits`` (16 guard bits: int8 gets TPU's 32-bit accumulators).
- **Registers**: one flip-flop per bit, 4.522 µm² (DFF_X1 of the NanGate FreePDK45 Open
  Cell Library); multiplexers per bit 1.862 µm² (MUX2_X1) and gates 0.798 µm² (NAND2_X1,
  one gate equivalent) from the same library. DFF_X1 and NAND2_X1 are as copies of the
  library's liberty file give them; MUX2_X1's entry was not found in a stored copy — 1.862 is
  7 placement sites of 0.19 µm × 1.4 µm, the grid NAND2_X1 (3 sites) and DFF_X1 (17) sit on,
  so it is inferred, not read. A PE holds its A, W operand registers and its
  accumulator (``a + w + acc`` bits) whatever the dataflow: a stationary operand's register
  and the moving operand's pipeline register together are the same bits.
- **SRAM** by capacity and ports: power laws fitted (least squares in log–log over
  4 KiB–4 MiB) to CACTI 7.0 runs at 45 nm (made in an earlier session with hwcomponents-cacti;
  CACTI is not installed here, so the runs were not repeated: the table is its log, not a
  re-verified figure; a Bitfusion CACTI run of a 512 B, 32-bit-bus bank at 45 nm, 0.0076 mm²,
  is larger than this table's 1 KiB bank — another configuration, not reconciled) (Balasubramonian et al., "CACTI 7", ACM TACO
  2017), listed in :data:`CACTI_45NM`: 0.208 mm² and 1.8 µW at 64 KiB, exponents 0.987
  (area) and 0.950 (leakage); the fit is within 6.4 % of every run's area and 11.4 % of its
  leakage from 1 KiB to 16 MiB (two ports: 10 % and 13 %). ITRS low-standby-power (LSTP) cells, the usual choice for
  accelerator buffers and hwcomponents-cacti's default: CACTI's high-performance cells leak
  ~17 000× more (31 mW at 64 KiB, 497 mW at 1 MiB) — set ``sram_64kib_leak_mw = 31.1`` for
  them. A second read/write port multiplies area by 2.02 and leakage by 1.10 (the runs'
  mean ratios over 4 KiB–1 MiB).
- **Leakage of logic**: a leakage density per µm² of standard cells, Aladdin's TSMC 40 nm
  characterisation (Shao et al., ISCA 2014; ``power_func.h`` of gem5-aladdin, 1 ns: the
  multiplier leaks 77.86 µW in 6351 µm², 12.26 nW/µm²; its register 74.3 nW in 5.98 µm²,
  12.4 nW/µm² — the same density), kept at 45 nm. Flip-flops, multiplexers and adders leak at
  the multiplier's density. (An earlier version said 80 µW in 6350 µm² and that the register
  entry gave no leakage: both were wrong, corrected here.)
- **Sparse logic**, built from the parts above (each an assumption, written where the parts
  are summed, :mod:`sparsesim.area`): N:M operand multiplexers and index registers, zero
  detectors and clock gates, skip-PE operand queues, metadata decoders, the online pruning
  unit's comparators and sorting network.

**Other nodes**: ``[area] node_nm`` scales every area by ``(node_nm / 45)²`` — ideal
(constant-field) scaling, where every dimension shrinks with the feature size and area with
its square (Dennard et al., IEEE JSSC 1974). Real logic and SRAM density improved less than
that from node to node, so areas at smaller nodes are optimistic. Leakage keeps its 45 nm
density per mm² (so it scales with the area); the energy table is not scaled (it is 45 nm
unless overridden).

The table's entries are :data:`AREA_TABLE_KEYS`; an arch's ``[area]`` table (or a table
file it names) may set any of them. What an arch's parts add up to: :mod:`sparsesim.area`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from sparsesim.arch.section import Section, number, table_overrides
from sparsesim.errors import SparsesimError
from sparsesim.units import power_law
from sparsesim.files import read_toml

if TYPE_CHECKING:
    from sparsesim.arch.config import Arch

REFERENCE_NODE_NM = 45.0
"""The node every default of the table is at."""

CACTI_45NM: tuple[tuple[int, int, float, float], ...] = (
    # (KiB, read/write ports, area mm², standby leakage mW): CACTI 7.0 (the copy shipped in
    # hwcomponents-cacti 1.0.40, its default configuration), -technology 0.045, 64-bit words
    # and bus, one bank, "ram" (no tags), itrs-lstp cells and periphery.
    (1, 1, 0.0035993, 3.53876e-05),
    (4, 1, 0.0135029, 0.000140432),
    (16, 1, 0.050742, 0.000469172),
    (64, 1, 0.209046, 0.00167027),
    (256, 1, 0.872093, 0.0066811),
    (1024, 1, 3.26283, 0.0249626),
    (4096, 1, 11.989, 0.0991817),
    (16384, 1, 47.4069, 0.396727),
    (1, 2, 0.00770926, 4.0542e-05),
    (4, 2, 0.0283734, 0.000159241),
    (16, 2, 0.1039, 0.00051553),
    (64, 2, 0.439751, 0.00185425),
    (256, 2, 1.71325, 0.00698159),
    (1024, 2, 6.21594, 0.0276387),
    (4096, 2, 24.6245, 0.110555),
    (16384, 2, 96.7266, 0.442825),
)
"""The CACTI runs the SRAM fit goes through (see the module notes)."""


@dataclass(frozen=True, slots=True)
class AreaTable:
    """Area in µm² (or mm² where named) and leakage at 45 nm (see the module notes)."""

    mult_8b_um2: float = 282.0
    mult_32b_um2: float = 3495.0
    add_8b_um2: float = 36.0
    add_32b_um2: float = 137.0
    accumulator_guard_bits: int = 16
    flop_um2: float = 4.522
    mux2_um2: float = 1.862
    gate_um2: float = 0.798
    sram_64kib_mm2: float = 0.2079
    sram_area_exponent: float = 0.9865
    sram_64kib_leak_mw: float = 0.001808
    sram_leak_exponent: float = 0.9503
    sram_2port_factor: float = 2.02
    sram_2port_leak_factor: float = 1.10
    logic_leak_nw_per_um2: float = 77.86052e3 / 6351.338
    skip_queue_depth: int = 4
    queue_index_bits: int = 8
    decoder_index_bits: int = 16
    merge_coordinate_bits: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < 0):
                raise SparsesimError(f"must be a non-negative number, got {value!r}",
                                     field=f"area.{f.name}")
        for name in ("mult_8b_um2", "mult_32b_um2", "add_8b_um2", "add_32b_um2",
                     "sram_64kib_mm2", "sram_64kib_leak_mw"):
            if getattr(self, name) <= 0:
                raise SparsesimError("an interpolation anchor must be positive, got 0",
                                     field=f"area.{name}")
        for name in ("accumulator_guard_bits", "skip_queue_depth", "queue_index_bits",
                     "decoder_index_bits", "merge_coordinate_bits"):
            if not isinstance(getattr(self, name), int):
                raise SparsesimError(f"must be an integer, got {getattr(self, name)!r}",
                                     field=f"area.{name}")

    def accumulator_bits(self, a_bits: int, w_bits: int) -> int:
        """Width of a PE's accumulator (bits)."""
        return a_bits + w_bits + self.accumulator_guard_bits

    def multiplier(self, a_bits: int, w_bits: int) -> float:
        """µm² of an ``a_bits × w_bits`` integer multiplier."""
        return power_law(a_bits * w_bits, 64.0, self.mult_8b_um2, 1024.0, self.mult_32b_um2)

    def adder(self, bits: int) -> float:
        """µm² of a ``bits``-wide integer adder (a comparator is one too)."""
        return power_law(bits, 8.0, self.add_8b_um2, 32.0, self.add_32b_um2)

    def mac(self, a_bits: int, w_bits: int) -> float:
        """µm² of one MAC: the multiplier and the accumulator's adder."""
        return self.multiplier(a_bits, w_bits) + self.adder(self.accumulator_bits(a_bits, w_bits))

    def registers(self, bits: int) -> float:
        """µm² of ``bits`` flip-flops."""
        return self.flop_um2 * bits

    def mux(self, inputs: int, bits: int) -> float:
        """µm² of an ``inputs``:1 multiplexer ``bits`` wide (a tree of 2:1 muxes)."""
        return self.mux2_um2 * max(inputs - 1, 0) * bits

    def zero_detect(self, bits: int) -> float:
        """µm² of a detector that a ``bits``-wide value is zero (an OR tree: ~1 gate/bit)."""
        return self.gate_um2 * bits

    def sram_mm2(self, size_bytes: float, ports: int = 1) -> float:
        """mm² of one SRAM bank of ``size_bytes`` with ``ports`` read/write ports (1 or 2)."""
        factor = self.sram_2port_factor if ports == 2 else 1.0
        return factor * self._sram(size_bytes, ports, self.sram_64kib_mm2,
                                   self.sram_area_exponent)

    def sram_leak_mw(self, size_bytes: float, ports: int = 1) -> float:
        """mW of standby leakage of one SRAM bank (as :meth:`sram_mm2`)."""
        factor = self.sram_2port_leak_factor if ports == 2 else 1.0
        return factor * self._sram(size_bytes, ports, self.sram_64kib_leak_mw,
                                   self.sram_leak_exponent)

    def _sram(self, size_bytes: float, ports: int, at_64kib: float, exponent: float) -> float:
        if not (0 < size_bytes < math.inf):
            raise SparsesimError(f"SRAM area needs a finite, positive size, got {size_bytes!r} "
                                 "bytes")
        if ports not in (1, 2):
            raise SparsesimError(f"the SRAM fit covers 1 or 2 ports, got {ports!r}")
        return float(at_64kib * (size_bytes / (64 * 1024.0)) ** exponent)

    def logic_leak_mw(self, um2: float) -> float:
        """mW leaked by ``um2`` of standard-cell logic."""
        return um2 * self.logic_leak_nw_per_um2 * 1e-6


AREA_TABLE_KEYS = tuple(f.name for f in fields(AreaTable))
"""Every entry a table file or an arch's ``[area]`` may set."""


def _table_from_mapping(data: Any, base: AreaTable, *, file: str | None) -> AreaTable:
    if not isinstance(data, dict):
        raise SparsesimError("an area table must be a TOML table", file=file)
    entries = data["area"] if set(data) == {"area"} and isinstance(data["area"], dict) else data
    for key in entries:
        if key not in AREA_TABLE_KEYS:
            raise SparsesimError(f"unknown area entry; expected one of "
                                 f"{', '.join(AREA_TABLE_KEYS)}", file=file, field=f"area.{key}")
    try:
        return replace(base, **entries)
    except SparsesimError as err:
        raise err.located(file=file) from None


def area_table(arch: Arch) -> AreaTable:
    """The arch's table: the 45 nm defaults, then ``area.table``'s file, then inline entries."""
    table = AreaTable()
    if arch.area.table:
        p = Path(arch.area.table)
        data = read_toml(p, field="area.table", what="area table file")
        table = _table_from_mapping(data, table, file=str(p))
    return _table_from_mapping(dict(arch.area.overrides), table, file=None)


@dataclass(frozen=True, slots=True)
class AreaConfig(Section):
    """An arch's ``[area]`` table: the node and overrides of the 45 nm :class:`AreaTable`.

    ``node_nm``: the process node the areas are scaled to (module notes); ``table``: an
    optional TOML file of overrides (``""``: none), applied first; then ``overrides``,
    ``(entry, value)`` pairs, in TOML one key per entry beside ``table``.
    """

    node_nm: float = REFERENCE_NODE_NM
    table: str = ""
    overrides: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        number(self.node_nm, "area.node_nm", positive=True)
        object.__setattr__(self, "overrides", table_overrides(
            self.table, self.overrides, AREA_TABLE_KEYS, "area", self.keys()))

    @property
    def scale(self) -> float:
        """Area factor from 45 nm to ``node_nm``."""
        return float((self.node_nm / REFERENCE_NODE_NM) ** 2)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return ("node_nm", "table", *AREA_TABLE_KEYS)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Self:
        entries = {k: v for k, v in table.items() if k not in ("table", "node_nm")}
        return cls(table.get("node_nm", REFERENCE_NODE_NM), table.get("table", ""),
                   tuple(entries.items()))

    def to_table(self) -> dict[str, Any]:
        return {"node_nm": self.node_nm, "table": self.table, **dict(self.overrides)}
