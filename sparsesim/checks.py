"""Field checks every model dataclass shares: a number is a real number (``bool`` is not one,
nor a string such as ``"0.5"``, nor ``nan``), finite unless the field allows ``inf``, inside
its interval; a count is an ``int``. Each failure is one :class:`SparsesimError` naming the
field, so a sweep's ``sparsity.seed = true`` or ``dynamic.spread = inf`` is refused as the
CLI's flags are (:mod:`sparsesim.cli.flags`), never compared with ``<`` into a traceback.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sparsesim.errors import SparsesimError


def is_number(value: Any) -> bool:
    """A real number: int or float (numpy's too), not a bool, not NaN."""
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and not math.isnan(value))


def real(value: Any, field: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a float if it is a number in the interval; else one error naming ``field``."""
    ok = is_number(value) and (allow_inf or math.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        where = ""
        if low is not None and high is not None:
            where = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            where = f" {'>' if low_open else '>='} {low:g}"
        kind = "a number" if allow_inf else "a finite number"
        raise SparsesimError(f"must be {kind}{where}, got {value!r}", field=field)
    return float(value)


def whole(value: Any, field: str, *, low: int = 0, high: int | None = None) -> int:
    """``value`` if it is an integer (not a bool, not ``1.5``) in ``[low, high]``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok and (value < low or (high is not None and value > high)):
        ok = False
    if not ok:
        where = f"in [{low}, {high:,}]" if high is not None else f">= {low}"
        raise SparsesimError(f"must be a whole number {where}, got {value!r}", field=field)
    return int(value)


#: Seeds are numpy seeds: non-negative integers (64 bits keeps them in a C long).
MAX_SEED = 2**63 - 1
