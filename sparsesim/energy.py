"""Energy: action counts × energy per action, broken down by component (pure, no simulation).

The energy per action is the arch's table (:mod:`sparsesim.arch.energy`: the 45 nm defaults,
the rules for MAC, gated MAC, register, SRAM, DRAM, decode and comparison energies, and the
overrides); this module holds what a run did, counted in actions, and prices it. It sits
below memory, whose traffic counts are :class:`ActionCounts` (so not in the engine).

Components are rounded to multiples of 2**-8 pJ (≈ 4 fJ), so any sum of them — in any order,
as pandas or a report may add them — is exact while it stays below 2**44 pJ (≈ 17 J).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from sparsesim.arch.config import Arch
from sparsesim.arch.energy import EnergyTable
from sparsesim.errors import SparsesimError
from sparsesim.formats.bitmap import POPCOUNT_WORD_BITS

ENERGY_COMPONENTS = (
    "mac", "gated_mac", "register",
    "sram_a_read", "sram_a_write", "sram_w_read", "sram_w_write", "sram_o_read", "sram_o_write",
    "dram", "decode", "online", "merge", "static",
)
"""Keys of :func:`energy_breakdown`, in report order (all in pJ)."""

QUANTUM_PJ = 2.0 ** -8
"""Every component is a whole multiple of this, so sums of components are exact floats."""


@dataclass(frozen=True, slots=True)
class ActionCounts:
    """What one run did, counted in actions (all integers).

    ``macs`` full MACs and ``gated_macs`` clock-gated ones; ``register_accesses`` register-file
    accesses of operand width; SRAM and DRAM traffic in bits (per operand buffer for SRAM);
    ``decoded_elements`` values whose positions were decoded from format metadata;
    ``comparisons`` of the online pruning unit (:mod:`sparsesim.pe.online`);
    ``accumulator_accesses`` of PE accumulators draining partial sums to the O buffer or
    filled back from it (output width; :mod:`sparsesim.mapping.loops`);
    ``popcount_words`` 64-bit bitmap words popped to gather non-zeros (priced in ``decode``);
    ``merged_psums`` partial sums merged by coordinate (:mod:`sparsesim.mapping.merge`). Memory
    counts come from :func:`sparsesim.memory.actions`; the compute side is the caller's (a
    systolic PE touches about three registers per issued MAC: A, W and the accumulator).
    """

    macs: int = 0
    gated_macs: int = 0
    register_accesses: int = 0
    sram_a_read_bits: int = 0
    sram_a_write_bits: int = 0
    sram_w_read_bits: int = 0
    sram_w_write_bits: int = 0
    sram_o_read_bits: int = 0
    sram_o_write_bits: int = 0
    dram_read_bits: int = 0
    dram_write_bits: int = 0
    decoded_elements: int = 0
    comparisons: int = 0
    accumulator_accesses: int = 0
    merged_psums: int = 0
    popcount_words: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SparsesimError(f"an action count must be a non-negative integer, got "
                                     f"{value!r}", field=f.name)

    def __add__(self, other: ActionCounts) -> ActionCounts:
        return ActionCounts(*(getattr(self, f.name) + getattr(other, f.name)
                              for f in fields(self)))


def _q(pj: float) -> float:
    """``pj`` rounded to the nearest multiple of :data:`QUANTUM_PJ`."""
    return round(pj / QUANTUM_PJ) * QUANTUM_PJ


def energy_breakdown(actions: ActionCounts, table: EnergyTable, arch: Arch, *,
                     leakage_w: float = 0.0, seconds: float = 0.0) -> dict[str, float]:
    """pJ per component (keys :data:`ENERGY_COMPONENTS`); their sum is the total, exactly.

    Widths come from ``arch.precision``; SRAM energy per bit from the size of one half of
    each operand buffer in ``arch.memory``. ``static`` is the leakage: ``leakage_w`` (the
    arch's, :mod:`sparsesim.area`) for the ``seconds`` the work took, stalls included — so
    the same actions cost more when memory makes them slower. Every other component is
    dynamic (per action) and does not depend on time.
    """
    p, mem = arch.precision, arch.memory
    word = max(p.a_bits, p.w_bits)
    out = {
        "mac": actions.macs * table.mac(p.a_bits, p.w_bits),
        "gated_mac": actions.gated_macs * table.gated_mac(p.a_bits, p.w_bits),
        "register": (actions.register_accesses * table.register(word)
                     + actions.accumulator_accesses * table.accumulator(p.o_bits)),
    }
    for op in ("a", "w", "o"):
        half = mem.sram_bytes(op) / 2
        reads = getattr(actions, f"sram_{op}_read_bits")
        writes = getattr(actions, f"sram_{op}_write_bits")
        try:
            out[f"sram_{op}_read"] = reads * table.sram_read_per_bit(half) if reads else 0.0
            out[f"sram_{op}_write"] = writes * table.sram_write_per_bit(half) if writes else 0.0
        except SparsesimError as err:
            raise err.located(field=f"memory.sram_kib_{op}") from None
    out["dram"] = (actions.dram_read_bits * table.dram_read_pj_per_bit
                   + actions.dram_write_bits * table.dram_write_pj_per_bit)
    out["decode"] = (actions.decoded_elements * table.decode_pj_per_element
                     + actions.popcount_words * table.popcount(POPCOUNT_WORD_BITS))
    out["online"] = actions.comparisons * table.compare(p.o_bits)
    out["merge"] = actions.merged_psums * table.merge(p.a_bits, p.w_bits)
    if not (math.isfinite(leakage_w) and leakage_w >= 0 and math.isfinite(seconds)
            and seconds >= 0):
        raise SparsesimError(f"static energy needs a finite leakage and time, got "
                             f"{leakage_w!r} W for {seconds!r} s", field="static")
    out["static"] = leakage_w * seconds * 1e12
    return {k: _q(out[k]) for k in ENERGY_COMPONENTS}


def total_energy_pj(breakdown: dict[str, float]) -> float:
    """The total of a breakdown (exact: every component is a multiple of :data:`QUANTUM_PJ`)."""
    return math.fsum(breakdown[k] for k in ENERGY_COMPONENTS)
