"""SCALE-Sim v3 run now: the random GEMM layers it simulates in seconds, through it again.

Only with ``--live`` (a check registered ``live=True``); the interpreter is the one
:func:`~sparsesim.validation.scalesim_runner.scalesim_python` finds, and when it finds none the
check is a "not run" row that says so. Conv layers are run live by
``tests/test_scalesim.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from sparsesim.api import simulate
from sparsesim.errors import SparsesimError
from sparsesim.validation.registry import SOURCES, Check, Context, exact_row, register
from sparsesim.validation.scalesim import oracle_workload, scalesim_arch
from sparsesim.validation.scalesim_runner import run_scalesim, scalesim_python

LIVE_CYCLE_BUDGET = 60_000
"""Live runs take the oracle's GEMM layers whose 9 runs sum to fewer SCALE-Sim cycles."""


def run_scalesim_gemm(layers: Sequence[tuple[str, int, int, int]], *, rows: int, cols: int,
                      dataflow: str, python: str) -> dict[str, int]:
    """SCALE-Sim's "Total Cycles" of GEMM layers ``(name, m, n, k)``, run now (its
    bandwidth-estimate mode, SRAMs that hold every operand)."""
    try:
        df, _ = run_scalesim([{"name": name, "m": m, "n": n, "k": k} for name, m, n, k in layers],
                             rows=rows, cols=cols, dataflow=dataflow, gemm=True, python=python)
    except (RuntimeError, ValueError) as err:
        raise SparsesimError(f"SCALE-Sim failed: {str(err)[-400:]}", field="scalesim") from None
    return {str(r.layer): int(r.total_cycles) for r in df.itertuples()}


@register("scalesim", fast=False, live=True)
def _scalesim_live(ctx: Context) -> list[Check]:
    path = ctx.data_dir / "scalesim_oracle.csv"
    python = scalesim_python(ctx.scalesim_python)
    what = "dense compute cycles vs SCALE-Sim run now (random GEMM layers)"
    if python is None or not path.exists():
        why = ("no SCALE-Sim interpreter ($SPARSESIM_SCALESIM_PYTHON or .venv-scalesim)"
               if python is None else f"{path} not found")
        return [Check(id="scalesim.live", group="scalesim", what=what,
                      anchor="SCALE-Sim Total Cycles + 1", source=SOURCES["scalesim"],
                      ours="not run", tolerance="exact", passed=False, note=why)]
    oracle = pd.read_csv(path)
    gemm = oracle[oracle["form"] == "gemm"]
    budget = gemm.groupby("name", sort=False)["total_cycles"].sum()
    names = [n for n, c in budget.items() if c < LIVE_CYCLE_BUDGET]
    part = gemm[gemm["name"].isin(names)]
    layers = [(str(r["name"]), int(r["m"]), int(r["n"]), int(r["k"]))
              for _, r in part.drop_duplicates("name").iterrows()]
    workload = oracle_workload(part, "gemm", "live")
    out = []
    for df in ("os", "ws", "is"):
        good, total, bad = 0, 0, []
        for rows, cols in sorted({(int(r), int(c)) for r, c in zip(part["rows"], part["cols"])}):
            theirs = run_scalesim_gemm(layers, rows=rows, cols=cols, dataflow=df, python=python)
            ours = {r.layer: r.cycles for r in simulate(workload, scalesim_arch(rows, cols,
                                                                                df)).rows}
            for name, t in theirs.items():
                total += 1
                if ours[name] == t + 1:
                    good += 1
                else:
                    bad.append(f"{name} {rows}x{cols}: ours {ours[name]}, theirs {t + 1}")
        out.append(exact_row(id=f"scalesim.live.{df}", group="scalesim",
                             what=f"{what}, {df}", anchor="Total Cycles + 1",
                             source=SOURCES["scalesim"] + f", run now ({python})", good=good,
                             total=total, unit="(layer, array) exact", failures=bad))
    return out

