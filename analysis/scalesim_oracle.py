"""Generate the SCALE-Sim oracle table for dense systolic timing (DESIGN.md §3).

What it does: with a fixed seed it draws random conv-form layers (1x1 convs, stride 1/2/3
with (H - R) not a multiple of the stride, layers smaller than an 8x8 array in every GEMM
dimension, layers much larger than the arrays, non-square ifmaps and filters, C = 1, and
depthwise 'DP' layers with small C) and random GEMM-form layers, runs SCALE-Sim v3 on each for
arrays 8x8, 16x32 (16 rows, 32 cols) and 32x16 and dataflows os/ws/is with memory that never
stalls (its CALC bandwidth mode, SRAMs that hold every operand), and writes, in the
validation's data folder (``sparsesim/validation/data``, ``data/`` below; it ships with the
package):

* data/scalesim_oracle.csv      one row per (SCALE-Sim layer, rows, cols, dataflow):
  form (conv|gemm), name, scalesim_layer (SCALE-Sim's name: a DP layer of C channels is C
  rows named <name>Channel_<i>, each a single-channel layer; the defining columns keep the
  topology's C), ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filter, stride (conv) or
  m, n, k (gemm), empty where not applicable, then rows, cols, dataflow, total_cycles
  (SCALE-Sim's "Total Cycles": the index of the last cycle, i.e. cycles - 1), stall_cycles,
  total_cycles_incl_prefetch, compute_util_pct, mapping_efficiency_pct, SRAM and DRAM
  reads/writes per operand, sram_kb (each SRAM) and the scalesim version;
* data/scalesim_random_conv.csv and data/scalesim_random_gemm.csv: the topologies,
  in SCALE-Sim's own CSV format (rows end with a trailing comma; GEMM is "Layer, M, N, K,").

Regenerate (about 8 minutes on 2 cores):

    python analysis/scalesim_oracle.py [--jobs 2] [--python .venv-scalesim/bin/python]

SCALE-Sim 3.0.0 runs in its own interpreter (numpy < 2.4), from ``--python``, else
``$SPARSESIM_SCALESIM_PYTHON``, else the checkout's ``.venv-scalesim`` (``scalesim_python``).
The layers are a pure function of SEED, so the output is the same on every run.
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sparsesim.validation.data import data_path  # noqa: E402
from sparsesim.validation.scalesim_runner import (  # noqa: E402
    CHECKOUT_VENV,
    CONV_KEYS,
    ENV_PYTHON,
    GEMM_KEYS,
    run_scalesim,
    scalesim_python,
    write_topology,
)

SEED = 20240531
ARRAYS = ((8, 8), (16, 32), (32, 16))
DATAFLOWS = ("os", "ws", "is")
DATA = data_path()
MAX_OFMAP_PX = 2000
# Budget on the summed cycles of one layer over the 9 (array, dataflow) runs: SCALE-Sim costs
# about 0.1 ms per simulated cycle, so this keeps the whole script well under 15 minutes.
LAYER_CYCLE_CAP = 250_000
LARGE_LAYER_CYCLE_CAP = 700_000
CHUNK_CYCLES = 100_000  # target simulated cycles per SCALE-Sim subprocess

Layer = dict[str, Any]


def _out_dim(size: int, filt: int, stride: int) -> int:
    # SCALE-Sim's own rule (topology_utils.topo_calc_hyperparams); used only for budgets here.
    return math.ceil((size - filt + stride) / stride)


def gemm_dims(layer: Layer, form: str) -> tuple[int, int, int]:
    """(P, K, N) of a layer as SCALE-Sim lowers it (for one DP channel when name has 'DP')."""
    if form == "gemm":
        return layer["m"], layer["k"], layer["n"]
    p = _out_dim(layer["ifmap_h"], layer["filter_h"], layer["stride"]) * _out_dim(
        layer["ifmap_w"], layer["filter_w"], layer["stride"]
    )
    c = 1 if "DP" in layer["name"] else layer["channels"]
    return p, layer["filter_h"] * layer["filter_w"] * c, layer["num_filter"]


def budget_cycles(layer: Layer, form: str) -> int:
    """Rough simulated-cycle count over all 9 runs (for budgets and load balancing only)."""
    p, k, n = gemm_dims(layer, form)
    copies = layer["channels"] if form == "conv" and "DP" in layer["name"] else 1
    total = 0
    for ra, ca in ARRAYS:
        total += math.ceil(p / ra) * math.ceil(n / ca) * (k + ra + ca)
        total += math.ceil(k / ra) * math.ceil(n / ca) * (2 * ra + ca + p)
        total += math.ceil(k / ra) * math.ceil(p / ca) * (2 * ra + ca + n)
    return total * copies


def _conv(name: str, ih: int, iw: int, fh: int, fw: int, c: int, nf: int, s: int) -> Layer:
    return {
        "name": name, "ifmap_h": ih, "ifmap_w": iw, "filter_h": fh, "filter_w": fw,
        "channels": c, "num_filter": nf, "stride": s,
    }


def _draw(
    rng: random.Random, make: Callable[[], Layer], ok: Callable[[int, int, int], bool],
    cap: int, form: str = "conv",
) -> Layer:
    """Redraw ``make()`` until the layer is valid, within budget and satisfies ``ok(P, K, N)``."""
    for _ in range(10_000):
        layer = make()
        if form == "conv" and (
            layer["filter_h"] > layer["ifmap_h"] or layer["filter_w"] > layer["ifmap_w"]
        ):
            continue
        p, k, n = gemm_dims(layer, form)
        if p <= MAX_OFMAP_PX and ok(p, k, n) and budget_cycles(layer, form) <= cap:
            return layer
    raise RuntimeError(f"could not draw a layer like {make()}")


def conv_layers(rng: random.Random) -> list[Layer]:
    """40 conv-form layers, by category (the name says which)."""
    r = rng.randint
    out: list[Layer] = []
    any_ok = lambda p, k, n: True  # noqa: E731

    def add(tag: str, make: Callable[[str], Layer], count: int, ok=any_ok, cap=LAYER_CYCLE_CAP):
        for _ in range(count):
            name = f"c{len(out):02d}_{tag}"
            out.append(_draw(rng, lambda: make(name), ok, cap))

    # 1x1 convolutions, stride 1 and 2.
    add("pw", lambda nm: _conv(nm, r(3, 40), r(3, 40), 1, 1, r(1, 64), r(1, 64), 1), 4)
    add("pw", lambda nm: _conv(nm, r(4, 40), r(4, 40), 1, 1, r(1, 48), r(1, 48), 2), 2)
    # Strided convs; (H - R) mod s != 0 for at least one side, so the output-size rule matters.
    def strided(nm: str, s: int) -> Layer:
        fh, fw = r(1, 7), r(1, 7)
        ih, iw = fh + r(0, 30), fw + r(0, 30)
        if (ih - fh) % s == 0 and (iw - fw) % s == 0:
            ih += 1
        return _conv(nm, ih, iw, fh, fw, r(1, 12), r(1, 40), s)
    add("s2", lambda nm: strided(nm, 2), 3)
    add("s3", lambda nm: strided(nm, 3), 3)
    # Smaller than an 8x8 array in every dimension: P, K, N < 8.
    add(
        "tiny",
        lambda nm: _conv(nm, r(1, 6), r(1, 6), r(1, 3), r(1, 3), r(1, 3), r(1, 7), r(1, 3)),
        5,
        ok=lambda p, k, n: p < 8 and k < 8 and n < 8,
    )
    # Much larger than the arrays in every dimension.
    add(
        "large",
        lambda nm: _conv(nm, r(30, 48), r(30, 48), r(3, 5), r(3, 5), r(4, 10), r(40, 96), 1),
        4,
        ok=lambda p, k, n: p >= 700 and k >= 64 and n >= 40,
        cap=LARGE_LAYER_CYCLE_CAP,
    )
    # Non-square ifmaps and filters.
    def nonsquare(nm: str) -> Layer:
        fh, fw = rng.choice([(1, 3), (3, 1), (1, 7), (7, 1), (2, 5), (5, 2), (3, 4)])
        tall = rng.random() < 0.5
        ih, iw = (r(20, 60), r(fw, 12)) if tall else (r(fh, 12), r(20, 60))
        return _conv(nm, max(ih, fh), max(iw, fw), fh, fw, r(1, 16), r(1, 40), r(1, 2))
    add("rect", nonsquare, 6)
    # Single input channel.
    add("c1", lambda nm: _conv(nm, r(8, 40), r(8, 40), r(2, 7), r(2, 7), 1, r(1, 48), r(1, 3)), 3)
    # Generic random layers.
    add(
        "rand",
        lambda nm: _conv(nm, r(2, 36), r(2, 36), r(1, 5), r(1, 5), r(1, 32), r(1, 72), r(1, 3)),
        7,
    )
    # Depthwise: SCALE-Sim runs C single-channel layers for a name containing 'DP'.
    for c, nf, s in ((2, 1, 1), (3, 1, 2), (4, 2, 1)):
        name = f"c{len(out):02d}_DPconv"
        out.append(
            _draw(
                rng,
                lambda: _conv(name, r(6, 30), r(6, 30), r(2, 5), r(2, 5), c, nf, s),
                any_ok,
                LAYER_CYCLE_CAP,
            )
        )
    for layer in out:
        assert "DP" not in layer["name"] or layer["name"].endswith("DPconv")
    return out


def gemm_layers(rng: random.Random) -> list[Layer]:
    """14 GEMM-form layers: degenerate, tiny, vector-like, moderate and one larger."""
    r = rng.randint
    fixed = [(1, 1, 1), (50, 30, 1), (1, 40, 100), (20, 1, 9), (r(2, 7), r(2, 7), r(2, 7))]
    out: list[Layer] = [
        {"name": f"g{i:02d}", "m": m, "n": n, "k": k} for i, (m, n, k) in enumerate(fixed)
    ]
    while len(out) < 13:
        name = f"g{len(out):02d}"
        out.append(
            _draw(
                rng,
                lambda: {"name": name, "m": r(3, 400), "n": r(2, 120), "k": r(2, 300)},
                lambda p, k, n: True,
                LAYER_CYCLE_CAP,
                form="gemm",
            )
        )
    name = f"g{len(out):02d}"
    out.append(
        _draw(
            rng,
            lambda: {"name": name, "m": r(400, 900), "n": r(40, 100), "k": r(64, 160)},
            lambda p, k, n: True,
            LARGE_LAYER_CYCLE_CAP,
            form="gemm",
        )
    )
    return out


def _chunks(layers: list[Layer], form: str) -> list[list[Layer]]:
    """Split into runs of about CHUNK_CYCLES simulated cycles (per array and dataflow)."""
    chunks: list[list[Layer]] = []
    current: list[Layer] = []
    acc = 0
    for layer in layers:
        cost = budget_cycles(layer, form) // 9
        if current and acc + cost > CHUNK_CYCLES:
            chunks.append(current)
            current, acc = [], 0
        current.append(layer)
        acc += cost
    if current:
        chunks.append(current)
    return chunks


def _sram_kb(layers: list[Layer], form: str) -> int:
    """One SRAM size for the whole form: >= 2.5x the largest operand, a power of two, in KiB."""
    biggest = 0
    for layer in layers:
        if form == "gemm":
            m, n, k = (layer[key] for key in GEMM_KEYS)
            biggest = max(biggest, m * k, k * n, m * n)
        else:
            p, k, n = gemm_dims(layer, form)
            ih, iw, c = layer["ifmap_h"], layer["ifmap_w"], layer["channels"]
            biggest = max(biggest, ih * iw * c, k * n * c, p * n)
    return max(64, 1 << math.ceil(math.log2(math.ceil(2.5 * biggest / 1024))))


def _scalesim_version(python: str) -> str:
    probe = "from importlib.metadata import version; print(version('scalesim'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="parallel SCALE-Sim processes")
    ap.add_argument("--python", default=None, help="SCALE-Sim's interpreter")
    ap.add_argument("--out-dir", type=Path, default=DATA)
    args = ap.parse_args(argv)
    python = scalesim_python(args.python)
    if python is None:
        ap.error(f"no SCALE-Sim interpreter: --python, ${ENV_PYTHON} or {CHECKOUT_VENV}")
    t0 = time.perf_counter()

    rng = random.Random(SEED)
    forms = {"conv": conv_layers(rng), "gemm": gemm_layers(rng)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_topology(forms["conv"], args.out_dir / "scalesim_random_conv.csv", gemm=False)
    write_topology(forms["gemm"], args.out_dir / "scalesim_random_gemm.csv", gemm=True)

    jobs: list[tuple[int, str, list[Layer], int, int, str, int]] = []
    for form, layers in forms.items():
        sram_kb = _sram_kb(layers, form)
        for chunk in _chunks(layers, form):
            cost = sum(budget_cycles(layer, form) for layer in chunk)
            for rows, cols in ARRAYS:
                for df in DATAFLOWS:
                    jobs.append((cost, form, chunk, rows, cols, df, sram_kb))
    jobs.sort(key=lambda job: -job[0] * 64 // (job[3] * job[4]))  # longest first
    print(f"{len(jobs)} SCALE-Sim runs on {args.jobs} processes", flush=True)

    def run(job: tuple[int, str, list[Layer], int, int, str, int]) -> pd.DataFrame:
        _, form, chunk, rows, cols, df_name, sram_kb = job
        res, wall = run_scalesim(
            chunk, rows=rows, cols=cols, dataflow=df_name, gemm=form == "gemm",
            python=python, sram_kb=sram_kb,
        )
        print(f"  {form} {chunk[0]['name']}..{chunk[-1]['name']} {rows}x{cols} {df_name}: "
              f"{wall:.1f} s", flush=True)
        by_name = {layer["name"]: layer for layer in chunk}
        keys = GEMM_KEYS if form == "gemm" else CONV_KEYS
        defining = pd.DataFrame([{k: by_name[s][k] for k in keys} for s in res["source_layer"]])
        res = pd.concat([res.reset_index(drop=True), defining], axis=1)
        res.insert(0, "form", form)
        res["rows"], res["cols"], res["dataflow"], res["sram_kb"] = rows, cols, df_name, sram_kb
        return res

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        frames = list(pool.map(run, jobs))

    out = pd.concat(frames, ignore_index=True)
    out = out.rename(columns={"layer": "scalesim_layer", "source_layer": "name"})
    order = {(f, layer["name"]): i for f in forms for i, layer in enumerate(forms[f])}
    out["_order"] = [order[(f, n)] for f, n in zip(out["form"], out["name"])]
    out["_form"] = out["form"].map({"conv": 0, "gemm": 1})
    out["_arr"] = [ARRAYS.index((r_, c_)) for r_, c_ in zip(out["rows"], out["cols"])]
    out["_df"] = out["dataflow"].map({d: i for i, d in enumerate(DATAFLOWS)})
    out = out.sort_values(["_form", "_order", "layer_id", "_arr", "_df"])
    out["scalesim_version"] = _scalesim_version(python)
    columns = [
        "form", "name", "scalesim_layer", *CONV_KEYS, *GEMM_KEYS, "rows", "cols", "dataflow",
        "total_cycles", "stall_cycles", "total_cycles_incl_prefetch", "compute_util_pct",
        "mapping_efficiency_pct", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
        "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes", "sram_kb",
        "scalesim_version",
    ]
    for col in (*CONV_KEYS, *GEMM_KEYS):
        out[col] = out[col].astype("Int64")
    out = out.loc[:, columns]
    for col in ("compute_util_pct", "mapping_efficiency_pct"):
        out[col] = out[col].round(6)
    out.to_csv(args.out_dir / "scalesim_oracle.csv", index=False)
    stalls = int((out["stall_cycles"] != 0).sum())
    print(
        f"wrote {len(out)} rows ({len(forms['conv'])} conv + {len(forms['gemm'])} gemm layers), "
        f"{stalls} rows with stalls, in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
