"""Wanda's comparison group: per output row by default (Sun et al., ICLR 2024), per tensor on
request; and how its input norms are accumulated."""

import numpy as np
import pytest

from sparsesim.prune import PruneSpec, keep_masks
from sparsesim.prune.criteria import LayerStats, score
from sparsesim.workload.layers import Linear

FC = Linear("fc", in_features=4, out_features=2)
W = np.array([[1, 1, 1, 1], [4, 0.2, 3, 100]], np.float32)
NORMS = np.array([1, 10, 1, 0.1], np.float32)


def _scores():
    return score("wanda", FC, "w", W, stats=LayerStats(act_norms={"w": NORMS}))


def test_wanda_defaults_to_rows():
    spec = PruneSpec("wanda", sparsity=0.5)
    assert spec.compare == "row" and spec.as_dict()["compare"] == "row"
    [keep] = keep_masks([(FC, "w", _scores())], spec)
    # scores row 0: 1, 10, 1, 0.1 -> 0.1 and the first 1 go; row 1: 4, 2, 3, 10 -> 2 and 3 go
    np.testing.assert_array_equal(keep, [[False, True, True, False], [True, False, False, True]])
    assert (keep.sum(axis=1) == 2).all()


def test_tensor_compare_stays_available():
    [keep] = keep_masks([(FC, "w", _scores())], PruneSpec("wanda", sparsity=0.5,
                                                          compare="tensor"))
    # the 4 lowest of 1, 10, 1, 0.1, 4, 2, 3, 10: 0.1, 1, 1, 2 -> row 0 keeps only the 10
    np.testing.assert_array_equal(keep, [[False, True, False, False], [True, False, True, True]])


@pytest.mark.parametrize("kw,compare", [
    ({"granularity": "nm"}, "tensor"),           # N:M compares within each group anyway
    ({"granularity": "filter"}, "tensor"),
    ({"scope": "global"}, "tensor"),              # rows cannot be ranked globally
    ({}, "row"),
])
def test_default_row_only_where_it_applies(kw, compare):
    assert PruneSpec("wanda", **kw).compare == compare


def test_other_criteria_keep_tensor():
    assert PruneSpec("magnitude").compare == "tensor"
    assert "compare" not in PruneSpec("magnitude").as_dict()


def test_norm_scale_of_the_reference_code_leaves_the_masks():
    """The reference code's statistic is ‖X_j‖² / nsamples: a common factor of every score,
    so the masks equal ours (‖X_j‖ summed over all tokens)."""
    [ours] = keep_masks([(FC, "w", _scores())], PruneSpec("wanda", sparsity=0.5))
    ref = score("wanda", FC, "w", W, stats=LayerStats(act_norms={"w": NORMS / np.sqrt(128)}))
    [theirs] = keep_masks([(FC, "w", ref)], PruneSpec("wanda", sparsity=0.5))
    np.testing.assert_array_equal(ours, theirs)


# --- sequential (block-by-block) calibration on a graph-captured torch model -------------------

def _row_wanda(w, x, amount=0.5):
    """Hand Wanda: |W|·‖X_j‖₂ over all rows of x, the lowest round(amount·K) of each row go."""
    s = np.abs(w) * np.sqrt((x.astype(np.float64) ** 2).sum(axis=0))[None, :]
    keep = np.ones_like(s, dtype=bool)
    drop = round(amount * s.shape[1])
    np.put_along_axis(keep, np.argsort(s, axis=1, kind="stable")[:, :drop], False, axis=1)
    return keep


def test_block_keys():
    from sparsesim.prune.torch.sequential import block_key, blocks

    assert block_key("encoder.layer.3.attention.self.query") == "encoder.layer.3"
    assert block_key("encoder.layers.encoder_layer_11.mlp.0") == \
        "encoder.layers.encoder_layer_11"
    assert block_key("layer1.0.conv1") == "layer1.0"
    assert block_key("classifier") == "classifier"
    assert blocks(["stem", "b.0.x", "b.0.y", "b.1.x", "head"]) == \
        [["stem"], ["b.0.x", "b.0.y"], ["b.1.x"], ["head"]]


def test_sequential_blocks_see_the_pruned_inputs():
    torch = pytest.importorskip("torch")
    from sparsesim.prune.torch.export import capture
    from sparsesim.prune.torch.sequential import sequential_masks

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8), torch.nn.Linear(8, 6)])

        def forward(self, x):
            return self.blocks[1](torch.relu(self.blocks[0](x)))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(16, 8)
    spec = PruneSpec("wanda", sparsity=0.5, calibration="sequential")
    masks, passes = sequential_masks(capture(net, (x,), norms=True), spec)
    assert passes == 2
    w0, b0 = net.blocks[0].weight.detach().numpy(), net.blocks[0].bias.detach().numpy()
    w1 = net.blocks[1].weight.detach().numpy()
    xn = x.numpy()
    m0 = _row_wanda(w0, xn)
    h_dense = np.maximum(xn @ w0.T + b0, 0)
    h_pruned = np.maximum(xn @ (w0 * m0).T + b0, 0)
    np.testing.assert_array_equal(masks["blocks.0"]["w"], m0)
    np.testing.assert_array_equal(masks["blocks.1"]["w"], _row_wanda(w1, h_pruned))
    once = capture(net, (x,), norms=True).trace(PruneSpec("wanda", sparsity=0.5))
    np.testing.assert_array_equal(once.masks["blocks.1"].weights["w"], _row_wanda(w1, h_dense))
    assert not np.array_equal(_row_wanda(w1, h_dense), _row_wanda(w1, h_pruned))  # it matters


def test_sequential_refused_where_it_changes_nothing():
    from sparsesim.errors import SparsesimError

    for kw in ({"criterion": "magnitude"}, {"criterion": "wanda", "scope": "global"}):
        with pytest.raises(SparsesimError, match="sequential"):
            PruneSpec(calibration="sequential", **kw)
    assert PruneSpec("wanda", calibration="sequential").as_dict()["calibration"] == "sequential"


FACTORY = '''
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8), torch.nn.Linear(8, 6)])

    def forward(self, x):
        return self.blocks[1](torch.relu(self.blocks[0](x)))


def make():
    torch.manual_seed(0)
    return Net(), torch.randn(16, 8)
'''


def test_cli_sequential_on_a_users_model(tmp_path):
    pytest.importorskip("torch")
    from sparsesim.cli import main
    from sparsesim.sparsity.trace import load_trace

    path = tmp_path / "two.py"
    path.write_text(FACTORY)
    out = {}
    for how in ("once", "sequential"):
        out[how] = tmp_path / f"{how}.npz"
        assert main(["prune", "--model", f"{path}:make", "--method", "wanda",
                     "--calibration", how, "-o", str(out[how])]) == 0
    seq, once = load_trace(out["sequential"]), load_trace(out["once"])
    assert seq.meta["method"]["calibration"] == "sequential"
    assert seq.meta["calibration_passes"] == 2 and "calibration" not in once.meta["method"]
    np.testing.assert_array_equal(seq.masks["blocks.0"].weights["w"],
                                  once.masks["blocks.0"].weights["w"])  # block 0: same inputs
    assert not np.array_equal(seq.masks["blocks.1"].weights["w"],
                              once.masks["blocks.1"].weights["w"])
