"""``sparsesim archs`` and ``sparsesim workloads``: what ships with sparsesim, listed."""

from __future__ import annotations

import argparse
import textwrap

from sparsesim.arch.config import builtin_archs, load_arch
from sparsesim.cli.common import clip, print_rows
from sparsesim.units import fmt_si
from sparsesim.workload.network import builtin_workloads, load_workload


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``archs`` and ``workloads`` subcommands (no flags)."""
    archs = sub.add_parser("archs", help="list the arch presets and their sources",
                           description="List the arch presets shipped with sparsesim, each "
                                       "with the source of its numbers.")
    archs.add_argument("--notes", action="store_true",
                       help="also print each preset's notes: what it takes from its source and "
                            "what the model cannot express")
    archs.set_defaults(func=run_archs)

    workloads = sub.add_parser("workloads", help="list the built-in workloads",
                               description="List the built-in workloads with their dense MACs, "
                                           "parameters and sources.")
    workloads.set_defaults(func=run_workloads)


def run_archs(args: argparse.Namespace) -> int:
    """One row per arch preset, then each preset's source (and notes, with ``--notes``)."""
    from sparsesim.area import area_breakdown  # imports the formats' Numba kernels

    rows = []
    presets = [load_arch(name) for name in builtin_archs()]
    for a in presets:
        name = a.name
        area = area_breakdown(a)
        rows.append((name, f"{a.array.rows}×{a.array.cols}", a.array.dataflow,
                     fmt_si(a.clock_hz, "Hz"),
                     f"{a.precision.a_bits}/{a.precision.w_bits}/{a.precision.o_bits}",
                     f"{area.total_mm2:.3g} ({a.area.node_nm:g} nm)", fmt_si(area.leakage_w, "W"),
                     a.memory.dram,
                     a.description))
    print_rows(("preset", "array", "dataflow", "clock", "bits a/w/o",
                "area mm²", "leakage", "dram", "description"), rows)
    print("\nsources:")
    for a in presets:
        print(f"  {a.name}: {a.source or '(none given)'}")
        if args.notes and a.notes:
            print(textwrap.fill(a.notes, width=100, initial_indent="    ",
                                subsequent_indent="    "))
    return 0


def run_workloads(args: argparse.Namespace) -> int:
    """One row per built-in workload."""
    rows = []
    for name in builtin_workloads():
        w = load_workload(name)
        rows.append((name, str(len(w.layers)), fmt_si(w.dense_macs, "MAC"),
                     fmt_si(w.params), clip(w.source, 70)))
    print_rows(("workload", "layers", "dense MACs", "params", "source"), rows)
    return 0
