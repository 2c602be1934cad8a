"""Real model code, offline, random weights, tiny inputs: torchvision ResNet-18, MobileNet-v2,
ViT-B/16 (its nn.MultiheadAttention), Inception-v3 (1×7/7×1 convs: per-axis padding),
DeepLab-v3 (dilated ResNet-50) and timm ViT-Tiny, each captured with 100 % of the MACs
PyTorch's own FlopCounterMode counts on the eager forward. Skipped without torchvision/timm
(see README: they install beside the CPU torch with constraints.txt; torchvision is imported
through :func:`sparsesim.prune.torch.vision.import_torchvision`).

The same architectures' unusual convs, rebuilt from plain torch (an Inception-style stride
(2, 1) / 1×7 block and a DeepLab-style dilated ASPP), run everywhere."""

from __future__ import annotations

import importlib.util
import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils import flop_counter  # noqa: E402

from sparsesim.prune.torch.export import capture  # noqa: E402
from sparsesim.workload.layers import Conv2d, Linear, MatMul  # noqa: E402


def eager_macs(model: nn.Module, x: torch.Tensor) -> int:
    """PyTorch's count of the eager forward (FLOPs / 2), with its own ``sdpa_flop`` for the
    CPU flash-attention kernel (which it registers no formula for) and MultiheadAttention's
    fused fast path off (which has none either)."""
    aten = torch.ops.aten

    def sdpa(*args, out_val=None, **kwargs):
        return flop_counter.sdpa_flop(*args, out_val=out_val, **kwargs)

    sdpa._get_raw = True
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: sdpa}
    mode = flop_counter.FlopCounterMode(display=False, custom_mapping=mapping)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with mode, torch.no_grad():
            model.eval()(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return mode.get_total_flops() // 2


def _check(model: nn.Module, x: torch.Tensor):
    cap = capture(model, (x,))
    want = eager_macs(model, x)
    assert cap.coverage.captured_macs == cap.coverage.total_macs == want
    assert sum(layer.dense_macs for layer in cap.workload.layers if not (
        isinstance(layer, Conv2d) and layer.transposed)) == want
    return cap


# --- plain torch: the convs of Inception and DeepLab (always run) -------------------------------


class InceptionStyle(nn.Module):
    """Inception-v3's factorised 1×7 / 7×1 convs (per-axis padding) and a stride-(2, 1)
    reduction, as in its grid-size reductions along one axis."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 12, (1, 7), padding=(0, 3))
        self.b = nn.Conv2d(12, 12, (7, 1), padding=(3, 0))
        self.c = nn.Conv2d(12, 16, 3, stride=(2, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


class AsppStyle(nn.Module):
    """DeepLab-v3's ASPP: parallel 3×3 convs at dilation 2, 4, 6 ('same' size) and a 1×1."""

    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Conv2d(8, 4, 1)] + [nn.Conv2d(8, 4, 3, padding=r, dilation=r) for r in (2, 4, 6)])
        self.project = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


def test_inception_style_convs_by_hand():
    cap = _check(InceptionStyle(), torch.randn(2, 8, 9, 9))
    a, b, c = cap.workload.layers
    assert a.padding == (0, 3) and b.padding == (3, 0) and c.stride == (2, 1)
    assert (c.e, c.f) == (5, 7)  # floor((9 + 2 − 3)/2) + 1, floor((9 − 3)/1) + 1
    assert a.dense_macs == 2 * 12 * 8 * 7 * 81 and c.dense_macs == 2 * 16 * 12 * 9 * 35


def test_aspp_style_dilated_convs_by_hand():
    cap = _check(AsppStyle(), torch.randn(1, 8, 11, 11))
    dilated = [x for x in cap.workload.layers if x.dilation != 1]
    assert [x.dilation for x in dilated] == [2, 4, 6]
    assert all((x.e, x.f) == (11, 11) and x.dense_macs == 4 * 8 * 9 * 121 for x in dilated)


# --- the libraries' own model code ---------------------------------------------------------------


def _torchvision():
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed (README: pip install -c constraints.txt "
                    "torchvision timm)")
    from sparsesim.prune.torch.vision import import_torchvision

    return import_torchvision()


@pytest.fixture(scope="module")
def tv():
    return _torchvision()


def test_torchvision_resnet18(tv):
    torch.manual_seed(0)
    cap = _check(tv.models.resnet18(), torch.randn(1, 3, 32, 32))
    assert len(cap.workload.layers) == 21  # 20 convs (3 downsample) + fc
    conv1 = cap.workload.layers[0]
    assert (conv1.r, conv1.stride, conv1.padding, conv1.e) == (7, 2, 3, 16)


def test_torchvision_mobilenet_v2(tv):
    torch.manual_seed(0)
    cap = _check(tv.models.mobilenet_v2(), torch.randn(1, 3, 32, 32))
    depthwise = [x for x in cap.workload.layers if isinstance(x, Conv2d) and x.groups > 1]
    assert len(depthwise) == 17 and all(x.groups == x.c == x.m for x in depthwise)


def test_torchvision_vit_b16_mha(tv):
    torch.manual_seed(0)
    cap = _check(tv.models.vit_b_16(image_size=32), torch.randn(1, 3, 32, 32))
    layers = cap.workload.layers
    l, e = 5, 768  # noqa: E741 - 4 patches + the class token
    qkv = [x for x in layers if x.name.endswith((".q", ".k", ".v"))]
    assert len(qkv) == 36 and all(x == Linear(x.name, e, e, tokens=l, bias=True) for x in qkv)
    scores = [x for x in layers if isinstance(x, MatMul)]
    assert len(scores) == 24 and all(not x.weights_operand for x in scores)
    # closed form: patch conv, 12 × (QKV + O + MLP + QKᵀ + PV), head
    block = 4 * l * e * e + 2 * l * e * 3072 + 2 * 12 * l * l * 64
    assert cap.coverage.total_macs == 4 * e * 3 * 256 + 12 * block + e * 1000


def test_torchvision_inception_v3_per_axis_padding(tv):
    torch.manual_seed(0)
    model = tv.models.inception_v3(init_weights=False, aux_logits=False)
    cap = _check(model, torch.randn(1, 3, 75, 75))
    per_axis = [x for x in cap.workload.layers if isinstance(x, Conv2d)
                and isinstance(x.padding, tuple)]
    assert {x.padding for x in per_axis} >= {(0, 3), (3, 0), (0, 1), (1, 0)}


def test_torchvision_deeplabv3_dilated(tv):
    torch.manual_seed(0)
    model = tv.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                      aux_loss=False)
    cap = _check(model, torch.randn(1, 3, 32, 32))
    rates = {x.dilation for x in cap.workload.layers if isinstance(x, Conv2d)}
    assert {2, 4, 12, 24, 36} <= rates


def test_timm_vit_tiny(tv):
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed")
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32)
    cap = _check(model, torch.randn(1, 3, 32, 32))
    l, e = 5, 192  # noqa: E741
    block = 4 * l * e * e + 2 * l * e * 768 + 2 * 3 * l * l * 64
    assert cap.coverage.total_macs == 4 * e * 3 * 256 + 12 * block + e * 1000
    assert math.isclose(cap.coverage.fraction, 1.0)


FACTORY = '''
import torch
import torchvision  # a plain import: the factory loader made it work beside the CPU torch

def make():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(), torch.randn(1, 3, 32, 32)
'''


def test_a_factory_file_imports_torchvision_plainly(tv, tmp_path):
    """Through the real command in a fresh process: the factory loader imports torchvision
    through the guard before the user's file does."""
    import os
    import subprocess
    import sys

    from sparsesim.sparsity.trace import load_trace

    path = tmp_path / "tvmodel.py"
    path.write_text(FACTORY)
    out = tmp_path / "t.npz"
    done = subprocess.run([sys.executable, "-m", "sparsesim.cli", "import", "--model",
                           f"{path}:make", "-o", str(out)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)
    assert done.returncode == 0, done.stderr
    assert "coverage 1.0000" in done.stdout
    assert len(load_trace(out).workload.layers) == 53
