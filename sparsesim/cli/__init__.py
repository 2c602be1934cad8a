"""The ``sparsesim`` command: argument parsing, files and exit codes — nothing else.

One module per subcommand, each with ``add_parser(sub)`` (its flags and help) and ``run(args)
-> int``; :func:`build_parser` adds them in the order of :data:`COMMANDS`, which is the order
``sparsesim --help`` lists them.

Exit status: 0 on success, 2 on a user error (one line on stderr naming file, layer, field).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sparsesim.cli import catalog, formats, import_model, plot, prune, run, sweep, validate
from sparsesim.cli.common import DEFAULT_ARCH, DEFAULT_WORKLOAD
from sparsesim.cli.flags import Parser
from sparsesim.cli.plot import PLOT_KINDS
from sparsesim.errors import SparsesimError

__all__ = ["COMMANDS", "DEFAULT_ARCH", "DEFAULT_WORKLOAD", "PLOT_KINDS", "build_parser", "main"]

COMMANDS = (run, sweep, plot, formats, prune, import_model, validate, catalog)
"""The subcommand modules, in help order (``catalog`` adds ``archs`` and ``workloads``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sparsesim",
        description="Simulate pruned DNNs on sparse systolic accelerators: cycles, MACs, "
                    "utilization per layer and in total.",
        epilog="Start with `sparsesim run` (ResNet-18 on the default 32×32 array); "
               "`sparsesim COMMAND --help` explains each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except SparsesimError as err:
        print(f"sparsesim: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
