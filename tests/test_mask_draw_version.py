"""Mask-drawing versions (issue 20 item 2): version 2 is exact and uniform like version 1,
version 1 still draws what the old code drew, and old traces load to the same numbers."""

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim import simulate
from sparsesim.cli import main
from sparsesim.engine.inference import draw_trace
from sparsesim.errors import SparsesimError
from sparsesim.rules.keep import keep_count
from sparsesim.sparsity.masks import (
    MASK_DRAW_VERSION,
    ActivationModel,
    LayerMasks,
    SparsityModel,
    bernoulli_mask,
    exact_density_mask,
    with_draw_version,
)
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.workload.layers import Linear
from sparsesim.workload.network import Workload

TINY = Workload("tiny", (Linear("a", in_features=24, out_features=40, tokens=9),
                         Linear("b", in_features=40, out_features=16, tokens=9)))


def _old_exact(shape, density, rng):
    """What exact_density_mask drew before versions existed (rng.choice permutation)."""
    size = math.prod(shape)
    keep = size - round((1 - density) * size)
    flat = np.zeros(size, dtype=bool)
    flat[rng.choice(size, keep, replace=False)] = True
    return flat.reshape(shape)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=3),
       density=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_version_2_keeps_the_exact_count(shape, density, seed):
    m = exact_density_mask(tuple(shape), density, np.random.default_rng(seed), version=2)
    assert m.shape == tuple(shape) and m.dtype == np.bool_
    assert int(m.sum()) == keep_count(math.prod(shape), density=density)


def test_version_2_is_uniform_over_the_subsets():
    # 2 of 4 kept: 6 subsets, each 1/6 of 6,000 draws (sd ~29); +-20 % is > 6 sd.
    counts = {c: 0 for c in combinations(range(4), 2)}
    for seed in range(6000):
        m = exact_density_mask((4,), 0.5, np.random.default_rng(seed), version=2)
        counts[tuple(int(i) for i in np.flatnonzero(m))] += 1
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_version_2_is_uniform_at_a_density_off_a_power_of_two():
    # 3 of 7 kept (d = 3/7: 8 binary digits and a fix-up): 35 subsets, 3,500 draws, 100 each
    # (sd ~9.9); 55..145 is > 4.5 sd.
    counts = {c: 0 for c in combinations(range(7), 3)}
    for seed in range(3500):
        m = exact_density_mask((7,), 3 / 7, np.random.default_rng(seed), version=2)
        counts[tuple(int(i) for i in np.flatnonzero(m))] += 1
    assert all(55 <= n <= 145 for n in counts.values()), counts


def test_version_2_bernoulli_is_exact_below_the_uint16_step():
    # d = 0.5 / 2^16: a plain uint16 threshold (u < floor(d·2^16) = 0) would keep nothing;
    # the tie bucket keeps half of 1 in 65,536: 2^24 elements -> 128 expected (sd 11.3).
    n = bernoulli_mask((1 << 24,), 0.5 / 65536, np.random.default_rng(1), version=2).sum()
    assert 71 <= n <= 185
    d = bernoulli_mask((1000, 1000), 0.3, np.random.default_rng(2), version=2).mean()
    assert abs(d - 0.3) < 5 * math.sqrt(0.21 / 1e6)
    per = np.array([0.1, 0.9])[:, None]  # one density per row, broadcast
    m = bernoulli_mask((2, 200_000), per, np.random.default_rng(3), version=2)
    assert abs(m[0].mean() - 0.1) < 0.004 and abs(m[1].mean() - 0.9) < 0.004


def test_version_1_is_the_old_draw():
    for shape, d in (((40, 24), 0.3), ((7,), 0.5), ((3, 5, 2), 0.01)):
        got = exact_density_mask(shape, d, np.random.default_rng(11), version=1)
        np.testing.assert_array_equal(got, _old_exact(shape, d, np.random.default_rng(11)))
    model = SparsityModel(weight_density=0.3, act_density=0.6, seed=4, mask_draw_version=1)
    layer = TINY.layers[1]
    masks = model.masks(layer, 1)
    rng = np.random.default_rng([4, 1])  # the old code: weights, then inputs, one stream
    np.testing.assert_array_equal(masks.weights["w"], _old_exact((16, 40), 0.3, rng))
    np.testing.assert_array_equal(masks.inputs, rng.random((9, 40)) < 0.6)


def test_versions_differ_in_positions_not_counts():
    one, two = (SparsityModel(weight_density=0.5, seed=0, mask_draw_version=v)
                .masks(TINY.layers[0], 0).weights["w"] for v in (1, 2))
    assert one.sum() == two.sum() == 480 and not np.array_equal(one, two)
    assert SparsityModel().mask_draw_version == MASK_DRAW_VERSION == 2


def _without_draw_version(path: Path, out: Path) -> None:
    """``path`` as the old code wrote it: trace version 3, act_models without a version."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(arrays["manifest"].tobytes().decode())
    manifest["version"] = 3
    for entry in manifest["layers"]:
        entry.get("act_model", {}).pop("draw_version", None)
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez_compressed(out, **arrays)


def test_an_old_trace_draws_version_1_and_simulates_the_same(tmp_path):
    model = ActivationModel(0.4, None, seed=7, draw_version=1)
    weights = {"b": LayerMasks({"w": exact_density_mask((16, 40), 0.5,
                                                        np.random.default_rng(0))})}
    Trace(TINY, weights, act_models={"b": model}).save(tmp_path / "new.npz")
    _without_draw_version(tmp_path / "new.npz", tmp_path / "old.npz")
    old = load_trace(tmp_path / "old.npz")
    assert old.act_models["b"].draw_version == 1
    expected = np.random.default_rng(7).random((9, 40)) < 0.4  # the old Bernoulli draw
    np.testing.assert_array_equal(old.masks["b"].inputs, expected)
    # the same numbers as the masks given outright
    given_masks = Trace(TINY, {"b": LayerMasks(weights["b"].weights, expected)})
    arch = "default"
    assert simulate(trace=old, arch=arch).rows == simulate(trace=given_masks, arch=arch).rows
    # a new trace records version 2 and draws it again on load
    Trace(TINY, weights, act_models={"b": ActivationModel(0.4, None, seed=7)}).save(
        tmp_path / "v2.npz")
    v2 = load_trace(tmp_path / "v2.npz")
    assert v2.act_models["b"].draw_version == 2
    np.testing.assert_array_equal(
        v2.masks["b"].inputs,
        bernoulli_mask((9, 40), 0.4, np.random.default_rng(7), version=2))
    assert not np.array_equal(v2.masks["b"].inputs, expected)


def test_a_bad_draw_version_in_a_trace_is_one_error(tmp_path):
    Trace(TINY, {}, act_models={"b": ActivationModel(0.4, seed=7)}).save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(arrays["manifest"].tobytes().decode())
    manifest["layers"][1]["act_model"]["draw_version"] = 9
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SparsesimError) as err:
        load_trace(tmp_path / "bad.npz")
    assert err.value.field == "act_model.draw_version" and err.value.layer == "b"


def test_results_and_drawn_traces_record_the_version():
    model = SparsityModel(weight_density=0.5, seed=0)
    assert simulate(TINY, "default", sparsity=model).trace_meta["mask_draw_version"] == 2
    old = with_draw_version(model, 1)
    assert draw_trace(TINY, old).meta["mask_draw_version"] == 1
    assert simulate(TINY, "default").trace_meta == {}  # dense: nothing drawn
    r1 = simulate(TINY, "default", sparsity=old)
    assert r1.rows == simulate(trace=draw_trace(TINY, old), arch="default").rows


def test_version_flag_is_checked(capsys):
    assert main(["run", "-w", "resnet18", "--weight-nm", "2:4", "--mask-draw-version",
                 "1"]) == 2
    assert "--mask-draw-version" in capsys.readouterr().err
    assert main(["run", "-w", "resnet18", "--weight-density", "0.5", "--mask-draw-version",
                 "3"]) == 2
    assert "unknown mask-drawing version 3" in capsys.readouterr().err
    assert main(["run", "-w", "resnet18", "--mask-draw-version", "1"]) == 2  # dense: nothing
    assert "would change nothing" in capsys.readouterr().err
    with pytest.raises(SparsesimError):
        SparsityModel(mask_draw_version=True)


def test_a_trace_is_written_in_the_oldest_version_that_describes_it(tmp_path):
    def version(trace):
        trace.save(tmp_path / "v.npz")
        with np.load(tmp_path / "v.npz") as data:
            return json.loads(data["manifest"].tobytes().decode())["version"]

    assert version(Trace(TINY, {})) == 3  # no act_model: nothing version 4 added
    assert version(Trace(TINY, {}, act_models={"b": ActivationModel(0.4, seed=7)})) == 4
