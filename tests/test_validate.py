"""The validation report (issue 9): the fast subset passes, the report has one row per check,
and a failing check makes `sparsesim validate` exit 1.

The fast subset is what CI runs: SCALE-Sim oracle dense cycles and traffic, the seed's closed
forms, the N:M bounds and Sparseloop's Figure 1 trend at five densities. The full run
(`sparsesim validate`, about a minute) adds Cnvlutin and SCNN in shape and, when present, the
SCALE-Sim topology oracle.
"""

import fnmatch
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparsesim import cli
from sparsesim.validation.data import data_path
from sparsesim.validation.nm import byte_ratio
from sparsesim.validation.registry import ANCHORS, CHECKS, GROUPS, SOURCES, CheckSpec, run_checks
from sparsesim.validation.report import render_report, write_report


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("validation")
    run = run_checks(fast=True, out_dir=out)
    return run, write_report(run, out)


def test_fast_subset_passes(fast_run):
    run, _ = fast_run
    assert run.fast and run.checks
    assert run.passed, [(c.id, c.ours, c.note) for c in run.failed]
    groups = {c.group for c in run.checks}
    assert {"scalesim", "formulas", "nm", "sparseloop"} <= groups
    fast_names = {s.name for s in CHECKS.values() if s.fast}
    assert "systems.cnvlutin" not in fast_names and "nm.knee" in fast_names


def test_report_has_one_row_per_check_with_its_source(fast_run):
    run, path = fast_run
    text = path.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(run.checks)
    ids = [c.id for c in run.checks]
    assert len(set(ids)) == len(ids), "check ids are unique"
    for check, row in zip(run.checks, rows, strict=True):
        assert row.startswith(f"| `{check.id}` |") and row.count(" | ") == 6
        assert check.anchor and check.source and check.tolerance and check.ours
        assert row.rstrip().endswith("| pass |")
    for group in {c.group for c in run.checks}:
        assert f"## {GROUPS[group].title}" in text
    for fig in run.figures:  # linked relatively, written beside the report
        assert f"]({fig.file})" in text and (path.parent / fig.file).stat().st_size > 10_000
    assert {f.file for f in run.figures} >= {"nm_knee.png", "sparseloop_fig1.png"}


def test_numbers_the_report_states(fast_run):
    run, _ = fast_run
    by_id = {c.id: c for c in run.checks}
    assert byte_ratio() == pytest.approx(16 / 9)
    assert by_id["nm.compute_bound"].ours.startswith("15/15")
    assert by_id["sparseloop.gating_cycles"].ours == "2,097,152 (constant)"
    crossover = float(by_id["sparseloop.crossover"].ours.rstrip(" %")) / 100
    assert 0.04 <= crossover <= 0.08
    assert by_id["scalesim.cycles.random.os"].ours.startswith("162/162")


def test_a_failing_check_makes_the_command_exit_1(tmp_path, monkeypatch, capsys):
    # The anchor, not the engine, is changed: the real 2:4 run halves the streamed steps, so
    # a claimed ratio of 3 must fail, and the command must say so with its exit status.
    monkeypatch.setitem(ANCHORS, "nm.compute_ratio", 3.0)
    status = cli.main(["validate", "--fast", "--only", "nm.compute_bound", "--out",
                       str(tmp_path)])
    assert status == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "nm.compute_bound" in out
    report = (tmp_path / "validation.md").read_text(encoding="utf-8")
    assert "**0/1 checks pass** — failing: nm.compute_bound." in report
    assert "ratio exactly 3" in report and "| **FAIL** |" in report


def test_a_check_that_raises_is_a_failed_row(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setitem(CHECKS, "nm.broken", CheckSpec("nm.broken", "nm", True, False, broken))
    run = run_checks(fast=True, out_dir=tmp_path, only=["nm.broken"])
    [row] = run.checks
    assert not row.passed and row.ours == "error" and "boom" in row.note
    assert "| **FAIL** |" in render_report(run)


def test_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "validate", "--fast",
                           "--only", "formulas.format", "--out", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "formulas.format.bitmap" in proc.stdout and "8/8 checks pass" in proc.stderr
    assert (tmp_path / "validation.md").exists()
    bad = subprocess.run([sys.executable, "-m", "sparsesim.cli", "validate", "--only", "nope",
                          "--out", str(tmp_path)], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "no check matches nope" in bad.stderr


def test_every_anchor_is_sourced():
    for spec in CHECKS.values():
        assert spec.group in GROUPS
    assert set(SOURCES) >= {"scalesim", "design", "nm", "sparseloop", "cnvlutin", "scnn"}
    lo, hi = ANCHORS["sparseloop.crossover"]
    assert (lo, hi) == (0.04, 0.08) and ANCHORS["cnvlutin.speedup"] == (1.24, 1.55)


def test_every_oracle_file_ships_as_package_data():
    """Every file under sparsesim/validation/data is matched by a package-data glob in
    pyproject.toml, so none silently drops out of a wheel (an installed sparsesim reads them
    through ``data_path``). Matched as setuptools globs: a ``*`` stays inside one folder."""
    root = Path(__file__).resolve().parents[1]
    package = root / "sparsesim" / "validation"
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["sparsesim.validation"]

    def shipped(parts: tuple[str, ...]) -> bool:
        return any(len(g.split("/")) == len(parts) and all(
            fnmatch.fnmatchcase(part, pattern) for part, pattern in zip(parts, g.split("/")))
            for g in globs)

    files = [p.relative_to(package).parts for p in (package / "data").rglob("*") if p.is_file()]
    assert len(files) > 5 and data_path("scalesim_oracle.csv").is_file()
    missing = ["/".join(parts) for parts in files if not shipped(parts)]
    assert not missing, f"oracle files no package-data glob ships: {missing}"
