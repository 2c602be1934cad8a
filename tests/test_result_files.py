"""Results where users want them: ``-o`` writes CSV, Parquet or JSON by the extension for
``run``, ``formats`` and ``sweep`` and refuses any other in one line before running anything;
a sweep's results load as one DataFrame in one call; ``SimResult`` renders as HTML and writes
Parquet."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from sparsesim import simulate
from sparsesim.errors import SparsesimError
from sparsesim.sweep import load_results, load_spec, run_sweep
from sparsesim.workload.network import load_workload

# c1: 6·6 output pixels × (4·3·3) × 8 filters; fc: 64 × 10 — counted by hand
TINY_MACS = [6 * 6 * 4 * 3 * 3 * 8, 64 * 10]

SPEC = """[sweep]
name = "s"
[base]
workload = "resnet18"
"memory.ideal" = true
[grid]
"pe.kind" = ["dense", "skip"]
"sparsity.weight_density" = [0.5]
"""

WITHOUT_PYARROW = ("import sys; sys.modules['pyarrow'] = None; from sparsesim.cli import main; "
                   "sys.exit(main(sys.argv[1:]))")


def _cli(*args, cwd=None, blocked=False):
    head = ["-c", WITHOUT_PYARROW] if blocked else ["-m", "sparsesim.cli"]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True,
                          cwd=cwd)


def test_run_json_holds_the_csv_rows(tmp_path, tiny):
    for name in ("x.json", "x.csv"):
        proc = _cli("run", "-w", str(tiny), "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "x.json").read_text())
    assert [r["layer"] for r in records] == ["c1", "fc"]
    assert [r["dense_macs"] for r in records] == TINY_MACS
    csv = pd.read_csv(tmp_path / "x.csv")
    assert list(records[0]) == list(csv.columns)  # same columns, same order


@pytest.mark.parametrize("command", [["run", "-w", "no_such_network"], ["formats"]])
@pytest.mark.parametrize("name", ["x.xlsx", "x.txt", "x"])
def test_an_unknown_extension_is_refused_before_anything_runs(tmp_path, command, name):
    out = tmp_path / name
    proc = _cli(*command, "-o", str(out))
    assert proc.returncode == 2
    # one line, naming the file and the extensions that work — not the (missing) workload:
    # the check comes before any work
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert str(out) in proc.stderr and ".parquet" in proc.stderr and ".json" in proc.stderr
    assert "no_such_network" not in proc.stderr
    assert not out.exists() and proc.stdout == ""


def test_sweep_json_is_written_from_its_resumable_csv(tmp_path):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(SPEC)
    out = tmp_path / "r.json"
    first = _cli("sweep", str(spec_path), "-o", str(out), "-j", "1")
    assert first.returncode == 0, first.stderr
    assert "(resumable: " in first.stderr and str(tmp_path / "r.csv") in first.stderr
    got, log = load_results(out), load_results(tmp_path / "r.csv")
    assert len(got) == 2 and set(got["pe.kind"]) == {"dense", "skip"}
    assert list(got.columns) == list(load_spec(spec_path).columns)
    pd.testing.assert_frame_equal(got.sort_values("point_id").reset_index(drop=True),
                                  log.sort_values("point_id").reset_index(drop=True),
                                  check_dtype=False)
    again = _cli("sweep", str(spec_path), "-o", str(out), "-j", "1")
    assert again.returncode == 0 and "0 ran, 2 already done" in again.stderr


def test_sweep_refuses_an_unknown_extension_untouched(tmp_path):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(SPEC)
    with pytest.raises(SparsesimError, match="unknown results extension"):
        run_sweep(load_spec(spec_path), out=tmp_path / "r.xlsx", workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_sweep_parquet_without_pyarrow_is_refused_in_one_line(tmp_path):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(SPEC)
    proc = _cli("sweep", str(spec_path), "-o", str(tmp_path / "r.parquet"), blocked=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "pyarrow" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_load_results_takes_the_spec(tmp_path, monkeypatch):
    """One call from the spec: its results file is where ``sparsesim sweep`` wrote it."""
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    summary = run_sweep(load_spec(spec_path), workers=1, progress=False)
    assert summary.out == summary.log
    df = load_results(spec_path)
    assert len(df) == 2 and (df["status"] == "ok").all()
    # skipping PEs on half-dense weights take fewer cycles than dense PEs: real rows
    cycles = df.set_index("pe.kind")["cycles"]
    assert cycles["skip"] < cycles["dense"]
    with pytest.raises(SparsesimError, match="no such results file"):
        load_results(tmp_path / "missing.csv")


def test_sim_result_html_and_files(tmp_path, tiny):
    result = simulate(load_workload(str(tiny)), "default")
    page = result._repr_html_()
    assert page.startswith("<p><b>t on default: 32×32 os")
    assert page.count("<table") == 2  # totals, then layers
    for layer in ("c1", "fc"):
        assert f"<td>{layer}</td>" in page
    assert f"{sum(TINY_MACS)}" in page  # the totals row's dense MACs
    with pytest.raises(SparsesimError, match=r"\.parquet or \.pq"):
        result.to_parquet(tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    result.to_file(tmp_path / "x.json")
    assert [r["dense_macs"] for r in json.loads((tmp_path / "x.json").read_text())] == TINY_MACS


def test_sim_result_to_parquet(tmp_path, tiny):
    pytest.importorskip("pyarrow")
    result = simulate(load_workload(str(tiny)), "default")
    path = result.to_parquet(tmp_path / "x.parquet")
    assert path.read_bytes()[:4] == b"PAR1"
    assert list(pd.read_parquet(path)["dense_macs"]) == TINY_MACS


def test_sim_result_to_parquet_without_pyarrow_is_refused(tmp_path, tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as without the parquet extra
    result = simulate(load_workload(str(tiny)), "default")
    with pytest.raises(SparsesimError, match="pyarrow"):
        result.to_parquet(tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_plot_reads_json_results(tmp_path, tiny):
    results = tmp_path / "x.json"
    assert _cli("run", "-w", str(tiny), "-o", str(results)).returncode == 0
    proc = _cli("plot", "layers", str(results), "-o", str(tmp_path / "l.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
