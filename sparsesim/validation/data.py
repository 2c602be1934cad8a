"""Where the validation's oracle data lives: one function, so every reader finds the same files.

The oracle files (SCALE-Sim's reports, the topologies they were run on) are committed test
data; :func:`data_path` is the only place that knows their folder.
"""

from __future__ import annotations

from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def data_path(*parts: str) -> Path:
    """The oracle data folder (a source checkout's ``tests/data``), or a file in it."""
    return _REPO.joinpath("tests", "data", *parts)
