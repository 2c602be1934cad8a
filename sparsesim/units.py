"""Small unit helpers shared by every level (integers only: cycle counts must be exact)."""

from __future__ import annotations

import math


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative integers, without floats."""
    return -(-a // b)


def fmt_si(value: float, unit: str = "", digits: int = 3) -> str:
    """``1.82e9, 'MAC'`` → ``'1.82 GMAC'``: for tables people read, not for files."""
    prefixes: tuple[tuple[float, str], ...] = (
        (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
    if unit and value != 0 and abs(value) < 1:  # small physical units: mJ, µJ, nJ, pJ
        prefixes = ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))
    for scale, prefix in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}".rstrip()
    return f"{value:.{digits}g} {unit}".rstrip()


def power_law(x: float, x0: float, y0: float, x1: float, y1: float) -> float:
    """y at x on the line through (x0, y0) and (x1, y1) in log–log space (the energy and area
    tables' fits between two published points)."""
    slope = math.log(y1 / y0) / math.log(x1 / x0)
    return float(y0 * (x / x0) ** slope)

