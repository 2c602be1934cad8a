"""Figures fit for a paper (issue 18 item 4): every plot kind, drawn on results the project
itself writes (a small sweep, runs, a training step, a dynamic run, the format study) at two
figure sizes, keeps every tick label, axis label, title, legend and annotation inside the
figure and apart from every other text; and every axis that carries data has at least two
labelled ticks (a log axis spanning less than a decade once had one, or none).

The boxes are the drawn artists' window extents (pixels, after a full draw), as matplotlib
itself places them; a legend counts as one box (its entries are laid out by matplotlib)."""

import itertools

import matplotlib
import pytest

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.engine.dynamic import synthetic_dynamic
from sparsesim.engine.training import GradientModel, Training
from sparsesim.formats.study import crossover_study
from sparsesim.plot import PLOTS
from sparsesim.plot.registry import KINDS
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.sweep import read_results, run_sweep, spec_from_dict
from sparsesim.workload.layers import Attention, Conv2d, Linear
from sparsesim.workload.network import Workload

matplotlib.use("Agg")

SWEEP = {  # the README's job 2 in small: sparsity × PE kind × weight format
    "sweep": {"name": "layout"},
    "base": {"workload": "resnet18", "sparsity.act_density": 0.5},
    "grid": {"sparsity.weight_density": [1.0, 0.5, 0.1], "pe.kind": ["dense", "skip"],
             "memory.format_w": ["dense", "bitmap"]},
}
SMALL = Workload("small", (
    Conv2d("c1", c=3, h=9, w=7, m=8, r=3, s=3, stride=2, padding=1),
    Conv2d("c2", c=8, h=5, w=4, m=16, r=3, s=3, padding=1),
    Linear("fc", in_features=16, out_features=10, tokens=4),
    Attention("att", l=8, e=16, heads=2),
))
SMALL_ARCH = with_overrides(load_arch("default"), {"memory.ideal": True, "pe.kind": "skip",
                                                   "array.rows": 8, "array.cols": 8})
SCALES = (1.0, 0.75)
"""Each figure at the size its function picks, and at three quarters of it."""


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """kind -> a function drawing it on real results."""
    out = tmp_path_factory.mktemp("sweep") / "layout.csv"
    run_sweep(spec_from_dict(SWEEP), out=out, workers=1, progress=False)
    sweep = read_results(out)
    auto = with_overrides(load_arch("default"), {"pe.kind": "skip", "memory.format_w": "auto",
                                                 "memory.format_a": "auto"})
    run = simulate("resnet18", auto, sparsity=SparsityModel(weight_density=0.3,
                                                            act_density=0.5)).df
    training = simulate(SMALL, SMALL_ARCH, training=Training(GradientModel(0.5, "row")),
                        sparsity=SparsityModel(weight_density=0.5, act_density=0.5,
                                               act_prune="topk", seed=1)).df
    dynamic = simulate(SMALL, SMALL_ARCH, dynamic=synthetic_dynamic(
        SMALL, inputs=12, channel_keep=0.6, spread=0.15, seed=2),
        sparsity=SparsityModel(act_density=0.5))
    study = crossover_study(n_elements=20_000, value_bits=(8,), verify=False)
    accuracy = sweep.assign(accuracy=1 - 0.2 * (1 - sweep["sparsity.weight_density"]) ** 2,
                            trace=sweep["point_id"])
    default = load_arch("default")
    draw = {
        "formats": lambda: PLOTS["formats"](study),
        "sparsity": lambda: PLOTS["sparsity"](sweep),
        "layers": lambda: PLOTS["layers"](run),
        "pareto": lambda: PLOTS["pareto"](sweep),
        "roofline": lambda: PLOTS["roofline"](
            run, peak_macs_per_cycle=default.array.rows * default.array.cols,
            dram_bytes_per_cycle=default.memory.dram_bytes_per_cycle),
        "roofline-tpu_v1": lambda: PLOTS["roofline"](  # the ridge right of every layer
            run, peak_macs_per_cycle=256 * 256, dram_bytes_per_cycle=34e9 / 700e6),
        "accuracy": lambda: PLOTS["accuracy"](accuracy),
        "phases": lambda: PLOTS["phases"](training),
        "latency": lambda: PLOTS["latency"](dynamic.df,
                                            static_seconds=dynamic.static.totals["seconds"]),
        "formats-chosen": lambda: PLOTS["formats-chosen"](run),
    }
    assert set(draw) >= set(KINDS), f"kinds without a layout case: {set(KINDS) - set(draw)}"
    return {k: v for k, v in draw.items() if k.split("-tpu")[0] in KINDS}


def _texts(fig, renderer):
    """(name, box) of every visible, non-empty text, legends as one box each."""
    out = []
    legends = list(fig.legends)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis, side in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            for t in _tick_labels(axis):
                out.append((f"{side} tick {t.get_text()!r}", t))
            out.append((f"{side} label", axis.label))
            out.append((f"{side} offset", axis.get_offset_text()))
        for t in (ax.title, ax._left_title, ax._right_title, *ax.texts):
            out.append((f"text {t.get_text()!r}", t))
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for t in (fig._suptitle, fig._supxlabel, fig._supylabel, *fig.texts):
        if t is not None:
            out.append((f"figure text {t.get_text()!r}", t))
    unique = {id(t): (name, t) for name, t in out}.values()  # fig.texts holds the suptitle
    boxes = [(name, t.get_window_extent(renderer)) for name, t in unique
             if t.get_visible() and t.get_text().strip()]
    boxes += [(f"legend {i}", leg.get_window_extent(renderer))
              for i, leg in enumerate(legends) if leg.get_visible()]
    return boxes


def _tick_labels(axis):
    """The tick labels drawn: ticks inside the view interval (matplotlib keeps Text objects
    for ticks beyond it, which it does not draw), both sides where shown."""
    out = []
    for tick in axis._update_ticks():  # the ticks matplotlib draws (within the view)
        out += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    return out


def _problems(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    boxes = _texts(fig, renderer)
    bad = [f"{name} clipped: {box.bounds} outside {page.bounds}" for name, box in boxes
           if box.x0 < page.x0 - 1 or box.y0 < page.y0 - 1 or box.x1 > page.x1 + 1
           or box.y1 > page.y1 + 1]
    for (n1, b1), (n2, b2) in itertools.combinations(boxes, 2):
        overlap_w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        overlap_h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if overlap_w > 1 and overlap_h > 1:
            bad.append(f"{n1} overlaps {n2}")
    for i, ax in enumerate(fig.axes):
        if not (ax.get_visible() and ax.has_data()):
            continue
        for side in "xy":
            # panels sharing an axis label its ticks once (the bottom or left panel)
            group = getattr(ax, f"get_shared_{side}_axes")().get_siblings(ax)
            labels = [t.get_text() for a in group for t in _tick_labels(getattr(a, f"{side}axis"))
                      if t.get_text().strip()]
            if len(set(labels)) < 2:
                bad.append(f"axes {i} {side}: {len(set(labels))} labelled tick(s) {labels}")
    return bad


@pytest.mark.parametrize("kind", [*KINDS, "roofline-tpu_v1"])
@pytest.mark.parametrize("scale", SCALES)
def test_no_text_is_clipped_or_overlapping(figures, kind, scale):
    fig = figures[kind]()
    w, h = fig.get_size_inches()
    fig.set_size_inches(w * scale, h * scale)
    problems = _problems(fig)
    matplotlib.pyplot.close(fig)
    assert not problems, f"{kind} at {w * scale:.2f}×{h * scale:.2f} in:\n" + "\n".join(problems)
