"""Traces held bit-packed in memory (issue 20 item 1): the same masks and the same numbers as
a trace of bools, at 1/8 of the memory; a run from a file loads it packed."""

import json

import numpy as np
import pytest

from sparsesim import simulate
from sparsesim.errors import SparsesimError
from sparsesim.kernels.packed import PackedMask
from sparsesim.sparsity.masks import (ActivationModel, LayerMasks, PackedLayerMasks,
                                      SparsityModel, as_bool)
from sparsesim.sparsity.trace import MAX_TRACE_ELEMENTS, Trace, load_trace
from sparsesim.workload.layers import Attention, Linear
from sparsesim.workload.network import Workload

NET = Workload("net", (Linear("a", in_features=70, out_features=33, tokens=9),
                       Attention("att", l=9, e=64, heads=4),
                       Linear("b", in_features=64, out_features=129, tokens=9)))


@pytest.fixture()
def saved(tmp_path):
    rng = np.random.default_rng(0)
    masks = {"a": LayerMasks({"w": rng.random((33, 70)) < 0.4}),
             "att": LayerMasks({k: rng.random(s) < 0.5
                                for k, s in NET.layer("att").weight_shapes().items()},
                               rng.random((1, 9, 64)) < 0.7,
                               {"p": rng.random(NET.layer("att").activation_shapes()["p"])
                                < 0.5}),
             "b": LayerMasks({"w": rng.random((129, 64)) < 0.2})}
    trace = Trace(NET, masks, act_models={"b": ActivationModel(0.3, seed=5)})
    path = tmp_path / "t.npz"
    trace.save(path)
    return path


def test_a_packed_trace_holds_the_same_masks(saved):
    plain, packed = load_trace(saved), load_trace(saved, packed=True)
    assert packed.packed and not plain.packed
    for name, m in plain.masks.items():
        p = packed.masks[name]
        assert isinstance(p, PackedLayerMasks) and isinstance(m, LayerMasks)
        assert all(isinstance(v, PackedMask) for v in p.weights.values())
        u = as_bool(p)
        for k, w in m.weights.items():
            np.testing.assert_array_equal(u.weights[k], w)
        if m.inputs is None:
            assert u.inputs is None
        else:
            np.testing.assert_array_equal(u.inputs, m.inputs)
        for k, a in m.activations.items():
            np.testing.assert_array_equal(u.activations[k], a)
    # the drawn input of "b" (its act_model) is packed too
    np.testing.assert_array_equal(packed.masks["b"].inputs.unpack(),
                                  ActivationModel(0.3, seed=5).draw(NET.layer("b")))
    bool_bytes = sum(w.size for w in plain.masks["b"].weights.values())
    assert sum(w.nbytes for w in packed.masks["b"].weights.values()) == 129 * 8  # 1 word/row
    assert bool_bytes == 129 * 64


def test_a_packed_trace_simulates_the_same_rows(saved):
    for arch in ("default", "gemmini_like"):
        assert (simulate(trace=saved, arch=arch).rows  # loads it packed
                == simulate(trace=load_trace(saved), arch=arch).rows)


def test_a_packed_trace_saves_the_same_file_content(saved, tmp_path):
    load_trace(saved, packed=True).save(tmp_path / "again.npz")
    a, b = np.load(saved), np.load(tmp_path / "again.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_drawn_masks_packed_in_a_trace_run_the_same():
    model = SparsityModel(weight_density=0.5, act_density=0.5, seed=3)
    from sparsesim.engine.inference import draw_trace

    drawn = draw_trace(NET, model)
    packed = Trace(drawn.workload, drawn.masks, drawn.meta, packed=True)
    assert all(isinstance(m, PackedLayerMasks) for m in packed.masks.values())
    assert simulate(trace=packed).rows == simulate(NET, sparsity=model).rows
    at_once = draw_trace(NET, model, packed=True)
    assert at_once.packed and at_once.meta == {"mask_draw_version": 2}
    assert simulate(trace=at_once).rows == simulate(NET, sparsity=model).rows


def test_packed_loading_allows_8x_the_elements(tmp_path):
    # a manifest naming 2^31 + 1 elements: refused as bools before any data is read; packed,
    # the limit is 2^34 and the reader goes on to find the member missing
    manifest = {"format": "sparsesim-trace", "version": 4, "network": {"name": "big"},
                "layers": [{"op": "linear", "name": "fc", "in_features": 2**16 + 1,
                            "out_features": 2**15, "tokens": 1,
                            "masks": {"weights": {"w": [2**15, 2**16 + 1]}, "inputs": None}}]}
    assert 2**15 * (2**16 + 1) > MAX_TRACE_ELEMENTS
    path = tmp_path / "big.npz"
    np.savez(path, manifest=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    with pytest.raises(SparsesimError, match="2 GiB unpacked"):
        load_trace(path)
    with pytest.raises(SparsesimError, match="mask missing from the file"):
        load_trace(path, packed=True)
