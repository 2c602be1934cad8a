"""``sparsesim sweep``: a grid of simulations run in parallel and resumably, its results
table printed when it is short."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from sparsesim.cli.common import add_quiet, print_frame, print_rows
from sparsesim.cli.flags import count
from sparsesim.units import fmt_si


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``sweep`` subcommand and its flags."""
    parser = sub.add_parser(
        "sweep", help="run a grid of simulations in parallel, resumably",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every point of a sweep spec (TOML: [sweep], [base], [grid], "
                    "[[point]]) in parallel. Each finished point is appended to the results "
                    "CSV at once; re-running skips finished points, so a killed sweep loses "
                    "nothing. Exit status 1 if any point failed.")
    plain = parser.format_help

    def format_help() -> str:  # the keys come from the sweep module: imported for help only
        parser.epilog = _spec_help()
        return plain()

    parser.format_help = format_help  # type: ignore[method-assign]
    parser.add_argument("spec", type=Path, help="the sweep spec (.toml)")
    parser.add_argument("-o", "--out", type=Path, metavar="PATH",
                        help="results file (default: [sweep] out, else NAME.csv, in the "
                             "spec's folder): CSV, or Parquet (.parquet, .pq; needs pyarrow) or "
                             "JSON (.json) written at the end from the resumable CSV kept "
                             "beside it (same name, .csv); any other extension is refused")
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="worker processes here, or a dask.distributed cluster "
                             "(default: %(default)s)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="dask scheduler address (tcp://host:8786); omit or 'local' to "
                             "start a LocalCluster")
    parser.add_argument("-j", "--workers", type=count(1), metavar="N",
                        help="worker processes, here or in the dask LocalCluster started when "
                             "no --scheduler is given (default: one per core)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the points that failed last time")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="what to print when done (default: %(default)s)")
    parser.add_argument("--max-rows", type=count(0), default=60, metavar="N",
                        help="print the table only up to N rows (default: %(default)s)")
    add_quiet(parser)
    parser.set_defaults(func=run)


_EXAMPLE = """\
a sweep spec:
  [sweep]
  name = "r18-sparsity"             # results go to NAME.csv beside the spec unless out or -o
  out = "r18_sparsity.csv"          # a file inside the spec's folder
  [base]                            # fixed for every point
  workload = "resnet18"
  "pe.operand" = "both"
  [grid]                            # every combination of these lists
  "sparsity.weight_density" = [1.0, 0.5, 0.1]
  "pe.kind" = ["dense", "skip"]
  [[point]]                         # and/or explicit points, merged over [base]
  "pe.kind" = "nm"
  "sparsity.weight_nm" = "2:4"      # or [2, 4]
"""


def _spec_help() -> str:
    """The example and every key a point may set (from :func:`sparsesim.sweep.spec_keys`)."""
    from sparsesim.sweep import spec_keys  # pandas and the engine: not on every start

    lines = [_EXAMPLE, "keys of [base], [grid] and [[point]]:"]
    for group, names in spec_keys().items():
        prefix = f"{group}." if group else ""
        text = ", ".join(f"{prefix}{n}" for n in names)
        lines.extend(textwrap.wrap(text, 88, initial_indent="  ", subsequent_indent="    "))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the sweep; exit 1 if any point failed."""
    from sparsesim.sweep import load_spec, read_results, run_sweep

    spec = load_spec(args.spec)
    summary = run_sweep(spec, out=args.out, executor=args.executor, workers=args.workers,
                        scheduler=args.scheduler, retry_failed=args.retry_failed,
                        progress=not args.quiet)
    df = read_results(summary.log)  # the same rows as summary.out, in any format
    if not print_frame(df, args.format) and len(df) <= args.max_rows:
        shown = [c for c in (*spec.params, "cycles", "effectual_macs", "utilization", "seconds",
                             "status") if c in df]
        rows = [[_cell_text(r[c], c) for c in shown] for _, r in df.iterrows()]
        print_rows([_SWEEP_HEADERS.get(c, c) for c in shown], rows)
    print(f"{spec.name}: {summary.total} points — {summary.ran} ran, {summary.skipped} already "
          f"done, {summary.failed} failed — {summary.seconds:.1f} s; results in {summary.out}"
          f"{'' if summary.log == summary.out else f' (resumable: {summary.log})'}",
          file=sys.stderr)
    return 1 if summary.failed else 0


_SWEEP_HEADERS = {"effectual_macs": "effectual MACs", "utilization": "util %",
                  "seconds": "time ms"}


def _cell_text(value: object, column: str) -> str:
    if isinstance(value, float) and value != value:  # NaN: parameter not set for this point
        return ""
    if column == "utilization" and isinstance(value, float):
        return f"{100 * value:.1f}"
    if column == "seconds" and isinstance(value, float):
        return f"{1e3 * value:,.3f}"
    if column in ("cycles", "effectual_macs") and isinstance(value, (int, float)):
        return fmt_si(float(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
