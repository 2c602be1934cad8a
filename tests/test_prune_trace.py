"""The trace file as the pruning front-end writes it, its errors, and the `prune` command."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sparsesim import simulate
from sparsesim.cli import main
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.sparsity.masks import ActivationModel, LayerMasks
from sparsesim.prune import PruneSpec, mask_bits, prune_workload
from sparsesim.sparsity.trace import VERSION, Trace, load_trace
from sparsesim.workload.network import Workload, load_workload

TINY = Workload("tiny", (Conv2d("c1", c=3, h=8, w=8, m=8, r=3, s=3, padding=1),
                         Linear("fc", in_features=8, out_features=4, tokens=5)))


def _rewrite(path: Path, out: Path, edit) -> None:
    """Copy a trace, letting ``edit(manifest, arrays)`` change it."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(arrays["manifest"].tobytes().decode())
    edit(manifest, arrays)
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez_compressed(out, **arrays)


@pytest.fixture()
def saved(tmp_path):
    trace = prune_workload(TINY, PruneSpec(sparsity=0.5, seed=1), meta={"accuracy": [
        {"sparsity": 0.5, "accuracy": 0.9}]})
    path = tmp_path / "t.npz"
    trace.save(path)
    return trace, path


def test_trace_is_self_describing(saved):
    trace, path = saved
    loaded = load_trace(path)
    assert loaded.meta["method"] == {"criterion": "magnitude", "granularity": "unstructured",
                                     "scope": "layer", "seed": 1, "sparsity": 0.5}
    assert loaded.meta["accuracy"] == [{"sparsity": 0.5, "accuracy": 0.9}]
    assert loaded.meta["layers"]["c1"]["weight_sparsity"] == 0.5
    for name, m in trace.masks.items():
        np.testing.assert_array_equal(m.weights["w"], loaded.masks[name].weights["w"])
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(np.load(path)["manifest"].tobytes().decode())
        assert manifest["version"] == 3 and VERSION == 4 and "manifest.npy" in z.namelist()


def test_version_1_files_still_load(saved, tmp_path):
    _, path = saved
    _rewrite(path, tmp_path / "v1.npz", lambda m, a: m.update(version=1))
    assert load_trace(tmp_path / "v1.npz").workload.layers == TINY.layers


def test_wrong_version_names_file_and_field(saved, tmp_path):
    _, path = saved
    _rewrite(path, tmp_path / "v9.npz", lambda m, a: m.update(version=9))
    with pytest.raises(SparsesimError) as err:
        load_trace(tmp_path / "v9.npz")
    assert err.value.field == "version" and "v9.npz" in str(err.value)


def test_mask_of_the_wrong_shape_names_layer_and_field(saved, tmp_path):
    _, path = saved

    def edit(manifest, arrays):
        manifest["layers"][1]["masks"]["weights"]["w"] = [8, 4]  # fc is [4, 8]
    _rewrite(path, tmp_path / "shape.npz", edit)
    with pytest.raises(SparsesimError) as err:
        load_trace(tmp_path / "shape.npz")
    assert (err.value.layer, err.value.field) == ("fc", "weights.w")
    assert "shape.npz" in str(err.value) and "expected (4, 8)" in str(err.value)


def test_mask_with_too_few_bits_or_missing(saved, tmp_path):
    _, path = saved
    _rewrite(path, tmp_path / "short.npz", lambda m, a: a.update({"0/w/w": a["0/w/w"][:-1]}))
    with pytest.raises(SparsesimError) as err:
        load_trace(tmp_path / "short.npz")
    assert (err.value.layer, err.value.field) == ("c1", "weights.w")
    _rewrite(path, tmp_path / "gone.npz", lambda m, a: a.pop("1/w/w"))
    with pytest.raises(SparsesimError, match="mask missing") as err:
        load_trace(tmp_path / "gone.npz")
    assert (err.value.layer, err.value.field) == ("fc", "weights.w")


def test_missing_layer_is_named(saved, tmp_path):
    _, path = saved
    # the layer and its mask go (a mask no layer names is refused: tests/test_input_values.py)
    _rewrite(path, tmp_path / "drop.npz", lambda m, a: (m["layers"].pop(1), a.pop("1/w/w")))
    loaded = load_trace(tmp_path / "drop.npz")
    with pytest.raises(SparsesimError) as err:
        loaded.check_workload(TINY)
    assert err.value.layer == "fc" and err.value.field == "layers"
    assert "drop.npz" in str(err.value)
    _rewrite(path, tmp_path / "none.npz", lambda m, a: m.update(layers=[]))
    with pytest.raises(SparsesimError) as err:
        load_trace(tmp_path / "none.npz")
    assert err.value.field == "layers"


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_one_clear_error(saved, tmp_path, keep):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SparsesimError) as err:
        load_trace(cut)
    assert "cut.npz" in str(err.value)


def test_activation_model_and_measured_mask_are_exclusive():
    with pytest.raises(SparsesimError) as err:
        Trace(TINY, {"fc": LayerMasks({}, np.ones((5, 8), bool))},
              act_models={"fc": ActivationModel(0.5)})
    assert err.value.field == "act_model"
    with pytest.raises(SparsesimError) as err:
        Trace(TINY, {}, act_models={"fc": ActivationModel(0.5, (0.5,) * 3)})
    assert err.value.layer == "fc" and err.value.field == "channel_densities"


def test_trace_size_is_close_to_the_bit_packed_masks(tmp_path):
    trace = prune_workload(load_workload("resnet18"), PruneSpec(sparsity=0.8))
    trace.save(tmp_path / "r18.npz")
    assert os.path.getsize(tmp_path / "r18.npz") <= 1.1 * mask_bits(trace) / 8


def test_trace_simulates_like_the_masks_it_holds(saved):
    trace, path = saved
    direct = simulate(TINY, "default", trace=trace).df
    assert simulate(TINY, "default", trace=load_trace(path)).df.equals(direct)
    assert direct.effectual_macs.sum() < direct.dense_macs.sum()


# --- the `prune` command -----------------------------------------------------------------------

def test_cli_prune_then_run(tmp_path, capsys):
    out = tmp_path / "r18.npz"
    assert main(["prune", "--workload", "resnet18", "--method", "magnitude", "--granularity",
                 "unstructured", "--sparsity", "0.8", "--out", str(out)]) == 0
    assert "weight sparsity 0.8000" in capsys.readouterr().out
    assert load_trace(out).meta["weight_sparsity"] == pytest.approx(0.8, abs=1e-6)
    assert main(["run", "--trace", str(out), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("network,") and len(lines) == 1 + 21


def test_cli_prune_nm_with_activation_model(tmp_path, capsys):
    out = tmp_path / "nm.npz"
    assert main(["prune", "-w", "mobilenet_v2", "--granularity", "nm", "--nm", "1:4",
                 "--act-density", "0.5", "-o", str(out)]) == 0
    trace = load_trace(out)
    assert trace.meta["method"]["nm"] == "1:4" and trace.act_models
    assert main(["run", "--trace", str(out), "--set", "pe.kind=nm", "--set", "pe.n=1"]) == 0


def test_cli_prune_errors_are_one_line(tmp_path):
    for args, field in ((["--method", "wanda"], "act_norms.w"),
                        (["--granularity", "nm", "--scope", "global"], "scope"),
                        (["--method", "slimming"], "--method"),
                        (["--granularity", "token", "-w", "resnet18"], "granularity")):
        proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "prune", *args, "-o",
                               str(tmp_path / "x.npz")], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and field in proc.stderr


def test_cli_prune_refuses_what_a_method_would_ignore(tmp_path, capsys):
    """--sparsity with N:M or IMP would be ignored, --act-prune with the default --sparsity
    would prune the weights too, shape granularities need attention: one line each, exit 2,
    and no trace written."""
    out = tmp_path / "x.npz"
    for args, words in (
            (["--granularity", "nm", "--sparsity", "0.7"], "give --nm"),
            (["--model", "digits", "--schedule", "imp", "--sparsity", "0.7"], "--steps"),
            (["--model", "digits", "--act-prune", "topk:0.5"], "--sparsity 0"),
            (["-w", "resnet18", "--granularity", "head"], "resnet18 has none"),
            (["-w", "resnet18", "--granularity", "kv"], "resnet18 has none")):
        assert main(["prune", *args, "-o", str(out)]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (args, err)
    assert not out.exists()
    # the same flags where they mean something still run
    assert main(["prune", "-w", "bert_base_seq128", "--granularity", "kv", "--sparsity", "0.5",
                 "-o", str(out)]) == 0
