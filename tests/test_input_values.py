"""Input values (issue 17, second part): every flag, sweep field and trace member that is out of
range, not a number, ignored or inconsistent is refused in one line naming it — never clamped,
truncated, ignored or turned into a traceback."""

import io
import json
import math
import zipfile
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparsesim.cli import main
from sparsesim.engine.dynamic import DynamicModel
from sparsesim.engine.training import GradientModel
from sparsesim.errors import SparsesimError
from sparsesim.plot.accuracy import accuracy_tradeoff
from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.sparsity.trace import load_trace
from sparsesim.sweep import build_point, spec_from_dict, spec_keys
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.workload.network import Workload

TINY = Workload("tiny", (Conv2d("c1", c=3, h=8, w=8, m=8, r=3, s=3, padding=1),
                         Linear("fc", in_features=8, out_features=4, tokens=5)))


def cli(*argv: str) -> tuple[int, str]:
    """Run the command in-process: (exit status, stderr)."""
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as stop:  # argparse's own errors
            code = stop.code if isinstance(stop.code, int) else 1
    return code, err.getvalue()


# --- CLI flags -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    # silently clamped before
    (["run", "--dynamic", "2", "--channel-keep", "1.5"], "--channel-keep"),
    (["run", "--dynamic", "2", "--dyn-token-keep", "1.5"], "--dyn-token-keep"),
    (["run", "--dynamic", "2", "--dyn-head-keep", "inf"], "--dyn-head-keep"),
    (["run", "--dynamic", "2", "--dyn-spread", "-1"], "--dyn-spread"),
    (["run", "--dynamic", "2", "--dyn-spread", "inf"], "--dyn-spread"),
    # NaN became 0 / tracebacks before
    (["run", "--act-density", "0.5", "--act-channel-std", "nan"], "--act-channel-std"),
    (["run", "--weight-density", "nan"], "--weight-density"),
    (["run", "--token-keep", "0"], "--token-keep"),
    (["run", "--seed", "-1"], "--seed"),
    (["run", "--seed", "1.5"], "--seed"),
    (["run", "--dynamic", "-3"], "--dynamic"),
    (["run", "--dynamic", "1000000000"], "--dynamic"),
    (["run", "--decode-tokens", "0"], "--decode-tokens"),
    (["run", "--dynamic", "2", "--dyn-head-keep", "-1"], "--dyn-head-keep"),
    # ignored before
    (["run", "--channel-keep", "0.5"], "--channel-keep"),
    (["run", "--dyn-token-keep", "0.5"], "--dyn-token-keep"),
    (["run", "--dyn-spread", "0.2"], "--dyn-spread"),
    (["run", "--training", "--grad-nm", "2:4"], "--grad-nm"),
    (["run", "--grad-nm", "2:4"], "--grad-nm"),
    (["run", "--token-keep", "0.5"], "--token-keep"),          # resnet18: no attention
    (["run", "--dynamic", "2", "--dyn-head-keep", "0.5"], "--dyn-head-keep"),
    (["run", "--set", "arch.base=tpu_like"], "arch.base"),
    (["run", "--set", "arch.clock_hz=inf"], "arch.clock_hz"),
    (["run", "--set", "array.rows=99999999999999999999999"], "array.rows"),
    (["run", "--set", "memory.sram_kib_w=inf"], "memory.sram_kib_w"),
    (["formats", "--elements", "0"], "--elements"),
    (["formats", "--seed", "-2"], "--seed"),
    (["prune", "--act-density", "nan", "-o", "x.npz"], "--act-density"),
    (["prune", "--act-density", "2", "-o", "x.npz"], "--act-density"),
    (["prune", "--seed", "-1", "-o", "x.npz"], "--seed"),
    (["prune", "--token-layers", "1", "-o", "x.npz"], "token_layers"),  # unstructured
    (["prune", "-w", "minilm_l6_seq128", "--granularity", "token", "--token-layers", "99",
      "-o", "x.npz"], "token_layers"),
    (["plot", "layers", "r.csv", "--dpi", "100000"], "--dpi"),
    (["sweep", "s.toml", "-j", "-3"], "--workers"),
])
def test_bad_flag_values_are_one_line_naming_the_flag(tmp_path, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    code, err = cli(*argv)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and flag in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_flag_refused_names_its_interval():
    code, err = cli("run", "--dynamic", "2", "--channel-keep", "1.5")
    assert code == 2 and "must be a number in (0, 1], got '1.5'" in err


@pytest.mark.parametrize("argv", [["run", "-o", "/dev/zero"], ["formats", "--plot", "/dev/null"],
                                  ["prune", "-o", "/dev/zero"]])
def test_outputs_that_are_not_regular_files_are_refused_before_work(argv):
    code, err = cli(*argv)
    assert code == 2 and "not a regular file" in err and err.count("\n") == 1


def test_a_run_output_under_a_file_is_refused_before_the_run(tmp_path):
    (tmp_path / "f").write_text("x")
    code, err = cli("run", "-o", str(tmp_path / "f" / "r.csv"))
    assert code == 2 and "is a file, not a folder" in err


# --- the models behind the flags and the sweep fields -----------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"structure": "unstructured", "nm": (2, 4)}, "grad_nm"),
    ({"structure": "row", "nm": (2, 4)}, "grad_nm"),
    ({"density": "0.5"}, "grad_density"),
    ({"density": math.nan}, "grad_density"),
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
])
def test_gradient_model_refuses_what_it_would_ignore_or_misread(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        GradientModel(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("kwargs, field", [
    ({"spread": math.inf}, "dynamic.spread"), ({"token_keep": math.nan}, "dynamic.token_keep"),
    ({"head_keep": "0.5"}, "dynamic.head_keep"), ({"inputs": 10**9}, "dynamic.inputs"),
    ({"seed": True}, "dynamic.seed"), ({"channel_keep": 0}, "dynamic.channel_keep"),
])
def test_dynamic_model_refuses_non_finite_and_non_numbers(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        DynamicModel(**kwargs)
    assert err.value.field == field


# --- sweep fields -----------------------------------------------------------------------------

@pytest.mark.parametrize("value, field", [
    ({"sparsity.weight_nm": [True, 4]}, "sparsity.weight_nm"),
    ({"sparsity.weight_nm": "2-4"}, "sparsity.weight_nm"),
    ({"sparsity.seed": True}, "sparsity.seed"),
    ({"sparsity.seed": 1.5}, "sparsity.seed"),
    ({"sparsity.weight_density": "0.5"}, "sparsity.weight_density"),
    ({"sparsity.act_channel_std": math.nan}, "sparsity.act_channel_std"),
    ({"sparsity.dense_first_input": 1}, "sparsity.dense_first_input"),
    ({"dynamic.token_keep": math.inf}, "dynamic.token_keep"),
    ({"dynamic.head_keep": math.nan}, "dynamic.head_keep"),
    ({"dynamic.channel_keep": "0.5"}, "dynamic.channel_keep"),
    ({"training.grad_nm": "2:4"}, "training.grad_nm"),          # unstructured gradients
    ({"arch.base": "tpu_like"}, "arch.base"),
    ({"arch.clock_hz": math.inf}, "arch.clock_hz"),
    ({"memory.sram_kib_a": math.inf}, "memory.sram_kib_a"),
    ({"memory.format_w": "nope"}, "memory.format_w"),
    ({"workload": "nope"}, "workload"),
    ({"workload": 5}, "workload"),
    ({"trace": "missing.npz"}, "trace"),
])
def test_bad_sweep_fields_are_refused_before_anything_runs(value, field):
    with pytest.raises(SparsesimError) as err:
        spec_from_dict({"base": value}, file="s.toml")
    assert err.value.field == field and err.value.file == "s.toml", str(err.value)


def test_a_sweep_nm_ratio_may_be_written_as_text():
    text = build_point({"sparsity.weight_nm": "2:4"})
    listed = build_point({"sparsity.weight_nm": [2, 4]})
    assert text.sparsity == listed.sparsity and text.sparsity.weight_nm == (2, 4)
    grads = build_point({"training.grad_structure": "nm", "training.grad_nm": "1:4"})
    assert grads.training.gradients.nm == (1, 4)


def test_sweep_help_lists_every_key_itself(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "sparsesim/sweep.py" not in text
    for group, names in spec_keys().items():
        for name in names:
            assert (f"{group}.{name}" if group else name) in text
    assert "sparsity.weight_density" in text and "dynamic.spread" in text


# --- traces -----------------------------------------------------------------------------------

@pytest.fixture()
def trace_path(tmp_path):
    path = tmp_path / "t.npz"
    prune_workload(TINY, PruneSpec(sparsity=0.5, seed=1)).save(path)
    return path


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _manifest(path: Path) -> dict:
    raw = np.load(io.BytesIO(_members(path)["manifest.npy"]))
    return json.loads(raw.tobytes().decode())


def _with_manifest(path: Path, out: Path, manifest: object) -> Path:
    members = _members(path)
    members["manifest.npy"] = _npy(np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    return _write(out, members)


def test_a_plain_npy_given_as_a_trace_is_one_clear_error(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(SparsesimError, match="plain .npy array, not a trace") as err:
        load_trace(path)
    assert err.value.file == str(path)
    code, msg = cli("run", "--trace", str(path))
    assert code == 2 and msg.count("\n") == 1


def test_an_unused_member_is_refused_unread(trace_path, tmp_path):
    members = _members(trace_path)
    members["junk.npy"] = _npy(np.zeros(10, np.uint8))
    with pytest.raises(SparsesimError, match="named by no layer"):
        load_trace(_write(tmp_path / "junk.npz", members))


def test_a_member_header_claiming_2_to_the_40_elements_is_refused_before_reading(trace_path,
                                                                               tmp_path):
    members = _members(trace_path)
    header = _npy(np.zeros(1, np.uint8))
    fake = header.replace(b"(1,)", b"(1099511627776,)")  # the header lies; no data follows
    members["0/w/w.npy"] = fake
    with pytest.raises(SparsesimError, match="the manifest needs uint8 of") as err:
        load_trace(_write(tmp_path / "big.npz", members))
    assert (err.value.layer, err.value.field) == ("c1", "weights.w")


def test_a_member_of_the_right_header_but_cut_short_is_refused(trace_path, tmp_path):
    members = _members(trace_path)
    members["0/w/w.npy"] = members["0/w/w.npy"][:-3]
    with pytest.raises(SparsesimError, match="cut short"):
        load_trace(_write(tmp_path / "short.npz", members))


@pytest.mark.parametrize("edit, field", [
    (lambda m: None, "manifest"),
    (lambda m: [m], "manifest"),
    (lambda m: {**m, "meta": []}, "meta"),
    (lambda m: {**m, "network": "x"}, "network"),
    (lambda m: {**m, "layers": [{**m["layers"][0], "masks": "w"}, m["layers"][1]]}, "masks"),
    (lambda m: {**m, "layers": [{**m["layers"][0], "masks": {"weights": []}},
                                m["layers"][1]]}, "masks.weights"),
    (lambda m: {**m, "layers": [{**m["layers"][0], "op": ["conv2d"]}, m["layers"][1]]}, "op"),
    (lambda m: {**m, "layers": [{**m["layers"][0], "masks": {"weights": {"w": [True]}}},
                                m["layers"][1]]}, "weights.w"),
    (lambda m: {**m, "layers": [{**m["layers"][0], "act_model": {"density": 0.5,
                                                                 "seed": 1.5}},
                                m["layers"][1]]}, "act_model.seed"),
    (lambda m: {**m, "layers": [{**m["layers"][0], "act_model": {"density": "0.5"}},
                                m["layers"][1]]}, "act_model.density"),
])
def test_odd_manifests_are_refused_naming_the_field(trace_path, tmp_path, edit, field):
    path = _with_manifest(trace_path, tmp_path / "odd.npz", edit(_manifest(trace_path)))
    with pytest.raises(SparsesimError) as err:
        load_trace(path)
    assert err.value.field == field and err.value.file == str(path), str(err.value)


def test_a_deeply_nested_manifest_is_refused(trace_path, tmp_path):
    members = _members(trace_path)
    text = b'{"format": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    members["manifest.npy"] = _npy(np.frombuffer(text, np.uint8))
    with pytest.raises(SparsesimError, match="nested too deeply"):
        load_trace(_write(tmp_path / "deep.npz", members))


def test_a_well_formed_trace_still_loads(trace_path):
    assert load_trace(trace_path).workload.layers == TINY.layers


# --- plots ------------------------------------------------------------------------------------

def test_an_accuracy_column_of_records_is_refused_not_drawn():
    """(d) the front-end's list of records in the accuracy column drew a 39405-pixel image of
    strings and exited 0."""
    df = pd.DataFrame({"seconds": [1e-3, 2e-3], "energy_pj": [1.0, 2.0],
                       "accuracy": ["[{'accuracy': 0.9}]", "[{'accuracy': 0.8}]"]})
    with pytest.raises(SparsesimError, match="needs numbers in column 'accuracy'") as err:
        accuracy_tradeoff(df)
    assert err.value.field == "accuracy"
    assert accuracy_tradeoff(df.assign(accuracy=[0.9, 0.8])) is not None


@pytest.mark.parametrize("text", ["", "seconds,accuracy\n", "a,b\n\"1,2\n"])
def test_plot_of_an_empty_header_only_or_malformed_csv_is_one_line(tmp_path, text):
    path = tmp_path / "r.csv"
    path.write_text(text)
    code, err = cli("plot", "accuracy", str(path), "-o", str(tmp_path / "f.png"))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "f.png").exists()


def test_plot_reads_no_pipe_and_writes_no_device(tmp_path):
    import os

    fifo = tmp_path / "r.csv"
    os.mkfifo(fifo)
    code, err = cli("plot", "accuracy", str(fifo), "-o", str(tmp_path / "f.png"))
    assert code == 2 and "not a regular file" in err
    good = tmp_path / "g.csv"
    good.write_text("seconds,accuracy\n0.1,0.9\n")
    code, err = cli("plot", "accuracy", str(good), "-o", "/dev/null")
    assert code == 2 and "not a regular file" in err

