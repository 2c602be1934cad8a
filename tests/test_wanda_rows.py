"""Wanda's comparison group: per output row by default (Sun et al., ICLR 2024), per tensor on
request; and how its input norms are accumulated."""

import numpy as np
import pytest

from sparsesim.prune import PruneSpec, keep_masks
from sparsesim.prune.criteria import LayerStats, score
from sparsesim.workload.layers import Linear

FC = Linear("fc", in_features=4, out_features=2)
W = np.array([[1, 1, 1, 1], [4, 0.2, 3, 100]], np.float32)
NORMS = np.array([1, 10, 1, 0.1], np.float32)


def _scores():
    return score("wanda", FC, "w", W, stats=LayerStats(act_norms={"w": NORMS}))


def test_wanda_defaults_to_rows():
    spec = PruneSpec("wanda", sparsity=0.5)
    assert spec.compare == "row" and spec.as_dict()["compare"] == "row"
    [keep] = keep_masks([(FC, "w", _scores())], spec)
    # scores row 0: 1, 10, 1, 0.1 -> 0.1 and the first 1 go; row 1: 4, 2, 3, 10 -> 2 and 3 go
    np.testing.assert_array_equal(keep, [[False, True, True, False], [True, False, False, True]])
    assert (keep.sum(axis=1) == 2).all()


def test_tensor_compare_stays_available():
    [keep] = keep_masks([(FC, "w", _scores())], PruneSpec("wanda", sparsity=0.5,
                                                          compare="tensor"))
    # the 4 lowest of 1, 10, 1, 0.1, 4, 2, 3, 10: 0.1, 1, 1, 2 -> row 0 keeps only the 10
    np.testing.assert_array_equal(keep, [[False, True, False, False], [True, False, True, True]])


@pytest.mark.parametrize("kw,compare", [
    ({"granularity": "nm"}, "tensor"),           # N:M compares within each group anyway
    ({"granularity": "filter"}, "tensor"),
    ({"scope": "global"}, "tensor"),              # rows cannot be ranked globally
    ({}, "row"),
])
def test_default_row_only_where_it_applies(kw, compare):
    assert PruneSpec("wanda", **kw).compare == compare


def test_other_criteria_keep_tensor():
    assert PruneSpec("magnitude").compare == "tensor"
    assert "compare" not in PruneSpec("magnitude").as_dict()


def test_norm_scale_of_the_reference_code_leaves_the_masks():
    """The reference code's statistic is ‖X_j‖² / nsamples: a common factor of every score,
    so the masks equal ours (‖X_j‖ summed over all tokens)."""
    [ours] = keep_masks([(FC, "w", _scores())], PruneSpec("wanda", sparsity=0.5))
    ref = score("wanda", FC, "w", W, stats=LayerStats(act_norms={"w": NORMS / np.sqrt(128)}))
    [theirs] = keep_masks([(FC, "w", ref)], PruneSpec("wanda", sparsity=0.5))
    np.testing.assert_array_equal(ours, theirs)
