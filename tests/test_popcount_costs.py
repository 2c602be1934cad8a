"""Bitmap gathering cost (popcount and prefix sum per 64-bit bitmap word), by hand on a tiny GEMM:
energy for every bitmap word the decoder reads, cycles only where the words outnumber the
values a decoder lane expands; formats without a bitmap and dense rows do not move."""

import math

import numpy as np
import pytest

from sparsesim.area import area_breakdown
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.engine.inference import run_gemm
from sparsesim.mapping.gemm import Gemm, GemmOperands

K = 100  # os on a 4x4 array: one fold, W's tile is K x 4 = 400 positions -> ceil(400/64) = 7 words
WORDS = 7


def _add_pj(bits: int) -> float:
    return 0.03 * (bits / 8) ** (math.log(0.1 / 0.03) / math.log(4))


def _arch(**over):
    base = {"array.rows": 4, "array.cols": 4, "array.dataflow": "os", "memory.ideal": True,
            "memory.format_w": "bitmap"}
    return with_overrides(load_arch("default"), {**base, **over})


def _row(arch, w):
    a = np.ones((4, K), dtype=bool)
    return run_gemm(GemmOperands(Gemm("l", "g", 4, K, 4), a, w), network="t", op="matmul",
                    arch=arch)


def _w(nnz: int) -> np.ndarray:
    w = np.zeros((K, 4), dtype=bool)
    w.ravel()[np.linspace(0, w.size - 1, nnz).astype(int)] = True
    return w


def test_popcount_energy_by_hand():
    w = _w(200)
    row = _row(_arch(), w)
    free = _row(_arch(**{"energy.popcount_pj_per_word": 0.0}), w)
    per_word = 6 * _add_pj(64)  # log2(64) rows of a 64-bit adder: count and prefix
    assert per_word == pytest.approx(1.095, abs=1e-3)
    assert row.energy["decode"] - free.energy["decode"] == pytest.approx(WORDS * per_word,
                                                                         abs=2 ** -7)
    assert row.cycles == free.cycles  # 200 values outnumber 7 words: never on the path
    for k in row.energy:
        if k != "decode":
            assert row.energy[k] == free.energy[k]


@pytest.mark.parametrize("fmt", ["dense", "coo", "rle", "csc"])
def test_no_bitmap_no_popcount(fmt):
    w = _w(200)
    row = _row(_arch(**{"memory.format_w": fmt}), w)
    free = _row(_arch(**{"memory.format_w": fmt, "energy.popcount_pj_per_word": 0.0}), w)
    assert row.energy == free.energy


def test_popcount_on_the_critical_path_when_words_outnumber_values():
    """A deliberately slow decoder (20 cycles a step) on the event-driven machine (ideal memory
    has no decode time): a tile's decode takes max(values, words) steps. So below 7 values
    (7 words) the cycles do not depend on the values; above, each value adds 20 cycles
    (the tiling policy may chunk the stream, so the knee itself is not asserted)."""
    rate = 20.0
    arch = _arch(**{"memory.ideal": False, "memory.decode_cycles_per_element": rate})
    c = {nnz: _row(arch, _w(nnz)).cycles for nnz in (2, 6, 7, 9, 10, 20)}
    assert c[2] == c[6] == c[7]  # the words set the decode time
    fast = _arch(**{"memory.ideal": False, "memory.decode_cycles_per_element": 1.0})
    assert c[2] > _row(fast, _w(2)).cycles  # ... and it is on the critical path
    assert c[10] - c[9] == rate and c[20] - c[10] == 10 * rate  # the values do


def test_popcount_area_in_the_decoder():
    bitmap, coo = _arch(), _arch(**{"memory.format_w": "coo"})
    lanes = 32  # 1 / decode_cycles_per_element (0.03125)
    adder_64 = 137.0 * 2 ** (math.log(137 / 36) / math.log(4))
    extra = lanes * 6 * adder_64 * 1e-6
    assert area_breakdown(bitmap).area_mm2["decoder"] - area_breakdown(coo).area_mm2[
        "decoder"] == pytest.approx(extra)
