"""PE kinds: the fast compute model against the cycle-stepped reference, and its invariants."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.arch.array import ArrayConfig
from sparsesim.arch.config import Arch
from sparsesim.arch.pe import PeConfig
from sparsesim.pe.kinds import compute
from sparsesim.errors import SparsesimError
from sparsesim.kernels.skip import fold_steps
from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm, GemmOperands
from sparsesim.pe.reference import run_nm_reference, run_reference, run_skip_reference

DATAFLOWS = ["os", "ws", "is"]
OPERANDS = ["A", "W", "both"]
SYNCS = ["pe", "row", "col", "wavefront"]


def arch(rows, cols, dataflow, **pe):
    return Arch(array=ArrayConfig(rows, cols, dataflow), pe=PeConfig(**pe))


@st.composite
def sparse_gemm(draw, max_dim=8):
    m, k, n = (draw(st.integers(1, max_dim)) for _ in range(3))
    pa, pw = draw(st.floats(0, 1)), draw(st.floats(0, 1))
    a = draw(arrays(np.int64, (m, k), elements=st.integers(1, 3)))
    w = draw(arrays(np.int64, (k, n), elements=st.integers(-3, -1)))
    a *= draw(arrays(np.float64, (m, k), elements=st.floats(0, 1))) < pa
    w *= draw(arrays(np.float64, (k, n), elements=st.floats(0, 1))) < pw
    return a, w, draw(st.integers(1, 5)), draw(st.integers(1, 5))


def ops_of(a, w, **kw):
    return GemmOperands(Gemm("layer", "g", a.shape[0], a.shape[1], w.shape[1], **kw), a != 0, w != 0)


@given(sparse_gemm(), st.sampled_from(DATAFLOWS), st.sampled_from(OPERANDS), st.sampled_from(SYNCS))
def test_skip_equals_cycle_stepped_reference(case, dataflow, operand, sync):
    a, w, rows, cols = case
    ref = run_skip_reference(a, w, dataflow, rows, cols, operand, sync)
    np.testing.assert_array_equal(ref.output, a @ w)
    got = compute(ops_of(a, w), arch(rows, cols, dataflow, kind="skip", operand=operand, sync=sync))
    assert got.compute_cycles == ref.cycles


@st.composite
def nm_gemm(draw):
    m_, n_ = draw(st.integers(1, 5)), None
    m_grp = draw(st.integers(1, 6))
    n_keep = draw(st.integers(1, m_grp))
    m, k, n = draw(st.integers(1, 7)), draw(st.integers(1, 13)), draw(st.integers(1, 7))
    a = draw(arrays(np.int64, (m, k), elements=st.integers(-2, 2)))
    w = draw(arrays(np.int64, (k, n), elements=st.integers(-2, 2)))
    keep = np.zeros((k, n), dtype=bool)
    for col in range(n):
        for g0 in range(0, k, m_grp):
            size = min(m_grp, k - g0)
            chosen = draw(st.permutations(list(range(size))))[: min(n_keep, size)]
            keep[[g0 + c for c in chosen], col] = True
    del m_, n_
    return a, w * keep, n_keep, m_grp, draw(st.integers(1, 4)), draw(st.integers(1, 4))


@given(nm_gemm(), st.sampled_from(DATAFLOWS))
def test_nm_equals_reference(case, dataflow):
    a, w, n, m, rows, cols = case
    ref = run_nm_reference(a, w, dataflow, rows, cols, n, m)
    np.testing.assert_array_equal(ref.output, a @ w)
    got = compute(ops_of(a, w), arch(rows, cols, dataflow, kind="nm", n=n, m=m))
    assert got.compute_cycles == ref.cycles


@given(sparse_gemm(), st.sampled_from(DATAFLOWS), st.sampled_from(OPERANDS), st.sampled_from(SYNCS),
       st.integers(1, 3))
def test_invariants(case, dataflow, operand, sync, count):
    a, w, rows, cols = case
    a3 = np.repeat((a != 0)[None], count, axis=0)
    ops = GemmOperands(Gemm("l", "g", *a.shape, w.shape[1], count=count), a3, w != 0)
    dense = compute(ops, arch(rows, cols, dataflow))
    gate = compute(ops, arch(rows, cols, dataflow, kind="gate"))
    skip = compute(ops, arch(rows, cols, dataflow, kind="skip", operand=operand, sync=sync))
    p = plan(ops.gemm, dataflow, rows, cols)
    assert dense.compute_cycles == gate.compute_cycles == p.compute_cycles
    assert skip.compute_cycles <= dense.compute_cycles
    products = count * int(((a != 0).astype(int) @ (w != 0).astype(int)).sum())
    assert dense.effectual_macs == skip.effectual_macs == products <= ops.gemm.dense_macs
    assert skip.load_imbalance >= 1.0 - 1e-12


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.integers(1, 5),
       st.integers(1, 5), st.sampled_from(DATAFLOWS), st.sampled_from(OPERANDS),
       st.sampled_from(SYNCS))
def test_all_ones_masks_give_dense_for_every_kind(m, k, n, rows, cols, dataflow, operand, sync):
    ones = GemmOperands(Gemm("l", "g", m, k, n), np.ones((m, k), bool), np.ones((k, n), bool))
    dense = plan(ones.gemm, dataflow, rows, cols).compute_cycles
    for pe in (dict(kind="gate"), dict(kind="skip", operand=operand, sync=sync),
               dict(kind="nm", n=3, m=3)):
        got = compute(ones, arch(rows, cols, dataflow, **pe))
        assert got.compute_cycles == dense and got.load_imbalance == 1.0


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_nm_2_4_is_the_dense_half_k_gemm(dataflow):
    # A compute-bound GEMM: 2:4 gives exactly the dense cycles of the K/2 GEMM.
    rng = np.random.default_rng(0)
    m, k, n = 200, 256, 96
    w = np.zeros((k, n), bool)
    for col in range(n):
        for g0 in range(0, k, 4):
            w[g0 + rng.choice(4, 2, replace=False), col] = True
    ops = GemmOperands(Gemm("l", "g", m, k, n), None, w)
    got = compute(ops, arch(32, 32, dataflow, kind="nm", n=2, m=4))
    assert got.compute_cycles == plan(Gemm("l", "g", m, k // 2, n), dataflow, 32, 32).compute_cycles


def test_nm_rejects_non_conformant_weights_naming_the_group():
    w = np.ones((8, 3), bool)
    w[4:, :] = False
    w[0:3, 1] = False  # column 1 group 0: one non-zero; group 1 all zero
    ops = GemmOperands(Gemm("fc7", "fc", 2, 8, 3), None, w)
    with pytest.raises(SparsesimError) as err:
        compute(ops, arch(4, 4, "os", kind="nm", n=2, m=4))
    assert err.value.layer == "fc7" and err.value.field == "W"
    assert "group rows 0..3 of column 0 holds 4 non-zeros, at most 2 allowed" in str(err.value)
    # dense weights (a layer left dense) run densely: the dense array's cycles
    dense = compute(GemmOperands(Gemm("fc8", "fc", 2, 8, 3)), arch(4, 4, "os", kind="nm"))
    assert dense.nm_mode == "dense"
    assert dense.compute_cycles == plan(Gemm("fc8", "fc", 2, 8, 3), "os", 4, 4).compute_cycles


def naive_fold_steps(h, other, stationary, rows, cols, sync):
    """Plain-Python twin of the kernel: sets of effectual steps per PE, OR-ed per group."""
    sr, t_len = h.shape
    sc = other.shape[1] if stationary else other.shape[0]
    out = []
    for i in range(-(-sr // rows)):
        line = []
        for j in range(-(-sc // cols)):
            groups = {}
            for r in range(i * rows, min(sr, (i + 1) * rows)):
                for c in range(j * cols, min(sc, (j + 1) * cols)):
                    if stationary:
                        e = {t for t in range(t_len) if other[r, c] and h[r, t]}
                    else:
                        e = {t for t in range(t_len) if h[r, t] and other[c, t]}
                    key = {"pe": (r, c), "row": r, "col": c, "wavefront": 0}[sync]
                    groups.setdefault(key, set()).update(e)
            sizes = [len(s) for s in groups.values()]
            line.append((max(sizes), sum(sizes), len(sizes)))
        out.append(line)
    return out


@given(st.data(), st.booleans(), st.sampled_from(SYNCS), st.integers(1, 4), st.integers(1, 4))
def test_kernel_equals_naive_twin(data, stationary, sync, rows, cols):
    sr, sc = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    t_len = data.draw(st.integers(1, 140))  # past one 64-bit word
    h = data.draw(arrays(np.bool_, (sr, t_len)))
    other = data.draw(arrays(np.bool_, (sr, sc) if stationary else (sc, t_len)))
    mx, total, groups = fold_steps(h, other, stationary=stationary, rows=rows, cols=cols,
                                   sync=sync)
    twin = naive_fold_steps(h, other, stationary, rows, cols, sync)
    assert [[tuple(x) for x in zip(a, b, c)] for a, b, c in zip(mx, total, groups)] == twin


def test_dense_reference_still_matches_after_sparse_changes():
    a = np.arange(12).reshape(3, 4)
    w = np.arange(8).reshape(4, 2)
    for df in DATAFLOWS:
        ref = run_reference(a, w, df, 2, 3)
        assert ref.cycles == plan(Gemm("l", "g", 3, 4, 2), df, 2, 3).compute_cycles


@given(sparse_gemm(), st.sampled_from(DATAFLOWS), st.sampled_from(OPERANDS), st.integers(1, 3))
def test_gating_gates_exactly_the_products_whose_operand_is_zero(case, dataflow, operand, count):
    """Brute force over every product (i, k, j): a gating PE keeps a full MAC unless the
    operand it gates on (A, W, or either for both) is zero; timing stays dense."""
    a, w, rows, cols = case
    ops = GemmOperands(Gemm("l", "g", *a.shape, w.shape[1], count=count), a != 0, w != 0)
    gate = compute(ops, arch(rows, cols, dataflow, kind="gate", operand=operand))
    za, zw = (a == 0)[:, :, None], (w == 0)[None, :, :]  # product (i, k, j)
    shape = (a.shape[0], a.shape[1], w.shape[1])
    gated = {"A": np.broadcast_to(za, shape), "W": np.broadcast_to(zw, shape),
             "both": za | zw}[operand]
    assert gate.gated_macs == count * int(gated.sum())
    assert gate.issued_macs + gate.gated_macs == ops.gemm.dense_macs
    assert gate.compute_cycles == plan(ops.gemm, dataflow, rows, cols).compute_cycles


def test_gating_on_one_operand_spends_between_dense_and_both():
    """A sparse activation and a sparse weight: gating on A alone gates fewer products than
    gating on either, so it spends more MAC energy (the row's energy column moves)."""
    from sparsesim import simulate
    from sparsesim.sparsity.masks import SparsityModel
    from sparsesim.workload.layers import Linear
    from sparsesim.workload.network import Workload

    wl = Workload("t", (Linear("fc", in_features=64, out_features=32, tokens=16),))
    model = SparsityModel(weight_density=0.5, act_density=0.5, dense_first_input=False)
    energy = {op: simulate(wl, arch(8, 8, "os", kind="gate", operand=op), sparsity=model)
              .df["energy_pj"].sum() for op in OPERANDS}
    dense = simulate(wl, arch(8, 8, "os"), sparsity=model).df["energy_pj"].sum()
    assert energy["both"] < energy["A"] < dense and energy["both"] < energy["W"] < dense
