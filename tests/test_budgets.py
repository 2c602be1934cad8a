"""Budgets in sweeps and plots: `[constraints]` is parsed and checked (one line per mistake),
every row is kept and judged `within_budget`, and `plot pareto --budget` draws its fronts over
the rows within the budget with area on an axis."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.area import area_breakdown
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.budget import (Constraint, budget_from_table, budget_text, parse_budget,
                              within_budget)
from sparsesim.errors import SparsesimError
from sparsesim.plot.front import pareto
from sparsesim.sweep import BUDGET_COLUMNS, load_results, run_sweep, spec_from_dict

COLS = ("area_mm2", "power_avg_w", "cycles")
TINY = ('[network]\nname = "tiny"\n[[layer]]\nname = "fc"\nop = "linear"\n'
        'in_features = 64\nout_features = 32\ntokens = 16\n')


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return str(path)


def test_constraint_text_parses_every_operator():
    got = parse_budget("area_mm2<=2; power_avg_w < 1.5, cycles>=10;cycles > 3", COLS)
    assert got == (Constraint("area_mm2", "<=", 2.0), Constraint("power_avg_w", "<", 1.5),
                   Constraint("cycles", ">=", 10.0), Constraint("cycles", ">", 3.0))
    assert budget_text(got) == "area_mm2<=2;power_avg_w<1.5;cycles>=10;cycles>3"
    assert parse_budget(budget_text(got), COLS) == got  # the cell text reads back


@pytest.mark.parametrize("text, words", [
    ("aera_mm2 <= 2", "unknown column 'aera_mm2'"),
    ("area_mm2 == 2", "unknown comparison '=='"),
    ("area_mm2 =< 2", "unknown comparison '=<'"),
    ("area_mm2 <= two", "must be a number"),
    ("area_mm2 <= inf", "finite"),
    ("area_mm2", "COLUMN OP NUMBER"),
    ("", "empty budget"),
])
def test_bad_constraints_are_one_line(text, words):
    with pytest.raises(SparsesimError) as err:
        parse_budget(text, COLS, field="--budget")
    assert words in str(err.value) and "\n" not in str(err.value)
    assert "--budget" in str(err.value)


def test_toml_table_form():
    got = budget_from_table({"area_mm2": "<= 2", "power_avg_w": 1, "cycles": "> 5"}, COLS)
    assert got == (Constraint("area_mm2", "<=", 2.0), Constraint("power_avg_w", "<=", 1.0),
                   Constraint("cycles", ">", 5.0))
    for table, words in (({"area_mm2": True}, "OP NUMBER"), ({"area_mm2": "2"}, "OP NUMBER"),
                         ({"nope": "<= 1"}, "unknown column")):
        with pytest.raises(SparsesimError) as err:
            budget_from_table(table, COLS, file="s.toml")
        assert words in str(err.value) and "s.toml" in str(err.value)


def test_within_budget_by_hand():
    df = pd.DataFrame({"area_mm2": [1.0, 2.0, 3.0, np.nan], "cycles": [10, 5, 1, 1]})
    got = within_budget(df, parse_budget("area_mm2<=2;cycles>5", COLS))
    assert list(got) == [True, False, False, False]  # row 1: cycles 5 is not > 5; row 3: no area
    assert list(within_budget(df, ())) == [True] * 4


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=20),
       st.floats(0, 10, allow_nan=False))
def test_tighter_budget_never_admits_more(values, bound):
    df = pd.DataFrame({"area_mm2": values})
    loose = within_budget(df, (Constraint("area_mm2", "<=", bound + 1),))
    tight = within_budget(df, (Constraint("area_mm2", "<=", bound),))
    assert not (tight & ~loose).any()
    assert list(tight) == [v <= bound for v in values]


def test_spec_constraints_are_validated_with_the_file_named(tiny):
    base = {"base": {"workload": tiny}}
    spec = spec_from_dict({**base, "constraints": {"area_mm2": "<= 2"}}, file="s.toml")
    assert spec.constraints == (Constraint("area_mm2", "<=", 2.0),)
    assert "within_budget" in spec.columns and "area_mm2" in spec.columns
    for bad, words in (({"area": "<= 2"}, "unknown column 'area'"),
                       ({"area_mm2": "~ 2"}, "OP NUMBER"),
                       ({"network": "<= 2"}, "unknown column 'network'")):
        with pytest.raises(SparsesimError) as err:
            spec_from_dict({**base, "constraints": bad}, file="s.toml")
        assert words in str(err.value) and "s.toml" in str(err.value)
        assert "constraints." in str(err.value)
    assert "area_mm2" in BUDGET_COLUMNS and "power_avg_w" in BUDGET_COLUMNS


def _arch_area(rows: int) -> float:
    return area_breakdown(with_overrides(load_arch("default"), {"array.rows": rows})).total_mm2


def test_sweep_keeps_every_row_and_judges_it(tmp_path, tiny):
    small, big = _arch_area(8), _arch_area(16)
    assert small < big
    bound = (small + big) / 2  # the 8-row array fits, the 16-row one does not
    toml = tmp_path / "s.toml"
    toml.write_text(f'[sweep]\nname = "s"\n[base]\nworkload = "{tiny}"\n'
                    f'[grid]\n"array.rows" = [8, 16]\n'
                    f'[constraints]\narea_mm2 = "<= {bound!r}"\n')
    from sparsesim.sweep import load_spec
    spec = load_spec(toml)
    summary = run_sweep(spec, out=tmp_path / "s.csv", workers=1, progress=False)
    df = pd.read_csv(summary.out).sort_values("array.rows")
    assert len(df) == 2  # never drops a row
    assert list(df["within_budget"]) == [True, False]
    assert np.allclose(df["area_mm2"], [small, big])
    assert (df["budget"] == f"area_mm2<={bound:g}").all()
    # power is energy over time, as the run reports it
    assert np.allclose(df["power_avg_w"], df["energy_pj"] * 1e-12 / df["seconds"])
    # editing the spec's constraints re-judges on read, without a re-run
    toml.write_text(toml.read_text().replace(f'"<= {bound!r}"', '">= 0"').replace(
        '[sweep]\nname = "s"\n', '[sweep]\nname = "s"\nout = "s.csv"\n'))
    again = load_results(toml).sort_values("array.rows")
    assert list(again["within_budget"]) == [True, True] and (again["budget"] == "area_mm2>=0").all()


def _front_df() -> pd.DataFrame:
    # four designs: latency falls and area grows; d is the fastest but 5 mm²
    return pd.DataFrame({
        "point_id": list("abcd"), "status": "ok", "workload": "w",
        "array.rows": [8, 16, 32, 64], "seconds": [8e-3, 4e-3, 2e-3, 1e-3],
        "energy_pj": [4e6, 3e6, 2e6, 1e6], "area_mm2": [0.5, 1.0, 2.0, 5.0]})


def test_pareto_under_a_budget_excludes_over_budget_points():
    fig = pareto(_front_df(), budget="area_mm2<=2")
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_xlabel()]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in axes] == [
        ("latency (µs)", "energy (µJ)"), ("latency (µs)", "area (mm²)"),
        ("energy (µJ)", "area (mm²)")]
    # latency × energy: without the budget only d (fastest, least energy) is on the front;
    # under it c takes its place and d is over budget
    assert "1 on the front, 2 dominated, 1 over budget" in axes[0].get_title()
    # latency × area: a, b, c trade latency for area; d is over budget
    assert "3 on the front, 0 dominated, 1 over budget" in axes[1].get_title()
    unbudgeted = pareto(_front_df())
    assert "1 on the front, 3 dominated" in unbudgeted.axes[0].get_title()
    assert len([ax for ax in unbudgeted.axes if ax.get_visible() and ax.get_xlabel()]) == 1


def test_pareto_reads_the_rows_budget():
    df = _front_df()
    df["within_budget"] = [True, True, True, False]
    df["budget"] = "area_mm2<=2"
    fig = pareto(df)
    assert "over budget" in fig.axes[0].get_title()
    assert "area_mm2<=2" in fig.get_suptitle()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sparsesim.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_cli_budget_flag(tmp_path):
    _front_df().to_csv(tmp_path / "r.csv", index=False)
    ok = _cli("plot", "pareto", "r.csv", "--budget", "area_mm2<=2", "-o", "p.png", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "p.png").stat().st_size > 0
    bad = _cli("plot", "pareto", "r.csv", "--budget", "area<=2", "-o", "q.png", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "unknown column 'area'" in bad.stderr and "--budget" in bad.stderr
    assert not Path(tmp_path / "q.png").exists()
