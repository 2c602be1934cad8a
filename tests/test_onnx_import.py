"""ONNX import (sparsesim.prune.onnx): files exported from our own tiny torch models (the legacy
TorchScript exporter, ``torch.onnx.export(..., dynamo=False)``: the dynamo exporter needs
onnxscript, not installed) and files built with ``onnx.helper``. Expected values are closed
forms, the torch capture of the same model (tests/test_export_capture.py checks that one
against PyTorch's own count) and onnxruntime's intermediate tensors read by a session of our
own here."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from sparsesim.errors import SparsesimError  # noqa: E402
from sparsesim.prune.onnx.capture import capture  # noqa: E402
from sparsesim.prune.spec import PruneSpec  # noqa: E402
from sparsesim.prune.torch.export import capture as torch_capture  # noqa: E402
from sparsesim.sparsity.trace import load_trace  # noqa: E402
from sparsesim.workload.layers import Conv2d, Linear, MatMul  # noqa: E402


def export(model: nn.Module, args: tuple, path, names: list[str], **kw) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, str(path), dynamo=False, input_names=names, **kw)
    return str(path)


def ort_tensors(path: str, feeds: dict[str, np.ndarray], names: list[str]) -> dict:
    """Intermediate tensors as onnxruntime computes them (our own session, not the import's)."""
    m = onnx.load(path)
    m = onnx.shape_inference.infer_shapes(m)
    types = {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}
    for n in names:
        m.graph.output.append(helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT),
                                                            None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, feeds)))


def node_input(path: str, node_name: str, i: int = 0) -> str:
    return next(n for n in onnx.load(path).graph.node if n.name == node_name).input[i]


# --- a CNN ---------------------------------------------------------------------------------------


class Cnn(nn.Module):
    """Conv (padded), depthwise conv (stride 2), grouped 1×1, a Linear: ReLU zeros throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 16, 1, groups=2)
        self.fc = nn.Linear(16 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x))
        y = F.relu(self.dw(y))
        y = F.relu(self.pw(y))
        return self.fc(y.flatten(1))


def cnn_macs(n: int) -> dict[str, int]:
    """Closed form: N·M·(C/g)·R·S·E·F per conv, B·in·out for the Linear (12×12 input)."""
    return {"conv1": n * 8 * 3 * 9 * 12 * 12, "dw": n * 8 * 1 * 9 * 6 * 6,
            "pw": n * 16 * 4 * 1 * 6 * 6, "fc": n * 16 * 36 * 10}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = Cnn()
    x = torch.randn(2, 3, 12, 12)
    path = export(model, (x,), tmp_path_factory.mktemp("cnn") / "cnn.onnx", ["x"])
    return model, x, path


def test_cnn_layers_macs_and_weights_equal_torch_capture_and_closed_form(cnn):
    model, x, path = cnn
    cap = capture(path, calibration={"x": x.numpy()})
    ref = torch_capture(model, (x,))
    assert cap.workload.layers == ref.workload.layers
    macs = {layer.name: layer.dense_macs for layer in cap.workload.layers}
    assert macs == cnn_macs(2)
    assert cap.coverage.captured_macs == cap.coverage.total_macs == sum(cnn_macs(2).values()) \
        == ref.coverage.total_macs
    assert cap.workload.layers[1] == Conv2d("dw", c=8, h=12, w=12, m=8, r=3, s=3, n=2, stride=2,
                                            padding=1, groups=8)
    for name, w in ref.weights().items():
        assert np.array_equal(cap.weights()[name]["w"], w["w"]), name


def test_cnn_activation_masks_equal_onnxruntime_tensors_and_torch(cnn):
    model, x, path = cnn
    cap = capture(path, calibration={"x": x.numpy()})
    ref = torch_capture(model, (x,))
    names = {layer: node_input(path, f"/{layer}/{op}") for layer, op in
             (("conv1", "Conv"), ("dw", "Conv"), ("pw", "Conv"), ("fc", "Gemm"))}
    got = ort_tensors(path, {"x": x.numpy()}, list(names.values()))
    for layer, tensor in names.items():
        mask = cap.first.inputs[layer]
        assert np.array_equal(mask, got[tensor].reshape(mask.shape) != 0), layer
        assert np.array_equal(mask, ref.first.inputs[layer]), layer
    assert 0.3 < cap.first.inputs["pw"].mean() < 0.8  # ReLU zeros, really measured


def test_cnn_pruned_trace_equals_torch_captures(cnn, tmp_path):
    model, x, path = cnn
    cap = capture(path, calibration={"x": x.numpy()}, norms=True)
    ref = torch_capture(model, (x,), norms=True)
    for criterion in ("magnitude", "wanda"):
        spec = PruneSpec(criterion=criterion, granularity="unstructured", sparsity=0.5)
        got, want = cap.trace(spec), ref.trace(spec)
        assert set(got.masks) == set(want.masks)
        for name, lm in want.masks.items():
            assert np.array_equal(got.masks[name].weights["w"], lm.weights["w"]), name
            # activations measured on the pruned model: the masks were applied in the graph
            assert np.array_equal(got.masks[name].inputs, lm.inputs), name
        assert got.meta["capture"]["method"] == "onnx"
        got.save(tmp_path / f"{criterion}.npz")
        back = load_trace(tmp_path / f"{criterion}.npz")
        for name, lm in got.masks.items():
            assert np.array_equal(back.masks[name].weights["w"], lm.weights["w"])


def test_zeros_in_weights_are_masks_round_trip(tmp_path):
    """torch.nn.utils.prune's masks, exported (weight_orig · weight_mask folds to a weight
    with zeros): the trace's masks are exactly those masks."""
    torch.manual_seed(1)
    model = Cnn()
    masks = {}
    for name in ("conv1", "fc"):
        mod = getattr(model, name)
        torch_prune.l1_unstructured(mod, "weight", amount=0.6)
        masks[name] = mod.weight_mask.detach().numpy().astype(bool)
    x = torch.randn(1, 3, 12, 12)
    path = export(model, (x,), tmp_path / "pruned.onnx", ["x"])
    trace = capture(path, calibration={"x": x.numpy()}).trace()
    for name, mask in masks.items():
        assert np.array_equal(trace.masks[name].weights["w"], mask), name
    assert "w" not in (trace.masks["dw"].weights if "dw" in trace.masks else {})  # dense


# --- the command line ----------------------------------------------------------------------------


def _cli(*argv: str, env_extra: str = "") -> subprocess.CompletedProcess:
    code = f"import sys; {env_extra}from sparsesim.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)


def test_cli_import_prune_and_run(cnn, tmp_path):
    model, x, path = cnn
    np.savez(tmp_path / "cal.npz", x=x.numpy())
    out = tmp_path / "as_is.npz"
    proc = _cli("import", "--model", path, "--calibration-inputs", str(tmp_path / "cal.npz"),
                "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    total = sum(cnn_macs(2).values())
    assert f"captured {total:,} of {total:,} MACs" in proc.stdout
    trace = load_trace(out)
    assert [layer.name for layer in trace.workload.layers] == ["conv1", "dw", "pw", "fc"]
    ref = torch_capture(model, (x,)).trace()
    for name, lm in ref.masks.items():
        assert np.array_equal(trace.masks[name].inputs, lm.inputs), name
    pruned = tmp_path / "p.npz"
    proc = _cli("prune", "--model", path, "--input-shape", "x=2x3x12x12", "--method",
                "magnitude", "--sparsity", "0.5", "-o", str(pruned))
    assert proc.returncode == 0, proc.stderr
    assert load_trace(pruned).meta["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    proc = _cli("run", "--trace", str(pruned), "--set", "pe.kind=skip")
    assert proc.returncode == 0, proc.stderr


def test_cli_refusals_are_one_line(cnn, tmp_path):
    _, _, path = cnn
    cases = [
        (("import", "--model", path, "--input-shape", "x=1x3x12", "-o", str(tmp_path / "a.npz")),
         "--input-shape", "4 dimensions"),
        (("import", "--model", path, "--input-shape", "y=1x3x12x12", "-o",
          str(tmp_path / "a.npz")), "--input-shape", "no input 'y'"),
        (("import", "--model", path, "--input-shape", "x=3x3x12x12", "-o",
          str(tmp_path / "a.npz")), "--input-shape", "fixed at 2"),
        (("prune", "-w", "resnet18", "--input-shape", "1x3x8x8", "-o", str(tmp_path / "b.npz")),
         "--input-shape", "model.onnx"),
    ]
    for argv, field, text in cases:
        proc = _cli(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert field in proc.stderr and text in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_without_onnx_one_line_names_the_extra(cnn, tmp_path):
    _, _, path = cnn
    proc = _cli("import", "--model", path, "-o", str(tmp_path / "a.npz"),
                env_extra="sys.modules['onnx'] = None; ")
    assert proc.returncode == 2
    assert "pip install 'sparsesim[onnx]'" in proc.stderr and "Traceback" not in proc.stderr


# --- transformer blocks: attention's QKᵀ and PV -------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, e: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(e))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Block(nn.Module):
    """A BERT-like (bidirectional, key-padding mask, LayerNorm, GELU, biases) or Llama-like
    (causal, GQA by repeated K/V, RMSNorm, SwiGLU, no biases) transformer block on SDPA."""

    def __init__(self, e: int, heads: int, kv_heads: int, ffn: int, llama: bool) -> None:
        super().__init__()
        self.h, self.kvh, self.llama = heads, kv_heads, llama
        d, bias = e // heads, not llama
        self.q = nn.Linear(e, e, bias=bias)
        self.k = nn.Linear(e, d * kv_heads, bias=bias)
        self.v = nn.Linear(e, d * kv_heads, bias=bias)
        self.o = nn.Linear(e, e, bias=bias)
        self.norm1 = RMSNorm(e) if llama else nn.LayerNorm(e)
        self.norm2 = RMSNorm(e) if llama else nn.LayerNorm(e)
        self.up = nn.Linear(e, ffn, bias=bias)
        self.gate = nn.Linear(e, ffn, bias=False) if llama else None
        self.down = nn.Linear(ffn, e, bias=bias)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        b, l, e = x.shape  # noqa: E741
        d = e // self.h
        y = self.norm1(x)
        q = self.q(y).view(b, l, self.h, d).transpose(1, 2)
        k = self.k(y).view(b, l, self.kvh, d).transpose(1, 2)
        v = self.v(y).view(b, l, self.kvh, d).transpose(1, 2)
        rep = self.h // self.kvh
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        mask = None if keep is None else keep[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.llama)
        x = x + self.o(a.transpose(1, 2).reshape(b, l, e))
        y = self.norm2(x)
        if self.gate is not None:
            y = F.silu(self.gate(y)) * self.up(y)
        else:
            y = F.gelu(self.up(y))
        return x + self.down(y)


def block_macs(b: int, l: int, e: int, heads: int, kv_heads: int, ffn: int,  # noqa: E741
               llama: bool) -> int:
    """Closed form: projections B·L·E·(E + 2·E·kv/h + E), MLP (2 or 3)·B·L·E·F, and the two
    score GEMMs 2·B·h·L²·d (QKᵀ and PV, GQA's K/V repeated per query head)."""
    d = e // heads
    proj = b * l * e * (2 * e + 2 * d * kv_heads)
    mlp = (3 if llama else 2) * b * l * e * ffn
    return proj + mlp + 2 * b * heads * l * l * d


@pytest.mark.parametrize("llama", [False, True], ids=["bert", "llama"])
def test_transformer_block_equals_torch_capture_and_onnxruntime(llama, tmp_path):
    torch.manual_seed(3)
    b, l, e, heads, kvh, ffn = 2, 6, 32, 4, (2 if llama else 4), 48  # noqa: E741
    model = Block(e, heads, kvh, ffn, llama)
    x = torch.randn(b, l, e)
    if llama:
        args, names, feeds = (x,), ["x"], {"x": x.numpy()}
    else:
        keep = torch.ones(b, l, dtype=torch.bool)
        keep[1, 4:] = False  # the second sequence is padded: its last two keys discarded
        args, names, feeds = (x, keep), ["x", "keep"], {"x": x.numpy(), "keep": keep.numpy()}
    path = export(model, args, tmp_path / "block.onnx", names)
    cap = capture(path, calibration=feeds)
    ref = torch_capture(model, args)
    total = block_macs(b, l, e, heads, kvh, ffn, llama)
    assert cap.coverage.captured_macs == cap.coverage.total_macs == total \
        == ref.coverage.total_macs
    assert cap.workload.layers == ref.workload.layers
    qk = next(x for x in cap.workload.layers if x.name == "model.qk")
    assert qk == MatMul("model.qk", m=l, k=e // heads, n=l, weights_operand=False,
                        count=b * heads)
    assert isinstance(cap.workload.layers[0], Linear)
    for name in ref.first.inputs:
        assert np.array_equal(cap.first.inputs[name], ref.first.inputs[name]), name
    for name, internal in ref.first.internal.items():
        assert set(cap.first.internal[name]) == set(internal), name
        for key, mask in internal.items():
            assert np.array_equal(cap.first.internal[name][key], mask), (name, key)
    # the needed scores: causal (tril) or the padded keys discarded, as the model defines them
    o = cap.first.internal["model.qk"]["o"].reshape(b, heads, l, l)
    if llama:
        assert np.array_equal(o, np.broadcast_to(np.tril(np.ones((l, l), bool)), o.shape))
    else:
        assert o[0].all() and o[1, :, :, :4].all() and not o[1, :, :, 4:].any()
    # P (pv's A operand) is the Softmax output onnxruntime computes: its zeros are the masked
    softmax = node_input(path, "/MatMul_1")
    p = ort_tensors(path, feeds, [softmax])[softmax]
    assert np.array_equal(cap.first.inputs["model.pv"], p.reshape(b * heads, l, l) != 0)
    assert cap.first.inputs["model.pv"].mean() < 1  # masked probabilities are exact zeros
    spec = PruneSpec(criterion="magnitude", granularity="nm", nm=(2, 4))
    got, want = cap.trace(spec), ref.trace(spec)
    for name, lm in want.masks.items():
        assert np.array_equal(got.masks[name].weights.get("w"), lm.weights.get("w")), name
        assert np.array_equal(got.masks[name].inputs, lm.inputs), name


# --- files built with onnx.helper: Gemm forms, weights behind ops, refusals, symbolic dims ------


def save(tmp_path, name, nodes, inputs, outputs, inits=(), sparse=(), opset=17) -> str:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits),
                              sparse_initializer=list(sparse))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(model, path)
    return path


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_gemm_forms_and_weights_behind_cast_transpose_dequantize(tmp_path):
    rng = np.random.default_rng(5)
    bt = rng.standard_normal((5, 6)).astype(np.float16)  # [n, k], transB=1, stored as fp16
    c1 = rng.standard_normal(5).astype(np.float32)
    w2t = rng.standard_normal((4, 3)).astype(np.float32)  # W2 [3, 4] stored transposed
    q3 = rng.integers(-3, 4, (4, 2)).astype(np.int8)  # int8 weight, zeros among them
    q3[0, 0] = 0
    nodes = [
        helper.make_node("Cast", ["bt16"], ["bt"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["x", "bt", "c1"], ["y1"], name="/g1/Gemm", transB=1,
                         alpha=0.5),
        helper.make_node("Relu", ["y1"], ["r1"]),
        helper.make_node("Transpose", ["w2t"], ["w2"], perm=[1, 0]),
        helper.make_node("Gemm", ["w2", "r1"], ["y2"], name="/g2/Gemm"),  # W·X: [3, 5]
        helper.make_node("DequantizeLinear", ["q3", "s3", "z3"], ["w3"]),
        helper.make_node("Gemm", ["r1", "w3"], ["y3"], name="/g3/Gemm", transA=1),  # [5, 2]
        helper.make_node("Gemm", ["y2", "y2"], ["y4"], name="/g4/Gemm", transB=1),  # [3, 3]
    ]
    inits = [numpy_helper.from_array(bt, "bt16"), numpy_helper.from_array(c1, "c1"),
             numpy_helper.from_array(w2t, "w2t"), numpy_helper.from_array(q3, "q3"),
             numpy_helper.from_array(np.array(0.25, np.float32), "s3"),
             numpy_helper.from_array(np.array(0, np.int8), "z3")]
    path = save(tmp_path, "gemms", nodes, [_vi("x", [4, 6])],
                [_vi("y3", [5, 2]), _vi("y4", [3, 3])], inits)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    x[x < -0.5] = 0  # zeros in the input
    cap = capture(path, calibration={"x": x})
    layers = {layer.name: layer for layer in cap.workload.layers}
    assert layers == {"g1": Linear("g1", 6, 5, tokens=4, bias=True),
                      "g2": Linear("g2", 4, 3, tokens=5),
                      "g3": Linear("g3", 4, 2, tokens=5),
                      "g4": MatMul("g4", m=3, k=5, n=3, weights_operand=False)}
    assert cap.coverage.total_macs == cap.coverage.captured_macs == \
        4 * 6 * 5 + 3 * 4 * 5 + 5 * 4 * 2 + 3 * 5 * 3
    w = cap.weights()
    assert np.array_equal(w["g1"]["w"], 0.5 * bt.astype(np.float32))  # alpha scales W
    assert np.array_equal(w["g2"]["w"], w2t.T)
    assert np.array_equal(w["g3"]["w"], (q3.astype(np.float32) * 0.25).T)
    assert not cap.trace().masks["g3"].weights["w"][0, 0]  # the int8 zero is a mask
    r1 = np.maximum(0.5 * x @ bt.astype(np.float32).T + c1, 0)
    assert np.array_equal(cap.first.inputs["g1"], x != 0)
    assert np.array_equal(cap.first.inputs["g2"], r1.T != 0)
    assert np.array_equal(cap.first.inputs["g3"], r1.T != 0)  # transA: A's rows are tokens
    # pruned: g1's mask (layer layout [n, k]) applied to the [n, k] graph weight (transB)
    spec = PruneSpec(criterion="magnitude", granularity="unstructured", sparsity=0.8)
    trace = cap.trace(spec)
    m1 = trace.masks["g1"].weights["w"]
    assert m1.sum() == 6  # 30 weights, 24 pruned
    r1p = np.maximum(0.5 * x @ (bt.astype(np.float32) * m1).T + c1, 0)
    assert not np.array_equal(r1p != 0, r1 != 0)  # the pruning moved the activation zeros
    assert np.array_equal(trace.masks["g2"].inputs, r1p.T != 0)


def test_sparse_initializer_and_symbolic_batch(tmp_path):
    rng = np.random.default_rng(6)
    dense = rng.standard_normal((8, 3)).astype(np.float32)
    dense[rng.random((8, 3)) < 0.5] = 0
    flat = np.flatnonzero(dense)
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(dense.reshape(-1)[flat], "w"),
                                       numpy_helper.from_array(flat.astype(np.int64), "w_idx"),
                                       [8, 3])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul"),
             helper.make_node("Relu", ["y"], ["z"])]
    path = save(tmp_path, "sparse", nodes, [_vi("x", ["batch", 8])], [_vi("z", ["batch", 3])],
                sparse=[sparse])
    cap = capture(path, ["x=5x8"])
    assert cap.workload.layers == (Linear("fc", 8, 3, tokens=5),)
    assert np.array_equal(cap.weights()["fc"]["w"], dense.T)
    assert np.array_equal(cap.trace().masks["fc"].weights["w"], dense.T != 0)
    assert cap.coverage.total_macs == 5 * 8 * 3
    assert capture(path, ["7x8"]).workload.layers[0].tokens == 7  # positional
    with pytest.raises(SparsesimError, match=r"axis 0 is symbolic \(batch\)"):
        capture(path)
    with pytest.raises(SparsesimError, match="random normal calibration is for float"):
        p2 = save(tmp_path, "ints", [helper.make_node("Cast", ["i"], ["x"], to=1)] + nodes,
                  [_vi("i", [2, 8], TensorProto.INT64)], [_vi("z", [2, 3])], sparse=[sparse])
        capture(p2)


def _conv(name, x, y, k, **attrs):
    return helper.make_node("Conv", [x, f"w_{name}"], [y], name=f"/{name}/Conv", **attrs)


def test_conv_refusals_name_node_and_attribute_and_count_as_uncaptured(tmp_path):
    rng = np.random.default_rng(7)
    w3 = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 4, 2, 2)).astype(np.float32)
    nodes = [
        _conv("dil", "x", "a", 3, dilations=[2, 2], pads=[2, 2, 2, 2]),  # 9×9
        _conv("asym", "a", "b", 2, pads=[0, 0, 1, 1]),  # 9×9, the pad on one side only
        _conv("same", "b", "c", 3, auto_pad="SAME_UPPER"),  # pads 1 on every side: captured
        helper.make_node("ConvTranspose", ["c", "w_tr"], ["d"], name="/tr/ConvTranspose",
                         strides=[2, 2]),  # 18×18
        _conv("s2", "d", "e", 3, auto_pad="SAME_UPPER", strides=[2, 2]),  # 9×9, pads 0/1
    ]
    inits = [numpy_helper.from_array(w, f"w_{n}") for n, w in
             (("dil", w3), ("asym", w2), ("same", w3), ("tr", w2), ("s2", w3))]
    path = save(tmp_path, "convs", nodes, [_vi("x", [1, 4, 9, 9])], [_vi("e", [1, 4, 9, 9])],
                inits)
    conv3 = 4 * 4 * 9 * 81  # M · C · R·S · E·F
    tr = 4 * 81 * 4 * 4  # every input pixel × M · taps
    total = 3 * conv3 + 4 * 4 * 4 * 81 + tr
    with pytest.raises(SparsesimError) as err:
        capture(path)
    msg = str(err.value)
    assert f"{total - conv3} of {total} MACs" in msg
    assert "dil (Conv, node /dil/Conv)" in msg and "attribute dilations [2, 2]" in msg
    assert "attribute pads [0, 0, 1, 1]" in msg and "attribute pads [0, 0, 1, 1] (begin" in msg
    assert "tr (ConvTranspose, node /tr/ConvTranspose)" in msg
    assert "s2 (Conv, node /s2/Conv)" in msg
    cap = capture(path, allow_uncaptured=0.9)
    assert cap.workload.layers == (Conv2d("same", c=4, h=9, w=9, m=4, r=3, s=3, padding=1),)
    cov = cap.trace().meta["capture"]
    assert (cov["captured_macs"], cov["total_macs"]) == (conv3, total)
    assert {u["module"]: u["macs"] for u in cov["uncaptured"]} == {
        "dil": conv3, "asym": 4 * 4 * 4 * 81, "tr": tr, "s2": conv3}


# --- onnxruntime's contrib attention ops -----------------------------------------------------


def _attention_models(tmp_path, rng, b, s, hidden, heads):
    """The same attention as ``com.microsoft.Attention`` and as plain ONNX ops."""
    d = hidden // heads
    w = rng.standard_normal((hidden, 3 * hidden)).astype(np.float32) * 0.3
    bias = rng.standard_normal(3 * hidden).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "bias")]
    ins = [_vi("x", [b, s, hidden]), _vi("mask", [b, s], TensorProto.INT32)]
    fused = helper.make_node("Attention", ["x", "w", "bias", "mask"], ["y"],
                             name="/attn/Attention", domain="com.microsoft", num_heads=heads)
    g = helper.make_graph([fused], "fused", ins, [_vi("y", [b, s, hidden])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    fused_path = str(tmp_path / "fused.onnx")
    onnx.save(m, fused_path)
    c = lambda name, v: numpy_helper.from_array(np.asarray(v), name)  # noqa: E731
    consts = [c("shape4", np.array([b, s, heads, d], np.int64)),
              c("shape3", np.array([b, s, hidden], np.int64)),
              c("split", np.array([hidden] * 3, np.int64)), c("one", np.float32(1)),
              c("fill", np.float32(-10000)), c("scale", np.float32(1 / math.sqrt(d))),
              c("axes", np.array([1, 2], np.int64))]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["p0"], name="/attn/qkv/MatMul"),
        helper.make_node("Add", ["p0", "bias"], ["p"], name="/attn/qkv/Add"),
        helper.make_node("Split", ["p", "split"], ["q0", "k0", "v0"], axis=2),
        *[helper.make_node("Reshape", [f"{t}0", "shape4"], [f"{t}1"]) for t in "qkv"],
        helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["q", "kt"], ["sc0"], name="/attn/MatMul"),
        helper.make_node("Mul", ["sc0", "scale"], ["sc1"]),
        helper.make_node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mf"], ["mi"]),
        helper.make_node("Mul", ["mi", "fill"], ["madd0"]),
        helper.make_node("Unsqueeze", ["madd0", "axes"], ["madd"]),
        helper.make_node("Add", ["sc1", "madd"], ["sc"]),
        helper.make_node("Softmax", ["sc"], ["prob"], axis=-1),
        helper.make_node("MatMul", ["prob", "v"], ["o0"], name="/attn/MatMul_1"),
        helper.make_node("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["o1", "shape3"], ["y"]),
    ]
    plain_path = save(tmp_path, "plain", nodes, ins, [_vi("y", [b, s, hidden])],
                      inits + consts)
    return fused_path, plain_path


def test_contrib_attention_equals_its_unfused_graph(tmp_path):
    rng = np.random.default_rng(8)
    b, s, hidden, heads = 2, 5, 16, 4
    fused, plain = _attention_models(tmp_path, rng, b, s, hidden, heads)
    x = np.maximum(rng.standard_normal((b, s, hidden)).astype(np.float32), 0)  # ReLU zeros
    mask = np.ones((b, s), np.int32)
    mask[1, 3:] = 0
    feeds = {"x": x, "mask": mask}
    out_f = ort.InferenceSession(fused, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    out_p = ort.InferenceSession(plain, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert np.allclose(out_f, out_p, atol=1e-5)  # the two files compute the same attention
    got = capture(fused, calibration=feeds)
    want = capture(plain, calibration=feeds)
    assert got.workload.layers == want.workload.layers
    assert [layer.name for layer in got.workload.layers] == ["attn.qkv", "attn.qk", "attn.pv"]
    d = hidden // heads
    assert got.coverage.captured_macs == got.coverage.total_macs == \
        b * s * hidden * 3 * hidden + 2 * b * heads * s * s * d == want.coverage.total_macs
    assert np.array_equal(got.weights()["attn.qkv"]["w"], want.weights()["attn.qkv"]["w"])
    for name in ("attn.qkv", "attn.qk", "attn.pv"):
        assert np.array_equal(got.first.inputs[name], want.first.inputs[name]), name
    for name in ("attn.qk", "attn.pv"):
        assert np.array_equal(got.first.internal[name]["b"], want.first.internal[name]["b"])
    # P's zeros are the padded keys' (exp(-10000) underflows), as onnxruntime's Softmax gives
    p = got.first.inputs["attn.pv"].reshape(b, heads, s, s)
    assert p[0].all() and p[1, :, :, :3].all() and not p[1, :, :, 3:].any()
    # the fused op's key-padding mask says which scores are needed; the plain graph's mask is
    # finite (-10000 added), so there every score counts as needed, as in the torch capture
    o = got.first.internal["attn.qk"]["o"].reshape(b, heads, s, s)
    assert np.array_equal(o, p) and want.first.internal["attn.qk"]["o"].all()
    plain_masks = want.trace().masks
    assert "attn.qk" not in plain_masks or "o" not in plain_masks["attn.qk"].activations


# --- a real external file: ZigZag's ResNet-18 -----------------------------------------------


def test_zigzag_resnet18_equals_the_builtin_workload(tmp_path):
    """tests/data/README_zigzag.md: ZigZag's graph (BatchNorm folded into conv biases), seeded
    weights. Every layer's shape equals the built-in ResNet-18 workload's, as do its MACs."""
    from dataclasses import replace
    from pathlib import Path

    from sparsesim.workload.network import load_workload

    src = Path(__file__).parent / "data" / "zigzag_resnet18.onnx"
    with pytest.raises(SparsesimError, match="cannot load the ONNX model"):
        capture(src)  # its external weights are not shipped: one line, not a traceback
    model = onnx.load(str(src), load_external_data=False)
    rng = np.random.default_rng(0)
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(
            (rng.standard_normal(tuple(t.dims)) * 0.05).astype(np.float32), t.name))
    path = str(tmp_path / "resnet18.onnx")
    onnx.save(model, path)
    cap = capture(path)
    ref = load_workload("resnet18")
    assert cap.coverage.captured_macs == cap.coverage.total_macs \
        == sum(layer.dense_macs for layer in ref.layers) == 1_814_073_344
    assert len(cap.workload.layers) == len(ref.layers) == 21
    for got, want in zip(cap.workload.layers, ref.layers):
        assert got.name in (want.name, f"{want.name}.0")  # downsample is a Sequential's 0
        assert replace(got, name=want.name, bias=want.bias, norm=want.norm) == want
    assert 0.2 < cap.first.inputs["layer3.0.conv1"].mean() < 0.8  # ReLU zeros, measured


def test_contrib_multihead_attention_equals_its_unfused_graph(tmp_path):
    rng = np.random.default_rng(9)
    b, s, hidden, heads = 2, 5, 16, 4
    _, plain = _attention_models(tmp_path, rng, b, s, hidden, heads)
    model = onnx.load(plain)
    keep = [n for n in model.graph.node if n.op_type in ("MatMul", "Add", "Split")][:3]
    mha = helper.make_node("MultiHeadAttention", ["q0", "k0", "v0", "", "mask"], ["y"],
                           name="/attn/MultiHeadAttention", domain="com.microsoft",
                           num_heads=heads)
    graph = helper.make_graph(keep + [mha], "mha", list(model.graph.input),
                              list(model.graph.output), initializer=list(model.graph.initializer))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    path = str(tmp_path / "mha.onnx")
    onnx.save(m, path)
    x = np.maximum(rng.standard_normal((b, s, hidden)).astype(np.float32), 0)
    mask = np.ones((b, s), np.int32)
    mask[0, 4:] = 0
    feeds = {"x": x, "mask": mask}
    outs = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            for p in (path, plain)]
    assert np.allclose(outs[0], outs[1], atol=1e-5)
    got, want = capture(path, calibration=feeds), capture(plain, calibration=feeds)
    assert got.workload.layers == want.workload.layers
    assert got.coverage.captured_macs == got.coverage.total_macs == want.coverage.total_macs
    for name in ("attn.qk", "attn.pv"):
        assert np.array_equal(got.first.inputs[name], want.first.inputs[name]), name
        assert np.array_equal(got.first.internal[name]["b"], want.first.internal[name]["b"])
    o = got.first.internal["attn.qk"]["o"].reshape(b, heads, s, s)
    assert not o[0, :, :, 4:].any() and o[0, :, :, :4].all() and o[1].all()


def test_cli_import_takes_the_file_as_its_argument(cnn, tmp_path):
    _, _, path = cnn
    out = tmp_path / "pos.npz"
    proc = _cli("import", path, "--seed", "3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [layer.name for layer in load_trace(out).workload.layers] == ["conv1", "dw", "pw",
                                                                         "fc"]
    twice = _cli("import", path, "--model", path, "-o", str(out))
    assert twice.returncode == 2 and "give the model once" in twice.stderr
    # random normal calibration from the seed: another seed, other activation zeros
    other = tmp_path / "pos4.npz"
    assert _cli("import", path, "--seed", "4", "-o", str(other)).returncode == 0
    a, b = load_trace(out).masks["dw"].inputs, load_trace(other).masks["dw"].inputs
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_hf_bert_onnx_equals_its_torch_capture(tmp_path):
    """HF BERT (tiny config, random weights, key padding) exported by the TorchScript exporter:
    every layer and operand mask equals the torch capture's, except the pooler, which the
    exporter drops as dead code (the wrapper returns last_hidden_state; the eager pass the
    torch capture walks still computes it). HF Llama does not export this way in torch 2.13
    (aten::diff has no ONNX symbolic)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=64)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = transformers.BertModel(cfg).eval()

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    model = Wrapped().eval()
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    path = export(model, (ids, mask), tmp_path / "bert.onnx", ["ids", "mask"])
    cap = capture(path, calibration={"ids": ids.numpy(), "mask": mask.numpy()})
    ref = torch_capture(model, (ids, mask))
    want = tuple(x for x in ref.workload.layers if x.name != "bert.pooler.dense")
    assert cap.workload.layers == want
    assert cap.coverage.total_macs == cap.coverage.captured_macs == \
        ref.coverage.total_macs - 32 * 32 * 2
    for name in (x.name for x in want):
        assert np.array_equal(cap.first.inputs[name], ref.first.inputs[name]), name
        for key, m in ref.first.internal.get(name, {}).items():
            assert np.array_equal(cap.first.internal[name][key], m), (name, key)
    o = cap.first.internal["bert.encoder.layer.0.attention.self.qk"]["o"]
    assert o.mean() == 1 - 2 / 16  # sequence 1's two padded keys are not needed


def test_integer_gemm_is_listed_with_its_reason(tmp_path):
    w = np.arange(12, dtype=np.uint8).reshape(4, 3)
    nodes = [helper.make_node("MatMulInteger", ["x", "w"], ["y"], name="/q/MatMulInteger"),
             helper.make_node("Cast", ["y"], ["yf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["yf", "wf"], ["z"], name="/fc/MatMul")]
    path = save(tmp_path, "qmm", nodes, [_vi("x", [2, 4], TensorProto.UINT8)],
                [_vi("z", [2, 5])], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(
                    np.ones((3, 5), np.float32), "wf")])
    x = {"x": np.full((2, 4), 3, np.uint8)}
    with pytest.raises(SparsesimError) as err:
        capture(path, calibration=x)
    assert "24 of 54 MACs" in str(err.value)  # 2·4·3 integer, 2·3·5 float
    assert "q (MatMulInteger, node /q/MatMulInteger): 24 MACs, an integer MatMulInteger" \
        in str(err.value)
    assert capture(path, calibration=x, allow_uncaptured=0.5).workload.layers == (
        Linear("fc", 3, 5, tokens=2),)


def test_onnx_path_runs_without_torch(cnn, tmp_path):
    """The onnx extra does not need the torch extra: with torch unimportable the import runs."""
    _, _, path = cnn
    proc = _cli("import", path, "-o", str(tmp_path / "nt.npz"),
                env_extra="sys.modules['torch'] = None; ")
    assert proc.returncode == 0, proc.stderr
