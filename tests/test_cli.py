"""The `sparsesim` command as a user runs it: output, files, and one-line errors (exit 2)."""

import io
import subprocess
import sys

import pandas as pd
import pytest

from conftest import TINY_TOML  # the suite's tiny two-layer workload

REQUIRED_COLUMNS = ["network", "layer", "op", "gemm", "M", "K", "N", "dataflow", "rows", "cols",
                    "folds", "dense_macs", "cycles", "compute_cycles", "stall_cycles",
                    "utilization", "seconds"]


def sparsesim(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sparsesim.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_run_default_is_resnet18_on_default_arch(tmp_path):
    out = tmp_path / "r18.csv"
    proc = sparsesim("run", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "resnet18 on default: 32×32 os" in proc.stdout
    assert "total" in proc.stdout
    df = pd.read_csv(out)
    assert list(df.columns[: len(REQUIRED_COLUMNS)]) != [] and set(REQUIRED_COLUMNS) <= set(df.columns)
    assert (df["network"] == "resnet18").all()
    assert (df["cycles"] == df["compute_cycles"] + df["stall_cycles"]).all()
    assert df["dense_macs"].sum() == pytest.approx(1.814e9, rel=2e-3)
    assert ((df["utilization"] > 0) & (df["utilization"] <= 1)).all()


def test_run_formats_and_listings():
    csv = sparsesim("run", "-w", "resnet18", "-a", "tpu_like", "--format", "csv")
    assert csv.returncode == 0 and csv.stdout.startswith("network,layer,op,gemm")
    assert sparsesim("archs").stdout.count("\n") >= 5
    assert "resnet50" in sparsesim("workloads").stdout
    for args in ([], ["run", "--help"], ["archs", "--help"], ["workloads", "--help"]):
        proc = sparsesim(*args, "--help") if not args else sparsesim(*args)
        assert proc.returncode == 0 and "usage: sparsesim" in proc.stdout


CONV_OK = TINY_TOML[: TINY_TOML.index('[[layer]]\nname = "fc"')]  # its conv layer alone


@pytest.mark.parametrize(
    ("text", "suffix", "needles"),
    [
        ("[network\nname = 't'", ".toml", ["bad.toml", "malformed TOML"]),
        (CONV_OK.replace("m = 8", "m = 8\nfoo = 1"), ".toml", ["layer 'c1'", "field 'foo'"]),
        (CONV_OK.replace("h = 8", "h = 0"), ".toml", ["layer 'c1'", "field 'h'"]),
        (CONV_OK.replace("m = 8", "m = -8"), ".toml", ["layer 'c1'", "field 'm'"]),
        (CONV_OK.replace("r = 3", "r = 9"), ".toml", ["layer 'c1'", "field 'h'", "output size"]),
        (CONV_OK.replace("m = 8", "m = 8\ngroups = 3"), ".toml", ["layer 'c1'", "field 'c'",
                                                                  "divisible"]),
        (CONV_OK.replace('op = "conv2d"', 'op = "conv3d"'), ".toml", ["field 'op'"]),
        (CONV_OK.replace("c = 4\n", ""), ".toml", ["layer 'c1'", "field 'c'", "missing"]),
        ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
         "Num Filter, Strides,\nconv1, 8, 8, 3, 3, x, 4, 1,\n", ".csv",
         ["bad.csv", "layer 'conv1'", "field 'channels'"]),
        ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
         "Num Filter, Strides,\nconv1, 8, 8, 3, 3, 4, 0, 1,\n", ".csv",
         ["bad.csv", "layer 'conv1'", "field 'm'"]),
        ("Layer, M, N, K,\nfc1, 4, 5,\n", ".csv", ["bad.csv", "layer 'fc1'", "field 'k'"]),
        ("Layer, M, N, K,\nfc1, 4, 5, 6, 2:4,\n", ".csv", ["layer 'fc1'", "field 'sparsity'"]),
        ("hello, world\n", ".csv", ["bad.csv", "header"]),
    ],
)
def test_bad_workload_is_one_line_exit_2(tmp_path, text, suffix, needles):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    proc = sparsesim("run", "-w", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_arch_is_one_line_exit_2(tmp_path):
    path = tmp_path / "arch.toml"
    path.write_text("[array]\ncols = 0\n")
    proc = sparsesim("run", "-a", str(path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "arch.toml" in proc.stderr and "array.cols" in proc.stderr


def test_missing_files_are_user_errors(tmp_path):
    for flag in ("-w", "-a"):
        proc = sparsesim("run", flag, str(tmp_path / "nope.toml"))
        assert proc.returncode == 2 and "nope.toml" in proc.stderr


def test_sparse_run_from_the_command_line(tmp_path):
    out = tmp_path / "skip.csv"
    proc = sparsesim("run", "--set", "pe.kind=skip", "--set", "pe.sync=row", "--weight-density",
                     "0.3", "--act-density", "0.5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "skipping PEs (both zeros, row sync)" in proc.stdout
    skip = pd.read_csv(out)
    assert (skip["effectual_macs"] < skip["dense_macs"]).all()
    base = sparsesim("run", "--format", "csv")
    base_df = pd.read_csv(io.StringIO(base.stdout))
    assert (skip["cycles"].to_numpy() <= base_df["cycles"].to_numpy()).all()
    assert skip["cycles"].sum() < base_df["cycles"].sum()


def test_sparse_option_errors_are_one_line():
    for args, needle in ((["--weight-density", "1.5"], "--weight-density"),
                         (["--set", "pe.kind=warp"], "pe.kind"),
                         (["--set", "pe.kind=nm", "-w", "bert_base_seq128"],
                          "every layer would run densely"),
                         (["--set", "nope"], "--set")):
        proc = sparsesim("run", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr


def test_formats_subcommand():
    proc = sparsesim("formats", "--elements", "20000", "--bits", "8")
    assert proc.returncode == 0, proc.stderr
    assert "8-bit values" in proc.stdout and "bitmap" in proc.stdout and "csr" in proc.stdout


def test_trace_of_another_network_is_refused(tmp_path):
    from sparsesim.sparsity.masks import SparsityModel
    from sparsesim.engine.inference import draw_trace
    from sparsesim.workload.network import load_workload

    path = tmp_path / "r18.npz"
    draw_trace(load_workload("resnet18"), SparsityModel(weight_density=0.5)).save(path)
    ok = sparsesim("run", "--trace", str(path), "-w", "resnet18", "--format", "csv")
    assert ok.returncode == 0, ok.stderr
    bad = sparsesim("run", "--trace", str(path), "-w", "resnet50")
    assert bad.returncode == 2 and "r18.npz" in bad.stderr and "network" in bad.stderr


def test_every_plot_kind_is_offered_by_the_cli():
    from sparsesim.cli import PLOT_KINDS
    from sparsesim.plot import PLOTS
    from sparsesim.plot.registry import KINDS

    assert PLOT_KINDS == tuple(PLOTS)  # same kinds, same order
    description = " ".join(sparsesim("plot", "--help").stdout.split())
    for kind in KINDS.values():  # every kind named in the help with the results it draws
        assert f"'{kind.name}'" in description and f"({kind.results})" in description


def test_the_command_starts_without_matplotlib():
    """The plot kinds come from the registry: matplotlib is imported only to draw."""
    proc = subprocess.run([sys.executable, "-c", "import sys, sparsesim.cli; "
                           "sparsesim.cli.build_parser(); print('matplotlib' in sys.modules)"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_every_subcommand_has_add_parser_and_run():
    from sparsesim.cli import COMMANDS, build_parser

    for command in COMMANDS:
        assert callable(command.add_parser) and command.__doc__
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == ["run", "sweep", "plot", "formats", "prune", "import",
                                 "validate", "archs", "workloads"]
    for name, parser in sub.choices.items():
        assert callable(parser.get_default("func")), name
