"""`sparsesim run -o NAME.parquet` writes Parquet (pyarrow installed) or refuses in one line —
never CSV text under a Parquet name."""

import subprocess
import sys

import pandas as pd
import pytest

# The CLI with pyarrow made unimportable (None in sys.modules makes `import pyarrow` raise
# ImportError), as on a machine without the `parquet` extra.
WITHOUT_PYARROW = ("import sys; sys.modules['pyarrow'] = None; from sparsesim.cli import main; "
                   "sys.exit(main(sys.argv[1:]))")


def _run(*args, blocked=False, cwd=None):
    head = ["-c", WITHOUT_PYARROW] if blocked else ["-m", "sparsesim.cli"]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("name", ["x.parquet", "x.PQ"])
def test_parquet_without_pyarrow_is_refused_in_one_line(tmp_path, tiny, name):
    out = tmp_path / name
    proc = _run("run", "-w", str(tiny), "-o", str(out), blocked=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and name in proc.stderr and "pyarrow" in proc.stderr
    assert not out.exists()  # nothing written under that name


def test_csv_needs_no_pyarrow(tmp_path, tiny):
    out = tmp_path / "x.csv"
    proc = _run("run", "-w", str(tiny), "-o", str(out), blocked=True)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert list(df["layer"]) == ["c1", "fc"]
    # c1: 8·6·6 output pixels × 4·3·3 × 8 filters; fc: 64 × 10
    assert list(df["dense_macs"]) == [6 * 6 * 4 * 3 * 3 * 8, 64 * 10]


def test_parquet_holds_the_same_rows_as_csv(tmp_path, tiny):
    pytest.importorskip("pyarrow")
    pq, csv = tmp_path / "x.parquet", tmp_path / "x.csv"
    for out in (pq, csv):
        proc = _run("run", "-w", str(tiny), "-o", str(out))
        assert proc.returncode == 0, proc.stderr
    assert pq.read_bytes()[:4] == b"PAR1"  # Parquet's magic number, not CSV text
    got, want = pd.read_parquet(pq), pd.read_csv(csv)
    assert list(got.columns) == list(want.columns)
    assert list(got["dense_macs"]) == [6 * 6 * 4 * 3 * 3 * 8, 64 * 10]
    for column in want.columns:  # same values; CSV loses only the dtype of empty columns
        if want[column].isna().all():
            assert got[column].isna().all() or (got[column] == "").all(), column
        else:
            pd.testing.assert_series_equal(got[column], want[column], check_dtype=False,
                                           check_exact=False, rtol=1e-12)
