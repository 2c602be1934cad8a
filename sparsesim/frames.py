"""Result frames on disk: the file's format is its name's extension, for every command and
call that writes or reads results (``run``/``formats``/``sweep -o``, ``SimResult.to_parquet``,
``sparsesim.sweep.load_results``, ``sparsesim plot``).

``.csv`` is CSV; ``.parquet``/``.pq`` is Parquet through pyarrow (the optional ``parquet``
extra: without it the write is refused in one line, never CSV text under a Parquet name);
``.json`` is a list of records, one object per row (what ``--format json`` prints). Any other
extension is refused in one line naming the file, before anything runs — a guess (CSV under
``results.xlsx``) would hand the user a file their tool cannot open.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from sparsesim.errors import SparsesimError

if TYPE_CHECKING:  # pandas is imported by the reader, not by the CLI's start-up
    import pandas as pd

FRAME_FORMATS: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                                 ".json": "json"}
"""Extension (lower case) → the format written and read under it."""


def frame_format(path: str | Path, *, field: str | None = "--out") -> str:
    """The format of a results file named ``path``: one of :data:`FRAME_FORMATS`' values;
    an unknown extension (or none) is refused in one line naming the file."""
    p = Path(path)
    fmt = FRAME_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise SparsesimError(
            f"unknown results extension {p.suffix or '(none)'!r}: expected "
            f"{', '.join(FRAME_FORMATS)}", file=str(p), field=field)
    if fmt == "parquet":
        _need_pyarrow(p)
    return fmt


def _need_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401  (pandas reads and writes Parquet through it)
    except ImportError:
        raise SparsesimError("Parquet needs pyarrow: pip install 'sparsesim[parquet]', or "
                             "give a .csv or .json name", file=str(path)) from None


def frame_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """``df`` encoded as ``fmt`` (no index: the rows are the records)."""
    if fmt == "csv":
        text: str = df.to_csv(index=False)
        return text.encode("utf-8")
    if fmt == "json":
        records: str = df.to_json(orient="records", indent=1)
        return (records + "\n").encode("utf-8")
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` at ``path`` in the format its extension names (folders made). The bytes are
    encoded before the file is opened, so a refused or failed encoding leaves nothing behind."""
    p = Path(path)
    data = frame_bytes(df, frame_format(p))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    except OSError as err:
        raise SparsesimError(f"cannot write: {err.strerror}", file=str(p)) from None
    return p


def read_frame(path: str | Path) -> pd.DataFrame:
    """A results file written by :func:`write_frame` (or any CSV/Parquet/JSON records file)."""
    import pandas as pd

    p = Path(path)
    fmt = frame_format(p, field=None)
    try:
        if fmt == "csv":
            return pd.read_csv(p)
        if fmt == "json":
            return pd.read_json(p, orient="records")
        return pd.read_parquet(p, engine="pyarrow")
    except FileNotFoundError:
        raise SparsesimError("no such results file", file=str(p)) from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise SparsesimError(f"cannot read results: {str(err).strip().splitlines()[0]}",
                             file=str(p)) from None
