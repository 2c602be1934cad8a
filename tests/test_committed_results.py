"""Committed result files match their generators' current schema, and the quick-start script
runs from a fresh clone: it writes where it is told, resumes its own sweeps, and refuses (one
line, nothing written) a sweep file of an older schema instead of crashing or mixing rows."""

import csv
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sparsesim.report import COLUMNS
from sparsesim.sweep import load_spec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analysis" / "results"
SPECS = sorted((ROOT / "analysis" / "specs").glob("*.toml"))
QUICKSTART = ROOT / "analysis" / "quickstart.py"
QUICKSTART_SPECS = [ROOT / "analysis" / "specs" / f"{name}.toml"
                    for name in ("format_sweep", "design_sweep")]  # the README's jobs 2 and 3


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))


def _quickstart(*args):
    return subprocess.run([sys.executable, str(QUICKSTART), *args], capture_output=True,
                          text=True)


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_committed_sweep_results_have_the_current_columns(spec_path):
    spec = load_spec(spec_path)
    results = RESULTS / f"{spec.name}.csv"
    if not results.exists():
        pytest.skip(f"no committed {results.name}")
    assert _header(results) == list(spec.columns), (
        f"{results} predates the sweep schema: regenerate it with python analysis/quickstart.py "
        "--fresh")
    df = pd.read_csv(results)
    assert len(df) == len(spec.points) and (df["status"] == "ok").all()
    # every point of the spec is there exactly once: the file is this spec's, complete
    assert df["point_id"].is_unique


def test_committed_quickstart_frame_has_the_report_columns():
    assert _header(RESULTS / "quickstart_resnet50.csv") == list(COLUMNS)


def test_quickstart_refuses_an_old_schema_and_writes_nothing(tmp_path):
    stale = tmp_path / "format_sweep.csv"
    stale.write_text("workload,arch,cycles,point_id,status,error,elapsed_s\n"
                     "resnet18,default,1,abc,ok,,0.1\n")
    before = stale.read_bytes()
    proc = _quickstart("--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "format_sweep.csv" in proc.stderr
    assert "cycles_p50" in proc.stderr  # names a missing column
    assert stale.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["format_sweep.csv"]


def test_quickstart_writes_where_asked_and_resumes(tmp_path):
    out = tmp_path / "qs"
    committed = {p.name: p.stat().st_mtime_ns for p in RESULTS.iterdir()}
    first = _quickstart("--out", str(out))
    assert first.returncode == 0, first.stderr
    names = {"quickstart_resnet50.csv", "quickstart_layers.png", "format_sweep.csv",
             "quickstart_formats.png", "design_sweep.csv", "quickstart_pareto.png"}
    assert {p.name for p in out.iterdir()} == names
    assert {p.name: p.stat().st_mtime_ns for p in RESULTS.iterdir()} == committed
    for spec_path in QUICKSTART_SPECS:
        spec = load_spec(spec_path)
        assert _header(out / f"{spec.name}.csv") == list(spec.columns)
        assert f"{spec.name}: {len(spec.points)} ran, 0 already done" in first.stdout
    again = _quickstart("--out", str(out))
    assert again.returncode == 0, again.stderr
    for spec_path in QUICKSTART_SPECS:
        spec = load_spec(spec_path)
        assert f"{spec.name}: 0 ran, {len(spec.points)} already done" in again.stdout
