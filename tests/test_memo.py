"""Identical work simulated once (sparsesim.engine.memo): the same rows with and without it.

Every comparison is of whole frames (every column, every row, exact): the memo may only save
time. The reference is the same call with ``memo=False``, which simulates every GEMM.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsesim import load_arch, load_workload, simulate
from sparsesim.arch.config import with_overrides
from sparsesim.engine.dynamic import DynamicInputs
from sparsesim.engine.inference import draw_trace, run, run_layers
from sparsesim.engine.memo import GemmMemo, mask_key
from sparsesim.engine.training import GradientModel, Training
from sparsesim.errors import SparsesimError
from sparsesim.mapping.lower import lower
from sparsesim.sparsity.masks import LayerMasks, SparsityModel
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Attention, Conv2d, Linear, MatMul
from sparsesim.workload.network import Workload

SKIP = {"pe.kind": "skip", "pe.operand": "both", "pe.sync": "pe", "memory.format_w": "bitmap"}
SPARSE = SparsityModel(weight_density=0.2, act_density=0.5, seed=0)


def _frames(workload, arch, *, sparsity=None, **kwargs):
    """Both frames; masks drawn once (drawing a 7B block's masks costs more than its run)."""
    if sparsity is not None and not kwargs.get("training"):
        kwargs["trace"] = draw_trace(load_workload(workload) if isinstance(workload, str)
                                     else workload, sparsity)
        workload = None
    elif sparsity is not None:
        kwargs["sparsity"] = sparsity
    wl = {} if workload is None else {"workload": workload}
    on = simulate(**wl, arch=arch, **kwargs).df
    off = simulate(**wl, arch=arch, **kwargs, memo=False).df
    return on, off


def _same(on, off):
    assert list(on.columns) == list(off.columns)
    assert on.shape == off.shape
    assert on.equals(off)


def test_mask_key_is_content_not_identity():
    rng = np.random.default_rng(0)
    a = rng.random((37, 53)) < 0.4
    assert mask_key(a) == mask_key(a.copy())
    flipped = a.copy()
    flipped[36, 52] = ~flipped[36, 52]
    assert mask_key(flipped) != mask_key(a)
    # a transposed view keys as the same content laid out the same way (no copy needed)
    assert mask_key(a.T) == mask_key(np.asfortranarray(a.T))
    assert mask_key(a.T) != mask_key(a)  # other shape
    assert mask_key(None) is None


@pytest.mark.parametrize("workload, sparse", [
    ("resnet50", False), ("resnet50", True),
    ("bert_base_seq128", False), ("bert_base_seq128", True),
    ("llama2_7b_block_prefill", False),
    ("llama2_7b_block_decode", False), ("llama2_7b_block_decode", True),
])
def test_networks_give_identical_rows(workload, sparse):
    arch = with_overrides(load_arch("default"), SKIP) if sparse else load_arch("default")
    on, off = _frames(workload, arch, sparsity=SPARSE if sparse else None)
    _same(on, off)


def test_sparse_llama_prefill_block_identical_rows_compute_model():
    # the full machine on a sparse 2048-token block takes minutes: the compute model (ideal
    # memory) covers its GEMMs' masks and keys; the machine is covered by the cases above
    arch = with_overrides(load_arch("default"), {**SKIP, "memory.ideal": True})
    _same(*_frames("llama2_7b_block_prefill", arch, sparsity=SPARSE))


def test_bert_512_dense_reuses_its_blocks():
    wl, arch = load_workload("bert_base_seq512"), load_arch("default")
    memo = GemmMemo()
    rows = run(wl, arch, memo=memo)
    gemms = sum(len(lower(layer)) for layer in wl.layers)
    # 12 identical encoder blocks: at most one block's distinct GEMMs are simulated
    per_block = sum(len(lower(layer)) for layer in wl.layers[: len(wl.layers) // 12])
    assert memo.misses <= per_block and memo.hits + memo.misses == gemms == len(rows)
    assert rows == run(wl, arch)


def test_repeated_blocks_with_copied_masks_reuse_results():
    # masks equal in content, not the same objects: a trace whose second block copies the first
    wl = load_workload("bert_base_seq128")
    first = draw_trace(wl, SPARSE)
    names = [layer.name for layer in wl.layers]
    per_block = len(names) // 12
    masks = dict(first.masks)
    for i in range(per_block):
        src = first.masks[names[i]]
        masks[names[per_block + i]] = LayerMasks(
            {k: v.copy() for k, v in src.weights.items()},
            None if src.inputs is None else src.inputs.copy(),
            {k: v.copy() for k, v in src.activations.items()})
    trace = Trace(first.workload, masks)
    arch = with_overrides(load_arch("default"), SKIP)
    memo = GemmMemo()
    run(wl, arch, trace=trace, memo=memo)
    assert memo.hits >= sum(len(lower(layer)) for layer in wl.layers[:per_block])
    _same(*_frames(None, arch, trace=trace))


def test_dense_linear_repeated_simulates_once():
    layers = tuple(Linear(f"fc{i}", 64, 48, tokens=40) for i in range(5))
    memo = GemmMemo()
    rows = run(Workload("rep", layers), load_arch("default"), memo=memo)
    assert (memo.hits, memo.misses) == (4, 1)
    assert [r.layer for r in rows] == [f"fc{i}" for i in range(5)]


def test_memory_state_at_entry_does_not_carry_over():
    # a GEMM's row is the same alone as after another GEMM: each instance starts from an
    # idle channel and empty buffers, so the memo key needs no memory state
    arch = with_overrides(load_arch("default"), {"memory.sram_kib_a": 4.0,
                                                 "memory.sram_kib_w": 4.0,
                                                 "memory.dram_bytes_per_cycle": 2.0})
    x = Linear("x", 96, 80, tokens=70)
    y = Linear("y", 200, 64, tokens=90)
    alone = run_layers("n", [(x, None)], arch)
    after = run_layers("n", [(y, None), (x, None)], arch)
    assert after[1] == alone[0]


def test_training_step_and_dynamic_identical_rows():
    wl = Workload("cnn", (Conv2d("c1", c=3, h=10, w=10, m=16, r=3, s=3, padding=1),
                          Conv2d("c2", c=16, h=10, w=10, m=16, r=3, s=3, padding=1),
                          Conv2d("c3", c=16, h=10, w=10, m=16, r=3, s=3, padding=1)))
    arch = with_overrides(load_arch("default"), SKIP)
    step = Training(GradientModel(0.5, "row"), input_gradient=True)
    _same(*_frames(wl, arch, sparsity=SPARSE, training=step))
    dyn = DynamicInputs(3, {"c1": {"channel_keep": (0.5, 0.5, 1.0)}}, {"c1": "c2"})
    on = simulate(wl, arch, dynamic=dyn)
    off = simulate(wl, arch, dynamic=dyn, memo=False)
    _same(on.df, off.df)
    _same(on.static.df, off.static.df)


def test_memo_must_be_a_bool():
    with pytest.raises(SparsesimError, match="true or false") as err:
        simulate("llama2_7b_block_decode", memo="yes")  # type: ignore[call-overload]
    assert err.value.field == "memo"


# --- random small workloads with repeated layers ----------------------------------------------

def _layer(kind: int, i: int, dims: tuple[int, int, int]):
    a, b, c = dims
    if kind == 0:
        return Linear(f"l{i}", a, b, tokens=c)
    if kind == 1:
        return Conv2d(f"l{i}", c=a % 8 + 1, h=c % 9 + 3, w=c % 7 + 3, m=b % 16 + 1, r=3, s=3,
                      padding=1, stride=1 + a % 2)
    if kind == 2:
        return MatMul(f"l{i}", m=a, k=b, n=c)
    return Attention(f"l{i}", l=c % 12 + 2, e=16, heads=2, causal=bool(a % 2))


def _masks(layer, rng, density):
    weights = {k: rng.random(s) < density for k, s in layer.weight_shapes().items()}
    inputs = rng.random(layer.input_shape) < 0.6
    return LayerMasks(weights, inputs)


@st.composite
def _cases(draw):
    n_distinct = draw(st.integers(1, 3))
    specs = [(draw(st.integers(0, 3)), (draw(st.integers(2, 40)), draw(st.integers(2, 40)),
                                        draw(st.integers(2, 40)))) for _ in range(n_distinct)]
    order = draw(st.lists(st.integers(0, n_distinct - 1), min_size=2, max_size=6))
    sparse = draw(st.booleans())
    flip = draw(st.booleans())  # one repeat gets one mask element changed
    over = {
        "array.rows": draw(st.sampled_from([4, 8])),
        "array.cols": draw(st.sampled_from([4, 8])),
        "array.dataflow": draw(st.sampled_from(["os", "ws", "is"])),
        "pe.kind": draw(st.sampled_from(["dense", "gate", "skip"])),
        "memory.ideal": draw(st.booleans()),
        "memory.format_w": draw(st.sampled_from(["dense", "bitmap", "csc"])),
        "memory.format_a": draw(st.sampled_from(["dense", "rle"])),
        "memory.sram_kib_a": draw(st.sampled_from([2.0, 64.0])),
        "memory.dram_bytes_per_cycle": draw(st.sampled_from([1.0, 16.0])),
    }
    if over["pe.kind"] == "skip":
        over["pe.sync"] = draw(st.sampled_from(["pe", "row", "wavefront"]))
    return specs, order, sparse, flip, over, draw(st.integers(0, 2**16))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_random_workloads_with_repeats_identical_rows(case):
    specs, order, sparse, flip, over, seed = case
    rng = np.random.default_rng(seed)
    layers, masks, firsts = [], {}, {}
    for i, which in enumerate(order):
        kind, dims = specs[which]
        layer = _layer(kind, i, dims)
        layers.append(layer)
        if sparse:
            if which not in firsts:
                firsts[which] = _masks(layer, rng, 0.5)
            src = firsts[which]
            w = {k: v.copy() for k, v in src.weights.items()}
            if flip and i == len(order) - 1 and w:
                name = sorted(w)[0]
                w[name].flat[0] = ~w[name].flat[0]
            masks[layer.name] = LayerMasks(w, None if src.inputs is None else src.inputs.copy())
    wl = Workload("random", tuple(layers))
    try:
        arch = with_overrides(load_arch("default"), over)
    except SparsesimError:
        return
    trace = Trace(wl, masks) if sparse else None
    memo = GemmMemo()
    try:
        rows = run(wl, arch, trace=trace, memo=memo)
    except SparsesimError:  # e.g. a tile that cannot fit: the same error without the memo
        with pytest.raises(SparsesimError):
            run(wl, arch, trace=trace)
        return
    off = run(wl, arch, trace=trace)
    assert rows == off
    # every exact repeat (same layer spec, same mask content) is served from the memo
    repeats = sum(len(lower(layer)) for i, layer in enumerate(layers)
                  if order[i] in order[:i] and not (flip and i == len(order) - 1))
    assert memo.hits >= repeats
