"""The PyTorch front-end: torch.nn.utils.prune conventions, hooks, gradients, digits CNN.

The digits runs train a small CNN on scikit-learn's bundled digits in seconds and check that
the simulated effectual MACs of the pruned model equal the non-zero products counted from
its real weights and activations.
"""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # small GEMMs: one thread is as fast, and immune to a busy machine
pytest.importorskip("sklearn")

import torch.nn.functional as F  # noqa: E402
import torch.nn.utils.prune as tprune  # noqa: E402
from torch import nn  # noqa: E402

from sparsesim import simulate  # noqa: E402
from sparsesim.workload.layers import Attention, Conv2d, Linear  # noqa: E402
from sparsesim.prune import ActPrune, PruneSpec, keep_masks, score  # noqa: E402
from sparsesim.prune.torch import models as M  # noqa: E402
from sparsesim.prune.torch.pipelines import run_digits, run_digits_slimming  # noqa: E402
from sparsesim.prune.structure import sequential_consumers, slim_workload  # noqa: E402
from sparsesim.prune.torch.capture import TorchNet, keep_ratio  # noqa: E402


def simulated_by_gemm(trace):
    df = simulate(trace=trace, arch="default").df
    gemms = df[df["count"] > 0]  # the online pruning unit's rows are not GEMMs
    return {(r.layer, r.gemm): int(r.effectual_macs) for r in gemms.itertuples()}


def assert_effectual_equal(run):
    measured = run.effectual_macs()
    simulated = simulated_by_gemm(run.trace)
    assert set(measured) == set(simulated)
    assert measured == simulated


# --- torch.nn.utils.prune conventions --------------------------------------------------------

@pytest.mark.parametrize("amount", [0.25, 0.35, 0.5, 0.8])
def test_unstructured_magnitude_equals_torch_l1_unstructured(amount):
    torch.manual_seed(0)
    lin = nn.Linear(10, 6)
    w = lin.weight.detach().numpy().copy()
    layer = Linear("fc", in_features=10, out_features=6)
    [ours] = keep_masks([(layer, "w", score("magnitude", layer, "w", w))],
                        PruneSpec(sparsity=amount))
    tprune.l1_unstructured(lin, "weight", amount=amount)
    np.testing.assert_array_equal(ours, lin.weight_mask.numpy().astype(bool))


def test_filter_pruning_equals_torch_ln_structured_l1():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 10, 3)
    w = conv.weight.detach().numpy().copy()
    layer = Conv2d("c", c=4, h=5, w=5, m=10, r=3, s=3)
    [ours] = keep_masks([(layer, "w", np.abs(w))], PruneSpec(granularity="filter", sparsity=0.3))
    tprune.ln_structured(conv, "weight", amount=0.3, n=1, dim=0)
    np.testing.assert_array_equal(ours, conv.weight_mask.numpy().astype(bool))


# --- hooks, shapes and statistics ----------------------------------------------------------

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.proj = nn.Linear(4, 8)
        self.attn = M.SelfAttention(8, 2, kv_heads=1, causal=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = F.relu(self.conv(x))                       # [b, 4, 3, 3]
        t = self.proj(y.flatten(2).transpose(1, 2))    # [b, 9, 8]
        return self.head(F.relu(self.attn(t))).mean(dim=1)


def test_module_becomes_a_workload_with_its_run_shapes():
    torch.manual_seed(0)
    net = TorchNet(Tiny(), torch.randn(5, 2, 3, 3))
    conv, proj, attn, head = net.workload.layers
    assert conv == Conv2d("conv", c=2, h=3, w=3, m=4, r=3, s=3, n=5, padding=1, bias=True)
    assert proj == Linear("proj", in_features=4, out_features=8, tokens=45, bias=True)
    assert attn == Attention("attn", l=9, e=8, heads=2, b=5, kv_heads=1, causal=True)
    assert head == Linear("head", in_features=8, out_features=3, tokens=45, bias=True)


def test_wanda_norms_and_gradient_statistics_are_what_they_say():
    torch.manual_seed(0)
    model = Tiny()
    x, y = torch.randn(4, 2, 3, 3), torch.tensor([0, 1, 2, 0])
    net = TorchNet(model, x)
    cal = net.calibrate(norms=True, loss=lambda out, part: F.cross_entropy(
        out, y[part], reduction="sum"), micro_batch=1)
    h = F.relu(model.conv(x)).flatten(2).transpose(1, 2)
    np.testing.assert_allclose(cal.stats["proj"].act_norms["w"],
                               h.reshape(-1, 4).norm(dim=0).detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(cal.stats["conv"].act_norms["w"],
                               x.pow(2).sum(dim=(0, 2, 3)).sqrt().numpy(), rtol=1e-5)
    grads = []
    for i in range(4):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1], reduction="sum").backward()
        grads.append(model.head.weight.grad.detach().clone())
    g = torch.stack(grads)
    np.testing.assert_allclose(cal.stats["head"].grads["w"], g.sum(0).numpy(), rtol=1e-4,
                               atol=1e-7)
    np.testing.assert_allclose(cal.stats["head"].fisher["w"], g.pow(2).mean(0).numpy(),
                               rtol=1e-4, atol=1e-9)
    assert cal.stats["attn"].act_norms["o"].shape == (8,)


def test_masks_follow_torch_prune_and_effectual_macs_match_on_attention():
    torch.manual_seed(0)
    net = TorchNet(Tiny(), torch.randn(3, 2, 3, 3))
    net.prune(PruneSpec("magnitude", sparsity=0.5))
    assert hasattr(net.bound["attn"].tensors["q"], "weight_mask")
    assert net.weight_sparsity() == pytest.approx(0.5, abs=0.02)
    assert net.effectual_macs() == simulated_by_gemm(net.trace())


def test_attention_score_operands_are_dense_in_the_trace():
    """Pruned activations can leave exact zeros in Q, K, V and P, which the trace does not
    carry (it holds weight and layer-input masks): every other GEMM matches exactly, the
    score GEMMs are simulated as dense (causal zeros aside), so measured <= simulated."""
    torch.manual_seed(0)
    net = TorchNet(Tiny(), torch.randn(3, 2, 3, 3))
    net.prune(PruneSpec("magnitude", sparsity=0.5))
    act = ActPrune("topk", 0.5)
    trace = net.trace(act_prune=act)
    measured, simulated = net.effectual_macs(act_prune=act), simulated_by_gemm(trace)
    for key, value in simulated.items():
        if key[1] in ("qk", "pv"):
            assert measured[key] <= value
        else:
            assert measured[key] == value, key
    assert trace.masks["proj"].inputs.mean() == pytest.approx(0.5, abs=0.13)


def test_dynamic_token_keep_ratio():
    assert keep_ratio(np.array([[0.7, 0.1, 0.1, 0.1]]), 0.8) == 0.5
    assert keep_ratio(np.full((2, 4), 0.25), 1.0) == 1.0


# --- the digits CNN: schedules with accuracy, slimming, activation sparsity -------------------

@pytest.fixture(scope="module")
def oneshot():
    return run_digits(PruneSpec("magnitude", sparsity=0.5), epochs=8)


def test_digits_oneshot_records_accuracy_and_real_relu_zeros(oneshot):
    acc = oneshot.trace.meta["accuracy"]
    assert [r["sparsity"] for r in acc] == pytest.approx([0.0, 0.5], abs=0.01)
    assert acc[0]["accuracy"] > 0.9
    dens = {k: v["act_density"] for k, v in oneshot.trace.meta["layers"].items()}
    assert dens["conv2"] < 0.9 and dens["conv3"] < 0.95  # ReLU zeros measured
    assert_effectual_equal(oneshot)


@pytest.mark.parametrize("criterion", ["taylor", "fisher", "wanda", "random"])
def test_digits_data_criteria(criterion):
    run = run_digits(PruneSpec(criterion, sparsity=0.5, compare="row" if criterion == "wanda"
                               else "tensor"), epochs=4)
    assert run.trace.meta["weight_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert run.trace.meta["method"]["criterion"] == criterion


def test_digits_iterative_with_finetuning_keeps_accuracy():
    run = run_digits(PruneSpec(sparsity=0.8), schedule="iterative", steps=3, epochs=8)
    acc = run.trace.meta["accuracy"]
    assert [round(r["sparsity"], 2) for r in acc] == [0.0, 0.56, 0.77, 0.8]
    assert acc[-1]["accuracy"] > 0.9
    assert_effectual_equal(run)


def test_digits_imp_with_rewinding_prunes_a_fifth_per_round():
    run = run_digits(PruneSpec(sparsity=0.2), schedule="imp", steps=2, epochs=5)
    acc = run.trace.meta["accuracy"]
    assert [round(r["sparsity"], 3) for r in acc] == [0.0, 0.2, 0.36]
    assert all(r["accuracy"] > 0.8 for r in acc)
    assert run.trace.meta["method"]["schedule"] == "imp"


def test_digits_nm_weights_and_nm_activations():
    run = run_digits(PruneSpec("magnitude", "nm", nm=(2, 4)), act_prune=ActPrune.parse(
        "nm:2:4"), epochs=5)
    x = run.trace.masks["conv3"].inputs  # [n, c, h, w]: 2 of every 4 channels
    assert (x.reshape(x.shape[0], 8, 4, 4, 4).sum(axis=2) <= 2).all()
    assert_effectual_equal(run)


def test_slimming_cuts_channels_and_cascades_into_the_next_layer():
    run = run_digits_slimming(0.4, epochs=8, finetune_epochs=2)
    kept = run.report["kept"]
    layers = {layer.name: layer for layer in run.trace.workload.layers}
    assert layers["conv1"].m == len(kept["conv1"]) == layers["conv2"].c
    assert layers["conv2"].m == len(kept["conv2"]) == layers["conv3"].c
    assert layers["fc"].in_features == 16 * len(kept["conv3"])
    assert run.trace.meta["channels_cut"] == pytest.approx(0.4, abs=1 / 80)
    dense = run.report["dense_workload"]
    slim, _ = slim_workload(dense, kept, sequential_consumers(dense))
    assert slim.layers == run.trace.workload.layers
    assert run.trace.meta["accuracy"][-1]["accuracy"] > 0.8
    assert_effectual_equal(run)


def test_slim_sequential_keeps_the_chosen_weights():
    torch.manual_seed(0)
    model = M.DigitsCNN().eval()
    kept = {"conv1": np.array([1, 3]), "conv3": np.array([0, 5])}
    slim = M.slim_sequential(copy.deepcopy(model), kept)
    torch.testing.assert_close(slim.conv2.weight, model.conv2.weight[:, [1, 3]])
    cols = torch.cat([torch.arange(16), 5 * 16 + torch.arange(16)])
    torch.testing.assert_close(slim.fc.weight, model.fc.weight[:, cols])


def test_the_pruned_models_accuracy_is_printed_by_run_and_a_number_in_sweeps(oneshot, tmp_path,
                                                                              capsys):
    """The accuracy the digits run measured on its pruned model (the trace's last row) is what
    ``run --trace`` prints under the table and what a sweep point's ``accuracy`` holds."""
    from sparsesim.cli import main
    from sparsesim.sweep import run_point

    path = tmp_path / "digits.npz"
    oneshot.trace.save(path)
    last = oneshot.trace.meta["accuracy"][-1]
    assert main(["run", "--trace", str(path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"accuracy of the pruned model (test accuracy, oneshot): "
                              f"{last['accuracy']:.4f} at ")
    assert " cycles, " in out[-1] and "J; includes" in out[-1]  # beside cycles and energy
    assert out[-1].endswith("; includes weights:unstructured")
    row = run_point({"trace": str(path)})  # the trace's own layers run
    assert row["status"] == "ok", row["error"]
    assert row["accuracy"] == last["accuracy"] and row["accuracy_metric"] == "test_accuracy"
    assert row["accuracy_includes"] == "weights:unstructured"
