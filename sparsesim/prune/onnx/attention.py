"""The ``com.microsoft`` contrib attention ops (onnxruntime's fused ``Attention`` and
``MultiHeadAttention``) as the layers their unfused graph would give.

* ``Attention`` (input ``[B, S, hidden]``, packed weights ``[hidden, q + k + v]``, optional
  bias, ``num_heads``, ``unidirectional``, ``qkv_hidden_sizes``) is its projection
  ``{name}.qkv`` (a :class:`~sparsesim.workload.layers.Linear`, the packed weight's transpose)
  and the two score GEMMs ``{name}.qk`` / ``{name}.pv`` (batched activation MatMuls, ``count =
  B · heads``).
* ``MultiHeadAttention`` (projected ``query``, ``key``, ``value`` ``[B, S, hidden]``; optional
  bias) is the two score GEMMs.

The op's inner tensors (Q, K, V, the probabilities P) are not graph tensors, so onnxruntime
cannot expose them: they are computed here in numpy from the op's exposed inputs as the op
defines them (split per head, ``scale`` default ``1/√d``, a key-padding mask and the causal
mask adding ``mask_filter_value``, default −10000, softmax in float32), and their zeros are the
operand masks. The scores a key-padding mask or ``unidirectional`` discards are ``qk``'s
needed-output mask ``o``. Past key/value state, relative-position bias, packed or 4-D keys and
other mask layouts are refused naming the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx

from sparsesim.prune.onnx.constants import Constants
from sparsesim.prune.onnx.walk import Env, Refusal, Shapes, Site, WeightRef, _Handler
from sparsesim.workload.layers import Linear, MatMul


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _input(node: onnx.NodeProto, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


def _refuse_extra(node: onnx.NodeProto, names: Mapping[int, str]) -> None:
    for i, what in names.items():
        if _input(node, i):
            raise Refusal(f"input {i} ({what}) is not modelled")


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    """``[B, S, h·d]`` → ``[B·h, S, d]``."""
    b, s, hd = x.shape
    return x.reshape(b, s, heads, hd // heads).transpose(0, 2, 1, 3).reshape(b * heads, s,
                                                                             hd // heads)


def _keep(e: Env, mask: str, causal: bool, b: int, heads: int, s: int, kv: int
          ) -> np.ndarray | None:
    """The scores the masks keep, ``[B·h, S, S_kv]`` (None: all)."""
    keep = None
    if mask:
        m = np.asarray(e[mask])
        if m.shape != (b, kv):
            raise ValueError(f"mask shape {m.shape}")
        keep = np.broadcast_to((m != 0)[:, None, None, :], (b, heads, s, kv))
    if causal:
        tri = np.broadcast_to(np.tril(np.ones((s, kv), bool), kv - s), (b, heads, s, kv))
        keep = tri if keep is None else keep & tri
    return None if keep is None else keep.reshape(b * heads, s, kv).copy()


def _scores_sites(name: str, node: onnx.NodeProto, q: Callable[[Env], np.ndarray],
                  k: Callable[[Env], np.ndarray], v: Callable[[Env], np.ndarray],
                  dims: tuple[int, int, int, int, int, int], tensors: tuple[str, ...],
                  mask: str) -> list[Site]:
    b, s, kv, heads, dq, dv = dims
    at = _attrs(node)
    scale = float(at.get("scale", 0.0)) or 1 / math.sqrt(dq)
    fill = float(at.get("mask_filter_value", -10000.0))
    causal = bool(at.get("unidirectional", 0))
    count = b * heads
    qk = MatMul(f"{name}.qk", m=s, k=dq, n=kv, weights_operand=False, count=count)
    pv = MatMul(f"{name}.pv", m=s, k=kv, n=dv, weights_operand=False, count=count)

    def p_of(e: Env) -> np.ndarray:
        scores = (q(e) @ np.swapaxes(k(e), -1, -2)).astype(np.float32) * np.float32(scale)
        keep = _keep(e, mask, causal, b, heads, s, kv)
        if keep is not None:
            scores = np.where(keep, scores, scores + np.float32(fill))
        scores = scores - scores.max(axis=-1, keepdims=True)
        ex = np.exp(scores)
        return ex / ex.sum(axis=-1, keepdims=True)

    def o_of(e: Env) -> np.ndarray | None:
        return _keep(e, mask, causal, b, heads, s, kv)

    return [Site(qk, "", q, tensors, None, lambda e: np.swapaxes(k(e), -1, -2), o_of),
            Site(pv, "", p_of, tensors, None, v)]


def _attention(name: str, node: onnx.NodeProto, sh: Shapes, c: Constants, bias: bool
               ) -> list[Site]:
    _refuse_extra(node, {4: "past", 5: "attention_bias", 6: "past_sequence_length"})
    x, w, bname, mask = node.input[0], node.input[1], _input(node, 2), _input(node, 3)
    if not c.is_static(w) or c.value(w) is None:
        raise Refusal("its packed weights are not a stored (folded) tensor")
    b, s, hidden = sh[x]
    at = _attrs(node)
    heads = int(at.get("num_heads", 1))
    sizes = [int(v) for v in at.get("qkv_hidden_sizes", [])] or [sh[w][1] // 3] * 3
    qh, kh, vh = sizes
    if qh != kh:
        raise Refusal(f"attribute qkv_hidden_sizes {sizes}: query and key widths differ")
    if mask and sh.get(mask) != (b, s):
        raise Refusal(f"input 3 (mask_index) of shape {sh.get(mask)} is not modelled (only a "
                      f"[batch, sequence] key-padding mask)")
    proj = Linear(f"{name}.qkv", in_features=hidden, out_features=qh + kh + vh, tokens=b * s,
                  bias=bool(bname))

    def qkv(e: Env) -> np.ndarray:
        y = e[x].astype(np.float32) @ c.values[w].astype(np.float32)
        return y + e[bname] if bname else y

    def part(lo: int, hi: int) -> Callable[[Env], np.ndarray]:
        return lambda e: _heads(qkv(e)[..., lo:hi], heads)

    tensors = tuple(t for t in (x, bname, mask) if t)
    sites = [Site(proj, "", lambda e: e[x].reshape(b * s, hidden), (x,),
                  WeightRef(1, lambda t: t.T, lambda t: t.T))]
    return sites + _scores_sites(name, node, part(0, qh), part(qh, qh + kh),
                                 part(qh + kh, qh + kh + vh),
                                 (b, s, s, heads, qh // heads, vh // heads), tensors, mask)


def _mha(name: str, node: onnx.NodeProto, sh: Shapes, c: Constants, bias: bool
         ) -> list[Site]:
    _refuse_extra(node, {5: "attention_bias", 6: "past_key", 7: "past_value"})
    iq, ik, iv = node.input[0], _input(node, 1), _input(node, 2)
    bname, mask = _input(node, 3), _input(node, 4)
    if not ik or not iv or len(sh[ik]) != 3 or len(sh[iv]) != 3:
        raise Refusal("packed or per-head (4-D) keys and values are not modelled")
    b, s, hq = sh[iq]
    kv, hk, hv = sh[ik][1], sh[ik][2], sh[iv][2]
    heads = int(_attrs(node).get("num_heads", 1))
    if mask and sh.get(mask) != (b, kv):
        raise Refusal(f"input 4 (key_padding_mask) of shape {sh.get(mask)} is not modelled "
                      "(only [batch, kv_sequence])")

    def with_bias(t: str, lo: int, hi: int) -> Callable[[Env], np.ndarray]:
        def f(e: Env) -> np.ndarray:
            y = e[t].astype(np.float32)
            return _heads(y + e[bname][lo:hi] if bname else y, heads)
        return f

    tensors = tuple(t for t in (iq, ik, iv, bname, mask) if t)
    return _scores_sites(name, node, with_bias(iq, 0, hq), with_bias(ik, hq, hq + hk),
                         with_bias(iv, hq + hk, hq + hk + hv),
                         (b, s, kv, heads, hq // heads, hv // heads), tensors, mask)


HANDLERS: dict[tuple[str, str], _Handler] = {
    ("com.microsoft", "Attention"): _attention,
    ("com.microsoft", "MultiHeadAttention"): _mha,
}

__all__ = ["HANDLERS"]
