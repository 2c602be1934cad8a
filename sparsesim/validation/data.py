"""Where the validation's oracle data lives: one function, so every reader finds the same files.

The oracle files (SCALE-Sim's reports, ``scalesim_*oracle.csv``; the random topologies they
were run on; SCALE-Sim's bundled topologies in ``scalesim_topologies/``) ship inside the
package as package data (``pyproject.toml`` lists their globs; a test checks that every file
here is matched), so an installed sparsesim validates without a source checkout. They are read
from the package folder itself: sparsesim is installed as plain files (Numba caches its
kernels beside them), never zipped.
"""

from __future__ import annotations

from pathlib import Path

_DATA = Path(__file__).resolve().parent / "data"


def data_path(*parts: str) -> Path:
    """The oracle data folder, or with ``parts`` a file or folder in it."""
    return _DATA.joinpath(*parts)
