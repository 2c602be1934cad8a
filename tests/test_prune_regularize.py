"""Regularization-based pruning: L1 and group lasso training, proximal steps, masks, traces.

The proximal operators are checked against numpy twins; the digits CNN (scikit-learn's
bundled digits, trained here in seconds) checks that proximal L1 leaves exact zeros that grow
with λ, that group lasso zeros whole filters and input channels, and that the trace's masks
are the model's zero pattern with the simulated effectual MACs equal to the real ones.
"""

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # small GEMMs: one thread is as fast, and immune to a busy machine
pytest.importorskip("sklearn")

from sparsesim import simulate  # noqa: E402
from sparsesim.cli import main  # noqa: E402
from sparsesim.errors import SparsesimError  # noqa: E402
from sparsesim.prune import PruneSpec, Regularizer, achieved_sparsity  # noqa: E402
from sparsesim.prune.torch import models as M  # noqa: E402
from sparsesim.prune.torch.pipelines import run_digits, run_digits_regularized, run_model  # noqa: E402
from sparsesim.prune.torch.regularize import (  # noqa: E402
    penalty,
    prox_,
    train_regularized,
    zero_masks,
)
from sparsesim.prune.torch.capture import TorchNet  # noqa: E402

AXES = {"unstructured": (), "filter": (1, 2, 3), "channel": (0, 2, 3)}  # of [m, c, r, s]


def prox_twin(w, granularity, t):
    """Group soft-thresholding written out in numpy."""
    axes = AXES[granularity]
    if not axes:
        return np.sign(w) * np.maximum(np.abs(w) - t, 0)
    norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=axes, keepdims=True))
    size = math.prod(w.shape[a] for a in axes)
    scale = np.maximum(0, 1 - t * math.sqrt(size) / np.where(norms > 0, norms, 1))
    return w * np.where(norms > 0, scale, 0)


@pytest.mark.parametrize("granularity", list(AXES))
def test_prox_and_penalty_equal_their_numpy_twins(granularity):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.1, (6, 4, 3, 3)).astype(np.float32)
    w[1] = 0  # an already-zero filter stays zero (no 0/0)
    t = 0.02
    got = torch.from_numpy(w.copy())
    prox_([got], granularity, t)
    np.testing.assert_allclose(got.numpy(), prox_twin(w, granularity, t), rtol=1e-5, atol=1e-7)
    assert (got.numpy() == 0).any()
    axes = AXES[granularity]
    size = math.prod(w.shape[a] for a in axes)
    norms = (np.abs(w) if not axes else np.sqrt((w.astype(np.float64) ** 2).sum(axis=axes)))
    expect = 0.5 * math.sqrt(size) * norms.sum()
    assert float(penalty([torch.from_numpy(w)], granularity, 0.5)) == pytest.approx(expect,
                                                                                    rel=1e-5)


# --- spec and entry points ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"regularizer": Regularizer(0.1), "granularity": "nm"}, "granularity"),
    ({"regularizer": Regularizer(0.1), "granularity": "block"}, "granularity"),
    ({"regularizer": Regularizer(0.1), "granularity": "head"}, "granularity"),
    ({"regularizer": 0.1}, "regularizer"),
])
def test_spec_rejects_what_regularization_cannot_do(kwargs, field):
    with pytest.raises(ValueError, match=f"field '{field}'") as err:
        PruneSpec(**kwargs)
    assert isinstance(err.value, SparsesimError) and err.value.field == field


@pytest.mark.parametrize("lam, tol, field", [
    (0.0, 0.0, "lam"), (-1e-3, 0.0, "lam"), (float("nan"), 0.0, "lam"), (True, 0.0, "lam"),
    ("0.1", 0.0, "lam"), (0.1, -1.0, "tol"), (0.1, float("inf"), "tol"),
])
def test_regularizer_rejects_bad_lambda_and_tolerance(lam, tol, field):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        Regularizer(lam, tol=tol)


def test_penalty_name_follows_the_granularity_and_is_recorded():
    spec = PruneSpec(granularity="channel", sparsity=0.0, regularizer=Regularizer(0.05))
    assert spec.penalty == "group_lasso" and PruneSpec().penalty is None
    assert PruneSpec(regularizer=Regularizer(0.05)).penalty == "l1"
    assert spec.as_dict()["regularizer"] == {"penalty": "group_lasso", "lam": 0.05,
                                             "proximal": True, "tol": 0.0}


def test_models_without_training_data_and_schedules_refuse_a_regularizer():
    spec = PruneSpec(regularizer=Regularizer(0.1))
    with pytest.raises(SparsesimError, match="regularizer"):
        run_model("minilm", spec)
    with pytest.raises(SparsesimError, match="schedule"):
        run_digits(spec, schedule="iterative")


def test_cli_lambda_errors_are_one_line(tmp_path, capsys):
    for args, field in ((["--lambda", "0.1"], "--lambda"),
                        (["--model", "digits", "--lambda", "0"], "lam"),
                        (["--model", "digits", "--lambda", "0.1", "--granularity", "nm"],
                         "granularity")):
        assert main(["prune", *args, "-o", str(tmp_path / "x.npz")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and field in err[0], err


# --- the digits CNN -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pretrained():
    data = M.digits_data(0)
    torch.manual_seed(0)
    model = M.DigitsCNN()
    M.train(model, data.x_train, data.y_train, epochs=3, seed=0)
    return model, data


def regularized(pretrained, granularity, lam, *, epochs=3, proximal=True, tol=0.0):
    model, data = pretrained
    net = TorchNet(copy.deepcopy(model), data.x_train[:64])
    spec = PruneSpec(granularity=granularity, sparsity=0.0,
                     regularizer=Regularizer(lam, proximal=proximal, tol=tol))
    train_regularized(net, data.x_train, data.y_train, spec, epochs=epochs, seed=5)
    return net, spec


def exact_zeros(net):
    return achieved_sparsity([a != 0 for t in net.weights().values() for a in t.values()])


def test_proximal_l1_leaves_exact_zeros_that_grow_with_lambda(pretrained):
    zeros = []
    for lam in (0.01, 0.03, 0.1):
        net, spec = regularized(pretrained, "unstructured", lam)
        masks = zero_masks(net, spec)
        for name, tensors in net.weights().items():  # tol 0: the mask is the zero pattern
            np.testing.assert_array_equal(masks[name]["w"], tensors["w"] != 0)
        zeros.append(exact_zeros(net))
    assert 0.02 < zeros[0] < zeros[1] < zeros[2], zeros


def test_subgradient_l1_leaves_small_weights_the_tolerance_prunes(pretrained):
    net, spec = regularized(pretrained, "unstructured", 0.03, proximal=False, tol=1e-3)
    masks = zero_masks(net, spec)
    pruned = achieved_sparsity([m for t in masks.values() for m in t.values()])
    assert exact_zeros(net) < 0.001 and pruned > 0.05  # near zero, not at it
    for name, tensors in net.weights().items():
        np.testing.assert_array_equal(masks[name]["w"], np.abs(tensors["w"]) > 1e-3)


def test_channel_group_lasso_zeros_whole_input_channels(pretrained):
    net, _ = regularized(pretrained, "channel", 0.1)
    cut = 0
    for name, tensors in net.weights().items():
        w = tensors["w"]
        cols = w.reshape(w.shape[0], w.shape[1], -1)
        zero, full = (cols == 0).all(axis=(0, 2)), (cols != 0).all(axis=(0, 2))
        assert (zero | full).all(), name  # a channel is all zero or all kept
        cut += int(zero.sum())
    assert cut > 0


def assert_trace_is_the_model(run):
    weights = run.net.weights()
    for name, tensors in weights.items():
        got = run.trace.masks[name].weights["w"] if name in run.trace.masks and (
            "w" in run.trace.masks[name].weights) else np.ones_like(tensors["w"], bool)
        np.testing.assert_array_equal(got, tensors["w"] != 0)
    df = simulate(trace=run.trace, arch="default").df
    simulated = {(r.layer, r.gemm): int(r.effectual_macs) for r in df.itertuples()}
    assert run.effectual_macs() == simulated


def test_filter_group_lasso_pipeline_prunes_whole_filters_into_the_trace():
    run = run_digits_regularized(PruneSpec(granularity="filter", sparsity=0.0,
                                           regularizer=Regularizer(0.1)),
                                 epochs=2, reg_epochs=4, finetune_epochs=1)
    rows_cut = 0
    for name, m in run.trace.masks.items():
        if "w" not in m.weights:
            continue
        rows = m.weights["w"].reshape(m.weights["w"].shape[0], -1)
        assert (rows.all(axis=1) | ~rows.any(axis=1)).all(), name  # all-0 or all-1 rows
        rows_cut += int((~rows.any(axis=1)).sum())  # pruned filters that stay (pinned)
    meta = run.trace.meta
    # the chain is compacted: the other pruned filters left the shapes (issue 15 item 1)
    rows_cut += meta["compaction"]["filters_removed"]
    assert rows_cut > 0
    assert meta["method"]["regularizer"]["penalty"] == "group_lasso"
    assert [r["stage"] for r in meta["accuracy"]] == ["dense", "regularized", "pruned",
                                                      "fine-tuned", "compacted"]
    assert meta["accuracy"][-1]["accuracy"] == meta["accuracy"][-2]["accuracy"]  # exact folds
    assert meta["weight_sparsity"] == pytest.approx(meta["zero_sparsity"])
    assert meta["zero_sparsity"] > 0.05
    assert meta["accuracy"][-1]["accuracy"] > 0.8
    assert_trace_is_the_model(run)


def test_l1_then_cut_reaches_the_target_and_keeps_the_zeros():
    run = run_digits_regularized(PruneSpec(sparsity=0.8, regularizer=Regularizer(0.03)),
                                 epochs=2, reg_epochs=3, finetune_epochs=1)
    meta = run.trace.meta
    assert 0 < meta["zero_sparsity"] < 0.8
    assert meta["weight_sparsity"] == pytest.approx(0.8, abs=0.005)
    assert [r["sparsity"] for r in meta["accuracy"]][-2:] == pytest.approx([0.8, 0.8],
                                                                           abs=0.005)
    assert meta["accuracy"][-1]["accuracy"] > 0.8
    assert_trace_is_the_model(run)
