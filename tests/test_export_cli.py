"""``sparsesim prune --model FILE.py:FACTORY`` and ``sparsesim import``: a user's own model
through the real command, to ``sparsesim run --trace``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sparsesim.cli import main  # noqa: E402
from sparsesim.sparsity.trace import load_trace  # noqa: E402

MODEL = '''
import torch
from torch import nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.stack = nn.Parameter(torch.randn(2, 64, 64))  # a batch of stored matrices
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x, dilated=True):
        y = F.relu(self.conv(x))
        if dilated:
            y = F.relu(torch.matmul(y.reshape(2, 8, 64), self.stack)).reshape(2, 8, 8, 8)
        return self.fc(y.flatten(1))

def make():
    torch.manual_seed(0)
    return Net(), torch.randn(2, 3, 8, 8)

def plain():
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.fc.weight[:, :100] = 0  # its own zeros
    return net, (torch.randn(2, 3, 8, 8),), {"dilated": False}

def bad():
    return 3
'''
CONV, DIL, FC = 2 * 8 * 27 * 64, 2 * 8 * 64 * 64, 2 * 512 * 10  # DIL: the refused stack


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(MODEL)
    return str(path)


def test_import_writes_the_model_as_it_is(factory, tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert main(["import", "--model", f"{factory}:plain", "-o", str(out)]) == 0
    trace = load_trace(out)
    assert [x.name for x in trace.workload.layers] == ["conv", "fc"]
    assert trace.meta["capture"]["captured_macs"] == CONV + FC == \
        trace.meta["capture"]["total_macs"]
    w = trace.masks["fc"].weights["w"]
    assert not w[:, :100].any() and w[:, 100:].all()  # its own zeros, nothing pruned
    x = trace.masks["fc"].inputs  # measured after the ReLU: its zeros
    assert 0 < x.mean() < 1
    assert "coverage 1.0000" in capsys.readouterr().out
    assert main(["run", "--trace", str(out)]) == 0


def test_prune_a_user_model_with_the_gate(factory, tmp_path, capsys):
    out = tmp_path / "p.npz"
    assert main(["prune", "--model", f"{factory}:make", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{DIL} of {CONV + DIL + FC} MACs" in err and "stored weight matrices" in err
    assert err.count("\n") == 1
    assert main(["prune", "--model", f"{factory}:make", "--allow-uncaptured", "0.7",
                 "--method", "wanda", "--sparsity", "0.6", "-o", str(out)]) == 0
    trace = load_trace(out)
    for name in ("conv", "fc"):
        w = trace.masks[name].weights["w"]
        rows = w.reshape(w.shape[0], -1)  # wanda compares per output row: K - round(0.6 K) each
        assert (rows.sum(axis=1) == rows.shape[1] - round(0.6 * rows.shape[1])).all()
    cap = trace.meta["capture"]
    assert cap["coverage"] == pytest.approx((CONV + FC) / (CONV + DIL + FC))
    assert [u["module"] for u in cap["uncaptured"]] == [""]
    assert main(["run", "--trace", str(out)]) == 0


@pytest.mark.parametrize("argv, field", [
    (["--act-prune", "topk:0.5", "--sparsity", "0"], "--act-prune"),
    (["--granularity", "token"], "--granularity"),
    (["--granularity", "head"], "granularity"),  # no SDPA attention in this model
    (["--method", "taylor"], "--method"),
])
def test_options_a_user_model_does_not_take_are_refused(factory, tmp_path, capsys, argv, field):
    assert main(["prune", "--model", f"{factory}:plain", *argv, "-o",
                 str(tmp_path / "x.npz")]) == 2
    assert f"field '{field}'" in capsys.readouterr().err


def test_bad_factories_are_one_line(factory, tmp_path, capsys):
    out = str(tmp_path / "x.npz")
    assert main(["import", "--model", f"{factory}:bad", "-o", out]) == 2
    assert "bad() must return (model, example_inputs)" in capsys.readouterr().err
    assert main(["import", "--model", f"{factory}:nothing", "-o", out]) == 2
    assert "no function 'nothing'" in capsys.readouterr().err
    assert main(["import", "--model", f"{tmp_path}/none.py:make", "-o", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["prune", "--allow-uncaptured", "0.1", "-o", out]) == 2
    assert "--allow-uncaptured" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prune", "--model", "resnet", "-o", out])
