"""What every analysis script shares on its command line (a helper, not a script):
``--help`` is the script's docstring, and ``--out DIR`` says where its results go — by default
``analysis/results``, where the committed results (and the README's figures) live, so a run
with no options regenerates them and a run with ``--out`` leaves them alone."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser: its docstring as the help, and ``--out``."""
    text = doc or ""
    parser = argparse.ArgumentParser(description=text.split("\n\n")[0],
                                     epilog="\n\n".join(text.split("\n\n")[1:]) or None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, metavar="DIR",
                        help="folder the results are written to (default: analysis/results, "
                             "the committed ones)")
    return parser


def parse(doc: str | None, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of a script that has only ``--out``."""
    return parser(doc).parse_args(argv)
