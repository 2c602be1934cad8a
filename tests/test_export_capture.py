"""Capture by graph (torch.export): every GEMM node a layer, the parity gate, measured masks.

Expected MACs are closed forms from the shapes written here (and PyTorch's own counter for the
HF models); operand masks are compared with the tensors the model itself computed (saved in
its forward), not with anything the capture returns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
import torch.nn.utils.prune as tprune  # noqa: E402
from torch import nn  # noqa: E402

from sparsesim.errors import SparsesimError  # noqa: E402
from sparsesim.mapping.lower import gemm_operands, lower  # noqa: E402
from sparsesim.pe.kinds import effectual_macs  # noqa: E402
from sparsesim.prune.spec import PruneSpec  # noqa: E402
from sparsesim.prune.torch import parity  # noqa: E402
from sparsesim.prune.torch.export import capture  # noqa: E402
from sparsesim.sparsity.masks import LayerMasks  # noqa: E402
from sparsesim.sparsity.trace import Trace, load_trace  # noqa: E402
from sparsesim.workload.layers import Conv2d, Linear, MatMul  # noqa: E402
from sparsesim.workload.network import Workload  # noqa: E402

B, C, H, W, M_ = 2, 3, 6, 6, 4  # conv: batch, channels, image, filters
L, HEADS, D = 9, 2, 4  # attention: sequence, heads, head width
E = HEADS * D


class Hand(nn.Module):
    """F.conv2d, F.linear, torch.matmul attention (ReLU'd Q and K, so they have zeros) and
    SDPA (causal), an nn.Linear, and a kwarg; saves its score operands for the tests."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.kernel = nn.Parameter(torch.randn(M_, C, 3, 3, generator=g))
        self.proj = nn.Parameter(torch.randn(L * E, M_ * (H // 2) * (W // 2), generator=g))
        self.qkv = nn.Linear(E, 3 * E)
        self.out = nn.Linear(E, E)
        self.saved: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, *, gain: float = 1.0) -> torch.Tensor:
        y = F.relu(F.conv2d(x, self.kernel, stride=2, padding=1))  # [B, M, 3, 3]
        t = F.linear(y.flatten(1), self.proj).view(x.shape[0], L, E) * gain
        q, k, v = self.qkv(t).view(x.shape[0], L, 3, HEADS, D).permute(2, 0, 3, 1, 4)
        q, k = F.relu(q), F.relu(k)
        p = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D), dim=-1)
        p = p * (p > 1 / L)  # a threshold on the probabilities: real zeros in P
        o1 = torch.matmul(p, v)
        o2 = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        self.saved = {"q": q, "k": k, "p": p, "v": v}
        return self.out(F.relu(o1 + o2).transpose(1, 2).reshape(x.shape[0], L, E))


def hand_macs() -> dict[str, int]:
    """Closed forms from the shapes above."""
    e = f = (H + 2 - 3) // 2 + 1
    conv = B * M_ * C * 9 * e * f
    fc = B * (M_ * e * f) * (L * E)
    qkv = B * L * E * 3 * E
    score = B * HEADS * L * D * L  # one of QKᵀ / PV
    out = B * L * E * E
    return {"conv": conv, "fc": fc, "qkv": qkv, "scores": 4 * score, "out": out}


@pytest.fixture(scope="module")
def hand():
    torch.manual_seed(0)
    model = Hand().eval()
    tprune.l1_unstructured(model.out, "weight", amount=0.5)
    x = torch.randn(B, C, H, W)
    return model, x, capture(model, (x,), {"gain": 2.0})


def test_hand_layers_and_macs_equal_closed_forms(hand):
    _, _, cap = hand
    layers = {layer.name: layer for layer in cap.workload.layers}
    macs = hand_macs()
    assert sum(macs.values()) == cap.coverage.total_macs == cap.coverage.captured_macs
    assert cap.coverage.fraction == 1.0 and cap.coverage.uncaptured == ()
    conv = layers["model.conv2d"]
    assert isinstance(conv, Conv2d) and (conv.stride, conv.padding) == (2, 1)
    assert conv.dense_macs == macs["conv"]
    assert isinstance(layers["model.linear"], Linear)
    assert layers["model.linear"].dense_macs == macs["fc"]
    assert layers["qkv"].dense_macs == macs["qkv"] and layers["out"].dense_macs == macs["out"]
    scores = [x for x in cap.workload.layers if isinstance(x, MatMul)]
    assert len(scores) == 4 and all(not x.weights_operand and x.count == B * HEADS
                                    for x in scores)
    assert sum(x.dense_macs for x in scores) == macs["scores"]


def test_independent_count_is_pytorchs(hand):
    model, x, cap = hand
    total, per_op = parity.independent_macs(model, (x,), {"gain": 2.0})
    assert total == sum(hand_macs().values())
    assert per_op["aten.convolution"] == hand_macs()["conv"]


def test_score_operand_masks_equal_the_models_tensors(hand):
    model, x, cap = hand
    trace = cap.trace()
    masks = trace.masks
    s = {k: v.reshape(B * HEADS, *v.shape[2:]) for k, v in model.saved.items()}
    [qk, pv, sq, sp] = [x.name for x in cap.workload.layers if isinstance(x, MatMul)]

    def mask(name, which):
        m = masks.get(name, LayerMasks())
        got = m.inputs if which == "a" else m.activations.get("b")
        return None if got is None else got

    assert np.array_equal(mask(qk, "a"), (s["q"] != 0).numpy())
    assert np.array_equal(mask(qk, "b"), (s["k"].transpose(-1, -2) != 0).numpy())
    assert np.array_equal(mask(pv, "a"), (s["p"] != 0).numpy())
    assert mask(pv, "b") is None  # V is dense (no ReLU): nothing stored
    assert np.array_equal(mask(sq, "a"), (s["q"] != 0).numpy())
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    scores = (s["q"] @ s["k"].transpose(-1, -2) / math.sqrt(D)).masked_fill(~causal, -math.inf)
    p_sdpa = torch.softmax(scores, dim=-1)  # what SDPA computes, by its definition
    assert np.array_equal(mask(sp, "a"), (p_sdpa != 0).numpy())
    assert not mask(sp, "a")[:, ~causal.numpy()].any()
    # the layer densities in meta are the same tensors' densities
    assert trace.meta["layers"][pv]["act_density"] == pytest.approx(
        float((s["p"] != 0).double().mean()))


def test_effectual_macs_of_score_gemms_equal_indicator_products(hand):
    model, x, cap = hand
    trace = cap.trace()
    layers = [x for x in cap.workload.layers if isinstance(x, MatMul)]
    s = {k: (v != 0).double() for k, v in model.saved.items()}
    want = [(s["q"] @ s["k"].transpose(-1, -2)).sum(), (s["p"] @ s["v"]).sum()]
    for layer, expected in zip(layers[:2], want):
        [ops] = gemm_operands(layer, trace.masks.get(layer.name))
        assert effectual_macs(ops) == int(expected)


def test_prune_parametrisation_round_trips(hand, tmp_path):
    model, _, cap = hand
    trace = cap.trace()
    want = model.out.weight_mask.numpy().astype(bool)
    assert np.array_equal(trace.masks["out"].weights["w"], want)
    trace.save(tmp_path / "t.npz")
    back = load_trace(tmp_path / "t.npz")
    assert np.array_equal(back.masks["out"].weights["w"], want)
    assert back.meta["capture"]["coverage"] == 1.0
    assert back.workload.layers == cap.workload.layers


def test_weight_pruning_masks_measured_on_the_pruned_model(hand):
    model, x, cap = hand
    spec = PruneSpec(criterion="magnitude", granularity="unstructured", sparsity=0.75)
    trace = cap.trace(spec)
    w = trace.masks["model.linear"].weights["w"]
    assert w.mean() == pytest.approx(0.25, abs=1 / w.size)
    # The same masks applied with torch.nn.utils.prune, eager: the next layers' inputs match.
    ref = Hand().eval()
    ref.load_state_dict({k: v for k, v in model.state_dict().items()}, strict=False)
    with torch.no_grad():
        ref.kernel.copy_(model.kernel * torch.as_tensor(
            trace.masks["model.conv2d"].weights["w"], dtype=torch.float32))
        ref.proj.copy_(model.proj * torch.as_tensor(w, dtype=torch.float32))
        ref.qkv.weight.copy_(model.qkv.weight * torch.as_tensor(
            trace.masks["qkv"].weights["w"], dtype=torch.float32))
        ref(x, gain=2.0)
    qk = next(x for x in cap.workload.layers if isinstance(x, MatMul)).name
    q = ref.saved["q"].reshape(B * HEADS, L, D)
    assert np.array_equal(trace.masks[qk].inputs, (q != 0).numpy())
    assert trace.meta["weight_sparsity"] > 0.5


class DynamicKernel(nn.Module):
    """A conv whose kernel is computed from its input (not a stored weight)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, x[:1, :, :3, :3].repeat(4, 1, 1, 1), padding=1)


class StoredStack(nn.Module):
    """A matmul with a batch of stored weight matrices."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.w)


class Refused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = DynamicKernel()
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.t = StoredStack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.t(self.b(self.a(x)))


def test_refused_ops_fail_the_gate_with_a_list():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(SparsesimError) as err:
        capture(Refused(), (x,))
    msg = str(err.value)
    dyn = 4 * 3 * 9 * 64
    stack = 4 * 8 * 8 * 8  # 4 stored [8, 8] matrices, 8 rows each
    assert f"{dyn + stack} of {dyn + stack + 4 * 4 * 9 * 64} MACs" in msg
    assert "kernel is an activation" in msg and "a batch of stored weight matrices" in msg
    assert "a (aten.conv2d.default, node conv2d)" in msg


def test_allowance_captures_the_rest_and_records_coverage():
    x = torch.randn(1, 3, 8, 8)
    cap = capture(Refused(), (x,), allow_uncaptured=0.9)
    assert [layer.name for layer in cap.workload.layers] == ["b"]
    cov = cap.trace().meta["capture"]
    captured = 4 * 4 * 9 * 64
    assert cov["captured_macs"] == captured
    assert cov["total_macs"] == captured + 4 * 3 * 9 * 64 + 4 * 8 * 8 * 8
    assert {u["module"] for u in cov["uncaptured"]} == {"a", "t"}
    with pytest.raises(SparsesimError, match="allow_uncaptured"):
        capture(Refused(), (x,), allow_uncaptured=1.5)


class Functional(nn.Module):
    """W·X with the weight on the left, a 1-D conv, HF-style Conv1D (addmm, [in, out])."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Parameter(torch.randn(5, 6))
        self.c1 = nn.Conv1d(6, 6, 3, stride=2)
        self.w = nn.Parameter(torch.randn(6, 7))
        self.bias = nn.Parameter(torch.zeros(7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [6, 10]
        y = torch.mm(self.left, x)  # [5, 10]
        z = self.c1(x[None]).squeeze(0)  # [6, 4]
        out = torch.addmm(self.bias, z.T, self.w)  # [4, 7]
        return y.sum() + out.sum()


def test_weight_left_conv1d_and_hf_conv1d():
    x = torch.randn(6, 10)
    cap = capture(Functional(), (x,))
    layers = {layer.name: layer for layer in cap.workload.layers}
    assert layers["model.mm"] == Linear("model.mm", 6, 5, tokens=10)
    assert layers["c1"] == Conv2d("c1", c=6, h=1, w=10, m=6, r=1, s=3, stride=2, bias=True)
    assert layers["model.addmm"] == Linear("model.addmm", 6, 7, tokens=4, bias=True)
    assert cap.coverage.captured_macs == cap.coverage.total_macs == 5 * 6 * 10 + 6 * 6 * 3 * 4 \
        + 4 * 6 * 7
    w = cap.weights()
    assert np.array_equal(w["model.addmm"]["w"], cap.graph.module.w.detach().numpy().T)
    assert np.array_equal(w["model.mm"]["w"], cap.graph.module.left.detach().numpy())


# --- the batched MatMul layer ------------------------------------------------------------------

def test_batched_matmul_protocol_and_trace_round_trip(tmp_path):
    layer = MatMul("s", m=3, k=4, n=5, weights_operand=False, count=6)
    assert layer.dense_macs == 6 * 3 * 4 * 5 == sum(g.dense_macs for g in lower(layer))
    assert layer.input_shape == (6, 3, 4) and layer.activation_shapes() == {"b": (6, 4, 5),
                                                                    "o": (6, 3, 5)}
    rng = np.random.default_rng(1)
    a, b = rng.random((6, 3, 4)) < 0.5, rng.random((6, 4, 5)) < 0.3
    o = rng.random((6, 3, 5)) < 0.5
    trace = Trace(Workload("w", (layer,)), {"s": LayerMasks({}, a, {"b": b, "o": o})})
    trace.save(tmp_path / "t.npz")
    back = load_trace(tmp_path / "t.npz")
    assert np.array_equal(back.masks["s"].activations["b"], b)
    [ops] = gemm_operands(layer, back.masks["s"])
    assert effectual_macs(ops) == int(sum(((a[i].astype(int) @ b[i].astype(int)) * o[i]).sum()
                                          for i in range(6)))
    with pytest.raises(SparsesimError, match="count"):
        MatMul("x", m=1, k=1, n=1, count=2)


# --- HuggingFace transformers, tiny configs, random weights ------------------------------------

def _hf_capture(model, ids):
    model.eval()
    return capture(model, (), {"input_ids": ids, "use_cache": False})


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_hf_models_fully_captured(family):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if family == "bert":
        cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=48,
                                      max_position_embeddings=32)
        model = transformers.BertModel(cfg)
        ids = torch.randint(0, 64, (2, 10))
        cap = capture(model.eval(), (), {"input_ids": ids})
        heads, kv, hidden, inter, layers, vocab = 4, 4, 32, 48, 2, 0
    elif family == "llama":
        cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2,
                                       intermediate_size=48, max_position_embeddings=32)
        model = transformers.LlamaForCausalLM(cfg)
        ids = torch.randint(0, 64, (2, 10))
        cap = _hf_capture(model, ids)
        heads, kv, hidden, inter, layers, vocab = 4, 2, 32, 48, 2, 64
    else:
        cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4,
                                      n_positions=32)
        model = transformers.GPT2LMHeadModel(cfg)
        ids = torch.randint(0, 64, (2, 10))
        cap = _hf_capture(model, ids)
        heads, kv, hidden, inter, layers, vocab = 4, 4, 32, 4 * 32, 2, 64
    tokens, l, d = 20, 10, hidden // heads  # noqa: E741
    proj = tokens * hidden * (hidden + 2 * kv * d + hidden)
    mlp = tokens * hidden * inter * (3 if family == "llama" else 2)
    scores = 2 * 2 * heads * l * l * d
    pooler = 2 * hidden * hidden if family == "bert" else 0
    expected = layers * (proj + mlp + scores) + tokens * hidden * vocab + pooler
    assert cap.coverage.total_macs == expected == cap.coverage.captured_macs
    assert cap.coverage.uncaptured == ()
    mm = [x for x in cap.workload.layers if isinstance(x, MatMul) and not x.weights_operand]
    assert len(mm) == 2 * layers and sum(x.dense_macs for x in mm) == layers * scores
    trace = cap.trace()
    pv = [x for x in mm if x.name.endswith(".pv") or x.name.endswith("matmul_1")]
    if family != "bert":  # causal: P's upper triangle is zero, measured
        for x in pv:
            density = trace.meta["layers"][x.name]["act_density"]
            assert density == pytest.approx((l + 1) / (2 * l))
        qk = [x for x in mm if x not in pv]
        for x in qk:  # and QKᵀ's future scores are not needed: its output mask
            ops = trace.masks[x.name].activations["o"]
            assert ops.mean() == pytest.approx((l + 1) / (2 * l))


class Mixed(nn.Module):
    """A module called twice (tied weights), bmm, einsum, a linear whose weight is an
    activation, padding='same', and a per-axis stride."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.c = nn.Conv2d(2, 2, 3, padding="same")
        self.c2 = nn.Conv2d(2, 2, 3, stride=(2, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.fc(self.fc(x))
        b = torch.bmm(a, a.transpose(1, 2))
        e = torch.einsum("bij,bjk->bik", a, a)
        f = F.linear(x, a[0])
        return a.sum() + b.sum() + self.c(y).sum() + e.sum() + f.sum() + self.c2(y).sum()


def test_mixed_ops_layers_are_all_captured():
    x, y = torch.randn(2, 6, 6), torch.randn(1, 2, 5, 5)
    cap = capture(Mixed(), (x, y))
    assert cap.workload.layers == (
        Linear("fc.linear", 6, 6, tokens=12, bias=True),
        Linear("fc.linear_1", 6, 6, tokens=12, bias=True),
        MatMul("model.bmm", m=6, k=6, n=6, weights_operand=False, count=2),
        MatMul("model.einsum", m=6, k=6, n=6, weights_operand=False, count=2),
        MatMul("model.linear_2", m=12, k=6, n=6, weights_operand=False),
        Conv2d("c", c=2, h=5, w=5, m=2, r=3, s=3, padding=1, bias=True),
        Conv2d("c2", c=2, h=5, w=5, m=2, r=3, s=3, stride=(2, 1), bias=True))
    # both calls of fc read the same (effective) weights: one mask, two layers
    w = cap.weights()
    assert np.array_equal(w["fc.linear"]["w"], w["fc.linear_1"]["w"])
    cov = cap.coverage
    einsum, strided = 2 * 6 * 6 * 6, 2 * 2 * 9 * 2 * 3  # output 2×3 pixels
    assert cov.total_macs == cov.captured_macs and cov.uncaptured == ()
    assert cap.workload.layers[3].dense_macs == einsum
    assert cap.workload.layers[6].dense_macs == strided


class Conv1dPadded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(x)


def test_padded_conv1d_pads_only_its_width():
    cap = capture(Conv1dPadded(), (torch.randn(1, 4, 8),))
    assert cap.workload.layers == (
        Conv2d("c", c=4, h=1, w=8, m=4, r=1, s=3, padding=(0, 1), bias=True),)
    assert cap.coverage.captured_macs == cap.coverage.total_macs == 4 * 4 * 3 * 8


def test_causal_sdpa_scores_not_needed_are_not_effectual(hand):
    model, x, cap = hand
    trace = cap.trace()
    sq = next(x for x in cap.workload.layers if x.name.endswith(".qk"))
    causal = np.tril(np.ones((L, L), bool))
    assert np.array_equal(trace.masks[sq.name].activations["o"],
                          np.broadcast_to(causal, (B * HEADS, L, L)))
    s = {k: (v != 0).double() for k, v in model.saved.items()}
    needed = (s["q"] @ s["k"].transpose(-1, -2)) * torch.as_tensor(causal, dtype=torch.float64)
    [ops] = gemm_operands(sq, trace.masks[sq.name])
    assert effectual_macs(ops) == int(needed.sum())
    assert sq.dense_macs == B * HEADS * L * D * L  # a dense array computes every score


class Mm(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=0, max_size=2), st.booleans(),
       st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
def test_broadcast_matmul_macs_equal_pytorchs_count(batch, broadcast_b, m, k, n):
    a = torch.randn(*batch, m, k)
    b = torch.randn(*([1] * len(batch) if broadcast_b else batch), k, n)
    cap = capture(Mm(), (a, b))
    [layer] = cap.workload.layers
    assert isinstance(layer, MatMul) and not layer.weights_operand
    assert layer.dense_macs == math.prod(batch) * m * k * n == cap.coverage.total_macs
