"""The unit norm of structured pruning: one power mean of order p for filters, channels,
blocks and heads (p = 1: L1 over the size, the old rule; p = 2: L2 over √size).

Expected values are hand norms of hand weights, never the code's own numbers."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparsesim.errors import SparsesimError
from sparsesim.prune import PruneSpec, keep_masks
from sparsesim.prune.select import power_mean
from sparsesim.prune.structure import head_scores
from sparsesim.workload.layers import Attention, Conv2d, Linear

# Rows (filters): L1 = 4, 3, 4 and L2 = 2, 3, √8: the lowest L1 is row 1, the lowest L2 row 0.
W = np.array([[1, 1, 1, 1], [3, 0, 0, 0], [2, 2, 0, 0]], np.float32)
FC = Linear("fc", in_features=4, out_features=3)


def _filters(norm: float) -> np.ndarray:
    [keep] = keep_masks([(FC, "w", np.abs(W))],
                        PruneSpec(granularity="filter", sparsity=1 / 3, norm=norm))
    return keep.all(axis=1)


def test_l1_and_l2_prune_different_filters():
    np.testing.assert_array_equal(_filters(1), [True, False, True])  # L1 3 is the lowest
    np.testing.assert_array_equal(_filters(2), [False, True, True])  # L2 2 is the lowest


def test_channels_of_a_conv_by_l2():
    # conv 1x1 taps r = s = 2: input channel c spans 4 consecutive K of each filter.
    conv = Conv2d("c", c=2, h=4, w=4, m=1, r=2, s=2)
    w = np.zeros((1, 2, 2, 2), np.float32)
    w[0, 0] = [[1, 1], [1, 1]]  # channel 0: L1 4, L2 2
    w[0, 1] = [[3, 0], [0, 0]]  # channel 1: L1 3, L2 3
    for norm, kept in ((1, 0), (2, 1)):
        [keep] = keep_masks([(conv, "w", np.abs(w))],
                            PruneSpec(granularity="channel", sparsity=0.5, norm=norm))
        assert keep[0, kept].all() and not keep[0, 1 - kept].any()


def test_blocks_by_l2():
    # 2x2 blocks of a [2, 4] view: left block L2 = 2 (four 1s), right block L2 = 3 (one 3).
    w = np.array([[1, 1, 3, 0], [1, 1, 0, 0]], np.float32)
    fc = Linear("fc", in_features=4, out_features=2)
    for norm, left_kept in ((1, True), (2, False)):  # L1: 4 vs 3, L2: 2 vs 3
        [keep] = keep_masks([(fc, "w", np.abs(w))],
                            PruneSpec(granularity="block", block=2, sparsity=0.5, norm=norm))
        assert keep[:, :2].all() == left_kept and keep[:, 2:].all() != left_kept


def test_global_units_compare_l2_over_root_size():
    # Two tensors, filters of 4 and of 1 weight: [1,1,1,1] has L2/√4 = 1, [1.5] has 1.5,
    # [0.9] 0.9 and [3,0,0,0] 3/2 = 1.5. Pruning 5 of 10 weights: the lowest units go first,
    # 0.9 (1 weight) then the 1.0 filter (4 weights) = 5 weights.
    a = Linear("a", in_features=4, out_features=2)
    b = Linear("b", in_features=1, out_features=2)
    wa = np.array([[1, 1, 1, 1], [3, 0, 0, 0]], np.float32)
    wb = np.array([[1.5], [0.9]], np.float32)
    ka, kb = keep_masks([(a, "w", wa), (b, "w", wb)],
                        PruneSpec(granularity="filter", sparsity=0.5, scope="global", norm=2))
    np.testing.assert_array_equal(ka.all(axis=1), [False, True])
    np.testing.assert_array_equal(kb.all(axis=1), [True, False])


def test_heads_by_l2():
    att = Attention("a", l=4, e=4, heads=2)
    d = att.head_dim
    shapes = att.weight_shapes()
    scores = {t: np.zeros(shapes[t]) for t in "qkvo"}
    # head 0: every score 1 (mean 1, RMS 1); head 1: all 0 but one score 0.5·n of its n
    scores["q"][:d] = 1
    scores["k"][:d] = 1
    scores["v"][:d] = 1
    scores["o"][:, :d] = 1
    n = scores["q"][d:].size * 4  # entries of head 1 (q, k, v rows and o columns)
    scores["q"][d, 0] = 0.5 * n  # head 1: mean 0.5, RMS sqrt((0.5 n)^2 / n) = 0.5 √n
    np.testing.assert_allclose(head_scores(att, scores, 1), [1, 0.5])
    np.testing.assert_allclose(head_scores(att, scores, 2), [1, 0.5 * math.sqrt(n)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12),
       st.floats(1, 6))
def test_power_mean_properties(values, p):
    s = np.array(values)
    assert power_mean(s, 1) == s.mean()
    np.testing.assert_allclose(power_mean(s, 2), np.linalg.norm(s) / math.sqrt(s.size))
    m = float(power_mean(s, p))
    assert s.min() - 1e-9 <= m <= s.max() + 1e-9  # a mean
    assert float(power_mean(s, 1)) <= m * (1 + 1e-12) + 1e-12  # power-mean inequality
    dead = np.append(s, -np.inf)
    assert power_mean(dead, p) == -np.inf  # a pruned weight kills its unit, whatever p


def test_norm_is_refused_where_it_would_change_nothing():
    for g in ("unstructured", "nm", "token", "kv"):
        with pytest.raises(SparsesimError, match="norm"):
            PruneSpec(granularity=g, norm=2)
    with pytest.raises(SparsesimError, match="norm"):
        PruneSpec(granularity="filter", norm=0.5)
    assert PruneSpec(granularity="filter", norm=2).as_dict()["norm"] == 2
    assert "norm" not in PruneSpec(granularity="filter").as_dict()


def test_cli_norm(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "prune", "-w", "resnet18",
                           "--norm", "2", "-o", str(tmp_path / "x.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "norm" in proc.stderr
