"""What the subcommands share: the defaults, ``--set`` overrides and their TOML values, N:M
ratios, frames printed or written as CSV or Parquet, and plain-text tables."""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from sparsesim.errors import SparsesimError
from sparsesim.rules.nm import parse_nm

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


def print_frame(df, fmt: str) -> bool:  # type: ignore[no-untyped-def]
    """Print ``df`` as CSV or JSON records if ``fmt`` asks for it; False for ``table``."""
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(df.to_json(orient="records", indent=1) + "\n")
    return fmt in ("csv", "json")


PARQUET_SUFFIXES = (".parquet", ".pq")
"""Extensions ``-o`` writes as Parquet; any other is CSV."""


def write_frame(df, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Write ``df`` at ``path`` (folders made): Parquet for a ``.parquet``/``.pq`` name (needs
    pyarrow, the ``parquet`` extra: refused in one line without it, never CSV under that
    name), else CSV. A failure is a user error."""
    parquet = path.suffix.lower() in PARQUET_SUFFIXES
    if parquet:
        try:
            import pyarrow  # noqa: F401  (pandas writes Parquet through it)
        except ImportError:
            raise SparsesimError("writing Parquet needs pyarrow: pip install "
                                 "'sparsesim[parquet]', or give a .csv name",
                                 file=str(path)) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if parquet:
            df.to_parquet(path, index=False, engine="pyarrow")
        else:
            df.to_csv(path, index=False)
    except OSError as err:
        raise SparsesimError(f"cannot write: {err.strerror}", file=str(path)) from None


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def print_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain-text table: left-aligned columns under a ruled header."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["─" * w for w in widths], *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
