"""The seed's closed forms (DESIGN.md §2–3), written again here from their definitions.

Not by calling the package's own formulas: each layer's MACs and storage, the lowered GEMMs'
MACs summed per layer, and every format's size from its definition, against what the package
reports (a format's ``bits()`` and the bit count of its real encoder). :func:`clog2` is
shared with the N:M bounds (``nm``); the N:M test masks are
:func:`sparsesim.rules.nm.conformant_mask`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sparsesim.api import simulate
from sparsesim.arch.config import load_arch
from sparsesim.formats import parse_format
from sparsesim.rules.nm import conformant_mask
from sparsesim.sparsity.masks import exact_density_mask
from sparsesim.validation.registry import (
    SOURCES,
    Check,
    Context,
    Group,
    add_group,
    exact_row,
    ideal_memory,
    pct,
    register,
)
from sparsesim.workload.layers import Attention, Conv2d, Layer, Linear
from sparsesim.workload.network import load_workload

add_group("formulas", Group("The seed's formulas", """\
The closed forms of DESIGN.md, written again in this file from their definitions (not by
calling the package's own formulas), against what the package reports: each layer's MACs and
storage, and the simulated GEMMs' MACs summed per layer (the lowering must add up to the
closed form). Format sizes: the closed form from each format's definition against the
format's `bits()` and the bit count of its real encoder, on random masks at several
sparsities (N:M on conformant masks keeping 2, 1 and 0 of every 4)."""))


def clog2(x: int) -> int:
    """ceil(log2 x) for a count x >= 1 (0 for x <= 1): bits to tell x positions apart."""
    return 0 if x <= 1 else math.ceil(math.log2(x))


def _conv_out(size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int,
              ceil_mode: bool, transposed: bool, output_padding: int) -> int:
    """PyTorch's output sizes (SCALE-Sim's ceil rule with ``ceil_mode``)."""
    window = dilation * (kernel - 1) + 1
    if transposed:
        return (size - 1) * stride - pad[0] - pad[1] + window + output_padding
    span = size + pad[0] + pad[1] - window
    return (math.ceil(span / stride) if ceil_mode else span // stride) + 1


def _per_axis(value: object, dims: int) -> list[Any]:
    return list(value) if isinstance(value, tuple) else [value] * dims


def _conv_closed(layer: Conv2d, bits: tuple[int, int, int]) -> tuple[int, tuple[int, int, int]]:
    """MACs N·M·Z·E·F·(C/g)·T·R·S and storage (weights, inputs, outputs) in bits."""
    a, w, o = bits
    dims = 3 if layer.d > 1 or layer.t > 1 else 2
    sizes, kernels = [layer.d, layer.h, layer.w][3 - dims:], [layer.t, layer.r, layer.s][3 - dims:]
    pads = [(p, p) if isinstance(p, int) else p for p in _per_axis(layer.padding, dims)]
    outs = [_conv_out(size, k, st, pad, dl, layer.ceil_mode, layer.transposed, op)
            for size, k, st, pad, dl, op in zip(
                sizes, kernels, _per_axis(layer.stride, dims), pads,
                _per_axis(layer.dilation, dims), _per_axis(layer.output_padding, dims))]
    cg, taps, pixels = layer.c // layer.groups, math.prod(kernels), math.prod(outs)
    macs = layer.n * layer.m * pixels * cg * taps
    return macs, (layer.m * cg * taps * w, layer.n * layer.c * math.prod(sizes) * a,
                  layer.n * layer.m * pixels * o)


def _linear_closed(layer: Linear, bits: tuple[int, int, int]
                   ) -> tuple[int, tuple[int, int, int]]:
    a, w, o = bits
    t, i, j = layer.tokens, layer.in_features, layer.out_features
    return t * i * j, (i * j * w, t * i * a, t * j * o)


def _attention_closed(layer: Attention, bits: tuple[int, int, int]
                      ) -> tuple[int, tuple[int, int, int]]:
    """4·B·L·E² + 2·B·L²·E; weights 4·E² (Q, K, V, O), inputs and outputs B·L·E."""
    a, w, o = bits
    b, n, e = layer.b, layer.l, layer.e
    return 4 * b * n * e * e + 2 * b * n * n * e, (4 * e * e * w, b * n * e * a, b * n * e * o)


_FORMULA_WORKLOADS = {"conv": ("resnet50", "vgg16", "mobilenet_v2"),
                      "mlp": ("resnet50", "vgg16", "bert_base_seq128"),
                      "transformer": ("bert_base_seq128", "vit_b16", "minilm_l6_seq128")}
_FAST_SIMULATED = ("resnet18", "minilm_l6_seq128")
"""Workloads the fast subset simulates to sum the lowered GEMMs' MACs (the full run: all)."""


def _simulated_macs(ctx: Context, name: str) -> dict[str, int]:
    """Dense MACs per layer as the simulator reports them (its GEMM rows, summed)."""
    key = f"macs:{name}"
    if key not in ctx.cache:
        res = simulate(name, ideal_memory(load_arch("default")))
        macs: dict[str, int] = {}
        for r in res.rows:
            macs[r.layer] = macs.get(r.layer, 0) + r.dense_macs
        ctx.cache[key] = macs
    return ctx.cache[key]


def _formula_check(ctx: Context, kind: str, closed: Callable[..., tuple[int, tuple]],
                   select: Callable[[Layer], bool], what: str, anchor: str) -> list[Check]:
    bits = (8, 8, 8)
    good = total = sim_good = sim_total = 0
    bad: list[str] = []
    names = _FORMULA_WORKLOADS[kind]
    simulated = tuple(n for n in (*names, *_FAST_SIMULATED) if n in _FAST_SIMULATED) \
        if ctx.fast else names
    for name in dict.fromkeys((*names, *simulated)):
        wl = load_workload(name)
        sim = _simulated_macs(ctx, name) if name in simulated else {}
        for layer in wl.layers:
            if not select(layer):
                continue
            macs, storage = closed(layer, bits)
            s = layer.storage(*bits)
            if name in names:
                total += 1
                if macs == layer.dense_macs and storage == (s.weight_bits, s.input_bits,
                                                            s.output_bits):
                    good += 1
                else:
                    bad.append(f"{name}/{layer.name}: {macs} vs {layer.dense_macs}")
            if layer.name in sim:
                sim_total += 1
                if sim[layer.name] == macs:
                    sim_good += 1
                else:
                    bad.append(f"{name}/{layer.name} simulated {sim[layer.name]} vs {macs}")
    return [Check(id=f"formulas.{kind}", group="formulas", what=what, anchor=anchor,
                  source=SOURCES["design"],
                  ours=f"{good}/{total} layers of {', '.join(names)} (MACs, storage) exact; "
                       f"simulated GEMM MACs {sim_good}/{sim_total} layers of "
                       f"{', '.join(dict.fromkeys(simulated))} exact",
                  tolerance="exact (0 difference)",
                  passed=total > 0 and sim_total > 0 and good == total and sim_good == sim_total,
                  note="; ".join(bad[:3]))]


@register("formulas", fast=True)
def _formulas_conv(ctx: Context) -> list[Check]:
    return _formula_check(ctx, "conv", _conv_closed, lambda x: isinstance(x, Conv2d),
                          "conv MACs and storage bits (incl. depthwise)",
                          "N·M·E·F·(C/g)·R·S; weights M·C/g·R·S·b, inputs N·C·H·W·b, "
                          "outputs N·M·E·F·b")


@register("formulas", fast=True)
def _formulas_mlp(ctx: Context) -> list[Check]:
    return _formula_check(ctx, "mlp", _linear_closed, lambda x: isinstance(x, Linear),
                          "MLP (linear) MACs and storage bits",
                          "B·in·out; weights in·out·b, inputs B·in·b, outputs B·out·b")


@register("formulas", fast=True)
def _formulas_transformer(ctx: Context) -> list[Check]:
    def plain(x: Layer) -> bool:  # the seed's form: full multi-head attention, kv = l
        return (isinstance(x, Attention) and x.kv_len is None and x.heads_kept is None
                and (x.kv_heads is None or x.kv_heads == x.heads))

    return _formula_check(ctx, "transformer", _attention_closed, plain,
                          "attention MACs and storage bits",
                          "4·B·L·E² + 2·B·L²·E; weights 4·E²·b, inputs/outputs B·L·E·b")


def _rle_bits(mask: np.ndarray, value_bits: int, run_bits: int) -> int:
    """Entries (zero run before a value, value), row-major; a run longer than 2^r − 1 costs an
    explicit padding entry per 2^r zeros; trailing zeros are free."""
    entries, run, span = 0, 0, 1 << run_bits
    for present in mask.ravel():
        if present:
            entries += 1 + run // span
            run = 0
        else:
            run += 1
    return entries * (value_bits + run_bits)


def _format_closed(spec: str, mask: np.ndarray, n: int) -> int:
    """Bits of each format from its definition (DESIGN.md §3 Formats)."""
    rows, cols = mask.shape
    size = mask.size
    nnz = int(mask.sum())
    if spec == "dense":
        return size * n
    if spec == "bitmap":
        return size + nnz * n
    if spec == "rle":
        return _rle_bits(mask, n, 4)
    if spec == "coo":  # value + one coordinate per dimension
        return nnz * (n + clog2(rows) + clog2(cols))
    if spec == "coo_offset":  # value + flat offset
        return nnz * (n + clog2(size))
    if spec == "csr":  # values, column indices, rows + 1 pointers wide enough for nnz
        return nnz * (n + clog2(cols)) + (rows + 1) * clog2(nnz + 1)
    if spec == "csc":
        return nnz * (n + clog2(rows)) + (cols + 1) * clog2(nnz + 1)
    if spec == "nm:n=2,m=4":  # 2 slots per group of 4 along K, each value + log2(4) index bits
        slots = (rows // 4) * 2 + min(2, rows % 4)
        return slots * cols * (n + 2)
    raise ValueError(spec)


FORMAT_SPECS = ("dense", "bitmap", "rle", "coo", "coo_offset", "csr", "csc", "nm:n=2,m=4")
FORMAT_SPARSITIES = (0.0, 0.5, 0.9, 0.99, 0.999)


@register("formulas", fast=True)
def _formulas_formats(ctx: Context) -> list[Check]:
    shape = (98, 150)  # K = 98: a short last N:M group; neither side a power of two
    rng = np.random.default_rng(9)
    out = []
    for spec in FORMAT_SPECS:
        fmt = parse_format(spec)
        cases: list[tuple[str, np.ndarray]]
        if spec.startswith("nm"):
            cases = [(f"{keep} of 4 kept", conformant_mask(shape, keep, 4, (0,), rng=rng))
                     for keep in (2, 1, 0)]
        else:
            cases = [(pct(p) + " sparse", exact_density_mask(shape, 1 - p, rng))
                     for p in FORMAT_SPARSITIES]
        good = total = 0
        bad, example = [], ""
        for label, mask in cases:
            for n in (8, 16):
                values = np.where(mask, rng.integers(1, 100, size=shape), 0).astype(
                    np.int16 if n == 16 else np.int8)
                closed = _format_closed(spec, mask, n)
                data, meta = fmt.bits(mask, value_bits=n)
                encoded = fmt.encode(values, value_bits=n).total_bits
                total += 1
                if closed == data + meta == encoded:
                    good += 1
                else:
                    bad.append(f"{label}, {n}-bit: closed {closed}, bits() {data + meta}, "
                               f"encoder {encoded}")
                if n == 8 and (label.startswith(("90.0 %", "2 of 4"))):
                    example = f"e.g. {label}, 8-bit: {closed} bits"
        anchor = {"dense": "L·n", "bitmap": "L + nnz·n",
                  "rle": "entries·(n + 4), entries = nnz + Σ floor(run / 16)",
                  "coo": "nnz·(n + ⌈log2 R⌉ + ⌈log2 C⌉)", "coo_offset": "nnz·(n + ⌈log2 L⌉)",
                  "csr": "nnz·(n + ⌈log2 C⌉) + (R + 1)·⌈log2(nnz + 1)⌉",
                  "csc": "nnz·(n + ⌈log2 R⌉) + (C + 1)·⌈log2(nnz + 1)⌉",
                  "nm:n=2,m=4": "(⌊K/4⌋·2 + min(2, K mod 4))·C·(n + 2)"}[spec]
        out.append(exact_row(
            id=f"formulas.format.{spec.split(':')[0]}", group="formulas",
            what=f"{spec} bits (closed form = bits() = encoder), {shape[0]}×{shape[1]}, "
                 "8/16-bit values", anchor=anchor, source=SOURCES["design"], good=good,
                total=total, unit="cases exact", failures=bad, note=example))
    return out
