"""The input boundary for text files: every TOML the user gives is read here, once.

Whatever the bytes are — not a regular file (a folder, a FIFO, ``/dev/zero``), too big, not
UTF-8, malformed or absurdly nested TOML (the parser's recursion limit) — the result is a :class:`SparsesimError` naming the
file, never a traceback or a read without end. The size limit (bytes) exists because a TOML
description of a network or an accelerator is kilobytes; a file of gigabytes is a mistake,
and reading it whole would exhaust memory before any message could say so.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from sparsesim.errors import SparsesimError

#: Largest text input read (bytes): far above any real spec, far below a memory problem.
MAX_TEXT_BYTES = 64 * 2**20


def regular_file(path: str | Path, *, field: str | None = None, what: str = "file") -> Path:
    """``path`` if it names a regular file (following links); otherwise one clear error."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise SparsesimError(f"no such {what}", file=str(p), field=field) from None
    except OSError as err:
        raise SparsesimError(f"cannot read: {err.strerror}", file=str(p), field=field) from None
    if stat.S_ISDIR(mode):
        raise SparsesimError(f"is a folder, not a {what}", file=str(p), field=field)
    if not stat.S_ISREG(mode):
        raise SparsesimError(f"not a regular file (a device or pipe): not a {what}",
                             file=str(p), field=field)
    return p


def read_text(path: str | Path, *, field: str | None = None, what: str = "file",
              limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    p = regular_file(path, field=field, what=what)
    file = str(p)
    try:
        with open(p, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise SparsesimError(f"cannot read: {err.strerror}", file=file, field=field) from None
    if len(data) > limit:
        raise SparsesimError(f"larger than {limit:,} bytes: not a {what}", file=file,
                             field=field)
    return decode_text(data, file=file, field=field)


def decode_text(data: bytes, *, file: str | None, field: str | None = None) -> str:
    """``data`` as UTF-8 text; the offset of the first bad byte otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SparsesimError(f"not UTF-8 text (byte {err.start})", file=file,
                             field=field) from None


def parse_toml(text: str, *, file: str | None, field: str | None = None) -> dict[str, Any]:
    """Parsed TOML; malformed or absurdly nested text (the parser recurses per level) is
    refused."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SparsesimError(f"malformed TOML: {err}", file=file, field=field) from None
    except RecursionError:
        raise SparsesimError("nested too deeply", file=file, field=field) from None


def read_toml(path: str | Path, *, field: str | None = None, what: str = "file"
              ) -> dict[str, Any]:
    """A TOML file parsed, every failure one :class:`SparsesimError` naming it."""
    return parse_toml(read_text(path, field=field, what=what), file=str(path), field=field)


def output_file(path: str | Path, *, field: str = "--out", what: str = "output") -> Path:
    """``path`` if a file may be written there: a regular file or nothing yet, under folders
    (or nothing yet) — not a folder, a device (``/dev/zero``), a pipe, or a path under a file.
    Checked before any work, so a long run does not end in a write that cannot happen."""
    p = Path(path)
    if p.exists() and not p.is_file():
        kind = "a folder" if p.is_dir() else "not a regular file (a device or pipe)"
        raise SparsesimError(f"the {what} path is {kind}", file=str(p), field=field)
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SparsesimError(f"{parent} is a file, not a folder", file=str(p),
                                     field=field)
            break
    return p
