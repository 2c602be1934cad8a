"""Pruning schedules: the sparsity levels of a run, and the loop that walks them.

* **one-shot** — one level, no training (post-training pruning);
* **iterative with fine-tuning** — levels rising to the target (``linear`` steps, or the
  ``cubic`` schedule of Zhu & Gupta 2017: ``s_t = s_f − (s_f − s_0)·(1 − t/T)³``), each
  pruned from the fine-tuned weights of the previous level, pruned weights staying pruned;
* **iterative magnitude pruning with rewinding** (lottery ticket; Frankle & Carbin 2019,
  Frankle et al. 2020) — each round prunes ``rate`` (20 %) of the *remaining* weights, so
  round r reaches ``1 − (1 − rate)^r``; the survivors are rewound to their values at the
  rewind point (initialisation or an early iteration) and retrained.

:func:`run_schedule` is framework-free: it calls back to prune, rewind, train and evaluate,
and returns one record per level (the trace's ``meta.accuracy``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sparsesim.errors import SparsesimError

SCHEDULES = ("oneshot", "iterative", "imp")


def one_shot(sparsity: float) -> tuple[float, ...]:
    return (sparsity,)


def iterative_levels(final: float, steps: int, *, kind: str = "cubic",
                     initial: float = 0.0) -> tuple[float, ...]:
    """``steps`` levels from just above ``initial`` to ``final`` (the last is ``final``)."""
    if steps < 1:
        raise SparsesimError(f"must be at least 1, got {steps}", field="steps")
    if kind == "linear":
        return tuple(initial + (final - initial) * (t / steps) for t in range(1, steps + 1))
    if kind == "cubic":
        return tuple(final - (final - initial) * (1 - t / steps) ** 3
                     for t in range(1, steps + 1))
    raise SparsesimError(f"unknown kind {kind!r}; expected linear or cubic", field="kind")


def imp_levels(rounds: int, rate: float = 0.2) -> tuple[float, ...]:
    """Overall sparsity after each round when every round prunes ``rate`` of what remains."""
    if rounds < 1:
        raise SparsesimError(f"must be at least 1, got {rounds}", field="rounds")
    if not 0 < rate < 1:
        raise SparsesimError(f"must be in (0, 1), got {rate}", field="rate")
    return tuple(1 - (1 - rate) ** r for r in range(1, rounds + 1))


def run_schedule(levels: Sequence[float], *, prune_to: Callable[[float], float],
                 train: Callable[[], None] | None = None,
                 evaluate: Callable[[], float] | None = None,
                 rewind: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Walk ``levels``: prune to each (``prune_to`` returns the achieved sparsity), rewind the
    survivors if asked, train, evaluate. Records: ``{level, sparsity, accuracy}``."""
    records: list[dict[str, Any]] = []
    for level in levels:
        achieved = prune_to(level)
        if rewind is not None:
            rewind()
        if train is not None:
            train()
        rec: dict[str, Any] = {"level": level, "sparsity": achieved}
        if evaluate is not None:
            rec["accuracy"] = evaluate()
        records.append(rec)
    return records
