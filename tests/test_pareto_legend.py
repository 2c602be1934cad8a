"""A Pareto figure's legend lists only what it draws: the design kinds that reach a front
(colours stay fixed per kind), and "dominated" only when some point is."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from sparsesim.plot import pareto  # noqa: E402


def _frame(points):
    return pd.DataFrame([{"pe.kind": k, "array.rows": r, "seconds": s, "energy_pj": e,
                          "point_id": f"p{i}", "status": "ok"}
                         for i, (k, r, s, e) in enumerate(points)])


def _labels(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_only_kinds_on_the_front_are_listed():
    # skip beats dense and gate in both latency and energy at every size: only skip is on it
    fig = pareto(_frame([("dense", 16, 4e-3, 9e9), ("dense", 32, 2e-3, 8e9),
                         ("gate", 16, 4e-3, 7e9), ("gate", 32, 2e-3, 6e9),
                         ("skip", 16, 1e-3, 3e9), ("skip", 32, 5e-4, 2e9)]))
    assert _labels(fig) == ["dominated", "front: kind=skip"]


def test_no_dominated_entry_when_every_point_is_on_the_front():
    # latency falls as energy rises: no point dominates another
    fig = pareto(_frame([("dense", 16, 1e-3, 9e9), ("skip", 16, 2e-3, 5e9),
                         ("gate", 16, 3e-3, 1e9)]))
    assert _labels(fig) == ["front: kind=dense", "front: kind=gate", "front: kind=skip"]
