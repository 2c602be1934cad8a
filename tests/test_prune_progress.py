"""Progress in `sparsesim prune` (issue 18 item 3): the pruning front-end reports to the factory
its caller passes — each weight tensor drawn, scored and selected; calibration passes; every
training epoch of a digits schedule (fine-tuning levels, IMP rounds) — and never prints.
Totals are counted here from the workload and the schedule, not read from the code."""

import io
import os
import pty
import subprocess
import sys

import numpy as np
import pytest

from sparsesim.progress import DELAY_ENV, Progress
from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.workload.network import load_workload
from terminal import stderr_on_a_terminal as _terminal


class Counting:
    """A progress factory that records the bars it makes (real bars, on a non-terminal)."""

    def __init__(self):
        self.bars = []

    def __call__(self, total, what):
        bar = Progress(total, what, stream=io.StringIO())
        self.bars.append(bar)
        return bar


def tensors(workload, skip=()):
    return sum(len(layer.weight_shapes()) for layer in workload.layers
               if layer.name not in skip)


@pytest.mark.parametrize("spec", [
    PruneSpec(sparsity=0.5),
    PruneSpec(sparsity=0.5, scope="global"),
    PruneSpec(sparsity=0.5, compare="row"),
    PruneSpec(granularity="nm", nm=(2, 4)),
    PruneSpec(granularity="filter", sparsity=0.25),
], ids=["layer", "global", "row", "nm", "filter"])
def test_synthetic_pruning_reports_every_tensor_drawn_scored_selected(spec):
    workload = load_workload("resnet18")
    n = tensors(workload)  # 20 convolutions and the classifier's linear: 21
    counting = Counting()
    trace = prune_workload(workload, spec, progress=counting)
    [bar] = counting.bars
    assert (bar.total, bar.done, bar.what) == (3 * n, 3 * n,
                                               "weight tensors drawn, scored, selected")
    quiet = prune_workload(workload, spec)  # the bar changes nothing it reports on
    assert trace.masks.keys() == quiet.masks.keys()
    for name, masks in trace.masks.items():
        assert all(np.array_equal(m, quiet.masks[name].weights[t])
                   for t, m in masks.weights.items())


def test_skipped_layers_are_drawn_but_not_scored(tmp_path):
    workload = load_workload("resnet18")
    first = workload.layers[0].name
    counting = Counting()
    prune_workload(workload, PruneSpec(sparsity=0.5, skip=(first,)), progress=counting)
    [bar] = counting.bars
    n = tensors(workload)
    assert bar.total == bar.done == n + 2 * (n - 1)


def test_shape_pruning_has_no_selection_bar():
    counting = Counting()
    prune_workload(load_workload("minilm_l6_seq128"), PruneSpec(granularity="token",
                                                                sparsity=0.5),
                   progress=counting)
    assert counting.bars == []


def test_prune_shows_progress_on_a_terminal_and_quiet_silences_it(tmp_path):
    n = 3 * tensors(load_workload("resnet18"))
    args = ("prune", "-w", "resnet18", "--sparsity", "0.5", "-o", str(tmp_path / "t.npz"))
    assert f"{n}/{n} weight tensors drawn, scored, selected" in _terminal(*args)
    assert "weight tensors" not in _terminal(*args, "--quiet")
    piped = subprocess.run([sys.executable, "-m", "sparsesim.cli", *args], capture_output=True,
                           text=True, timeout=600)
    assert piped.returncode == 0 and "█" not in piped.stderr


# --- the PyTorch pipelines ---------------------------------------------------------------------

def test_calibration_passes_and_tensor_selection_are_reported():
    torch = pytest.importorskip("torch")
    from sparsesim.prune.torch import models as M
    from sparsesim.prune.torch.capture import TorchNet

    data = M.digits_data(0)
    x, y = data.x_train[:8], data.y_train[:8]
    net = TorchNet(M.DigitsCNN().eval(), x)

    def loss(out, part):
        return torch.nn.functional.cross_entropy(out, y[part], reduction="sum")

    counting = Counting()
    cal = net.calibrate(loss=loss, micro_batch=3, masks=False, progress=counting)
    [passes] = counting.bars  # the forward, then ceil(8 / 3) = 3 backward micro-batches
    assert (passes.total, passes.done, passes.what) == (4, 4, "calibration passes")
    net.prune(PruneSpec(criterion="taylor", sparsity=0.5), cal, progress=counting)
    selection = counting.bars[1]
    n = sum(len(b.tensors) for b in net.bound.values())
    assert (selection.total, selection.done) == (2 * n, 2 * n)
    assert selection.what == "weight tensors scored, selected"


@pytest.mark.parametrize(("schedule", "steps", "expected"), [
    ("oneshot", 1, 3),          # the first training only
    ("iterative", 2, 3 + 2 * 1),  # + each level's fine-tuning epoch
    ("imp", 2, 3 + 2 * 3),      # + each IMP round's retraining for all epochs
])
def test_digits_schedules_report_every_training_epoch(schedule, steps, expected):
    pytest.importorskip("torch")
    from sparsesim.prune.torch import pipelines

    counting = Counting()
    spec = PruneSpec(sparsity=0.5)
    pipelines.run_digits(spec, schedule=schedule, steps=steps, epochs=3, finetune_epochs=1,
                         calib=32, progress=counting)
    [bar] = counting.bars
    assert bar.total == bar.done == expected
    if schedule == "imp":
        assert bar.what == "training epochs (3 + 2 IMP rounds × 3)"
