"""One progress mechanism (sparsesim.progress): a bar on stderr only when it is a terminal and
not --quiet; the library reports to whatever its caller passes (it never prints itself), once
per unit of long work — dynamic runs, validation check groups, sweep points."""

import io
import os
import pty
import subprocess
import sys

from sparsesim import simulate
from sparsesim.engine.dynamic import synthetic_dynamic
from sparsesim.errors import SparsesimError
from sparsesim.progress import DELAY_ENV, Progress, duration
from terminal import stderr_on_a_terminal as _stderr_on_a_terminal
from sparsesim.validation import run_checks
from sparsesim.workload.network import load_workload

class Tty(io.StringIO):
    def isatty(self):
        return True


class Counting:
    """A progress factory that records what it is told (the real calls, nothing faked)."""

    def __init__(self):
        self.bars = []

    def __call__(self, total, what):
        bar = Progress(total, what, stream=io.StringIO())  # not a tty: draws nothing
        self.bars.append(bar)
        return bar


def test_the_bar_draws_on_a_terminal_only_and_not_when_quiet():
    for stream, quiet, drawn in ((Tty(), False, True), (Tty(), True, False),
                                 (io.StringIO(), False, False)):
        bar = Progress(3, "inputs", stream=stream, quiet=quiet, delay=0)
        for _ in range(3):
            bar.update()
        text = stream.getvalue()
        assert bool(text) == drawn
        if drawn:  # the last draw ends the line; earlier ones return to its start
            assert text.endswith("\n") and "3/3 inputs" in text.splitlines()[-1]
            assert "failed" not in text


def test_failures_are_counted_and_shown():
    stream = Tty()
    bar = Progress(2, "points", stream=stream, delay=0)
    bar.update(ok=False)
    bar.update()
    assert (bar.done, bar.failed) == (2, 1) and "1 failed" in stream.getvalue()


def test_quick_work_shows_nothing():
    """The first draw comes ``delay`` s in: a run done sooner leaves the terminal alone."""
    stream = Tty()
    bar = Progress(3, "layers", stream=stream, delay=60)
    for _ in range(3):
        bar.update()
    assert stream.getvalue() == ""


def test_a_static_run_reports_each_layer(tiny):
    counting = Counting()
    result = simulate(load_workload(str(tiny)), "default", progress=counting)
    [bar] = counting.bars
    assert (bar.total, bar.done, bar.what) == (2, 2, "layers")
    assert list(result.layers["layer"]) == ["c1", "fc"]


def test_duration_text():
    assert [duration(s) for s in (0, 59.4, 75, float("inf"))] == ["0s", "59s", "1m15s", "?"]


def test_a_dynamic_run_reports_the_static_run_and_each_input(tiny):
    workload = load_workload(str(tiny))
    counting = Counting()
    result = simulate(workload, "default", dynamic=synthetic_dynamic(workload, inputs=5),
                      progress=counting)
    [bar] = counting.bars
    assert (bar.total, bar.done) == (6, 6)  # 1 static + 5 inputs
    assert result.df["input"].nunique() == 5


def test_validation_reports_each_check_group(tmp_path):
    counting = Counting()
    checked = run_checks(fast=True, out_dir=tmp_path, only=["formulas"], progress=counting)
    [bar] = counting.bars
    assert bar.total == bar.done >= 1 and bar.failed == 0 and checked.passed


def test_run_dynamic_shows_progress_on_a_terminal_and_quiet_silences_it(tmp_path):
    args = ("run", "-w", "resnet18", "--dynamic", "8", "--channel-keep", "0.6",
            "--format", "csv")
    assert "9/9 runs" in _stderr_on_a_terminal(*args)
    assert "runs" not in _stderr_on_a_terminal(*args, "--quiet")
    piped = subprocess.run([sys.executable, "-m", "sparsesim.cli", *args],
                           capture_output=True, text=True, timeout=600)
    assert piped.returncode == 0 and "█" not in piped.stderr  # not a terminal: no bar


def test_the_delay_comes_from_the_environment_and_a_bad_one_is_refused(monkeypatch):
    def drawn():
        stream = Tty()
        bar = Progress(2, "inputs", stream=stream)
        bar.update()
        bar.update()
        return stream.getvalue()

    assert drawn() == ""  # default 1 s: quick work shows nothing
    monkeypatch.setenv(DELAY_ENV, "0")
    assert "2/2 inputs" in drawn()
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(DELAY_ENV, bad)
        try:
            drawn()
        except SparsesimError as e:
            assert e.field == DELAY_ENV and bad in str(e)
        else:
            raise AssertionError(f"{bad!r} accepted")


def test_a_bad_delay_is_one_line_and_exit_2():
    env = {**os.environ, DELAY_ENV: "soon"}
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "run", "-w", "resnet18",
                           "--dynamic", "2"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 2 and DELAY_ENV in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
