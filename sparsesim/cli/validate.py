"""``sparsesim validate``: the checks against SCALE-Sim, closed forms and papers, as a table
and a report; exit status 1 if any check fails."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsesim.cli.common import add_quiet, clip, print_rows, progress_bar


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``validate`` subcommand and its flags."""
    parser = sub.add_parser(
        "validate", help="check the simulator against SCALE-Sim, closed forms and papers",
        description="Reproduce the published anchors and bounds: SCALE-Sim v3 dense cycles and "
                    "traffic, the seed's closed forms, N:M bounds, Sparseloop's Fig. 1 trend, "
                    "Cnvlutin and SCNN in shape. Writes validation.md and its figures; exit "
                    "status 1 if any check fails.")
    parser.add_argument("-o", "--out", type=Path, default=Path("analysis/results"),
                        metavar="DIR", help="report and figures folder (default: "
                                            "%(default)s)")
    parser.add_argument("--fast", action="store_true",
                        help="only the fast subset the test suite runs (~15 s)")
    parser.add_argument("--live", action="store_true",
                        help="also rerun SCALE-Sim on a subset ($SPARSESIM_SCALESIM_PYTHON "
                             "or .venv-scalesim/bin/python)")
    parser.add_argument("--scalesim-python", metavar="PATH",
                        help="SCALE-Sim's interpreter for --live")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="run the checks whose name starts with PREFIX (e.g. nm "
                             "scalesim.cycles)")
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the validation checks, write the report; exit 1 if any check fails."""
    from sparsesim.validation import run_checks, write_report

    checked = run_checks(fast=args.fast, out_dir=args.out, live=args.live, only=args.only,
                         scalesim_python=args.scalesim_python, progress=progress_bar(args))
    path = write_report(checked, args.out)
    rows = [("pass" if c.passed else "FAIL", c.id, clip(c.ours, 60), clip(c.anchor, 50))
            for c in checked.checks]
    print_rows(("result", "check", "ours", "anchor"), rows)
    print(f"{sum(c.passed for c in checked.checks)}/{len(checked.checks)} checks pass in "
          f"{checked.seconds:.0f} s; wrote {path}", file=sys.stderr)
    return 0 if checked.passed else 1
