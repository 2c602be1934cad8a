"""What the subcommands share: the defaults, ``--set`` overrides and their TOML values, N:M
ratios, frames printed or written as CSV, Parquet or JSON, and plain-text tables."""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sparsesim.cli.flags import KEEP, count
from sparsesim.errors import SparsesimError
from sparsesim.files import output_file
from sparsesim.frames import frame_bytes, frame_format
from sparsesim.progress import Progress, ProgressFactory
from sparsesim.rules.nm import parse_nm

if TYPE_CHECKING:
    from sparsesim.sparsity.trace import Trace

DEFAULT_WORKLOAD = "resnet18"
DEFAULT_ARCH = "default"


def parse_value(text: str) -> object:
    """A TOML scalar (``64``, ``1e9``, ``true``, ``"x"``), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def overrides(pairs: Sequence[str]) -> dict[str, object]:
    """``--set TABLE.FIELD=VALUE`` pairs as the dict ``with_overrides`` takes."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SparsesimError(f"expected TABLE.FIELD=VALUE, got {pair!r}", field="--set")
        out[key.strip()] = parse_value(value.strip())
    return out


def nm_ratio(text: str) -> tuple[int, int]:
    """An argparse type: ``2:4`` → ``(2, 4)`` (:func:`sparsesim.rules.nm.parse_nm`)."""
    try:
        return parse_nm(text)
    except SparsesimError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def add_attention_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--attn-density`` / ``--attn-top-k`` (sparse attention probabilities), as ``run`` and
    ``prune`` both take them: one definition, one type check (a density in (0, 1], a whole
    number of keys >= 1)."""
    parser.add_argument("--attn-density", type=KEEP, default=1.0, metavar="D",
                        help="sparse attention: fraction of the probabilities each query keeps "
                             "(seeded Bernoulli among the keys it may see; the online unit's "
                             "threshold finds them) (default: %(default)s)")
    parser.add_argument("--attn-top-k", type=count(1), metavar="K",
                        help="top-k attention: K keys kept per query row (seeded positions, "
                             "or the K largest probabilities of a real model in `prune "
                             "--model`; the online unit's top-k finds them)")


def print_frame(df, fmt: str) -> bool:  # type: ignore[no-untyped-def]
    """Print ``df`` as CSV or JSON records if ``fmt`` asks for it; False for ``table``."""
    if fmt in ("csv", "json"):  # the bytes -o writes under a .csv / .json name
        sys.stdout.write(frame_bytes(df, fmt).decode("utf-8"))
    return fmt in ("csv", "json")


def add_out(parser: argparse.ArgumentParser, what: str) -> None:
    """``-o/--out PATH``: ``what`` written as CSV, Parquet or JSON by the extension
    (:mod:`sparsesim.frames`; an unknown one is refused before anything runs)."""
    parser.add_argument("-o", "--out", type=Path, metavar="PATH",
                        help=f"also write {what} to PATH, as CSV (.csv), Parquet (.parquet, "
                             ".pq; needs pyarrow: the parquet extra) or JSON records (.json) "
                             "by its extension; any other is refused")


def check_out(path: Path | None, field: str = "--out") -> None:
    """Refuse an ``--out`` before any work: a path no file can be written at (a folder, a
    device, under a file) or whose format is unknown (or unavailable)."""
    if path is not None:
        output_file(path, field=field)
        frame_format(path, field=field)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def print_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain-text table: left-aligned columns under a ruled header."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["─" * w for w in widths], *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet``: no progress bar (there is none anyway when stderr is not a terminal)."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar on stderr (it is shown only on a terminal)")


def progress_bar(args: argparse.Namespace) -> ProgressFactory:
    """The progress a command's long work reports to (:mod:`sparsesim.progress`)."""
    return partial(Progress, quiet=args.quiet)


def save_trace(trace: Trace, out: Path) -> None:
    """Write ``trace`` to ``out`` (its folder made), an OS failure one line naming the file."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        trace.save(out)
    except OSError as err:
        raise SparsesimError(f"cannot write: {err.strerror}", file=str(out)) from None
