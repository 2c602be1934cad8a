"""What every table of an arch TOML shares: the TOML mapping and the field validators.

Each concern is one frozen dataclass (:mod:`.array`, :mod:`.pe`, :mod:`.memory`,
:mod:`.online`, :mod:`.energy`) read from and written to one table of the arch file by
:mod:`.config`; errors name the field as ``table.key``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Self

from sparsesim.errors import SparsesimError


class Section:
    """A config read from one TOML table, by default one key per dataclass field.

    The base of frozen slots dataclasses (hence the empty ``__slots__``; mypy does not know
    a subclass is a dataclass, hence the ignores).
    """

    __slots__ = ()

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The keys its TOML table may hold."""
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Self:
        """The config of a TOML table whose keys are among :meth:`keys`."""
        return cls(**table)

    def to_table(self) -> dict[str, Any]:
        """The TOML table this config round-trips through."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


#: Largest count a hardware field takes: beyond a trillion it is a typo, and the int64
#: arithmetic of the kernels would overflow long before (``array.rows = 1e30``).
MAX_COUNT = 2**40


def positive_int(value: Any, field: str, *, high: int = MAX_COUNT) -> None:
    """A positive integer (bool is not one) of at most ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= high:
        raise SparsesimError(f"must be a positive integer of at most {high:,}, got {value!r}",
                             field=field)


def number(value: Any, field: str, *, positive: bool, finite: bool = True) -> None:
    """A real number (bool is not one), > 0 if ``positive`` else >= 0; ``inf`` if not ``finite``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)
    if ok:
        ok = (value > 0 if positive else value >= 0) and (not finite or math.isfinite(value))
    if not ok:
        kind = "positive" if positive else "non-negative"
        extra = "" if finite else " (inf allowed)"
        raise SparsesimError(f"must be a {kind} number{extra}, got {value!r}", field=field)


def table_overrides(table: Any, overrides: Any, keys: tuple[str, ...], section: str,
                    fields_: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    """A cost table's override fields checked (``[energy]``, ``[area]``): ``table`` a file
    path, ``overrides`` ``(entry, value)`` pairs naming ``keys``; returned in table order
    (``None`` values dropped), so equal overrides compare and hash equal however given.
    ``fields_``: every key the section takes (named when one is unknown)."""
    if not isinstance(table, str):
        raise SparsesimError(f"must be a file path, got {table!r}", field=f"{section}.table")
    try:
        given = dict(overrides)
    except (TypeError, ValueError):
        raise SparsesimError(f"overrides must be (entry, value) pairs, got {overrides!r}",
                             field=section) from None
    for key in given:
        if key not in keys:
            raise SparsesimError(f"unknown key; expected one of "
                                 f"{', '.join(sorted(fields_))}",
                                 field=f"{section}.{key}")
    entries = tuple((k, given[k]) for k in keys if given.get(k) is not None)
    for key, value in entries:
        number(value, f"{section}.{key}", positive=False)
    return entries
