"""``--sim-batch N``: the calibration batch (statistics) decoupled from the simulated batch (the
first N samples: their shapes and masks), through capture() and the real commands."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsesim.cli import main  # noqa: E402
from sparsesim.errors import SparsesimError  # noqa: E402
from sparsesim.prune.spec import PruneSpec  # noqa: E402
from sparsesim.prune.torch.export import capture, run  # noqa: E402
from sparsesim.sparsity.trace import load_trace  # noqa: E402
from sparsesim.workload.layers import Conv2d, Linear  # noqa: E402

B, N = 8, 2


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, stride=(2, 1))
        self.fc = nn.Linear(4 * 3 * 6, 5)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x * scale)).flatten(1))


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A calibration batch whose first N samples differ from the rest: channel 0 is large
    there, channels 1 and 2 large in the others (so Wanda's norms over N and over B rank the
    conv's weights differently). ``scale`` ([1, 3, 1, 1]) is not on the batch axis."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, 3, 6, 6, generator=g)
    x[:N, 0] *= 30
    x[N:, 1:] *= 30
    return x, torch.ones(1, 3, 1, 1)


def test_the_workload_and_masks_are_the_first_n_samples():
    torch.manual_seed(0)
    model = Net()
    x, scale = inputs()
    cut = capture(model, (x, scale), sim_batch=N)
    ref = capture(model, (x[:N], scale))  # the first N samples as the whole batch
    assert cut.workload.layers == ref.workload.layers
    conv, fc = cut.workload.layers
    assert isinstance(conv, Conv2d) and conv.n == N and (conv.e, conv.f) == (3, 6)
    assert fc == Linear("fc", 72, 5, tokens=N, bias=True)
    t_cut, t_ref = cut.trace(), ref.trace()
    for name in ("conv", "fc"):
        assert np.array_equal(t_cut.masks[name].inputs, t_ref.masks[name].inputs)
        assert t_cut.masks[name].inputs.shape[0] == N
    assert cut.coverage.captured_macs == cut.coverage.total_macs == (
        N * 4 * 27 * 18 + N * 72 * 5)
    meta = t_cut.meta["calibration"]
    assert meta["batch"] == B and meta["sim_batch"] == N
    assert meta["masks"] == f"the first {N} of the {B} calibration samples"


def _wanda_masks(cap) -> np.ndarray:
    spec = PruneSpec(criterion="wanda", granularity="unstructured", sparsity=0.5)
    return cap.trace(spec).masks["conv"].weights["w"]


def test_wanda_statistics_come_from_the_whole_calibration_batch():
    torch.manual_seed(0)
    model = Net()
    x, scale = inputs()
    cut = capture(model, (x, scale), sim_batch=N, norms=True)
    full = capture(model, (x, scale), norms=True)  # norms over all B
    few = capture(model, (x[:N], scale), norms=True)  # norms over the first N only
    for name in ("conv", "fc"):
        np.testing.assert_allclose(cut.first.norms[name], full.first.norms[name], rtol=1e-6)
    assert np.array_equal(_wanda_masks(cut), _wanda_masks(full))
    assert not np.array_equal(_wanda_masks(cut), _wanda_masks(few))  # the batches differ
    # the simulated layers are still at batch N
    assert cut.workload.layers[0].n == N
    assert cut.trace().meta["calibration"]["statistics"].startswith(f"all {B} samples")


def test_the_statistics_pass_keeps_no_masks():
    torch.manual_seed(0)
    cap = capture(Net(), inputs())
    stats = run(cap.graph, cap.args, cap.kwargs, norms=True, record=False)
    assert stats.inputs == {} and stats.internal == {} and stats.weights == {}
    assert set(stats.norms) == {"conv", "fc"}


@pytest.mark.parametrize("n", [0, B + 1])
def test_bad_sim_batch_is_one_error(n):
    with pytest.raises(SparsesimError) as err:
        capture(Net(), inputs(), sim_batch=n)
    assert err.value.field == "--sim-batch" and f"[1, {B}]" in str(err.value)


MODEL = '''
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 10, 3))
    return net, torch.randn(16, 4, 10)
'''


def test_cli_prune_and_import_take_sim_batch(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_text(MODEL)
    out = tmp_path / "p.npz"
    assert main(["prune", "--model", f"{path}:make", "--method", "wanda", "--sim-batch", "3",
                 "-o", str(out)]) == 0
    trace = load_trace(out)
    conv = trace.workload.layers[0]
    assert conv.n == 3 and conv.padding == (0, 1)
    assert trace.masks[conv.name].inputs.shape == (3, 4, 1, 10)
    assert trace.meta["calibration"]["batch"] == 16
    imported = tmp_path / "i.npz"
    assert main(["import", "--model", f"{path}:make", "--sim-batch", "1", "-o",
                 str(imported)]) == 0
    assert load_trace(imported).workload.layers[-1].tokens == 1
    assert main(["run", "--trace", str(imported)]) == 0
    capsys.readouterr()
    assert main(["prune", "--model", f"{path}:make", "--sim-batch", "17", "-o",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert "--sim-batch" in err and "[1, 16]" in err and err.count("\n") == 1
    assert main(["prune", "--sim-batch", "2", "-o", str(out)]) == 2
    assert "FILE.py:FACTORY" in capsys.readouterr().err
