"""Every plot kind renders from real results (a small sweep, a run, a training step, a dynamic
run, the format study) with labelled axes, and the CLI writes PNG, SVG and PDF."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.engine.dynamic import DynamicInputs, synthetic_dynamic
from sparsesim.errors import SparsesimError
from sparsesim.formats.study import crossover_study
from sparsesim.workload.layers import Attention, Conv2d, Linear
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.plot import PLOTS, pareto_mask
from sparsesim.plot.registry import KINDS
from sparsesim.sweep import read_results, run_sweep, spec_from_dict
from sparsesim.engine.training import GradientModel, Training
from sparsesim.workload.network import Workload

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


# Training steps and dynamic pruning: small real simulations, ideal memory.

SMALL = Workload("small", (
    Conv2d("c1", c=3, h=9, w=7, m=8, r=3, s=3, stride=2, padding=1),
    Conv2d("c2", c=8, h=5, w=4, m=16, r=3, s=3, padding=1),
    Linear("fc", in_features=16, out_features=10, tokens=4),
    Attention("att", l=8, e=16, heads=2),
))
SMALL_ARCH = with_overrides(load_arch("default"), {"memory.ideal": True, "pe.kind": "skip",
                                                   "array.rows": 8, "array.cols": 8})


@pytest.fixture(scope="module")
def training_df():
    # top-k activation pruning (forward online rows) and row-pruned gradients (backward ones)
    model = SparsityModel(weight_density=0.5, act_density=0.5, act_prune="topk", seed=1)
    return simulate(SMALL, SMALL_ARCH, sparsity=model,
                    training=Training(GradientModel(0.5, "row"))).df


@pytest.fixture(scope="module")
def dynamic_run():
    dyn = synthetic_dynamic(SMALL, inputs=12, channel_keep=0.6, spread=0.15, seed=2)
    return simulate(SMALL, SMALL_ARCH, dynamic=dyn, sparsity=SparsityModel(act_density=0.5))


def _bar_heights(ax):
    """Per container (one stacked part), the bar heights, in the order drawn."""
    return [np.array([p.get_height() for p in c]) for c in ax.containers]


def test_phases_stack_every_part_of_the_step_per_layer(training_df):
    df = training_df
    fig = PLOTS["phases"](df)
    cycles_ax, energy_ax = labelled(fig)
    parts = ["forward", "forward: online pruning unit", "backward",
             "backward: online pruning unit", "update"]
    assert [c.get_label() for c in cycles_ax.containers] == parts
    layers = list(dict.fromkeys(df["layer"]))
    assert all(len(c) == len(layers) for c in cycles_ax.containers)
    assert [t.get_text() for t in energy_ax.get_xticklabels()] == layers
    per_layer = df.groupby("layer", sort=False)
    stacked = np.sum(_bar_heights(cycles_ax), axis=0)
    assert np.allclose(stacked, per_layer["cycles"].sum().loc[layers] / 1e3)
    stacked = np.sum(_bar_heights(energy_ax), axis=0)
    assert np.allclose(stacked, per_layer["energy_pj"].sum().loc[layers] / 1e6)
    # the backward part holds exactly the backward GEMMs (not the online unit's rows)
    back = df[(df.phase == "backward") & (df["count"] > 0)].groupby("layer")["cycles"].sum()
    got = dict(zip(layers, _bar_heights(cycles_ax)[2] * 1e3))
    assert all(got[name] == pytest.approx(back.get(name, 0)) for name in layers)
    # the legend gives each part's share of the step's cycles
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    share = df[df.phase == "update"]["cycles"].sum() / df["cycles"].sum()
    assert legend[-1].startswith("update: ") and "% of cycles" in legend[-1]
    assert float(legend[-1].split()[1]) == pytest.approx(100 * share, abs=0.05)


def test_phases_of_results_without_a_phase_name_the_column(run_df):
    with pytest.raises(SparsesimError, match="phase") as err:
        PLOTS["phases"](run_df.drop(columns="phase"))
    assert err.value.field == "phase"


def test_layers_of_a_training_step_sum_the_phases_and_say_so(training_df):
    fig = PLOTS["layers"](training_df)
    assert "forward + backward + update summed per layer" in fig._suptitle.get_text()
    ax = labelled(fig)[0]
    per_layer = training_df.groupby("layer", sort=False)["cycles"].sum()
    assert np.allclose(np.sum(_bar_heights(ax), axis=0), per_layer.to_numpy() / 1e3)
    # an inference run has one phase: no note
    assert "summed" not in PLOTS["layers"](training_df[training_df.phase == "forward"]
                                           )._suptitle.get_text()


def test_latency_marks_the_percentiles_of_the_per_input_sums(dynamic_run, tmp_path):
    df = dynamic_run.df
    csv = tmp_path / "dyn.csv"
    df.to_csv(csv, index=False)
    df = pd.read_csv(csv)  # what `sparsesim run --dynamic -o` writes
    static = dynamic_run.static.totals["seconds"]
    fig = PLOTS["latency"](df, static_seconds=static)
    dist, split = labelled(fig)
    per_input = df.groupby("input")["seconds"].sum().to_numpy() * 1e6  # µs at this size
    assert "(µs)" in dist.get_xlabel()
    want = {"mean": per_input.mean(), "p50": np.percentile(per_input, 50),
            "p99": np.percentile(per_input, 99), "static": static * 1e6}
    lines = {line.get_gid(): line.get_xdata()[0] for line in dist.lines}
    assert lines.keys() == want.keys()
    assert all(lines[k] == pytest.approx(v) for k, v in want.items())
    texts = {t.get_gid(): t.get_text() for t in dist.texts}
    for k, v in want.items():  # "p50 0.904 µs": the value to 4 significant digits
        name, value, unit = texts[k].split()
        assert (name, unit) == (k, "µs") and float(value) == pytest.approx(v, rel=1e-3)
    assert sum(p.get_height() for p in dist.patches) == 12  # every input in the histogram
    assert np.allclose(want["p50"], dynamic_run.summary.set_index("metric").loc["seconds", "p50"]
                       * 1e6)
    # second panel: per input, layers + gates, sorted by latency
    layers, gates = _bar_heights(split)
    assert len(layers) == len(gates) == 12
    assert np.allclose(layers + gates, np.sort(per_input))
    # the gates are those DynamicResult counts (gate GEMVs and their top-k rankings)
    p = dynamic_run.per_input
    assert gates.sum() > 0
    assert gates.sum() / (layers + gates).sum() == pytest.approx(p["gate_cycles"].sum()
                                                                 / p["cycles"].sum())


def test_latency_gates_are_the_gate_rows_not_top_k_activation_pruning():
    # top-k activation pruning runs the online unit's top-k beside the gates' own rankings:
    # the rows' kind tells them apart (a name could not: both are online_topk)
    dyn = synthetic_dynamic(SMALL, inputs=4, channel_keep=0.6, spread=0.15, seed=2)
    r = simulate(SMALL, SMALL_ARCH, dynamic=dyn,
                 sparsity=SparsityModel(act_density=0.5, act_prune="topk", seed=1))
    df = r.df
    topk = df["gemm"] == "online_topk"
    assert (topk & (df["kind"] == "online")).any() and (topk & (df["kind"] == "gate")).any()
    layers, gates = _bar_heights(labelled(PLOTS["latency"](df))[1])
    p = r.per_input
    want = p.sort_values("seconds")["gate_cycles"].to_numpy() / SMALL_ARCH.clock_hz * 1e6
    assert np.allclose(gates, want) and gates.sum() > 0


def test_latency_without_gates_is_one_panel_and_needs_inputs(run_df):
    r = simulate(SMALL, SMALL_ARCH, dynamic=DynamicInputs(3, {}))
    fig = PLOTS["latency"](r.df)
    assert len(labelled(fig)) == 1
    with pytest.raises(SparsesimError, match="input") as err:
        PLOTS["latency"](run_df)
    assert err.value.field == "input"


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_every_registered_kind_is_a_public_figure_function(kind):
    import sparsesim.plot

    func = kind.load()
    assert PLOTS[kind.name] is func is getattr(sparsesim.plot, kind.function)
    assert func.__module__ == f"sparsesim.plot.{kind.module}" and func.__doc__
    # a module named as its function would hide the function once the module is imported
    assert kind.module not in sparsesim.plot.__all__
