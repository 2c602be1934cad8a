"""The cycle-stepped reference model against the fast fold model, on random tiny cases.

The reference moves tokens through PE registers and computes the product, so agreement
proves both the mapping (output == A @ W) and the cycle count of every fold.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm
from sparsesim.pe.reference import run_reference


@st.composite
def gemm_case(draw):
    m, k, n = (draw(st.integers(1, 9)) for _ in range(3))
    a = draw(arrays(np.int64, (m, k), elements=st.integers(-4, 4)))
    w = draw(arrays(np.int64, (k, n), elements=st.integers(-4, 4)))
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dataflow = draw(st.sampled_from(["os", "ws", "is"]))
    return a, w, rows, cols, dataflow


@given(gemm_case())
def test_reference_equals_fast_model(case):
    a, w, rows, cols, dataflow = case
    ref = run_reference(a, w, dataflow, rows, cols)
    np.testing.assert_array_equal(ref.output, a @ w)
    p = plan(Gemm("l", "g", *a.shape, w.shape[1]), dataflow, rows, cols)
    assert len(ref.fold_cycles) == p.folds
    assert set(ref.fold_cycles) == {p.fold_cycles}
    assert ref.cycles == p.compute_cycles


def test_hand_counted_output_stationary_fold():
    # 2×2 os array, K = 3: the last MAC happens at PE (1, 1) on cycle (3-1) + 1 + 1 = 4,
    # so the fold takes 5 cycles = T + rows + cols - 2.
    a = np.arange(6).reshape(2, 3)
    w = np.arange(6).reshape(3, 2)
    assert run_reference(a, w, "os", 2, 2).fold_cycles == (5,)


def test_hand_counted_weight_stationary_fold():
    # 2×2 ws array, M = 3 streamed: 2 preload cycles, then the last A element (m = 2) enters
    # row 1 on step 2 + 1 = 3 and reaches column 1 on step 4 → cycle 2 + 4 = 6 → 7 cycles
    # = 2·rows + cols + T - 2.
    a = np.arange(6).reshape(3, 2)
    w = np.arange(4).reshape(2, 2)
    assert run_reference(a, w, "ws", 2, 2).fold_cycles == (7,)
