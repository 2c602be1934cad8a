"""Benchmark: per-tile sizes of every ResNet-50 weight in every format, 32 x 32 os mapping.

In an output-stationary 32 x 32 mapping a weight tile is K x 32 (the whole reduction axis,
32 filters). For each weight GEMM (K = C*R*S, N = filters) we size every tile in every format
plus ``auto`` (per tile) from a seeded 80 %-sparse mask. The masks are 1:5 along K (one
non-zero at a random place in every group of 5), so that N:M can be sized with the others;
they are as sparse as a uniform 80 % mask and the run-length and coordinate formats see the
same amount of work. Timing covers the sizing only (one kernel pass per tensor, shared by all
formats, plus the N:M conformance pass), not building the masks.

Run: ``python3 analysis/bench_formats.py``; ``analysis/benchmark.py`` calls
:func:`bench_tile_sizes`.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from sparsesim.formats import NM, Auto, Format, make_format, tile_stats

ARRAY = 32  # os mapping: weight tiles are K x ARRAY


def _resnet50_weight_shapes() -> list[tuple[int, int]]:
    """(K, N) of every ResNet-50 (v1.5, torchvision) weight: 53 convolutions and the fc."""
    shapes = [(3 * 7 * 7, 64)]  # conv1
    in_ch = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        out_ch = 4 * width
        for b in range(blocks):
            shapes.append((in_ch, width))            # 1x1 reduce
            shapes.append((width * 3 * 3, width))    # 3x3
            shapes.append((width, out_ch))           # 1x1 expand
            if b == 0:
                shapes.append((in_ch, out_ch))       # 1x1 downsample shortcut
            in_ch = out_ch
    shapes.append((2048, 1000))  # fc
    return shapes


RESNET50_WEIGHTS: tuple[tuple[int, int], ...] = tuple(_resnet50_weight_shapes())


def _one_in_m_mask(rng: np.random.Generator, k: int, n: int, m: int) -> np.ndarray:
    """One non-zero at a random row of every group of m rows (a shorter last group too)."""
    groups = -(-k // m)
    offset = rng.integers(0, m, size=(groups, n))
    last = k - (groups - 1) * m
    offset[-1] = rng.integers(0, last, size=n)
    mask = np.zeros((k, n), dtype=bool)
    rows = np.arange(groups)[:, None] * m + offset
    mask[rows, np.arange(n)[None, :]] = True
    return mask


def _formats() -> list[Format]:
    return [make_format(name) for name in ("dense", "bitmap", "rle", "coo", "coo_offset",
                                           "csr", "csc")] + [NM(1, 5)]


def bench_tile_sizes(shapes: list[tuple[int, int]] | None = None, repeats: int = 5) -> dict:
    """Seconds to size every tile of the given weight GEMMs in every format plus auto.

    Returns ``formats_tile_sizes_resnet50_s_median`` and ``..._s_min`` over ``repeats`` warm
    runs (one untimed warm-up run first, which also compiles or loads the kernels), and
    ``elements``, the total number of weight elements sized.
    """
    shapes = list(RESNET50_WEIGHTS if shapes is None else shapes)
    rng = np.random.default_rng(2024)
    masks = [_one_in_m_mask(rng, k, n, 5) for k, n in shapes]
    formats = _formats()
    auto = Auto(per="tile")
    run_bits = sorted({r for f in (*formats, auto) for r in f.run_bits_needed()})
    value_bits = 8

    def run_once() -> int:
        total = 0
        for i, mask in enumerate(masks):
            stats = tile_stats(mask, mask.shape[0], ARRAY, run_bits=run_bits,
                               name=f"resnet50.w{i}")
            for fmt in formats:
                data, meta = fmt.tile_bits_from_stats(stats, value_bits)
                total += int(data.sum() + meta.sum())
            total += int(auto.choose(stats, value_bits).total_bits.sum())
        return total

    run_once()
    times = []
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - t0)
    return {
        "formats_tile_sizes_resnet50_s_median": statistics.median(times),
        "formats_tile_sizes_resnet50_s_min": min(times),
        "elements": int(sum(k * n for k, n in shapes)),
    }


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " Prints; writes "
                            "nothing.").parse_args()
    result = bench_tile_sizes()
    print(f"{len(RESNET50_WEIGHTS)} weight tensors, {result['elements']:,} elements, "
          f"{len(_formats())} formats + auto, 32x32 os tiles (K x 32)")
    print(f"warm median {result['formats_tile_sizes_resnet50_s_median'] * 1e3:.1f} ms, "
          f"min {result['formats_tile_sizes_resnet50_s_min'] * 1e3:.1f} ms")
