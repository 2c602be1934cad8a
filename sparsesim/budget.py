"""Budgets: upper or lower bounds on result columns (``area_mm2 <= 2``), and which rows meet them.

A budget is a set of :class:`Constraint` s, each a result column, a comparison and a bound. It
never removes a row: a sweep records for each row whether it is ``within_budget`` and the budget
text it was judged under (``budget``), and a plot draws its fronts over the rows within the
budget only, beside the others. Pure: text in, a judgement out; the sweep spec's
``[constraints]`` table and ``sparsesim plot pareto --budget`` both parse through here, so one
grammar and one set of checks serve both.

Grammar: ``COLUMN OP NUMBER`` with ``OP`` one of ``<=``, ``<``, ``>=``, ``>``; several joined by
``,`` or ``;`` (on the command line) or one TOML key per column (``area_mm2 = "<= 2"``, where a
bare number means ``<=``). Only numeric result columns may be bounded (the caller names them):
an unknown column, a bad operator or a bound that is not a finite number is one error.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparsesim.errors import SparsesimError

OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
"""The comparisons a constraint may use."""

_TEXT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>|==|=<|=>|=|!=)?\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Constraint:
    """``column op bound``: a row meets it when its ``column`` compares true with ``bound``."""

    column: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise SparsesimError(f"unknown comparison {self.op!r}; expected one of "
                                 f"{', '.join(OPERATORS)}", field=self.column)
        if (isinstance(self.bound, bool) or not isinstance(self.bound, (int, float))
                or not math.isfinite(self.bound)):
            raise SparsesimError(f"a bound must be a finite number, got {self.bound!r}",
                                 field=self.column)

    @property
    def text(self) -> str:
        return f"{self.column}{self.op}{self.bound:g}"

    def holds(self, values: pd.Series) -> pd.Series:
        """Per value: whether it meets the constraint (a missing value never does)."""
        numeric = pd.to_numeric(values, errors="coerce")
        return OPERATORS[self.op](numeric, self.bound) & numeric.notna()


def parse_constraint(text: str, columns: Iterable[str], *, field: str | None = None
                     ) -> Constraint:
    """One ``COLUMN OP NUMBER`` (``columns``: those that may be bounded)."""
    m = _TEXT.match(text) if isinstance(text, str) else None
    if m is None or not m.group(2) or not m.group(3):
        raise SparsesimError(f"a constraint is COLUMN OP NUMBER (OP: {', '.join(OPERATORS)}), "
                             f"got {text!r}", field=field)
    column, op, bound = m.groups()
    return _constraint(column, op, bound, columns, field=field or column)


def _constraint(column: str, op: str, bound: Any, columns: Iterable[str], *,
                field: str) -> Constraint:
    allowed = tuple(columns)
    if column not in allowed:
        raise SparsesimError(f"unknown column {column!r}; a budget bounds one of "
                             f"{', '.join(allowed)}", field=field)
    if op not in OPERATORS:
        raise SparsesimError(f"unknown comparison {op!r}; expected one of "
                             f"{', '.join(OPERATORS)}", field=field)
    if isinstance(bound, str):
        try:
            bound = float(bound)
        except ValueError:
            raise SparsesimError(f"a bound must be a number, got {bound!r}",
                                 field=field) from None
    try:
        return Constraint(column, op, bound)
    except SparsesimError as err:
        raise SparsesimError(err.message, field=field) from None


def parse_budget(text: str, columns: Iterable[str], *, field: str | None = None
                 ) -> tuple[Constraint, ...]:
    """Constraints joined by ``,`` or ``;`` (the command line's ``--budget``)."""
    cols = tuple(columns)
    parts = [p for p in re.split(r"[;,]", text) if p.strip()] if isinstance(text, str) else []
    if not parts:
        raise SparsesimError(f"an empty budget; give e.g. 'area_mm2<=2', got {text!r}",
                             field=field)
    return tuple(parse_constraint(p, cols, field=field) for p in parts)


def budget_from_table(table: Mapping[str, Any], columns: Iterable[str], *,
                      file: str | None = None) -> tuple[Constraint, ...]:
    """A sweep spec's ``[constraints]``: ``COLUMN = "OP NUMBER"`` (a bare number: ``<=``)."""
    cols = tuple(columns)
    out = []
    for column, value in table.items():
        field = f"constraints.{column}"
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(_constraint(column, "<=", value, cols, field=field))
            elif isinstance(value, str):
                m = re.match(r"^\s*(<=|>=|<|>|==|=<|=>|=|!=)?\s*(.*?)\s*$", value)
                assert m is not None  # the pattern matches any text
                if not m.group(1) or not m.group(2):
                    raise SparsesimError(f"expected OP NUMBER (OP: {', '.join(OPERATORS)}) or "
                                         f"a number, got {value!r}", field=field)
                out.append(_constraint(column, m.group(1), m.group(2), cols, field=field))
            else:
                raise SparsesimError(f"expected OP NUMBER as text (\"<= 2\") or a number, got "
                                     f"{value!r}", field=field)
        except SparsesimError as err:
            raise err.located(file=file) from None
    return tuple(out)


def budget_text(constraints: Sequence[Constraint]) -> str:
    """The budget as one cell of text (``area_mm2<=2;power_avg_w<=1``; ``""``: none)."""
    return ";".join(c.text for c in constraints)


def within_budget(df: pd.DataFrame, constraints: Sequence[Constraint]) -> pd.Series:
    """Per row: whether it meets every constraint (no constraints: every row does). A row
    lacking a bounded column's value (a failed point) does not."""
    keep = pd.Series(np.ones(len(df), dtype=bool), index=df.index)
    for c in constraints:
        if c.column not in df:
            raise SparsesimError(f"the results have no column {c.column!r} to bound "
                                 "(written by older code?)", field=c.column)
        keep &= c.holds(df[c.column])
    return keep


def judge(df: pd.DataFrame, constraints: Sequence[Constraint]) -> pd.DataFrame:
    """``df`` with its ``within_budget`` and ``budget`` columns set under ``constraints``
    (a copy; every row kept)."""
    out = df.copy()
    out["within_budget"] = within_budget(df, constraints)
    out["budget"] = budget_text(constraints)
    return out
