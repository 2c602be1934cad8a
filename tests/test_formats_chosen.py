"""Which format `auto` chose (issue 18 item 4): every result row names the format each
operand's tiles are stored in, ``mixed: ...`` with tile counts where tiles differ; the
``formats-chosen`` plot draws it. Expected winners come from each candidate's own encoder
(``Format.bits``), not from ``Auto``."""

import subprocess
import sys

import numpy as np
import pytest

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.formats.auto import chosen_text, parse_chosen
from sparsesim.formats.registry import FORMATS
from sparsesim.plot import PLOTS
from sparsesim.report import COLUMNS
from sparsesim.sparsity.masks import LayerMasks, SparsityModel
from sparsesim.sparsity.trace import Trace
from sparsesim.workload.layers import Linear
from sparsesim.workload.network import Workload

FC = Linear("fc", in_features=64, out_features=64, tokens=8)  # GEMM 8 × 64 × 64


def winner(tile):
    """The smallest default candidate on ``tile`` by its encoder's bits (ties: the earlier)."""
    cands = [cls() for cls in FORMATS.values() if cls.auto_candidate]
    totals = [sum(c.bits(tile, value_bits=8)) for c in cands]
    return cands[int(np.argmin(totals))].spec


def test_chosen_text_round_trips():
    assert chosen_text({"bitmap": 7}) == "bitmap" and parse_chosen("bitmap") is None
    text = chosen_text({"rle:run_bits=4": 3, "dense": 1, "coo": 3, "csr": 0})
    assert text == "mixed: coo 3, rle:run_bits=4 3, dense 1"
    assert parse_chosen(text) == {"coo": 3, "rle:run_bits=4": 3, "dense": 1}
    assert chosen_text({}) == "" and parse_chosen("") == {}


def test_auto_names_the_winner_of_each_weight_tile():
    # default 32×32 os array: a W tile is K (64, whole) × 32 output features; outputs 0-31
    # keep every weight, outputs 32-63 one weight each
    w = np.zeros((64, 64), dtype=bool)  # (out, in), as Linear stores it
    w[:32] = True
    w[32:, 5] = True
    trace = Trace(Workload("t", (FC,)), {"fc": LayerMasks({"w": w})})
    arch = with_overrides(load_arch("default"), {"memory.format_w": "auto",
                                                 "memory.ideal": True})
    row = simulate(trace=trace, arch=arch).df.iloc[0]
    gemm_w = w.T  # W[k, n]
    first, second = winner(gemm_w[:, :32]), winner(gemm_w[:, 32:])
    assert first == "dense" and second != "dense"
    assert row["format_w_chosen"] == chosen_text({first: 1, second: 1})
    assert (row["format_a_chosen"], row["format_o_chosen"]) == ("dense", "dense")
    # a fixed format is named as it is, whatever the masks
    fixed = with_overrides(arch, {"memory.format_w": "csr"})
    assert simulate(trace=trace, arch=fixed).df.iloc[0]["format_w_chosen"] == "csr"


def test_every_row_of_a_run_has_the_columns_and_dense_runs_say_dense():
    df = simulate("resnet18", "default").df
    for op in "awo":
        assert f"format_{op}_chosen" in COLUMNS
        assert set(df[f"format_{op}_chosen"]) == {"dense"}


def test_the_choice_follows_the_sparsity():
    """Dense weights: auto keeps them dense; at 5 % density every tile is compressed."""
    arch = with_overrides(load_arch("default"), {"memory.format_w": "auto",
                                                 "pe.kind": "skip"})
    dense = simulate("resnet18", arch).df
    sparse = simulate("resnet18", arch, sparsity=SparsityModel(weight_density=0.05)).df
    assert set(dense["format_w_chosen"]) == {"dense"}
    assert "dense" not in " ".join(sparse["format_w_chosen"])


@pytest.fixture(scope="module")
def mixed_run():
    arch = with_overrides(load_arch("default"), {"memory.format_w": "auto",
                                                 "memory.format_a": "auto", "pe.kind": "skip"})
    return simulate("resnet18", arch, sparsity=SparsityModel(weight_density=0.3,
                                                             act_density=0.5)).df


def test_formats_chosen_plot_draws_one_row_per_gemm_and_only_the_formats_used(mixed_run):
    fig = PLOTS["formats-chosen"](mixed_run)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(mixed_run["layer"])
    used = {name for op in "awo" for cell in mixed_run[f"format_{op}_chosen"]
            for name in (parse_chosen(cell) or {cell: 1})}
    assert {t.get_text() for t in ax.get_legend().get_texts()} == used
    assert len(ax.patches) >= 3 * len(mixed_run)  # every cell drawn


def test_plot_formats_chosen_from_the_cli(tmp_path, mixed_run):
    csv = tmp_path / "run.csv"
    mixed_run.to_csv(csv, index=False)
    out = tmp_path / "chosen.png"
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "plot", "formats-chosen",
                           str(csv), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000
    old = tmp_path / "old.csv"  # results without the columns: one line naming one
    mixed_run.drop(columns=["format_w_chosen"]).to_csv(old, index=False)
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "plot", "formats-chosen",
                           str(old)], capture_output=True, text=True)
    assert proc.returncode == 2 and "format_w_chosen" in proc.stderr
    assert proc.stderr.count("\n") == 1
