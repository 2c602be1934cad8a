"""The whole machine on real workloads: compute + memory + energy reconcile."""

import math

import numpy as np
import pytest

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.report import ENERGY_COLUMNS
from sparsesim.workload.network import Workload

INF = math.inf
TINY = Workload("tiny", (
    Conv2d("c1", c=3, h=16, w=16, m=16, r=3, s=3, padding=1),
    Conv2d("dw", c=16, h=16, w=16, m=16, r=3, s=3, padding=1, groups=16),
    Linear("fc", in_features=256, out_features=40, tokens=8),
))
KINDS = [{"pe.kind": "dense"}, {"pe.kind": "gate"},
         {"pe.kind": "skip", "pe.operand": "both", "pe.sync": "row"},
         {"pe.kind": "skip", "pe.operand": "A", "pe.sync": "pe"}]
MODEL = SparsityModel(weight_density=0.4, act_density=0.6, seed=2)


def arch(**over):
    return with_overrides(load_arch("default"), over)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_unlimited_memory_adds_no_cycles(kind, dataflow):
    big = 1 << 20  # 1 GiB buffers: nothing is evicted (and SRAM energy stays priceable)
    unlimited = {"memory.dram_bytes_per_cycle": INF, "memory.dram_latency_cycles": 0,
                 "memory.sram_kib_a": big, "memory.sram_kib_w": big, "memory.sram_kib_o": big,
                 "array.dataflow": dataflow, **kind}
    real = simulate(TINY, arch(**unlimited), sparsity=MODEL).df
    ideal = simulate(TINY, arch(**{**unlimited, "memory.ideal": True}), sparsity=MODEL).df
    assert (real["stall_cycles"] == 0).all()
    assert list(real["cycles"]) == list(ideal["cycles"]) == list(ideal["compute_cycles"])
    # each distinct tile fetched once in both
    assert list(real["dram_read_bytes"]) == list(ideal["dram_read_bytes"])


def test_less_bandwidth_or_buffer_never_speeds_up():
    cycles = []
    for bw, kib in ((64, 512), (16, 512), (4, 512), (4, 32), (1, 16)):
        a = arch(**{"memory.dram_bytes_per_cycle": bw, "memory.sram_kib_a": kib,
                    "memory.sram_kib_w": kib, "memory.sram_kib_o": kib})
        cycles.append(int(simulate(TINY, a, sparsity=MODEL).df["cycles"].sum()))
    assert cycles == sorted(cycles)


def test_decode_gemv_is_memory_bound():
    a = arch()
    df = simulate("llama2_7b_block_decode", a).df
    for row in df[df["gemm"] == "fc"].itertuples():
        moved = row.dram_read_bytes + row.dram_write_bytes
        assert row.cycles >= moved / a.memory.dram_bytes_per_cycle
        assert row.cycles <= 1.05 * max(row.compute_cycles,
                                        moved / a.memory.dram_bytes_per_cycle) + 2000


def test_gate_keeps_dense_cycles_and_saves_energy():
    dense = simulate(TINY, arch(**{"memory.ideal": True}), sparsity=MODEL).df
    gate = simulate(TINY, arch(**{"memory.ideal": True, "pe.kind": "gate"}), sparsity=MODEL).df
    assert list(gate["cycles"]) == list(dense["cycles"])
    assert gate["energy_pj"].sum() < dense["energy_pj"].sum()
    assert (gate["energy_gated_mac_pj"] > 0).all() and (dense["energy_gated_mac_pj"] == 0).all()


def test_energy_components_sum_to_the_total():
    df = simulate(TINY, arch(**{"pe.kind": "skip", "memory.format_w": "bitmap"}),
                  sparsity=MODEL).df
    parts = df[list(ENERGY_COLUMNS)].to_numpy()
    assert np.array_equal(parts.sum(axis=1), df["energy_pj"].to_numpy())
    assert (df["dram_read_meta_bytes_w"] > 0).all()


def test_sparse_format_moves_fewer_bytes():
    dense = simulate("resnet18", arch(**{"memory.ideal": True}),
                     sparsity=SparsityModel(weight_density=0.1)).df
    bitmap = simulate("resnet18", arch(**{"memory.ideal": True, "memory.format_w": "bitmap"}),
                      sparsity=SparsityModel(weight_density=0.1)).df
    w_bytes = lambda df: (df["dram_read_data_bytes_w"] + df["dram_read_meta_bytes_w"]).sum()  # noqa: E731
    # 10 % density at 8 bits: bitmap ≈ 0.1·8 + 1 = 1.8 bits per weight instead of 8
    assert w_bytes(bitmap) < 0.25 * w_bytes(dense)
    assert (bitmap["dram_read_data_bytes_a"] == dense["dram_read_data_bytes_a"]).all()


def test_conv_moves_the_feature_map_not_its_im2col_copy():
    conv = Conv2d("c", c=64, h=56, w=56, m=64, r=3, s=3, padding=1)
    big = 1 << 20
    a = arch(**{"memory.sram_kib_a": big, "memory.sram_kib_w": big, "memory.sram_kib_o": big})
    df = simulate(Workload("w", (conv,)), a).df
    ifmap = 64 * 56 * 56  # int8 bytes
    im2col = conv.e * conv.f * 64 * 9
    moved = int(df["dram_read_data_bytes_a"].sum())
    # each 32-pixel block reads its rows plus a halo of r - stride rows: never the 9x copy
    assert ifmap <= moved <= 3.2 * ifmap < im2col
    sparse = simulate(Workload("w", (conv,)), arch(**{
        "memory.sram_kib_a": big, "memory.sram_kib_w": big, "memory.sram_kib_o": big,
        "memory.format_a": "bitmap"}), sparsity=SparsityModel(act_density=0.25,
                                                           dense_first_input=False)).df
    # bitmap at 25 % density: 0.25·8 + 1 = 3 bits per element instead of 8
    assert int(sparse["dram_read_bytes_a" if False else "dram_read_data_bytes_a"].sum()
               + sparse["dram_read_meta_bytes_a"].sum()) < 0.45 * moved


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_a_line_buffer_reads_each_input_pixel_once(dataflow):
    exact = {"memory.ideal": True, "memory.burst_bytes": 1, "array.dataflow": dataflow}
    three = Workload("c3", (Conv2d("c3", c=8, h=16, w=16, m=40, r=3, s=3, padding=1),))
    # 1×1 windows at stride 2 read every other pixel of every other row, nothing between
    strided = Workload("pw", (Conv2d("pw", c=8, h=16, w=16, m=40, r=1, s=1, stride=2),))
    for wl, pixels in ((three, 16 * 16), (strided, 8 * 8)):
        lined = simulate(wl, arch(**exact, **{"memory.conv_halo": "line_buffer"})).df
        again = simulate(wl, arch(**exact)).df
        assert lined["dram_read_data_bytes_a"].sum() == 8 * pixels
        assert again["dram_read_data_bytes_a"].sum() >= 8 * pixels
