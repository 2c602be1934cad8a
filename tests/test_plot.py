"""Every plot kind renders from real results (a small sweep, a run, the format study) with
labelled axes, and the CLI writes PNG, SVG and PDF."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sparsesim import simulate
from sparsesim.arch import load_arch, with_overrides
from sparsesim.format_study import crossover_study
from sparsesim.masks import SparsityModel
from sparsesim.plot import PLOTS, pareto_mask
from sparsesim.sweep import read_results, run_sweep, spec_from_dict

SPEC = {
    "sweep": {"name": "p"},
    "base": {"workload": "resnet18", "sparsity.act_density": 0.5},
    "grid": {"sparsity.weight_density": [1.0, 0.3], "pe.kind": ["dense", "skip"],
             "memory.format_w": ["dense", "bitmap"]},
}


@pytest.fixture(scope="module")
def sweep_df(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "p.csv"
    run_sweep(spec_from_dict(SPEC), out=out, workers=2, progress=False)
    return read_results(out)


@pytest.fixture(scope="module")
def run_df():
    arch = with_overrides(load_arch("default"), {"pe.kind": "skip"})
    return simulate("resnet18", arch, sparsity=SparsityModel(weight_density=0.3)).df


def labelled(fig):
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert axes
    for ax in axes:
        assert ax.get_ylabel()
    assert axes[-1].get_xlabel()  # panels sharing an x axis label it once, at the bottom
    return axes


def test_sparsity_and_pareto_from_a_sweep(sweep_df):
    fig = PLOTS["sparsity"](sweep_df)
    axes = labelled(fig)
    assert "latency (ms)" in axes[0].get_ylabel() and "energy" in axes[1].get_ylabel()
    assert len(axes[0].lines) == 4  # pe.kind × format_w
    fig = PLOTS["pareto"](sweep_df)
    assert len(labelled(fig)) == 2  # one panel per weight density


def test_layers_and_roofline_from_a_run(run_df):
    axes = labelled(PLOTS["layers"](run_df))
    assert len(axes) == 2 and "cycles" in axes[0].get_ylabel()
    arch = load_arch("default")
    axes = labelled(PLOTS["roofline"](run_df, peak_macs_per_cycle=1024,
                                      dram_bytes_per_cycle=arch.memory.dram_bytes_per_cycle))
    assert "operational intensity" in axes[0].get_xlabel()


def test_formats_and_accuracy():
    labelled(PLOTS["formats"](crossover_study(n_elements=20_000, value_bits=(8,), verify=False)))
    df = pd.DataFrame({"trace": ["a", "b", "c"], "seconds": [1e-3, 2e-3, 3e-3],
                       "energy_pj": [1e9, 2e9, 3e9], "accuracy": [0.9, 0.95, 0.97]})
    labelled(PLOTS["accuracy"](df))


def test_pareto_mask_by_hand():
    x = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    y = np.array([3.0, 2.0, 1.0, 3.0, 3.0])
    assert list(pareto_mask(x, y)) == [True, True, True, False, True]


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_plot_command_writes_each_format(tmp_path, suffix, run_df):
    csv = tmp_path / "run.csv"
    run_df.to_csv(csv, index=False)
    out = tmp_path / f"layers.{suffix}"
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "plot", "layers", str(csv),
                           "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000


def test_plot_of_the_wrong_results_is_one_line(tmp_path, run_df):
    csv = tmp_path / "run.csv"
    run_df.to_csv(csv, index=False)
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "plot", "accuracy", str(csv)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "run.csv" in proc.stderr and "accuracy" in proc.stderr
