"""A compacted torch chain computes what the masked one does; other models keep their shape.

Expected shapes are counted by hand; the folded biases are recomputed here from the batch-norm
parameters (a dead filter of a bias-free conv writes BN(0) = β, ReLU(β) after the rectifier),
not read from the code under test.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sparsesim import simulate  # noqa: E402
from sparsesim.prune import PruneSpec  # noqa: E402
from sparsesim.prune.torch import models as M  # noqa: E402
from sparsesim.prune.torch.capture import TorchNet  # noqa: E402
from sparsesim.prune.torch.compact import FoldedConv2d, is_chain  # noqa: E402
from sparsesim.prune.torch.pipelines import run_digits  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return M.digits_data(0)


def _pruned(model, x_cal, spec):
    net = TorchNet(model, x_cal, name="toy")
    net.prune(spec)
    return net, net.trace(spec)


def _shapes(trace):
    return [(x.name, x.in_channels, x.out_channels) for x in trace.workload.layers]


def test_mlp_chain_compacts_and_computes_the_same(digits):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 10))
    for lin in (mlp[1], mlp[3]):
        nn.init.normal_(lin.bias)  # dead filters write ReLU(b) ≠ 0: the fold matters
    spec = PruneSpec("magnitude", granularity="filter", sparsity=0.5, skip=("5",))
    net, trace = _pruned(mlp, digits.x_train[:64], spec)
    # 50 % of 32 filters go from each hidden layer; the output layer keeps its 10
    assert _shapes(trace) == [("1", 64, 16), ("3", 16, 16), ("5", 16, 10)]
    small = net.compacted
    assert small is not None
    x = digits.x_test
    with torch.no_grad():
        masked, cut = net.model(x), small.model(x)
    torch.testing.assert_close(cut, masked, rtol=1e-5, atol=1e-5)
    assert bool((cut.argmax(1) == masked.argmax(1)).all())
    # the fold is what keeps them equal: layer 3's bias gained W[:, dead] · ReLU(b1[dead])
    dead = np.flatnonzero((net.weights()["1"]["w"] == 0).all(axis=1))
    b1 = mlp[1].bias.detach().double()
    w3 = mlp[3].weight.detach().double()
    kept3 = np.flatnonzero((net.weights()["3"]["w"] != 0).any(axis=1))
    want = (mlp[3].bias.detach().double() + w3[:, dead] @ torch.relu(b1[dead]))[kept3]
    torch.testing.assert_close(small.model[3].bias.detach().double(), want, rtol=1e-5,
                               atol=1e-6)


def test_cnn_chain_folds_padded_borders_as_a_bias_map(digits):
    torch.manual_seed(1)
    cnn = M.DigitsCNN().eval()
    for bn in (cnn.bn1, cnn.bn2, cnn.bn3):
        nn.init.normal_(bn.bias)
    spec = PruneSpec("magnitude", granularity="filter", sparsity=0.5, skip=("fc",))
    net, trace = _pruned(cnn, digits.x_train[:32], spec)
    assert _shapes(trace) == [("conv1", 1, 8), ("conv2", 8, 16), ("conv3", 16, 16),
                              ("fc", 256, 10)]  # fc: 16 channels × 4×4 pixels
    layers = trace.meta["layers"]
    assert layers["conv2"]["folded"] == {"from": "conv1", "channels": 8, "bias": "map"}
    assert layers["fc"]["folded"] == {"from": "conv3", "channels": 16, "bias": "scalar"}
    small = net.compacted
    assert small is not None
    x = digits.x_test
    with torch.no_grad():
        torch.testing.assert_close(small.model(x), net.model(x), rtol=1e-4, atol=1e-4)
    conv2 = small.model.conv2
    assert isinstance(conv2, FoldedConv2d)
    # by hand: conv1 has no bias, so dead filter j writes ReLU(β1_j) everywhere
    dead = np.flatnonzero((net.weights()["conv1"]["w"] == 0).reshape(16, -1).all(axis=1))
    v = torch.relu(cnn.bn1.bias.detach().double()[dead])
    w2 = cnn.conv2.weight.detach().double()[:, dead]  # [32, dead, 3, 3]
    kept2 = np.flatnonzero((net.weights()["conv2"]["w"] != 0).reshape(32, -1).any(axis=1))
    interior = torch.einsum("ojrs,j->o", w2, v)[kept2]
    corner = torch.einsum("ojrs,j->o", w2[:, :, 1:, 1:], v)[kept2]  # top-left: 2×2 taps
    bias_map = conv2.bias_map.double()
    torch.testing.assert_close(bias_map[:, 3, 4], interior, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bias_map[:, 0, 0], corner, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(interior, corner)  # a scalar bias would be wrong there


class Residual(nn.Module):
    """conv → BN → ReLU, plus its input: not a chain (the add lives in forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        return self.fc((h + torch.relu(self.conv(h))).flatten(1))


def test_a_residual_model_compacts_along_its_exported_graph(digits):
    torch.manual_seed(2)
    model = Residual()
    assert not is_chain(model) and is_chain(M.DigitsCNN())
    spec = PruneSpec("magnitude", granularity="filter", sparsity=0.5, skip=("fc",))
    net, trace = _pruned(model, digits.x_train[:16], spec)
    assert net.compacted is None and net.compaction is not None  # not cut module by module
    comp = trace.meta["compaction"]
    assert comp["compacted"] is True and comp["graph"] == "read from torch.export"
    # stem's pruned filters are joined with conv's at the add: only those dead on both go
    dead_stem = (net.weights()["stem"]["w"] == 0).reshape(8, -1).all(axis=1)
    dead_conv = (net.weights()["conv"]["w"] == 0).reshape(8, -1).all(axis=1)
    both = int((dead_stem & dead_conv).sum())
    assert _shapes(trace)[0] == ("stem", 1, 8 - both)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        if h.sum() > 0:
            h = h * 2
        return self.fc(h.flatten(1))


def test_a_model_with_an_unknown_graph_keeps_its_shape(digits):
    model = Branchy()
    spec = PruneSpec("magnitude", granularity="filter", sparsity=0.5, skip=("fc",))
    net, trace = _pruned(model, digits.x_train[:16], spec)
    assert trace.workload.graph is None and net.compacted is None and net.compaction is None
    assert _shapes(trace) == [("conv", 1, 8), ("fc", 512, 10)]
    comp = trace.meta["compaction"]
    assert comp["compacted"] is False and "torch.export" in comp["note"]


def test_digits_pipeline_reports_the_compacted_model(digits):
    run = run_digits(PruneSpec("magnitude", granularity="filter", sparsity=0.5, skip=("fc",)),
                     epochs=1, calib=64)
    rows = run.trace.meta["accuracy"]
    masked, cut = rows[-2], rows[-1]
    assert cut["stage"] == "compacted" and "removed:compaction" in cut["includes"]
    assert "removed:compaction" not in masked["includes"]
    # exact folds: the compacted network classifies every test image as the masked one
    assert cut["accuracy"] == masked["accuracy"]
    assert run.trace.meta["test_accuracy"] == cut["accuracy"]
    assert run.trace.meta["compaction"]["accuracy"] == {"masked": masked["accuracy"],
                                                        "compacted": cut["accuracy"]}
    # the trace is the compacted model: its effectual MACs are that model's real products
    df = simulate(trace=run.trace, arch="default").df
    simulated = {(r.layer, r.gemm): int(r.effectual_macs) for r in df[df["count"] > 0]
                 .itertuples()}
    assert run.effectual_macs() == simulated
    dense = TorchNet(M.DigitsCNN(), digits.x_train[:64]).workload  # same calibration batch
    assert run.trace.workload.dense_macs < dense.dense_macs
