"""Attention operands carry masks (issue 15 item 4): Q, K, V, P and the O projection's input
as masked operands, causal QKᵀ skipping its masked half on skipping PEs, activation formats
on activation W operands (issue 17 defect c), trace v3. Expected values are derived by hand
or by an independent count here, never read from the code under test."""

import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.arch.array import ArrayConfig
from sparsesim.arch.config import Arch, load_arch, with_overrides
from sparsesim.arch.pe import PeConfig
from sparsesim.engine.inference import run_layers
from sparsesim.errors import SparsesimError
from sparsesim.mapping.gemm import Gemm, GemmOperands
from sparsesim.mapping.lower import gemm_operands
from sparsesim.names import AttnOperand
from sparsesim.pe.kinds import compute
from sparsesim.pe.reference import run_skip_reference
from sparsesim.sparsity.masks import LayerMasks, check_masks
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.workload.layers import Attention, Conv2d, Linear
from sparsesim.workload.network import Workload

DATAFLOWS = ["os", "ws", "is"]
OPERANDS = ["A", "W", "both"]
SYNCS = ["pe", "row", "col", "wavefront"]


def small_arch(rows, cols, dataflow="os", **pe):
    return Arch(array=ArrayConfig(rows, cols, dataflow), pe=PeConfig(**pe))


def default(**over):
    return with_overrides(load_arch("default"), over)


def by_name(rows):
    return {r.gemm: r for r in rows}


def random_masks(layer, density, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.random(s) < density for k, s in layer.activation_shapes().items()}


# --- shapes ----------------------------------------------------------------------------------

def test_activation_shapes_by_hand():
    # b=2, l=3 queries over kv=5 keys, 6 heads of 8 on 2 K/V heads (groups of 3).
    att = Attention("a", b=2, l=3, e=48, heads=6, kv_heads=2, kv_len=5)
    assert att.activation_shapes() == {"q": (2, 6, 3, 8), "k": (2, 2, 5, 8),
                                       "v": (2, 2, 5, 8), "p": (2, 6, 3, 5),
                                       "o_in": (2, 3, 48)}
    assert set(att.activation_shapes()) == set(AttnOperand)
    # 4 of 6 heads kept: 2 K/V heads still used (group-packed), o_in 4·8 wide.
    kept = replace(att, heads_kept=4).activation_shapes()
    assert kept["q"] == (2, 4, 3, 8) and kept["k"] == (2, 2, 5, 8) and kept["o_in"] == (2, 3, 32)
    assert Conv2d("c", c=2, h=4, w=4, m=2, r=3, s=3).activation_shapes() == {}
    assert Linear("f", 4, 5).activation_shapes() == {}


def test_check_masks_names_layer_and_operand():
    att = Attention("att0", l=4, e=8, heads=2)
    with pytest.raises(SparsesimError) as err:
        check_masks(att, LayerMasks(activations={"p": np.ones((1, 2, 4, 5), bool)}))
    msg = str(err.value)
    assert "att0" in msg and "activations.p" in msg and "(1, 2, 4, 4)" in msg
    assert "\n" not in msg
    with pytest.raises(SparsesimError, match="no internal activation 'x'"):
        check_masks(att, LayerMasks(activations={"x": np.ones((1,), bool)}))
    with pytest.raises(SparsesimError, match="activations.q"):  # a float array is not a mask
        check_masks(att, LayerMasks(activations={"q": np.ones((1, 2, 4, 4))}))
    with pytest.raises(SparsesimError, match="has none"):
        check_masks(Linear("fc", 4, 4), LayerMasks(activations={"p": np.ones((1,), bool)}))


# --- traces ----------------------------------------------------------------------------------

def test_trace_v3_round_trip(tmp_path):
    att = Attention("att", b=2, l=4, e=16, heads=4, kv_heads=2, causal=True)
    acts = random_masks(att, 0.6, 1)
    w = {"q": np.random.default_rng(2).random((16, 16)) < 0.5}
    trace = Trace(Workload("net", (att,)), {"att": LayerMasks(w, None, acts)})
    trace.save(tmp_path / "t.npz")
    with zipfile.ZipFile(tmp_path / "t.npz") as z:
        names = set(z.namelist())
    assert {f"0/act/{k}.npy" for k in AttnOperand} <= names
    back = load_trace(tmp_path / "t.npz")
    got = back.masks["att"]
    assert set(got.activations) == set(acts)
    for k, m in acts.items():
        np.testing.assert_array_equal(got.activations[k], m)
    np.testing.assert_array_equal(got.weights["q"], w["q"])


def test_v2_trace_still_loads_with_dense_internals(tmp_path):
    att = Attention("att", l=4, e=8, heads=2, causal=True)
    w = {"k": np.eye(8, dtype=bool)}
    Trace(Workload("net", (att,)), {"att": LayerMasks(w)}).save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as data:  # rewrite it as a version-2 file
        arrays_ = {k: data[k] for k in data.files}
    manifest = json.loads(arrays_["manifest"].tobytes().decode())
    manifest["version"] = 2
    assert "activations" not in manifest["layers"][0]["masks"]  # the v2 layout
    arrays_["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "v2.npz", **arrays_)
    back = load_trace(tmp_path / "v2.npz")
    assert back.masks["att"].activations == {}
    np.testing.assert_array_equal(back.masks["att"].weights["k"], w["k"])
    # and it simulates as the dense-internal layer it described
    arch = default()
    a = run_layers("net", [(att, back.masks["att"])], arch)
    b = run_layers("net", [(att, LayerMasks(w))], arch)
    assert [r.cycles for r in a] == [r.cycles for r in b]


def test_a_trace_with_a_missing_act_member_is_one_error(tmp_path):
    att = Attention("att", l=4, e=8, heads=2)
    Trace(Workload("net", (att,)), {"att": LayerMasks(activations=random_masks(att, .5, 0))}
          ).save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as data:
        arrays_ = {k: data[k] for k in data.files if k != "0/act/v"}
    np.savez_compressed(tmp_path / "cut.npz", **arrays_)
    with pytest.raises(SparsesimError, match="activations.v"):
        load_trace(tmp_path / "cut.npz")


# --- effectual MACs by closed form -----------------------------------------------------------

@pytest.mark.parametrize("b,l,heads,kv_heads", [(1, 16, 2, None), (2, 12, 4, 2), (1, 9, 4, 1)])
def test_causal_effectual_macs_closed_form(b, l, heads, kv_heads):
    d = 8
    att = Attention("a", b=b, l=l, e=heads * d, heads=heads, kv_heads=kv_heads, causal=True)
    rows = by_name(run_layers("n", [(att, None)], default(**{"memory.ideal": True})))
    # query i sees keys 0..i: l(l+1)/2 needed scores per head, d products each; PV the same.
    causal = b * heads * d * l * (l + 1) // 2
    assert rows["qk"].effectual_macs == causal
    assert rows["pv"].effectual_macs == causal
    assert rows["qk"].dense_macs == b * heads * l * l * d  # the dense array computes all


def test_top_k_effectual_macs_closed_form():
    # top-k of P per query row (k = 3), causal: row i keeps min(3, i + 1) keys.
    b, l, heads, d, k = 2, 10, 2, 4, 3
    att = Attention("a", b=b, l=l, e=heads * d, heads=heads, causal=True)
    rng = np.random.default_rng(0)
    p = np.zeros(att.activation_shapes()["p"], bool)
    for i in range(l):
        for bb in range(b):
            for h in range(heads):
                p[bb, h, i, rng.choice(i + 1, min(k, i + 1), replace=False)] = True
    rows = by_name(run_layers("n", [(att, LayerMasks(activations={"p": p}))],
                              default(**{"memory.ideal": True})))
    kept = sum(min(k, i + 1) for i in range(l))
    assert rows["pv"].effectual_macs == b * heads * kept * d
    assert rows["qk"].effectual_macs == b * heads * d * l * (l + 1) // 2  # scores still all


def test_masked_operands_reach_their_gemms():
    # Every internal mask lands on its GEMM's operand: independent count of effectual MACs.
    att = Attention("a", b=2, l=5, e=24, heads=6, kv_heads=2, causal=True)
    acts = random_masks(att, 0.5, 3)
    ops = {o.gemm.name: o for o in gemm_operands(att, LayerMasks(activations=acts))}
    q, k, v, p, o_in = (acts[x].astype(np.int64) for x in ("q", "k", "v", "p", "o_in"))
    kr, vr = np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1)  # each query head's K/V head
    causal = np.tril(np.ones((5, 5), np.int64))
    from sparsesim.pe.kinds import effectual_macs
    assert effectual_macs(ops["qk"]) == int(((q @ kr.transpose(0, 1, 3, 2)) * causal).sum())
    assert effectual_macs(ops["pv"]) == int(((p * causal) @ vr).sum())
    assert effectual_macs(ops["o"]) == int(o_in.sum()) * 24


# --- skipping the causal half ----------------------------------------------------------------

def test_causal_qk_on_skipping_pes_by_hand():
    # l = 64 keys/queries, d = 16, one head, 16×16 os array: output folds (i, j) of 16×16;
    # fold j ≤ i holds a needed score, j > i holds none (6 of 16 folds). A needed fold takes
    # d = 16 steps; an empty one 0; every fold adds the os fill/drain 16 + 16 − 2.
    att = Attention("a", l=64, e=16, heads=1, causal=True)
    full = replace(att, causal=False)
    arch = small_arch(16, 16, "os", kind="skip", operand="both", sync="pe")
    qk = {o.gemm.name: o for o in gemm_operands(att, None)}["qk"]
    qk_full = {o.gemm.name: o for o in gemm_operands(full, None)}["qk"]
    got = compute(qk, arch)
    assert got.compute_cycles == 16 * 30 + 10 * 16
    assert compute(qk_full, arch).compute_cycles == 16 * (30 + 16)
    dense = small_arch(16, 16, "os", kind="dense")
    assert compute(qk, dense).compute_cycles == compute(qk_full, dense).compute_cycles \
        == 16 * (30 + 16)
    assert compute(qk, dense).issued_macs == 64 * 64 * 16  # dense computes everything
    assert got.issued_macs == 16 * 64 * 65 // 2


def test_whole_run_skip_drops_dense_unchanged():
    att = Attention("a", l=128, e=64, heads=2, causal=True)
    full = replace(att, causal=False)
    skip, dense = default(**{"pe.kind": "skip"}), default()
    qk = lambda layer, a: by_name(run_layers("n", [(layer, None)], a))["qk"]  # noqa: E731
    assert qk(att, skip).cycles < qk(full, skip).cycles
    assert qk(att, dense).cycles == qk(full, dense).cycles


@st.composite
def masked_gemm(draw, max_dim=7):
    m, k, n = (draw(st.integers(1, max_dim)) for _ in range(3))
    a = draw(arrays(np.int64, (m, k), elements=st.integers(0, 2)))
    w = draw(arrays(np.int64, (k, n), elements=st.integers(-2, 0)))
    o = draw(arrays(np.bool_, (m, n)))
    return a, w, o, draw(st.integers(1, 4)), draw(st.integers(1, 4))


@given(masked_gemm(), st.sampled_from(DATAFLOWS), st.sampled_from(OPERANDS),
       st.sampled_from(SYNCS))
def test_output_masked_skip_equals_cycle_stepped_reference(case, dataflow, operand, sync):
    a, w, o, rows, cols = case
    ref = run_skip_reference(a, w, dataflow, rows, cols, operand, sync, o=o)
    np.testing.assert_array_equal(ref.output, np.where(o, a @ w, 0))
    ops = GemmOperands(Gemm("l", "g", a.shape[0], a.shape[1], w.shape[1]), a != 0, w != 0, o=o)
    got = compute(ops, small_arch(rows, cols, dataflow, kind="skip", operand=operand,
                                  sync=sync))
    assert got.compute_cycles == ref.cycles
    # issued: products with the named operand non-zero and the output needed, counted here
    live = {"A": (a != 0)[:, :, None] & np.ones(w.shape, bool)[None],
            "W": np.ones(a.shape, bool)[:, :, None] & (w != 0)[None],
            "both": (a != 0)[:, :, None] & (w != 0)[None]}[operand]
    assert got.issued_macs == int((live & o[:, None, :]).sum())
    assert got.effectual_macs == int(((a != 0)[:, :, None] & (w != 0)[None]
                                      & o[:, None, :]).sum())


def test_all_ones_output_mask_changes_nothing():
    rng = np.random.default_rng(5)
    a, w = rng.random((9, 7)) < .5, rng.random((7, 11)) < .5
    g = Gemm("l", "g", 9, 7, 11)
    for df in DATAFLOWS:
        for sync in SYNCS:
            arch = small_arch(3, 4, df, kind="skip", sync=sync)
            x = compute(GemmOperands(g, a, w), arch)
            y = compute(GemmOperands(g, a, w, o=np.ones((9, 11), bool)), arch)
            assert (x.compute_cycles, x.issued_macs, x.effectual_macs) == \
                (y.compute_cycles, y.issued_macs, y.effectual_macs)


def test_gate_gates_operands_only():
    # gating PEs: dense cycles; the causal half is not an operand, so only zero operands gate
    att = Attention("a", l=32, e=32, heads=2, causal=True)
    acts = random_masks(att, 0.5, 4)
    gate = default(**{"pe.kind": "gate", "memory.ideal": True})
    qk = {o.gemm.name: o for o in gemm_operands(att, LayerMasks(activations=acts))}["qk"]
    dense_qk = {o.gemm.name: o for o in gemm_operands(att, None)}["qk"]
    q, k = acts["q"].astype(np.int64), acts["k"].astype(np.int64)
    both = int((q @ k.transpose(0, 1, 3, 2)).sum())  # non-zero operand pairs, all outputs
    got = compute(qk, gate)
    assert got.compute_cycles == compute(dense_qk, gate).compute_cycles
    assert got.issued_macs == both and got.gated_macs == qk.gemm.dense_macs - both


# --- formats: an activation W is stored as an activation (issue 17 defect c) ------------------

def test_activation_w_uses_the_activation_format():
    att = Attention("a", l=16, e=32, heads=2)
    wl_masks = LayerMasks(activations={"k": np.zeros((1, 2, 16, 16), bool)})
    def w_bytes(**over):
        r = by_name(run_layers("n", [(att, wl_masks)], default(**over)))["qk"].traffic
        return r["dram_read_data_bytes_w"] + r["dram_read_meta_bytes_w"]
    # K is all zeros: a bitmap K^T (16 × 16 per head) is its bitmap alone, 256 bits = 32 B,
    # one 64 B burst per head; dense it is 256 B per head. Two heads, one fold each, the
    # whole stream one tile (ideal memory: the tiling cuts no stream to hide a fetch).
    assert w_bytes(**{"memory.format_a": "bitmap", "memory.format_w": "dense",
                      "memory.ideal": True}) == 2 * 64
    assert w_bytes(**{"memory.format_a": "dense", "memory.format_w": "bitmap",
                      "memory.ideal": True}) == 2 * 256
    # an N:M weight format no longer lands on K^T, V (it failed: "not 2:4")
    nm = default(**{"pe.kind": "nm", "memory.format_w": "nm:n=2,m=4"})
    from sparsesim.rules.nm import conformant_mask
    w = {t: conformant_mask(s, 2, 4, (1,), rng=np.random.default_rng(0))
         for t, s in att.weight_shapes().items()}
    run_layers("n", [(att, LayerMasks(w))], nm)


# --- the seeded sparse-attention model ------------------------------------------------------

from sparsesim import simulate  # noqa: E402
from sparsesim.cli import main as cli_main  # noqa: E402
from sparsesim.engine.inference import run as run_workload  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402


def att_workload(causal=True, l=12, heads=2, d=4):
    return Workload("w", (Linear("fc", heads * d, heads * d, tokens=l),
                          Attention("att", l=l, e=heads * d, heads=heads, causal=causal)))


@pytest.mark.parametrize("causal", [True, False])
def test_seeded_top_k_closed_form(causal):
    l, heads, d, k = 12, 2, 4, 5
    wl = att_workload(causal, l, heads, d)
    rows = by_name(run_workload(wl, default(**{"memory.ideal": True}),
                                sparsity=SparsityModel(attn_top_k=k, seed=3)))
    visible = [i + 1 if causal else l for i in range(l)]
    assert rows["pv"].effectual_macs == heads * d * sum(min(k, v) for v in visible)
    # the online unit's top-k over every query row of P, after QK^T
    names = [r.gemm for r in run_workload(wl, default(), sparsity=SparsityModel(attn_top_k=k))]
    assert names[names.index("qk") + 1] == "online_topk_p"
    assert rows["online_topk_p"].elements == heads * l * l


def test_seeded_density_keeps_visible_keys_only():
    att = Attention("att", b=2, l=40, e=16, heads=4, causal=True)
    p = SparsityModel(attn_density=0.3, seed=1).internal_masks(att, 0)["p"]
    visible = np.tril(np.ones((40, 40), bool))
    assert not p[..., ~visible].any()
    assert p[..., visible].mean() == pytest.approx(0.3, abs=0.03)  # 6,560 Bernoulli draws
    # its own seed stream: weights and inputs are those of the model without it
    plain = SparsityModel(weight_density=0.5, act_density=0.5, seed=1)
    both = replace(plain, attn_density=0.3)
    a, b = plain.masks(att, 1), both.masks(att, 1)
    np.testing.assert_array_equal(a.weights["q"], b.weights["q"])
    np.testing.assert_array_equal(a.inputs, b.inputs)


def test_sparse_attention_options_that_change_nothing_are_refused():
    with pytest.raises(SparsesimError, match="no attention layer"):
        run_workload(Workload("mlp", (Linear("fc", 4, 4),)), default(),
                     sparsity=SparsityModel(attn_top_k=2))
    with pytest.raises(SparsesimError, match="keeps every key"):
        run_workload(att_workload(l=12), default(), sparsity=SparsityModel(attn_top_k=12))
    for bad in ({"attn_top_k": 0}, {"attn_top_k": True}, {"attn_top_k": 2.0},
                {"attn_density": 0.0}, {"attn_density": 1.5},
                {"attn_density": 0.5, "attn_top_k": 3}):
        with pytest.raises(SparsesimError):
            SparsityModel(**bad)


def test_prune_trace_equals_direct_run(tmp_path, capsys):
    spec = tmp_path / "w.toml"
    spec.write_text('[network]\nname = "tiny_attn"\n[[layer]]\nname = "fc"\nop = "linear"\n'
                    'in_features = 16\nout_features = 16\ntokens = 24\n[[layer]]\n'
                    'name = "att"\nop = "attention"\nl = 24\ne = 16\nheads = 2\ncausal = true\n')
    out = tmp_path / "t.npz"
    assert cli_main(["prune", "-w", str(spec), "--attn-top-k", "4", "--sparsity", "0.5",
                     "--seed", "2", "-o", str(out)]) == 0
    trace = load_trace(out)
    assert trace.meta["attn_prune"] == {"kind": "topk", "k": 4}
    p = trace.masks["att"].activations["p"]
    assert (p.sum(axis=-1) == np.minimum(4, np.arange(1, 25))).all()
    arch = default(**{"pe.kind": "skip"})
    via_trace = simulate(trace=trace, arch=arch).df
    direct = simulate(load_trace(out).workload, arch, sparsity=SparsityModel(
        attn_top_k=4, seed=2)).df
    pv = lambda df: int(df[df.gemm == "pv"].effectual_macs.sum())  # noqa: E731
    assert pv(via_trace) == pv(direct) == 2 * 8 * int(np.minimum(4, np.arange(1, 25)).sum())
    assert "online_topk_p" in set(via_trace.gemm)
    # the CLI flags reach the model, and are refused where they would change nothing
    assert cli_main(["run", "-w", str(spec), "--attn-top-k", "4", "--format", "csv"]) == 0
    assert cli_main(["run", "-w", "resnet18", "--attn-top-k", "4"]) == 2
    assert "no attention layer" in capsys.readouterr().err


def test_sweep_fields_reach_the_model():
    from sparsesim.sweep import build_point
    point = build_point({"workload": "minilm_l6_seq128", "sparsity.attn_top_k": 16,
                         "sparsity.attn_density": 1.0})
    assert point.sparsity == SparsityModel(attn_top_k=16)
    with pytest.raises(SparsesimError):
        build_point({"sparsity.attn_top_k": True})


# --- the torch front-end: trace masks are the hooks' tensors --------------------------------

def _sparse_attention_net(top_k=None):
    torch = pytest.importorskip("torch")
    from torch import nn
    import torch.nn.functional as F

    from sparsesim.prune.torch import models as M
    from sparsesim.prune.torch.capture import TorchNet

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(6, 16)
            self.attn = M.SelfAttention(16, 4, kv_heads=2, causal=True)

        def forward(self, x):
            return self.attn(F.relu(self.proj(x)))  # ReLU zeros reach Q, K, V

    torch.manual_seed(0)
    net = TorchNet(Net(), torch.randn(3, 10, 6))
    if top_k is not None:
        net.set_attention_top_k(top_k)
    return torch, net


def _hooked(torch, net):
    seen = {}
    mod = net.model.attn
    h1 = mod.taps.register_forward_hook(
        lambda m, args, out: seen.update(zip("qkpv", (a.detach().clone() for a in args))))
    h2 = mod.o.register_forward_pre_hook(lambda m, args: seen.update(o_in=args[0].clone()))
    with torch.no_grad():
        net.model(net.inputs)
    h1.remove()
    h2.remove()
    return seen


@pytest.mark.parametrize("top_k", [None, 3])
def test_trace_masks_equal_hooks_on_the_real_tensors(top_k):
    from sparsesim.prune import PruneSpec
    torch, net = _sparse_attention_net(top_k)
    net.prune(PruneSpec("magnitude", sparsity=0.8))
    trace = net.trace()
    seen = _hooked(torch, net)  # independent hooks, same model, same inputs
    att = trace.workload.layers[1]
    shapes = att.activation_shapes()
    got = trace.masks["attn"].activations
    expected = {"q": seen["q"] != 0, "k": seen["k"][:, ::2] != 0, "v": seen["v"][:, ::2] != 0,
                "p": seen["p"] != 0, "o_in": seen["o_in"] != 0}
    # the model repeats each K/V head for its 2 query heads: the copies are the same
    assert torch.equal(seen["k"][:, ::2], seen["k"][:, 1::2])
    for name, mask in expected.items():
        have = got.get(name, np.ones(shapes[name], bool))  # absent: all ones, dense
        np.testing.assert_array_equal(have, mask.numpy().reshape(shapes[name]), err_msg=name)
    assert "p" in got  # the causal zeros at least
    assert any(not expected[x].all() for x in "qkv")  # the case is not trivially dense
    if top_k is not None:
        assert trace.meta["attn_prune"] == {"kind": "topk", "k": 3}
        assert (got["p"].sum(axis=-1) == np.minimum(3, np.arange(1, 11))).all()
    # and the simulator's effectual MACs equal those counted on the real tensors, score
    # GEMMs included (QK^T: the causal scores only)
    df = simulate(trace=trace, arch="default").df
    gemms = df[df["count"] > 0]
    simulated = {(r.layer, r.gemm): int(r.effectual_macs) for r in gemms.itertuples()}
    assert net.effectual_macs() == simulated


def test_top_k_attention_changes_the_model_output():
    torch, net = _sparse_attention_net()
    with torch.no_grad():
        full = net.model(net.inputs)
    net.set_attention_top_k(2)
    with torch.no_grad():
        top = net.model(net.inputs)
    assert not torch.allclose(full, top)
    net.set_attention_top_k(None)
    with torch.no_grad():
        assert torch.equal(net.model(net.inputs), full)
    from sparsesim.prune import PruneSpec
    net.set_attention_top_k(2)
    with pytest.raises(SparsesimError, match="top-k attention"):
        net.trace(PruneSpec("magnitude", granularity="head", sparsity=0.5))
