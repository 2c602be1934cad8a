"""``sparsesim formats``: the format-size study (which sparse format is smallest at which
sparsity), as a table and optionally CSV and a figure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsesim.cli.common import add_out, check_out
from sparsesim.cli.flags import SEED, count
from sparsesim.errors import SparsesimError
from sparsesim.files import output_file
from sparsesim.frames import write_frame


#: Largest study tensor: each sparsity level encodes a mask of this many elements in every
#: format, so 16 M elements is already minutes; the crossovers settle by ~1 M (the default).
MAX_ELEMENTS = 16_000_000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``formats`` subcommand and its flags."""
    parser = sub.add_parser(
        "formats", help="which sparse format is smallest at which sparsity (crossover table)",
        description="Encode random masks from 0 to 99.99 %% sparsity in every format with the "
                    "real encoders, and print bits per element, where each format starts to "
                    "win, and the closed-form crossovers beside the measured ones.")
    parser.add_argument("--elements", type=count(1, MAX_ELEMENTS), default=1_000_000, metavar="N",
                        help="tensor size (default: %(default)s)")
    parser.add_argument("--bits", type=count(1, 64), nargs="+", default=[8, 16], metavar="B",
                        help="value widths in bits (default: 8 16)")
    parser.add_argument("--seed", type=SEED, default=0, help="mask seed (default: 0)")
    add_out(parser, "the tidy measurements")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="also save the figure (.png, .svg or .pdf)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the study, print its table; optionally write its rows and figure."""
    from sparsesim.formats.study import crossover_study, plot_crossover, render_table

    check_out(args.out)
    if args.plot is not None:
        output_file(args.plot, field="--plot")
    df = crossover_study(n_elements=args.elements, value_bits=tuple(args.bits), seed=args.seed)
    print(render_table(df))
    if args.out is not None:
        write_frame(df, args.out)
        print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
    if args.plot is not None:
        try:
            plot_crossover(df).savefig(args.plot, dpi=150, bbox_inches="tight")
        except OSError as err:
            raise SparsesimError(f"cannot write: {err.strerror}", file=str(args.plot)) from None
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
