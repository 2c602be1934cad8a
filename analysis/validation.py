"""Validation report: writes analysis/results/validation.md and its figures (issue 9).

Runs every check of ``sparsesim.validation`` — SCALE-Sim v3 dense cycles and traffic, the seed's
closed forms, the N:M bounds, Sparseloop's Figure 1 trend, Cnvlutin and SCNN in shape — and
exits 1 if any fails. The same as ``sparsesim validate``.

Run: ``python analysis/validation.py`` (about a minute; ``--fast`` runs the test-suite subset
in about 15 s; ``--live`` also reruns SCALE-Sim on a subset where its interpreter is found:
``$SPARSESIM_SCALESIM_PYTHON`` or ``.venv-scalesim/bin/python``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sparsesim.errors import SparsesimError
from sparsesim.validation import CHECKS, run_checks, write_report

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS, help="report and figures folder")
    ap.add_argument("--fast", action="store_true", help="only the test-suite subset")
    ap.add_argument("--live", action="store_true", help="also rerun SCALE-Sim (a subset)")
    ap.add_argument("--scalesim-python", metavar="PATH", help="SCALE-Sim's interpreter")
    ap.add_argument("--only", nargs="+", metavar="PREFIX",
                    help=f"checks whose name starts with PREFIX ({', '.join(CHECKS)})")
    ap.add_argument("-v", "--verbose", action="store_true", help="log each check's time")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    try:
        run = run_checks(fast=args.fast, out_dir=args.out, live=args.live, only=args.only,
                         scalesim_python=args.scalesim_python)
        path = write_report(run, args.out)
    except SparsesimError as err:
        print(f"validation: error: {err}", file=sys.stderr)
        return 2
    for check in run.checks:
        print(f"{'pass' if check.passed else 'FAIL'}  {check.id}: {check.ours}")
    print(f"{sum(c.passed for c in run.checks)}/{len(run.checks)} checks pass in "
          f"{run.seconds:.0f} s; wrote {path}", file=sys.stderr)
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main())
