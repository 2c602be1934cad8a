"""Filter pruning compacts a non-chain torch model along the graph read from torch.export.

The toy network has a residual add, a depthwise conv behind zero padding, a concat and a
flatten. Its dead filters are chosen here, so the compacted shapes are counted by hand; the
compacted network is then run for real (``TorchNet.rebuilt``: kept channels only, folds, NaN in
every removed channel) on inputs the folds were not read on, and must give the masked model's
output; its effectual MACs, counted on those tensors, equal the simulator's.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from sparsesim import simulate  # noqa: E402
from sparsesim.prune import PruneSpec  # noqa: E402
from sparsesim.prune.torch.capture import TorchNet  # noqa: E402

SPEC = PruneSpec("magnitude", granularity="filter", sparsity=0.5, skip=("fc",))


class Res(nn.Module):
    """stem → [expand a → pad → depthwise → project b] + residual → cat(c1 3×3, c2 1×1) → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.a, self.bna = nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, groups=16, bias=False)
        self.bnd = nn.BatchNorm2d(16)
        self.b, self.bnb = nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.c1, self.c2 = nn.Conv2d(8, 6, 3, padding=1), nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(12 * 8 * 8, 5)
        for bn in (self.bn0, self.bna, self.bnd, self.bnb):  # dead filters write β ≠ 0
            nn.init.normal_(bn.bias)
            nn.init.normal_(bn.running_mean)
            nn.init.uniform_(bn.running_var, 0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = F.relu6(self.bna(self.a(x)))
        y = F.relu6(self.bnd(self.dw(F.pad(y, (1, 1, 1, 1)))))
        x = x + self.bnb(self.b(y))
        z = torch.cat([F.relu(self.c1(x)), F.relu(self.c2(x))], dim=1)
        return self.fc(z.flatten(1))


DEAD = {"stem": [0, 1], "a": list(range(8)), "b": [0, 1], "c1": [0], "c2": [0, 1]}


def _net(model: nn.Module, dead=DEAD):
    torch.manual_seed(0)
    net = TorchNet(model.eval(), torch.randn(8, 3, 8, 8), name="res")
    masks = {}
    for name, rows in dead.items():
        m = np.ones(tuple(net.bound[name].module.weight.shape), dtype=bool)
        m[rows] = False
        masks[name] = {"w": m}
    net.apply_masks(masks)
    return net


def _shapes(trace):
    return [(x.name, x.in_channels, x.out_channels) for x in trace.workload.layers]


def test_residual_concat_depthwise_compact_by_hand():
    torch.manual_seed(1)
    net = _net(Res())
    trace = net.trace(SPEC)
    # stem's 0, 1 go: b's 0, 1 are dead too, so the add is constant there; a's 0..7 take the
    # depthwise's 0..7 with them; c1 loses 1, c2 2 filters: the concat has 5 + 4 channels,
    # each 8×8 features of fc
    assert _shapes(trace) == [("stem", 3, 6), ("a", 6, 8), ("dw", 8, 8), ("b", 8, 6),
                              ("c1", 6, 5), ("c2", 6, 4), ("fc", 9 * 64, 5)]
    layers = trace.meta["layers"]
    assert layers["a"]["folded"]["bias"] == "scalar"  # 1×1 reads a constant: exact scalar
    assert layers["b"]["folded"]["bias"] == "map"  # constant through a padded depthwise
    assert layers["c1"]["folded"]["bias"] == "map"  # 3×3 with padding meets the border
    assert layers["c2"]["folded"]["bias"] == "scalar"
    assert layers["fc"]["folded"]["channels"] == 3
    comp = trace.meta["compaction"]
    assert comp["compacted"] is True and comp["graph"] == "read from torch.export"


def test_the_compacted_network_computes_the_masked_one():
    torch.manual_seed(1)
    net = _net(Res())
    trace = net.trace(SPEC)
    rebuilt = net.rebuilt()
    assert rebuilt is not None
    torch.manual_seed(7)
    x = torch.randn(16, 3, 8, 8)  # not the calibration inputs the folds were read on
    with torch.no_grad():
        masked, cut = net.model(x), rebuilt(x)
    assert not torch.isnan(cut).any()  # no removed channel (NaN) reached the output
    torch.testing.assert_close(cut, masked, rtol=1e-5, atol=1e-5)
    # the compacted GEMMs' real products are what the simulator counts on the trace
    df = simulate(trace=trace, arch="default").df
    simulated = {(r.layer, r.gemm): int(r.effectual_macs)
                 for r in df[df["count"] > 0].itertuples()}
    assert net.effectual_macs() == simulated
    assert trace.workload.dense_macs < net.workload.dense_macs


def test_without_the_fold_the_outputs_differ():
    """The folds carry the dead filters' constants (BN β through the rectifiers)."""
    torch.manual_seed(1)
    net = _net(Res())
    net.trace(SPEC)
    rebuilt = net.rebuilt()
    assert rebuilt is not None
    for entry in rebuilt.cut.values():
        entry["fold"] = None
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(rebuilt(x), net.model(x), atol=1e-3)


class ChannelsLast(nn.Module):
    """A flatten in (h, w, c) order interleaves the channels: the graph cannot map it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).permute(0, 2, 3, 1).reshape(x.shape[0], -1))


def test_an_unprovable_reshape_pins_and_says_why():
    torch.manual_seed(0)
    net = TorchNet(ChannelsLast().eval(), torch.randn(2, 3, 4, 4), name="cl")
    m = np.ones((4, 3, 1, 1), dtype=bool)
    m[:2] = False
    net.apply_masks({"conv": {"w": m}})
    trace = net.trace(SPEC)
    assert _shapes(trace) == [("conv", 3, 4), ("fc", 64, 3)]
    kept = trace.meta["layers"]["conv"]["pruned_kept"]
    assert list(kept.values()) == [2] and "interleaves the channels" in next(iter(kept))


# --- graph-captured HF models (sparsesim.prune.torch.export) -------------------------------------

def _hf(family):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if family == "llama":
        cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2,
                                       intermediate_size=48, max_position_embeddings=32)
        return transformers.LlamaForCausalLM(cfg).eval(), {"use_cache": False}
    if family == "bert":
        cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=48,
                                      max_position_embeddings=32)
        return transformers.BertModel(cfg).eval(), {}
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    return transformers.GPT2LMHeadModel(cfg).eval(), {"use_cache": False}


# family → (the producer made weak in rows 0..k-1, its [out, in] weight, the layers that shrink:
# name → (in, out) after, the intermediate width)
HF = {
    "llama": ("model.layers.0.mlp.gate_proj", lambda m: m.model.layers[0].mlp.gate_proj.weight,
              {"model.layers.0.mlp.gate_proj": (32, 24), "model.layers.0.mlp.up_proj": (32, 24),
               "model.layers.0.mlp.down_proj": (24, 32)}, 48),
    "bert": ("encoder.layer.0.intermediate.dense",
             lambda m: m.encoder.layer[0].intermediate.dense.weight,
             {"encoder.layer.0.intermediate.dense": (32, 24),
              "encoder.layer.0.output.dense": (24, 32)}, 48),
    "gpt2": ("transformer.h.0.mlp.c_fc", lambda m: m.transformer.h[0].mlp.c_fc.weight.T,
             {"transformer.h.0.mlp.c_fc": (32, 64), "transformer.h.0.mlp.c_proj": (64, 32)},
             128),
}


@pytest.mark.parametrize("family", sorted(HF))
def test_captured_hf_mlp_compacts_by_hand(family):
    from sparsesim.prune.torch.export import capture

    model, kw = _hf(family)
    target, weight, shrunk, inter = HF[family]
    with torch.no_grad():
        weight(model)[: inter // 2] *= 1e-4  # the weakest half of the filters, by magnitude
    ids = torch.randint(0, 64, (2, 10))
    cap = capture(model, (), {"input_ids": ids, **kw})
    spec = PruneSpec("magnitude", granularity="filter", sparsity=0.5,
                     skip=tuple(x.name for x in cap.workload.layers if x.name != target))
    dense = cap.trace(spec.__class__("magnitude", granularity="filter", sparsity=0.5,
                                     skip=spec.skip, compact=False))
    trace = cap.trace(spec)
    got = {x.name: (x.in_channels, x.out_channels) for x in trace.workload.layers}
    for name, shape in shrunk.items():
        assert got[name] == shape, name
    others = [x for x in trace.workload.layers if x.name not in shrunk]
    assert others == [x for x in cap.workload.layers if x.name not in shrunk]
    # 20 tokens: each removed filter takes hidden (32) MACs per token from the producer,
    # (llama) as many from up_proj, and 32 from its reader
    per = 20 * 32 * (inter // 2)
    removed = per * (3 if family == "llama" else 2)
    assert dense.workload.dense_macs - trace.workload.dense_macs == removed
    assert trace.meta["compaction"]["graph"] == "read from torch.export"
    # the attention's q/k/v filters are pinned by the head reshape, never cut
    for x in trace.workload.layers:
        if x.name.endswith(("query", "q_proj", "c_attn")):
            assert (x.in_channels, x.out_channels) == next(
                (y.in_channels, y.out_channels) for y in cap.workload.layers if y.name == x.name)
