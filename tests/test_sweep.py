"""Sweeps: resumable after a kill, failures recorded, same rows on dask as locally."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sparsesim.errors import SparsesimError
from sparsesim.sweep import load_spec, point_id, read_results, run_sweep

SPEC = """
[sweep]
name = "t"
out = "t.csv"
[base]
workload = "resnet18"
"pe.kind" = "skip"
"sparsity.act_density" = 0.5
[grid]
"sparsity.seed" = {seeds}
"sparsity.weight_density" = [0.5, 0.2]
"""


def write_spec(tmp_path: Path, seeds: int, extra: str = "") -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(seeds=list(range(seeds))) + extra)
    return path


def cli(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "sparsesim.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path):
    spec = write_spec(tmp_path, seeds=12)  # 24 points, each draws its own masks
    out = tmp_path / "t.csv"
    proc = cli("sweep", str(spec), "--workers", "1", cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.exists() and out.read_text().count("\n") >= 4:  # header + 3 rows
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_results(out)
    assert 3 <= len(before) < 24, "the kill must land mid-sweep"
    done = cli("sweep", str(spec), "--workers", "2", cwd=tmp_path)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert f"{len(before)} already done" in err
    after = read_results(out)
    assert len(after) == 24 and after["point_id"].is_unique
    assert (after["status"] == "ok").all()
    # rows finished before the kill are kept as they were
    kept = after.set_index("point_id").loc[before["point_id"], "cycles"]
    assert list(kept) == list(before["cycles"])
    expected = {point_id(p) for p in load_spec(spec).points}
    assert set(after["point_id"]) == expected


def test_partial_last_line_is_dropped(tmp_path):
    spec = load_spec(write_spec(tmp_path, seeds=1))
    out = tmp_path / "r.csv"
    run_sweep(spec, out=out, workers=1, progress=False)
    text = out.read_text()
    out.write_text(text + text.splitlines()[1][:25])  # a row cut short by a kill
    assert len(read_results(out)) == 2
    summary = run_sweep(spec, out=out, workers=1, progress=False)
    assert summary.skipped == 2 and summary.ran == 0
    assert out.read_text() == text


def test_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    spec = load_spec(write_spec(tmp_path, seeds=1, extra='[[point]]\n"pe.kind" = "nm"\n'))
    summary = run_sweep(spec, out=tmp_path / "f.csv", workers=1, progress=False)
    df = read_results(tmp_path / "f.csv")
    assert summary.failed == 1 and summary.ran == 3 and len(df) == 3
    bad = df[df["status"] == "error"]
    assert len(bad) == 1 and "every layer would run densely" in bad["error"].iloc[0]


@pytest.mark.parametrize(("extra", "field"), [
    ('[grid]\n"array.rowz" = [1]\n', "array.rowz"),
    ('[grid]\n"sparsity.density" = [0.5]\n', "sparsity.density"),
    ('[grid]\n"pe.kind" = ["warp"]\n', "pe.kind"),
    ('[oops]\n', "oops"),
])
def test_bad_specs_fail_before_running(tmp_path, extra, field):
    path = tmp_path / "bad.toml"
    path.write_text('[sweep]\nname = "b"\n' + extra)
    with pytest.raises(SparsesimError) as err:
        load_spec(path)
    assert err.value.file == str(path) and err.value.field == field


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    pytest.importorskip("dask.distributed")
    spec = load_spec(write_spec(tmp_path, seeds=2))
    run_sweep(spec, out=tmp_path / "local.csv", workers=1, progress=False)
    run_sweep(spec, out=tmp_path / "dask.csv", executor="dask", progress=False)
    cols = lambda df: df.drop(columns=["elapsed_s"]).sort_values("point_id").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(cols(read_results(tmp_path / "local.csv")),
                                  cols(read_results(tmp_path / "dask.csv")))


def test_sweep_command_summary(tmp_path):
    spec = write_spec(tmp_path, seeds=1)
    proc = cli("sweep", str(spec), "-j", "1", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "2 points — 2 ran, 0 already done, 0 failed" in err
    assert "sparsity.weight_density" in out and "cycles" in out
    assert os.path.exists(tmp_path / "t.csv")
