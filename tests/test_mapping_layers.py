"""Per-layer mapping overrides in a workload TOML (issue 19 item 1): a layer's ``mapping``
table replaces the arch's ``[mapping]`` fields for that layer's GEMMs only."""

import pytest

from sparsesim.api import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.sparsity.trace import load_trace
from sparsesim.engine.inference import draw_trace
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.workload.network import load_workload

TOML = """
[network]
name = "two"
[[layer]]
name = "a"
op = "matmul"
m = 64
k = 96
n = 48
{mapping}
[[layer]]
name = "b"
op = "matmul"
m = 64
k = 96
n = 48
"""

# ws 8×8 with 1 KiB A and W buffers: A's 12 tiles (8 k × 64 m = 512 B each, one per row
# fold) cycle through a buffer holding two, so SCALE-Sim's order (n > k > m) re-reads them
# for each of the 6 column folds; input_reuse (k > m > n) keeps each A tile for its 6 column
# folds, so layer a reads less A from DRAM than layer b, which keeps the arch's order.
ARCH = {"array.rows": 8, "array.cols": 8, "array.dataflow": "ws",
        "memory.sram_kib_a": 1.0, "memory.sram_kib_w": 1.0, "memory.sram_kib_o": 8.0}


def write(tmp_path, mapping):
    p = tmp_path / "two.toml"
    p.write_text(TOML.format(mapping=mapping))
    return p


def rows_of(path, arch):
    return {r.layer: r for r in simulate(load_workload(path), arch).rows}


def test_override_changes_only_its_layer(tmp_path):
    arch = with_overrides(load_arch("default"), ARCH)
    plain = rows_of(write(tmp_path, ""), arch)
    assert plain["a"].traffic == plain["b"].traffic  # the same GEMM twice
    over = rows_of(write(tmp_path, 'mapping = { order = "input_reuse" }'), arch)
    assert over["b"] == plain["b"]
    # layer a as if the whole arch ran input_reuse
    whole = rows_of(write(tmp_path, ""), with_overrides(arch, {"mapping.order": "input_reuse"}))
    assert over["a"] == whole["a"]
    assert over["a"].traffic["dram_read_data_bytes_a"] < plain["a"].traffic[
        "dram_read_data_bytes_a"]


def test_explicit_order_as_a_list_and_trace_round_trip(tmp_path):
    arch = with_overrides(load_arch("default"), ARCH)
    path = write(tmp_path, 'mapping = { order = ["k", "m", "n"], stream_tile = 16 }')
    wl = load_workload(path)
    assert dict(wl.mappings)["a"] == (("order", ("k", "m", "n")), ("stream_tile", 16))
    trace = draw_trace(wl, SparsityModel(weight_density=0.5))
    saved = tmp_path / "t.npz"
    trace.save(saved)
    again = load_trace(saved)
    assert again.workload.mappings == wl.mappings
    direct = {r.layer: r for r in simulate(wl, arch, sparsity=SparsityModel(
        weight_density=0.5)).rows}
    via = {r.layer: r for r in simulate(wl, arch, trace=again).rows}
    assert via["a"].cycles == direct["a"].cycles
    assert via["a"].traffic == direct["a"].traffic


@pytest.mark.parametrize("mapping, field", [
    ('mapping = { order = "best" }', "mapping.order"),
    ('mapping = { tile = 3 }', "mapping.tile"),
    ('mapping = { stream_tile = -2 }', "mapping.stream_tile"),
    ('mapping = "input_reuse"', "mapping"),
])
def test_bad_override_names_file_layer_field(tmp_path, mapping, field):
    path = write(tmp_path, mapping)
    with pytest.raises(SparsesimError) as err:
        simulate(load_workload(path), load_arch("default"))
    text = str(err.value)
    assert "two.toml" in text and "layer 'a'" in text and f"field '{field}'" in text
    assert "\n" not in text


def test_size_guard_counts_the_stream_tiles_steps():
    from sparsesim.engine.size import run_size
    from sparsesim.workload.layers import MatMul
    layers = [MatMul("mm", 64, 96, 48)]
    arch = with_overrides(load_arch("default"), ARCH)  # ws 8×8: 12 × 6 folds, stream m = 64
    assert run_size(layers, arch).folds == 12 * 6
    tiled = with_overrides(arch, {"mapping.stream_tile": 10})
    assert run_size(layers, tiled).folds == 12 * 6 * 7
