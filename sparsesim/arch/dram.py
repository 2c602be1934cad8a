"""DRAM technologies: peak bandwidth and energy per bit read and written, one preset each.

An arch picks one with ``[memory] dram = "lpddr4"``; ``"custom"`` (the default) keeps the
arch's own ``dram_bytes_per_cycle`` and the energy table's DRAM entries (Horowitz's 45 nm
figure, 30.47 pJ/bit both ways), so every arch that names no technology is priced as before.

With a technology the arch's bandwidth *follows from it*: ``bytes/cycle = GB/s · 1e9 /
clock_hz`` (a faster clock sees fewer bytes per cycle of the same channel), and giving
``dram_bytes_per_cycle`` beside it is refused (it would be ignored). Its energies become the
energy table's ``dram_read_pj_per_bit`` and ``dram_write_pj_per_bit``, which the arch's
``[energy]`` table may still override. Latency and burst size stay the arch's fields.

Modelling choices:

- One channel (DDR4, LPDDR4/5: one x64 or 2 × x16 interface; HBM2: one stack, all its
  channels) at its peak data rate; the machine's channel model adds latency and whole bursts.
- Energy per bit is the *access* energy a streaming accelerator pays: array (activate,
  column access) plus I/O, activations amortised over the bursts of an open page. Background
  and refresh power are not in it (they are not per-bit costs).
- Read and write are separate entries. The sources below publish one figure per bit for
  both directions, so read = write for every preset; the split is there so that a power
  calculator's separate read and write figures (Micron's, DRAMPower's) can be entered.

The figures are the published ones, rounded, or derived where said; each preset's
``source`` names where it comes from and how firm it is (DDR4's and LPDDR5's are the
weakest: a commonly quoted figure and a derived one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparsesim.errors import SparsesimError

CUSTOM = "custom"
"""No technology: the arch's own bandwidth and the energy table's DRAM entries."""


@dataclass(frozen=True, slots=True)
class DramTech:
    """A DRAM technology: ``gb_per_s`` peak (1e9 B/s) of one channel/stack, pJ per bit."""

    name: str
    gb_per_s: float
    read_pj_per_bit: float
    write_pj_per_bit: float
    interface: str
    source: str

    def __post_init__(self) -> None:
        for field in ("gb_per_s", "read_pj_per_bit", "write_pj_per_bit"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SparsesimError(f"must be a positive number, got {value!r}",
                                     field=f"dram.{self.name}.{field}")

    def bytes_per_cycle(self, clock_hz: float) -> float:
        """Peak bytes per cycle of the arch's clock."""
        return self.gb_per_s * 1e9 / clock_hz


DRAM_TECHS: dict[str, DramTech] = {t.name: t for t in (
    DramTech(
        "ddr4", 25.6, 15.0, 15.0,
        "DDR4-3200, one 64-bit channel: 3200 MT/s × 8 B (JEDEC JESD79-4)",
        "≈15 pJ/bit, the DDR4 access energy with I/O usually quoted: not verified against a "
        "source here (a figure, not a citation). "
        "Its array part alone, by Micron TN-40-07's method on the DDR4 8Gb x8 currents "
        "Ramulator 2 ships (VDD 1.2 V, IDD0 60, IDD2N 50, IDD3N 55, IDD4R = IDD4W 145 mA; "
        "checked) at DDR4-2400 with a 1 KB page read per activation, is 5.7 pJ/bit both ways "
        "(its VPP currents left out): a floor"),
    DramTech(
        "lpddr4", 12.8, 8.0, 8.0,
        "LPDDR4-3200, 2 × x16 channels (32 bits): 3200 MT/s × 4 B (JEDEC JESD209-4)",
        "8 pJ/bit, the LPDDR4 entry of the Accelergy DRAM model (hwcomponents-cacti 1.0.40, "
        "one figure for reads and writes; its comment: 'public data')"),
    DramTech(
        "lpddr5", 25.6, 5.6, 5.6,
        "LPDDR5-6400, 2 × x16 channels (32 bits): 6400 MT/s × 4 B (JEDEC JESD209-5)",
        "LPDDR4's 8 pJ/bit less 30 %, the power saving the first LPDDR5 parts were announced "
        "with at double the data rate (Samsung, 2018, as recalled: not verified here): a "
        "derived figure, not a measured one"),
    DramTech(
        "hbm2", 256.0, 3.9, 3.9,
        "HBM2, one stack: 8 channels × 128 bits at 2 Gb/s per pin (JEDEC JESD235A)",
        "3.9 pJ/bit, the HBM2 entry of the Accelergy DRAM model (hwcomponents-cacti 1.0.40, "
        "one figure for reads and writes). Was 3.97, attributed to O'Connor et al., "
        "'Fine-Grained DRAM', MICRO 2017, whose stored abstract gives only the 2x ratio to "
        "FGDRAM: not verified, so the checked figure replaced it"),
)}
"""The DRAM presets by name (``[memory] dram``)."""

DRAM_CHOICES = (CUSTOM, *DRAM_TECHS)


def dram_tech(name: str) -> DramTech | None:
    """The technology ``name`` (``None`` for ``custom``); an unknown name is an error."""
    if name == CUSTOM:
        return None
    if name not in DRAM_TECHS:
        raise SparsesimError(f"unknown DRAM technology {name!r}; expected one of "
                             f"{', '.join(DRAM_CHOICES)}", field="memory.dram")
    return DRAM_TECHS[name]
