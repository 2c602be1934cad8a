"""Every plot kind refuses results it cannot draw, in one line naming the missing columns:
a sweep figure given a per-GEMM ``run -o`` file (which has latency and energy columns too, but
one row per GEMM, not per design point), a per-GEMM figure given sweep results."""

import subprocess
import sys

import pytest

from sparsesim.plot.registry import KINDS

SPEC = """[sweep]
name = "s"
[base]
workload = "resnet18"
"memory.ideal" = true
[grid]
"pe.kind" = ["dense", "skip"]
"sparsity.weight_density" = [0.5]
"""
SWEEP_KINDS = [k for k in KINDS.values() if k.results == "sparsesim sweep results"]
GEMM_KINDS = [k for k in KINDS.values() if k.results.startswith("sparsesim run")]


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sparsesim.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_toml):
    work = tmp_path_factory.mktemp("plots")
    (work / "t.toml").write_text(tiny_toml)
    (work / "s.toml").write_text(SPEC)
    assert _cli("run", "-w", "t.toml", "-o", "gemms.csv", cwd=work).returncode == 0
    assert _cli("sweep", "s.toml", "-o", "sweep.csv", "-j", "1", cwd=work).returncode == 0
    return work


@pytest.mark.parametrize("kind", SWEEP_KINDS + GEMM_KINDS, ids=lambda k: k.name)
def test_a_kind_refuses_the_other_results_in_one_line(kind, files):
    wrong = "gemms.csv" if kind in SWEEP_KINDS else "sweep.csv"
    proc = _cli("plot", kind.name, wrong, "-o", "x.png", cwd=files)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert wrong in proc.stderr and "needs column(s)" in proc.stderr
    assert not (files / "x.png").exists()


def test_the_pareto_refusal_names_the_sweep_column(files):
    proc = _cli("plot", "pareto", "gemms.csv", cwd=files)
    assert "needs column(s) point_id" in proc.stderr
