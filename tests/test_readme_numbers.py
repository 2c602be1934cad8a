"""The numbers the README quotes from a committed result file are that file's: the Speed
section's timings are analysis/results/benchmark.json's (written by analysis/benchmark.py and
analysis/sweep_bench.py), rounded as printed. A re-run benchmark without a README update —
or a README edited by hand — fails here."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = json.loads((ROOT / "analysis" / "results" / "benchmark.json").read_text())["figures"]


def _speed_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Speed\n(.*?)^## ", text, re.M | re.S)
    assert section, "README has no Speed section"
    return " ".join(section.group(1).split())  # line breaks are spaces


# (what, path in benchmark.json's figures, how the README prints it)
QUOTED = [
    ("dense ResNet-50", ("dense_resnet50_os32", "simulate", "median_s"), "array {:.2f} s"),
    ("sparse ResNet-50", ("sparse_resnet50_skip_both_os32", "compute_model_only", "median_s"),
     "skipping PEs {:.2f} s"),
    ("BERT 2:4", ("sparse_bert512_nm24_os32", "compute_model_only", "median_s"),
     "2:4 weights {:.2f} s"),
    ("whole machine", ("machine", "resnet50_skip_bitmap_default", "median_s"),
     "bitmap weights {:.2f} s"),
    ("Llama decode", ("machine", "llama2_7b_decode_default", "median_s"),
     "decode block {:.2f} s"),
    ("tile sizes", ("formats_tile_sizes_resnet50", "formats_tile_sizes_resnet50_s_median"),
     "every format {:.2f} s"),
    ("SCALE-Sim", ("scalesim_vs_sparsesim", "scalesim_wall_s"), "SCALE-Sim {:.1f} s"),
    ("sparsesim vs SCALE-Sim", ("scalesim_vs_sparsesim", "sparsesim", "median_s"),
     "sparsesim {:.1f} ms", 1e3),
    ("speed-up", ("scalesim_vs_sparsesim", "speedup_median"), "({:,.0f}×"),
    ("training step", ("training_resnet18", "median_s"), "machine) {:.2f} s"),
    ("1,000-point sweep", ("sweep_1000", "wall_s"), "takes {:.0f} s"),
]


@pytest.mark.parametrize("quote", QUOTED, ids=[q[0] for q in QUOTED])
def test_speed_numbers_are_the_benchmark_files(quote):
    what, path, printed, *scale = quote
    value = BENCH
    for key in path:
        value = value[key]
    text = printed.format(value * (scale[0] if scale else 1.0))
    assert text in _speed_section(), f"README Speed, {what}: expected {text!r} (benchmark.json)"


def test_identical_cycles_are_claimed_only_when_true():
    figure = BENCH["scalesim_vs_sparsesim"]
    assert figure["identical_cycles"] is True
    assert figure["cycles_sparsesim"] == figure["cycles_scalesim_plus_1"]
    assert "with identical cycles" in _speed_section()
