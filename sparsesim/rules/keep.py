"""How many of ``total`` units a fraction keeps: one rule for every path that keeps or prunes.

**The rule.** A fraction ``sparsity`` of ``total`` removes ``round(sparsity · total)`` units,
Python's ``round`` (a tie goes to the even count), and keeps the rest:

    prune_count(total, s)            = round(s · total)
    keep_count(total, sparsity=s)    = total − round(s · total)
    keep_count(total, density=d)     = total − round((1 − d) · total)

**Why.** It is ``torch.nn.utils.prune``'s count (``nparams_toprune``), computed on the same
floats, so the front-end's masks equal torch's; and it is the rule that changes the fewest
numbers the simulator had: away from a tie it equals the nearest integer to ``d · total``,
which the seeded masks, the dynamic runs and the activation/gradient top-k counted already
(only the statistical model's token, head and KV keep ratios rounded up before).
Rounding to the nearest needs no epsilon against float noise, unlike ``ceil``
(``0.07 · 100`` is 7.000000000000001, which ``ceil`` would make 8). A count that lands
exactly on a half is the one case where the float product decides, as it does in torch.

**Examples.** Keeping half of 5 heads keeps 3 (2.5 removed rounds to 2); half of 7 keeps 3
(3.5 rounds to 4); half of 12 keeps 6; 50 % of 197 tokens keeps 99; 60 % of 99 keys keeps 59
(39.6 removed rounds to 40); 0.7 of 10 keeps 7.

**Zero kept.** The rule itself may keep nothing (a density below ``1/(2·total)``). A
caller that must keep something (a layer keeps at least one head, token, key, channel or
top-k entry) says so with ``at_least=1``; weight masks keep exactly what the rule says.
"""

from __future__ import annotations

from numbers import Integral

from sparsesim.errors import SparsesimError


def _check(total: int, fraction: float, name: str) -> None:
    if isinstance(total, bool) or not isinstance(total, Integral) or total < 0:
        raise SparsesimError(f"a count must be a non-negative integer, got {total!r}",
                             field="total")
    if isinstance(fraction, bool) or not 0 <= fraction <= 1:
        raise SparsesimError(f"must be in [0, 1], got {fraction!r}", field=name)


def prune_count(total: int, sparsity: float) -> int:
    """Units of ``total`` that a fraction ``sparsity`` removes: ``round(sparsity · total)``."""
    _check(total, sparsity, "sparsity")
    return int(round(sparsity * total))


def keep_count(total: int, *, density: float | None = None, sparsity: float | None = None,
               at_least: int = 0) -> int:
    """Units of ``total`` kept at ``density`` (fraction kept) or ``sparsity`` (fraction
    removed) — give one: ``total − prune_count(total, sparsity)``, with
    ``sparsity = 1 − density``; never fewer than ``min(at_least, total)``."""
    if (density is None) == (sparsity is None):
        raise ValueError("give the fraction kept (density) or removed (sparsity), not both")
    if density is not None:
        _check(total, density, "density")
        sparsity = 1.0 - density
    assert sparsity is not None
    return max(min(at_least, int(total)), int(total) - prune_count(total, sparsity))
