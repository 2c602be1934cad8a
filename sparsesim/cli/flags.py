"""Flag values checked where they are typed: a number outside its range, ``nan``, ``inf`` or a
word where a count goes is refused by argparse in one line naming the flag, never clamped or
truncated later.

Each factory returns an argparse ``type``; its ``__name__`` is what argparse calls the value
("invalid count value: '1.5'"). :class:`Parser` makes every argparse error one line (the
``usage:`` block argparse prints first would make it many): ``sparsesim run: error: argument
--channel-keep: must be in (0, 1], got 1.5``, exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "finite"


def real(low: float | None = None, high: float | None = None, *, low_open: bool = False,
         high_open: bool = False) -> Callable[[str], float]:
    """A finite number in the given interval (``nan`` and ``inf`` are never in it)."""
    where = _interval(low, high, low_open, high_open)

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {where}, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number {where}, got {text!r}")
        return value

    return number


def count(low: int = 0, high: int | None = None) -> Callable[[str], int]:
    """A whole number in ``[low, high]`` (``1.5``, ``1e3`` and words are refused)."""
    where = f"in [{low}, {high:,}]" if high is not None else f">= {low}"

    def integer(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {where}, got "
                                             f"{text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {where}, got {text!r}")
        return value

    return integer


FRACTION = real(0.0, 1.0)
"""A density in [0, 1] (0: everything pruned)."""
KEEP = real(0.0, 1.0, low_open=True)
"""A keep ratio in (0, 1]: at least something is kept."""
SPREAD = real(0.0)
"""A standard deviation: finite, >= 0."""
SEED = count(0, 2**63 - 1)
"""A random seed (numpy's generators take non-negative integers)."""
