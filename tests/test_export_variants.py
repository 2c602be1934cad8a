"""Graph capture of the conv variants, einsum and nn.MultiheadAttention: every aten conv form
becomes one Conv2d whose MACs equal PyTorch's own count (FlopCounterMode) and whose lowered
GEMM, run on the captured weights, reproduces the module's output; einsum GEMMs and MHA's
packed in_proj (split into q/k/v) are captured with exact MACs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from sparsesim.mapping.conv import im2col_matrix  # noqa: E402
from sparsesim.prune.torch.export import capture  # noqa: E402
from sparsesim.workload.layers import Conv2d, Linear, MatMul  # noqa: E402


def flops_macs(model: nn.Module, *args: torch.Tensor) -> int:
    """PyTorch's own count of the eager forward pass (FlopCounterMode: 2 FLOPs per MAC), with
    MultiheadAttention's fused fast path off (that op has no formula)."""
    mode = FlopCounterMode(display=False)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with mode, torch.no_grad():
            model(*args)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return mode.get_total_flops() // 2


def _lowered(layer: Conv2d, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The captured layer's GEMM on values: im2col(x) · W (its layout) → ``[n, m, …]``."""
    g = layer.groups
    a = im2col_matrix(x, layer)
    wg = w.reshape(g, layer.m // g, -1).transpose(0, 2, 1)
    out = np.einsum("gpk,gkm->pgm", a, wg).reshape(layer.n, layer.pixels, layer.m)
    return out.transpose(0, 2, 1)


VARIANTS = [
    ("stride21", lambda: nn.Conv2d(3, 4, (3, 1), stride=(2, 1), padding=(1, 0)), (1, 3, 9, 8)),
    ("dilated", lambda: nn.Conv2d(3, 4, 3, padding=2, dilation=2), (2, 3, 8, 8)),
    ("same_even", lambda: nn.Conv2d(3, 2, (4, 3), padding="same", dilation=(1, 2)),
     (1, 3, 7, 9)),
    ("reflect", lambda: nn.Conv2d(3, 2, 3, padding=(1, 2), padding_mode="reflect"),
     (1, 3, 6, 6)),
    ("circular", lambda: nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular"), (1, 3, 5, 6)),
    ("replicate", lambda: nn.Conv2d(3, 2, 3, stride=2, padding=2, padding_mode="replicate"),
     (1, 3, 7, 7)),
    ("grouped", lambda: nn.Conv2d(4, 6, 3, groups=2, stride=(1, 2), padding=(0, 1)),
     (2, 4, 6, 7)),
    ("conv1d_pad", lambda: nn.Conv1d(4, 5, 3, padding=1, stride=2), (2, 4, 11)),
    ("conv1d_same", lambda: nn.Conv1d(4, 4, 4, padding="same", dilation=2), (1, 4, 10)),
    ("conv3d", lambda: nn.Conv3d(2, 3, (3, 2, 3), stride=(1, 2, 1), padding=(1, 0, 1)),
     (1, 2, 4, 6, 5)),
    ("tconv2d", lambda: nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), (1, 4, 5, 5)),
    ("tconv2d_op", lambda: nn.ConvTranspose2d(4, 4, 3, stride=(2, 3), padding=1,
                                              output_padding=(1, 2), groups=2, dilation=1),
     (2, 4, 3, 4)),
    ("tconv1d", lambda: nn.ConvTranspose1d(3, 2, 3, stride=2), (1, 3, 6)),
    ("tconv3d", lambda: nn.ConvTranspose3d(2, 2, 2, stride=2), (1, 2, 2, 3, 3)),
]


class Wrap(nn.Module):
    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize(("name", "make", "shape"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_every_conv_variant_is_captured_exactly(name, make, shape):
    torch.manual_seed(0)
    model = Wrap(make()).eval()
    x = torch.randn(*shape, dtype=torch.float64)
    model = model.double()
    cap = capture(model, (x,))
    [layer] = cap.workload.layers
    assert isinstance(layer, Conv2d)
    assert cap.coverage.captured_macs == cap.coverage.total_macs == flops_macs(model, x)
    # the lowered GEMM on the captured (effective) weights is the module's output, less bias
    w = cap.weights()[layer.name]["w"].astype(np.float64)
    with torch.no_grad():
        want = model(x)
        if model.conv.bias is not None:
            want = want - model.conv.bias.reshape(1, -1, *([1] * (x.dim() - 2)))
    got = _lowered(layer, x.numpy().reshape(layer.input_shape), w)
    np.testing.assert_allclose(got, want.reshape(got.shape).numpy(), rtol=1e-5, atol=1e-5)


def test_transposed_conv_counts_pytorchs_scatter_but_simulates_its_direct_equivalent():
    model = Wrap(nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)).eval()
    x = torch.randn(1, 4, 5, 5)
    cap = capture(model, (x,))
    [layer] = cap.workload.layers
    assert (layer.e, layer.f) == (10, 10)  # (5−1)·2 − 2 + 4
    scatter = 4 * 3 * 16 * 25  # every input pixel × (in · out · taps), PyTorch's rule
    assert cap.coverage.captured_macs == scatter == flops_macs(model, x)
    assert layer.dense_macs == 3 * 4 * 16 * 100  # the direct conv: 100 outputs × 16 taps


def test_folded_pad_records_the_unpadded_input_mask():
    """A reflect-padded conv reads its padding from the input: the captured input mask is
    the feature map itself (not the padded copy), and im2col's zeros are only its zeros."""
    conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")
    model = Wrap(conv).eval()
    x = torch.randn(1, 2, 6, 6)
    x[0, 0, 0, 0] = 0.0
    cap = capture(model, (x,))
    [layer] = cap.workload.layers
    assert layer.padding_mode == "reflect" and layer.padding == 1 and layer.h == 6
    trace = cap.trace()
    mask = trace.masks[layer.name].inputs
    assert mask.shape == (1, 2, 6, 6) and not mask[0, 0, 0, 0] and mask.sum() == 71
    a = im2col_matrix(mask, layer)
    # pixel (0,0) of channel 0 is read by output (0,0) at tap (1,1) and, reflected, by (1,1)'s
    # tap (0,0), (0,1)'s (1,0)... : 4 reads (it is its own reflection's source 4 times)
    assert int((~a[0][:, :9]).sum()) == 4


class Einsums(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 5))
        self.v = nn.Parameter(torch.randn(3, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [2, 4, 6]
        a = torch.einsum("bti,io->bto", x, self.w)  # linear: tokens 8, in 6, out 5
        b = torch.einsum("bqd,bkd->bqk", x, x)  # batched activation GEMM, count 2
        c = torch.einsum("oi,bti->bot", self.v, x)  # weight first: W·X
        return a.sum() + b.sum() + c.sum()


def test_einsum_gemms_are_captured():
    model = Einsums().eval()
    x = torch.randn(2, 4, 6)
    cap = capture(model, (x,))
    layers = {layer.name: layer for layer in cap.workload.layers}
    assert layers["model.einsum"] == Linear("model.einsum", 6, 5, tokens=8)
    assert layers["model.einsum_1"] == MatMul("model.einsum_1", m=4, k=6, n=4,
                                              weights_operand=False, count=2)
    assert layers["model.einsum_2"] == Linear("model.einsum_2", 6, 3, tokens=8)
    assert cap.coverage.captured_macs == cap.coverage.total_macs == flops_macs(model, x) \
        == 8 * 6 * 5 + 2 * 4 * 6 * 4 + 8 * 6 * 3
    w = cap.weights()
    assert np.array_equal(w["model.einsum"]["w"], model.w.detach().numpy().T)
    assert np.array_equal(w["model.einsum_2"]["w"], model.v.detach().numpy())


def test_einsum_pruned_mask_applies_in_the_graph_layout():
    from sparsesim.prune.spec import PruneSpec

    model = Einsums().eval()
    x = torch.randn(2, 4, 6)
    cap = capture(model, (x,))
    trace = cap.trace(PruneSpec(criterion="magnitude", granularity="unstructured",
                                sparsity=0.5))
    w = trace.masks["model.einsum"].weights["w"]
    assert w.shape == (5, 6) and w.mean() == pytest.approx(0.5)
    want = np.abs(model.w.detach().numpy().T)
    assert want[w].min() >= want[~w].max()  # the kept half is the larger half


def test_einsum_not_a_gemm_is_refused_by_name():
    class Trace_(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("ii->i", x).sum() + torch.einsum("ij,jk->ik", x, x).sum()

    cap = capture(Trace_(), (torch.randn(4, 4),), allow_uncaptured=0.99)
    assert [layer.name for layer in cap.workload.layers] == ["model.einsum_1"]


class Vit(nn.Module):
    """A torchvision-ViT-like encoder block: MHA(batch_first) with its packed in_proj."""

    def __init__(self, e: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(e)
        self.attn = nn.MultiheadAttention(e, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln(x)
        out, _ = self.attn(y, y, y, need_weights=False)
        return x + out


def test_mha_in_proj_is_split_into_q_k_v():
    model = Vit().eval()
    x = torch.randn(2, 5, 8)
    cap = capture(model, (x,))
    names = [layer.name for layer in cap.workload.layers]
    assert names[:3] == ["attn.linear.q", "attn.linear.k", "attn.linear.v"]
    for layer in cap.workload.layers[:3]:
        assert layer == Linear(layer.name, 8, 8, tokens=10, bias=True)
    # by hand: q/k/v 3·(10 tokens · 8 · 8), QKᵀ and PV 2·(2 batch · 2 heads · 5 · 5 · 4),
    # out_proj 10 · 8 · 8
    assert cap.coverage.captured_macs == cap.coverage.total_macs == 3 * 640 + 2 * 400 + 640
    w = cap.weights()
    packed = model.attn.in_proj_weight.detach().numpy()
    for i, part in enumerate("qkv"):
        assert np.array_equal(w[f"attn.linear.{part}"]["w"], packed[8 * i:8 * (i + 1)])


def test_mha_split_masks_prune_their_own_rows():
    from sparsesim.prune.spec import PruneSpec

    model = Vit().eval()
    x = torch.randn(2, 5, 8)
    cap = capture(model, (x,))
    trace = cap.trace(PruneSpec(criterion="magnitude", granularity="unstructured",
                                sparsity=0.5))
    packed = np.abs(model.attn.in_proj_weight.detach().numpy())
    for i, part in enumerate("qkv"):
        m = trace.masks[f"attn.linear.{part}"].weights["w"]
        rows = packed[8 * i:8 * (i + 1)]
        assert m.shape == (8, 8) and rows[m].min() >= rows[~m].max()
    # the pruned pass applies each part's mask to its rows: the out_proj's input (attention
    # output) now differs from the unpruned model's
    assert trace.meta["capture"]["captured_macs"] == 3360


def test_wanda_on_a_3d_and_a_transposed_conv():
    """Wanda's per-input-channel norms broadcast over a 3-D kernel's (t, r, s) taps and a
    transposed conv's regrouped kernel; the masks apply back in PyTorch's layout."""
    from sparsesim.prune.spec import PruneSpec

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c3 = nn.Conv3d(2, 4, 3, padding=1)
            self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.c3(x))
            return self.up(y.mean(dim=2))

    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(2, 2, 3, 4, 4)
    cap = capture(model, (x,), norms=True)
    spec = PruneSpec(criterion="wanda", granularity="unstructured", sparsity=0.5,
                     compare="tensor")
    trace = cap.trace(spec)
    c3, up = cap.workload.layers
    w3 = trace.masks["c3"].weights["w"]
    assert w3.shape == (4, 2, 3, 3, 3) and w3.mean() == pytest.approx(0.5)
    # Wanda's score |W|·‖X_c‖ by hand, ranked per tensor
    norms = x.double().pow(2).sum(dim=(0, 2, 3, 4)).sqrt().numpy()
    score = np.abs(model.c3.weight.detach().numpy()) * norms[None, :, None, None, None]
    assert score[w3].min() >= score[~w3].max()
    wu = trace.masks["up"].weights["w"]
    assert wu.shape == (2, 4, 2, 2) and up.transposed and wu.mean() == pytest.approx(0.5)
