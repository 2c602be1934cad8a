"""Head pruning on captured attention (torch.export of HF BERT, Llama with GQA, GPT-2 with its
fused c_attn): shapes and MACs after keeping k of h heads equal closed forms written here, and
the reported output agreement is that of the real model with those heads removed (its
O-projection columns zeroed in the HF module itself, not in the capture)."""

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sparsesim.prune import PruneSpec  # noqa: E402
from sparsesim.prune.torch.export import capture  # noqa: E402
from sparsesim.workload.layers import MatMul  # noqa: E402

B, L, E, H, LAYERS = 2, 10, 32, 4, 2
D = E // H


def _model(family):
    torch.manual_seed(0)
    if family == "bert":
        cfg = transformers.BertConfig(vocab_size=64, hidden_size=E, num_hidden_layers=LAYERS,
                                      num_attention_heads=H, intermediate_size=48,
                                      max_position_embeddings=32)
        return transformers.BertModel(cfg).eval(), {}, H
    if family == "llama":
        cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=E, num_hidden_layers=LAYERS,
                                       num_attention_heads=H, num_key_value_heads=2,
                                       intermediate_size=48, max_position_embeddings=32)
        return transformers.LlamaForCausalLM(cfg).eval(), {"use_cache": False}, 2
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=E, n_layer=LAYERS, n_head=H,
                                  n_positions=32)
    return transformers.GPT2LMHeadModel(cfg).eval(), {"use_cache": False}, H


def _o_weights(model, family):
    """Each layer's O projection weight as [out, in] views into the real module."""
    if family == "bert":
        return [x.attention.output.dense.weight for x in model.encoder.layer]
    if family == "llama":
        return [x.self_attn.o_proj.weight for x in model.model.layers]
    return [x.attn.c_proj.weight.T for x in model.transformer.h]  # Conv1D: [in, out]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else (
        out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits)


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize("sparsity", [0.25, 0.5])
def test_head_pruning_shapes_macs_and_agreement(family, sparsity):
    model, kw, kvh = _model(family)
    ids = torch.randint(0, 64, (B, L))
    cap = capture(model, (), {"input_ids": ids, **kw})
    trace = cap.trace(PruneSpec("magnitude", granularity="head", sparsity=sparsity))
    kept = H - round(sparsity * H)  # torch.nn.utils.prune's rounding
    group = H // kvh
    kept_kv = -(-kept // group)  # group-packed: ceil(kept / group) K/V heads
    tokens = B * L
    removed_proj = tokens * E * D * ((H - kept) * 2 + (kvh - kept_kv) * 2)  # Q, O; K, V
    removed_scores = 2 * B * (H - kept) * L * L * D  # QKᵀ and PV
    assert cap.workload.dense_macs - trace.workload.dense_macs == LAYERS * (
        removed_proj + removed_scores)
    mm = [x for x in trace.workload.layers if isinstance(x, MatMul) and not x.weights_operand]
    assert len(mm) == 2 * LAYERS and all(x.count == B * kept for x in mm)
    assert trace.meta["compaction"]["heads_removed"] == LAYERS * (H - kept)
    # the agreement is the real model's with the pruned heads' O columns zeroed
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        dense = _first(model(input_ids=ids, **kw)).double().flatten()
        for w, entry in zip(_o_weights(pruned, family), [
                trace.meta["layers"][n] for n in sorted(trace.meta["layers"])
                if "kept_heads" in trace.meta["layers"][n]]):
            for h in range(H):
                if h not in entry["kept_heads"]:
                    w[:, h * D:(h + 1) * D] = 0
        cut = _first(pruned(input_ids=ids, **kw)).double().flatten()
    want = float(torch.nn.functional.cosine_similarity(cut, dense, dim=0))
    got = trace.meta["accuracy"][0]["value"]
    assert got == pytest.approx(want, abs=1e-6) and got < 1


def test_keep_shape_masks_the_same_heads():
    model, kw, _ = _model("gpt2")
    ids = torch.randint(0, 64, (B, L))
    cap = capture(model, (), {"input_ids": ids, **kw})
    spec = PruneSpec("magnitude", granularity="head", sparsity=0.5)
    cut = cap.trace(spec)
    kept = cap.trace(PruneSpec("magnitude", granularity="head", sparsity=0.5, compact=False))
    assert kept.workload.dense_macs == cap.workload.dense_macs
    assert kept.meta["accuracy"][0]["value"] == cut.meta["accuracy"][0]["value"]
    o = "transformer.h.0.attn.c_proj"
    cols = kept.masks[o].weights["w"].any(axis=0)  # the O columns left
    assert int(cols.sum()) == 2 * D
