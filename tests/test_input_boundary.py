"""The input boundary (issue 17): bad bytes, bad shapes of files and unsafe sweep outputs end in
one SparsesimError naming the file — never a traceback, a changed file or a write elsewhere."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sparsesim.arch.config import load_arch
from sparsesim.arch.energy import load_energy_table
from sparsesim.errors import SparsesimError
from sparsesim.sweep import _Appender, load_spec, read_results, run_sweep, spec_from_dict
from sparsesim.workload.network import load_workload

LOADERS = {"workload.toml": load_workload, "arch.toml": load_arch,
           "table.toml": load_energy_table, "spec.toml": load_spec,
           "topology.csv": load_workload}

SPEC = """
[sweep]
name = "tiny"
[base]
workload = "resnet18"
[grid]
"pe.kind" = ["dense"]
"""


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_bytes_that_are_not_utf8_are_one_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b'[network]\nname = "\xff\xfe"\n')
    with pytest.raises(SparsesimError, match=r"not UTF-8 text \(byte 18\)") as err:
        LOADERS[name](path)
    assert err.value.file == str(path)


@pytest.mark.parametrize("name", ["workload.toml", "arch.toml", "table.toml", "spec.toml"])
def test_deeply_nested_toml_is_refused_not_a_recursion_error(tmp_path, name):
    path = tmp_path / name
    path.write_text("v = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SparsesimError, match="nested too deeply") as err:
        LOADERS[name](path)
    assert err.value.file == str(path)


@pytest.mark.parametrize("name", ["workload.toml", "arch.toml", "spec.toml", "table.toml"])
def test_a_folder_or_a_pipe_is_not_read(tmp_path, name):
    folder = tmp_path / "dir" / name
    folder.mkdir(parents=True)
    with pytest.raises(SparsesimError, match="folder"):
        LOADERS[name](folder)
    fifo = tmp_path / name
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    with pytest.raises(SparsesimError, match="not a regular file"):
        LOADERS[name](fifo)


@pytest.mark.parametrize("bad, field", [
    ({"grid": 5}, "grid"), ({"point": [5]}, "point"), ({"point": {"a": 1}}, "point"),
    ({"sweep": "x"}, "sweep"), ({"base": [1]}, "base"),
])
def test_spec_tables_of_the_wrong_type_are_refused(bad, field):
    with pytest.raises(SparsesimError) as err:
        spec_from_dict({"grid": {"pe.kind": ["dense"]}, **bad}, file="s.toml")
    assert err.value.field == field and err.value.file == "s.toml"


@pytest.mark.parametrize("head, field", [
    ({"out": "../x.csv"}, "sweep.out"), ({"out": "/tmp/x.csv"}, "sweep.out"),
    ({"out": "a/../../x.csv"}, "sweep.out"), ({"out": 5}, "sweep.out"),
    ({"name": "../../x"}, "sweep.name"), ({"name": "a/b"}, "sweep.name"),
])
def test_a_spec_cannot_send_its_results_outside_its_folder(tmp_path, head, field):
    with pytest.raises(SparsesimError) as err:
        spec_from_dict({"sweep": head, "grid": {"pe.kind": ["dense"]}}, file="s.toml",
                       root=tmp_path)
    assert err.value.field == field


def test_a_spec_out_inside_its_folder_is_kept(tmp_path):
    spec = spec_from_dict({"sweep": {"out": "sub/r.csv"}, "grid": {"pe.kind": ["dense"]}},
                          root=tmp_path)
    assert spec.out == tmp_path / "sub" / "r.csv"


def test_a_results_file_with_other_columns_is_refused_untouched(tmp_path):
    path = tmp_path / "f.csv"
    original = b"a,b\n1,2\n3,4"  # no trailing newline: the old code cut "3,4" before refusing
    path.write_bytes(original)
    spec = spec_from_dict({"grid": {"pe.kind": ["dense"]}})
    with pytest.raises(SparsesimError, match="other columns"):
        run_sweep(spec, out=path, workers=1, progress=False)
    assert path.read_bytes() == original


def test_a_cut_last_line_of_a_matching_file_is_dropped_and_the_rest_kept(tmp_path):
    path = tmp_path / "r.csv"
    spec = spec_from_dict({"grid": {"pe.kind": ["dense", "skip"]}})
    run_sweep(spec, out=path, workers=1, progress=False)
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    path.write_text(lines[0] + lines[1] + lines[2][:15])  # killed mid-line
    summary = run_sweep(spec, out=path, workers=1, progress=False)
    assert (summary.ran, summary.skipped) == (1, 1)
    again = path.read_text().splitlines()
    assert again[:2] == [lines[0].rstrip("\n"), lines[1].rstrip("\n")] and len(again) == 3


def test_a_second_writer_of_one_results_file_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    first = _Appender(path, ["a", "b"])
    try:
        with pytest.raises(SparsesimError, match="another sweep is writing"):
            _Appender(path, ["a", "b"])
    finally:
        first.close()
    _Appender(path, ["a", "b"]).close()  # the lock ends with its holder


def test_results_paths_that_cannot_be_files_are_refused(tmp_path):
    spec = spec_from_dict({"grid": {"pe.kind": ["dense"]}})
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    for out, match in ((tmp_path / "dir", "folder"), (tmp_path / "file" / "r.csv", "is a file"),
                       (Path("/dev/zero"), "not a regular file")):
        with pytest.raises(SparsesimError, match=match):
            run_sweep(spec, out=out, workers=1, progress=False)
    with pytest.raises(SparsesimError, match="positive number of workers"):
        run_sweep(spec, out=tmp_path / "ok.csv", workers=-3, progress=False)
    assert not (tmp_path / "ok.csv").exists()


def test_a_malformed_results_csv_is_one_error(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('a,b\n"1,2\n')
    with pytest.raises(SparsesimError, match="malformed results CSV") as err:
        read_results(path)
    assert err.value.file == str(path)


def test_the_cli_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "w.toml"
    bad.write_bytes(b"\xff")
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace('name = "tiny"', 'name = "tiny"\nout = "../e.csv"'))
    for args in (["run", "-w", str(bad)], ["sweep", str(spec)]):
        proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", *args],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path.parent / "e.csv").exists()


def test_pool_workers_end_when_the_main_process_is_killed(tmp_path):
    """A worker started by a process that then dies exits by itself (within ~1 s)."""
    script = textwrap.dedent("""
        import os, sys, time
        from sparsesim.sweep import _watch_parent
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _watch_parent(parent)
            time.sleep(30)
            os._exit(0)
        print(pid, flush=True)
        os._exit(0)  # the main process dies without stopping its worker
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    child = int(proc.stdout)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.1)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
