"""``sparsesim plot``: draw one figure of :mod:`sparsesim.plot` from a results CSV.

The kinds, their order and the results each draws come from :data:`sparsesim.plot.registry.KINDS`
(no matplotlib import until a figure is drawn); only options a figure needs from the command
line (``-x``, ``--arch``) are handled here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsesim.arch.config import load_arch
from sparsesim.cli.common import DEFAULT_ARCH
from sparsesim.cli.flags import count
from sparsesim.errors import SparsesimError
from sparsesim.files import output_file, regular_file
from sparsesim.frames import read_frame
from sparsesim.plot.registry import KINDS

#: Highest raster resolution: a figure is ~11 × 4 inches, so 1200 dpi is ~13k × 5k pixels — a
#: print-quality poster; 100000 would ask matplotlib for gigapixels (a MemoryError).
MAX_DPI = 1200

#: Largest results file read (bytes), as for a sweep's own results.
MAX_RESULTS_BYTES = 2**30

PLOT_KINDS = tuple(KINDS)
"""The kinds ``sparsesim plot`` offers: the keys of :data:`sparsesim.plot.PLOTS`, in order."""


def _drawn_from() -> str:
    """Each kind and the results it draws, kinds of the same results together (help text)."""
    by_results: dict[str, list[str]] = {}
    for kind in KINDS.values():
        by_results.setdefault(kind.results, []).append(f"'{kind.name}'")
    return ", ".join(f"{' and '.join(names)} ({results})" for results, names in by_results.items())


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``plot`` subcommand and its flags."""
    parser = sub.add_parser(
        "plot", help="draw a trade-off figure from a results CSV",
        description=f"Draw a figure from results: {_drawn_from()}. PNG, SVG or PDF by the "
                    "--out suffix.")
    parser.add_argument("kind", choices=PLOT_KINDS, help="which figure")
    parser.add_argument("results", type=Path,
                        help="the results file: CSV, Parquet (.parquet, .pq) or JSON records")
    parser.add_argument("-o", "--out", type=Path, metavar="PATH",
                        help="figure file (.png, .svg, .pdf; default: RESULTS.KIND.png)")
    parser.add_argument("-x", metavar="COLUMN",
                        help="sparsity: the density or sparsity column on the x axis "
                             "(default: sparsity.weight_density)")
    parser.add_argument("-a", "--arch", default=DEFAULT_ARCH, metavar="NAME|PATH",
                        help="roofline: the arch whose roofs to draw (default: %(default)s)")
    parser.add_argument("--budget", metavar="CONSTRAINTS",
                        help="pareto: fronts under a budget, e.g. 'area_mm2<=2;power_avg_w<=1' "
                             "(default: the budget the sweep judged its rows under, if any); "
                             "adds latency and energy against area")
    parser.add_argument("--dpi", type=count(1, MAX_DPI), default=150,
                        help=f"raster resolution, at most {MAX_DPI} (default: 150)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the results, draw the figure, save it (format by suffix)."""
    out = output_file(args.out or args.results.with_suffix(f".{args.kind}.png"),
                      what="figure")  # before any work
    results = regular_file(args.results, what="results file")
    if results.stat().st_size > MAX_RESULTS_BYTES:
        raise SparsesimError(f"larger than {MAX_RESULTS_BYTES:,} bytes: not a results file",
                             file=str(results))
    df = read_frame(results)  # CSV, Parquet or JSON records, by the extension
    kwargs: dict[str, object] = {}
    if args.kind == "sparsity" and args.x:
        kwargs["x"] = args.x
    if args.budget is not None:
        if args.kind != "pareto":
            raise SparsesimError("--budget draws Pareto fronts: only for 'pareto'",
                                 field="--budget")
        kwargs["budget"] = args.budget
    if args.kind == "roofline":
        arch = load_arch(args.arch)
        kwargs.update(peak_macs_per_cycle=arch.array.rows * arch.array.cols,
                      dram_bytes_per_cycle=arch.memory.dram_bytes_per_cycle)
    try:
        fig = KINDS[args.kind].load()(df, **kwargs)
    except SparsesimError as err:
        raise err.located(file=str(args.results)) from None
    try:
        fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    except (OSError, ValueError) as err:
        raise SparsesimError(f"cannot write the figure: {err}", file=str(out)) from None
    print(f"wrote {out}", file=sys.stderr)
    return 0
