"""Size guards (issue 17 deliverable 2): absurd sizes are refused in one line that says how big
and what to change, before any mask is drawn or event runs — never a MemoryError traceback or
an hour without output. Sizes below are computed by hand from the shapes."""

import io
import subprocess
import sys
from contextlib import redirect_stderr

import pytest

from sparsesim.arch.config import load_arch
from sparsesim.cli import main
from sparsesim.engine.size import LIMITS, SizeLimits, check_size, run_size
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import MatMul
from sparsesim.workload.network import MAX_LAYERS, builtin_workloads, load_workload

CONV = """[network]
name = "big"
[[layer]]
name = "c"
op = "conv2d"
c = {c}
h = 8
w = 8
m = {c}
r = 3
s = 3
padding = 1
"""
REPEAT = """[network]
name = "rep"
[[layer]]
name = "b"
op = "block"
repeat = {n}
  [[layer.body]]
  name = "fc"
  op = "linear"
  in_features = 8
  out_features = 8
"""
ATTENTION = """[network]
name = "att"
[[layer]]
name = "a"
op = "attention"
l = 10000000
e = 64
heads = 1
"""
GEMM = """[network]
name = "mm"
[[layer]]
name = "g"
op = "matmul"
m = 10000000
k = 10000000
n = 10000000
"""


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return code, err.getvalue()


@pytest.mark.parametrize("text, field, count", [
    (CONV.format(c=10**6), "weights.w", 10**6 * 10**6 * 9),     # dense conv, 10^6 channels
    (CONV.format(c=2**15), "weights.w", 2**15 * 2**15 * 9),     # conv, 2^15 channels
    (ATTENTION, "activations.p", 10**7 * 10**7),                 # L x L probabilities
    (GEMM, "weights.w", 10**14),                                 # 10^7 x 10^7 x 10^7
])
@pytest.mark.parametrize("extra", [[], ["--weight-density", "0.5"]])
def test_absurd_layers_are_one_line_naming_layer_field_and_size(tmp_path, text, field, count,
                                                                extra):
    path = tmp_path / "w.toml"
    path.write_text(text)
    code, err = cli("run", "-w", str(path), *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"field '{field}'" in err and f"{count:,} elements" in err and "w.toml" in err


def test_pruning_a_too_large_layer_is_refused_before_drawing_weights(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text(CONV.format(c=2**15))
    code, err = cli("prune", "-w", str(path), "-o", str(tmp_path / "t.npz"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "float32" in err
    assert not (tmp_path / "t.npz").exists()


def test_a_million_repeats_are_refused_before_expanding(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text(REPEAT.format(n=10**6))
    code, err = cli("run", "-w", str(path))
    assert code == 2 and "1,000,000 layers" in err and "field 'repeat'" in err
    path.write_text(REPEAT.format(n=MAX_LAYERS))  # at the limit: loads
    assert len(load_workload(path).layers) == MAX_LAYERS


def test_nested_repeats_multiply(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text(REPEAT.format(n=1000).replace('  op = "linear"', '  op = "block"\n  repeat = 1000\n    [[layer.body.body]]\n    name = "x"\n    op = "linear"', 1))
    with pytest.raises(SparsesimError) as err:
        load_workload(path)
    assert "1,000,000 layers" in err.value.message


def test_folds_beyond_the_limit_are_refused_with_their_count():
    """MatMul 100x10x100 on a 1x1 os array: 100 x 100 = 10^4 folds; limit 9,999 refuses it."""
    arch = load_arch("default")
    from sparsesim.arch.config import with_overrides
    tiny = with_overrides(arch, {"array.rows": 1, "array.cols": 1})
    layers = [MatMul("g", m=100, k=10, n=100)]
    assert run_size(layers, tiny).folds == 100 * 100
    with pytest.raises(SparsesimError) as err:
        check_size(layers, tiny, limits=SizeLimits(folds=9_999))
    assert "10,000 array folds" in err.value.message
    with pytest.raises(SparsesimError) as err:
        check_size(layers, tiny, passes=3, limits=SizeLimits(folds=29_999))
    assert "30,000 array folds (3 passes)" in err.value.message
    check_size(layers, tiny, passes=3, limits=SizeLimits(folds=30_000))


#: Whole LLMs: inside the limits, not 10x inside them (7B prefill on gemmini_like's 16x16 ws
#: array: 27,906,048 folds; 70B's lm_head: 262,144,000 elements); Llama-2-70B decode on
#: gemmini_like is refused (tests/test_llama_full.py).
WHOLE_LLMS = {"llama2_7b_prefill", "llama2_7b_decode", "llama2_70b_decode"}


@pytest.mark.parametrize("workload", builtin_workloads())
def test_every_builtin_is_well_inside_the_limits(workload):
    wl = load_workload(workload)
    for arch in ("default", "gemmini_like", "wide_16x64"):
        if workload == "llama2_70b_decode" and arch == "gemmini_like":
            continue
        size = run_size(list(wl.layers), load_arch(arch))
        margin = 1 if workload in WHOLE_LLMS else 10
        assert size.elements * margin < LIMITS.elements and size.folds * margin < LIMITS.folds


def test_the_limits_are_settable_and_each_refusal_names_its_flag(tiny):
    """The tiny workload on the default 32x32 os array: c1 is a 36x36x8 GEMM (6x6 output
    pixels on the rows, 8 filters on the columns): 2 folds; fc 1x64x10: 1 fold; 3 in all. Its
    largest operand: fc's 64x10 = 640 weights. Limits at them and just below."""
    from sparsesim import simulate

    simulate(str(tiny), limits=SizeLimits(folds=3, elements=640))
    with pytest.raises(SparsesimError) as err:
        simulate(str(tiny), limits=SizeLimits(folds=2))
    assert "3 array folds" in err.value.message and "--max-folds" in err.value.message
    with pytest.raises(SparsesimError) as err:
        simulate(str(tiny), limits=SizeLimits(elements=639))
    assert (err.value.layer, err.value.field) == ("fc", "weights.w")
    assert "--max-elements" in err.value.message
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SparsesimError):
            SizeLimits(folds=bad)
    cli = [sys.executable, "-m", "sparsesim.cli", "run", "-w", str(tiny), "--format", "csv"]
    assert subprocess.run([*cli, "--max-folds", "3"], capture_output=True).returncode == 0
    refused = subprocess.run([*cli, "--max-folds", "2"], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--max-folds" in refused.stderr
