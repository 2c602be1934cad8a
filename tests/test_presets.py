"""Presets with sources (issue 18 item 5): every preset names where its numbers come from,
`sparsesim archs` shows it, and the published chips run as their closed forms say.

Expected cycles are DESIGN.md §3's SCALE-Sim formulas worked by hand for each array:
ws/is ``folds · (2·Ra + Ca + T − 2)``, os ``folds · (T + Ra + Ca − 2)``, ``folds =
ceil(Sr/Ra) · ceil(Sc/Ca)``; a Linear of ``tokens`` M, ``in_features`` K, ``out_features`` N.
"""

import subprocess
import sys

import pytest

from sparsesim import simulate
from sparsesim.arch.config import arch_from_dict, builtin_archs, load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.workload.network import load_workload

GEMM = ('[network]\nname = "g"\n[[layer]]\nname = "fc"\nop = "linear"\n'
        'in_features = 512\nout_features = 300\ntokens = 100\n')  # M 100, K 512, N 300


@pytest.fixture
def gemm(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(GEMM)
    return load_workload(str(path))


def ideal(name):
    return with_overrides(load_arch(name), {"memory.ideal": True})


def test_every_preset_has_a_source_and_notes():
    for name in builtin_archs():
        arch = load_arch(name)
        assert arch.source.strip() and arch.notes.strip(), name
        if name.endswith("_like"):  # an approximation says so and names its reference
            assert "-like" in arch.source or "like" in arch.description.lower(), name


def test_archs_lists_every_preset_with_its_source():
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "archs"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    sources = proc.stdout.split("\nsources:\n", 1)[1]
    for name in builtin_archs():
        assert f"  {name}: {load_arch(name).source}\n" in sources
    assert "Jouppi et al." in sources and "Eyeriss" in sources and "2104.08378" in sources
    assert "Row-stationary" not in proc.stdout  # notes only with --notes
    notes = subprocess.run([sys.executable, "-m", "sparsesim.cli", "archs", "--notes"],
                           capture_output=True, text=True, timeout=300)
    assert notes.returncode == 0 and "Row-stationary is not one of our dataflows" in notes.stdout


def test_tpu_v1_carries_the_published_figures():
    """Jouppi et al., ISCA 2017: 256×256 int8 ws at 700 MHz, 24 MiB unified buffer, a weight
    FIFO of four 64 KiB tiles, 34 GB/s weight memory, 28 nm."""
    a = load_arch("tpu_v1")
    assert (a.array.rows, a.array.cols, a.array.dataflow) == (256, 256, "ws")
    assert a.clock_hz == 700e6 and (a.precision.a_bits, a.precision.w_bits) == (8, 8)
    assert a.memory.sram_kib_a == 24 * 1024 and a.memory.sram_kib_w == 4 * 64
    assert a.memory.dram_bytes_per_cycle * a.clock_hz == pytest.approx(34e9)
    assert a.area.node_nm == 28
    assert 2 * a.array.rows * a.array.cols * a.clock_hz == pytest.approx(92e12, rel=0.005)  # "92 TOPS"


def test_dense_gemm_on_tpu_v1_is_scale_sims_ws_closed_form(gemm):
    # ws: Sr = K = 512, Sc = N = 300, T = M = 100; folds 2 · 2 = 4; fold 2·256 + 256 + 100 − 2
    row = simulate(gemm, ideal("tpu_v1")).df.iloc[0]
    assert (row["folds"], row["fold_cycles"]) == (4, 866)
    assert row["compute_cycles"] == row["cycles"] == 4 * 866
    real = simulate(gemm, "tpu_v1").df.iloc[0]  # its 34 GB/s memory only adds stalls
    assert real["compute_cycles"] == 4 * 866 and real["cycles"] > 4 * 866


def test_eyeriss_like_is_a_12x14_gated_ws_array(gemm):
    a = load_arch("eyeriss_like")
    assert (a.array.rows, a.array.cols, a.clock_hz) == (12, 14, 200e6)
    assert a.memory.sram_kib_a + a.memory.sram_kib_w + a.memory.sram_kib_o == 108  # one GLB
    assert (a.pe.kind, a.pe.operand, a.precision.a_bits) == ("gate", "A", 16)
    # ws: folds ceil(512/12) · ceil(300/14) = 43 · 22; fold 2·12 + 14 + 100 − 2 = 136
    row = simulate(gemm, ideal("eyeriss_like")).df.iloc[0]
    assert row["compute_cycles"] == 43 * 22 * 136


def test_stc_2x4_like_halves_k_on_2_4_weights(gemm):
    trace = prune_workload(gemm, PruneSpec(granularity="nm", nm=(2, 4)))
    # os: folds ceil(100/16) · ceil(300/16) = 7 · 19; T = K' = 512 · 2/4 = 256; fold 256 + 30
    row = simulate(trace=trace, arch=ideal("stc_2x4_like")).df.iloc[0]
    assert row["compute_cycles"] == 7 * 19 * (256 + 16 + 16 - 2)
    with pytest.raises(SparsesimError) as err:  # its W buffer stores 2:4 values + metadata:
        simulate(gemm, "stc_2x4_like")          # dense weights cannot be stored so
    assert "not 2:4-conformant" in err.value.message and "conv" not in err.value.message


def test_source_is_text_and_not_inherited():
    with pytest.raises(SparsesimError) as err:
        arch_from_dict({"arch": {"source": 3}}, file="x.toml")
    assert (err.value.field, err.value.file) == ("arch.source", "x.toml")
    mine = arch_from_dict({"arch": {"base": "tpu_v1", "name": "mine"}})
    assert mine.array == load_arch("tpu_v1").array and mine.source == mine.notes == ""
    assert arch_from_dict(load_arch("tpu_v1").to_dict()) == load_arch("tpu_v1")
