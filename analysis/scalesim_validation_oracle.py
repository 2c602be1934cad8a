"""Generate three more SCALE-Sim v3 oracle tables for the validation report (DESIGN.md §3).

The tables and topologies are in the validation's data folder, ``sparsesim/validation/data``
(``data/`` below), which ships with the package.

What it does (each part is picked with ``--only``; all three by default):

* ``topology`` — SCALE-Sim's own bundled topologies (copied byte for byte into
  data/scalesim_topologies/, see the README there) run with memory that never stalls
  (CALC bandwidth mode, SRAMs far larger than any operand) on the configurations of ``PLAN``:
  128x128 os/ws/is and 32x32 os, every layer of alexnet, alexnet_part, yolo_tiny,
  yolo_tiny_layer1, Resnet18, Resnet50, Resnet_test, FasterRCNN, Googlenet, mobilnet_paper
  and test. Identical layer shapes (within and across networks) are simulated once per
  configuration and their row is repeated for every (topology, layer) of that shape. Writes
  data/scalesim_topology_oracle.csv: the columns of scalesim_oracle.csv plus
  ``topology`` and ``layer_index`` (0-based position in the topology file), one row per
  (topology, layer, rows, cols, dataflow). The file is appended to after every SCALE-Sim run
  (``--resume`` skips the rows already there) and sorted at the end.
* ``nm`` — SCALE-Sim's N:M structured-sparsity mode (``[sparsity] SparsitySupport = true``)
  on 10 conv + 4 GEMM layers of data/scalesim_random_{conv,gemm}.csv and 4 ResNet-18
  layers, ratios 1:4, 2:4, 3:4, 4:4 (dense reference), 1:2 and 2:8, arrays 16x32 and 32x16,
  dataflows os/ws/is (SCALE-Sim 3.0.0 runs all three), representation ellpack_block; csr and
  csc on 16x32 os for 2:4, 4:4 and 1:2; OptimizedMapping (ws) with BlockSize 4 and 8 on
  16x32. Writes data/scalesim_nm_oracle.csv: source, the layer's defining columns, nm,
  sparsity_n, sparsity_m, sparse_rep, optimized_mapping, block_size, rows, cols, dataflow, the
  report columns and the SPARSE_REPORT fields (original_filter_storage, new_filter_storage =
  filter + metadata, filter_metadata_storage, avg_filter_metadata_sram_bw).
* ``stall`` — SCALE-Sim's USER bandwidth mode (``InterfaceBandwidth = USER``) on 8 conv + 2
  GEMM layers of the random oracle, a 16x32 array, os/ws/is, DRAM bandwidth 1 and 10
  words/cycle (each interface) and SRAMs of 8 and 64 KB (each of the three). Writes
  data/scalesim_stall_oracle.csv: source, the layer's defining columns, rows, cols,
  dataflow, bandwidth, sram_kb, total_cycles, stall_cycles, total_cycles_incl_prefetch, the
  utilisations, SRAM and DRAM reads/writes and the DRAM start/stop cycles.

GEMM layers of the nm and stall parts run in the conv form SCALE-Sim itself converts them to
(M x K ifmap, N filters of 1 x K), in the same SCALE-Sim run as the conv layers; their rows
keep form=gemm and m, n, k.

SCALE-Sim counts words (elements), not bytes (its word size is 1 byte). "Total Cycles" is the
index of the last cycle (cycles - 1). How SCALE-Sim arrives at these numbers is written up in
analysis/results/scalesim_models.md.

Regenerate (one SCALE-Sim process at a time; on a shared 2-core machine the topology part
takes about 100 minutes of SCALE-Sim, nm about 11 and stall about 7):

    python analysis/scalesim_validation_oracle.py [--only topology nm stall]
        [--python .venv-scalesim/bin/python] [--resume] [--budget-min M]

SCALE-Sim 3.0.0 runs in its own interpreter (numpy < 2.4), from ``--python``, else
``$SPARSESIM_SCALESIM_PYTHON``, else the checkout's ``.venv-scalesim`` (``scalesim_python``).
Everything is a pure function of the constants below, so every run writes the same files
(``--budget-min`` only stops early).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sparsesim.validation.data import data_path
from sparsesim.validation.scalesim_runner import (
    CHECKOUT_VENV,
    CONV_KEYS,
    ENV_PYTHON,
    GEMM_KEYS,
    run_scalesim,
    scalesim_python,
)

DATA = data_path()
TOPO_DIR = DATA / "scalesim_topologies"
DATAFLOWS = ("os", "ws", "is")
Layer = dict[str, Any]

# ----------------------------------------------------------------------------------------------
# Part 1: bundled topologies
# ----------------------------------------------------------------------------------------------

# (file stem, form) in output order. Left out (see the README): UNet_2d, UNet_maestro and the
# 4k-input MobileNet/ResNet-50 variants — 150 GMAC and more each, hours of SCALE-Sim per config.
CONV_TOPOLOGIES = (
    "alexnet", "alexnet_part", "yolo_tiny", "yolo_tiny_layer1", "Resnet18", "Resnet50",
    "Resnet_test", "FasterRCNN", "Googlenet", "mobilnet_paper", "test",
)
GEMM_TOPOLOGIES = ("test_mnk_input", "vit_s", "NCF", "transformer_partial")

# What was run, in this order: (rows, cols, dataflow, topology group). SCALE-Sim's CALC mode
# costs ~1-3 us of Python per demand-matrix element (cycles x (rows + 2 cols)), so these four
# configurations took ~100 minutes on a shared 2-core machine; 32x32 ws/is, 16x64 and the GEMM
# topologies (GEMM_TOPOLOGIES, ~10 more minutes at 128x128) did not fit the budget.
PLAN: tuple[tuple[int, int, str, str], ...] = (
    (128, 128, "os", "conv"),
    (128, 128, "ws", "conv"),
    (128, 128, "is", "conv"),
    (32, 32, "os", "conv"),
)
CHUNK_SECONDS = 90.0  # target SCALE-Sim wall time per subprocess (from ELEM_SECONDS)
ELEM_SECONDS = 1.5e-6  # measured: SCALE-Sim's CALC mode costs ~1-2 us per demand-matrix element

ORACLE_COLUMNS = [
    "form", "name", "scalesim_layer", *CONV_KEYS, *GEMM_KEYS, "rows", "cols", "dataflow",
    "total_cycles", "stall_cycles", "total_cycles_incl_prefetch", "compute_util_pct",
    "mapping_efficiency_pct", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
    "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes", "sram_kb", "scalesim_version",
]
TOPOLOGY_COLUMNS = ["topology", "layer_index", *ORACLE_COLUMNS]


def parse_topology(path: Path, *, gemm: bool) -> list[Layer]:
    """Layers of a SCALE-Sim topology CSV, read leniently.

    SCALE-Sim 3.0.0's own reader (topology_utils.load_arrays_*) drops the last comma-separated
    field of every row, so it cannot read rows without a trailing comma, the tab-separated
    UNet_maestro or the spreadsheet residue of Resnet50.csv (an all-empty row, extra columns).
    Here fields are split on commas (tabs if a row has none), stripped, rows with an empty name
    are skipped and the first 8 (conv) or 4 (GEMM) fields are used: the values the file means.
    """
    layers: list[Layer] = []
    keys = GEMM_KEYS if gemm else CONV_KEYS
    lines = path.read_text().splitlines()
    for line in lines[1:]:
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in re.split(r"\t" if "," not in line else ",", line)]
        if not fields[0]:
            continue
        values = [int(v) for v in fields[1 : 1 + len(keys)]]
        layers.append({"name": fields[0], **dict(zip(keys, values))})
    return layers


def out_dim(size: int, filt: int, stride: int) -> int:
    """SCALE-Sim's output size (topology_utils.topo_calc_hyperparams): no padding."""
    return math.ceil((size - filt + stride) / stride)


def gemm_dims(layer: Layer, gemm: bool) -> tuple[int, int, int]:
    """(P, K, N): output pixels, window (dot-product length), filters."""
    if gemm:
        return layer["m"], layer["k"], layer["n"]
    p = out_dim(layer["ifmap_h"], layer["filter_h"], layer["stride"]) * out_dim(
        layer["ifmap_w"], layer["filter_w"], layer["stride"]
    )
    return p, layer["filter_h"] * layer["filter_w"] * layer["channels"], layer["num_filter"]


def model_cycles(p: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> int:
    """Approximate SCALE-Sim CALC-mode cycles (for budgets only; exact rules in
    the validation report (analysis/results/validation.md) and the
checks in sparsesim/validate.py)."""
    if dataflow == "os":
        return math.ceil(p / rows) * math.ceil(n / cols) * (k + rows + cols - 2)
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols) * (p + rows + cols - 2)
    return math.ceil(k / rows) * math.ceil(p / cols) * (n + rows + cols - 2)


def est_seconds(layer: Layer, gemm: bool, rows: int, cols: int, dataflow: str) -> float:
    """Rough SCALE-Sim wall time: its memory model loops in Python over every demand element."""
    p, k, n = gemm_dims(layer, gemm)
    return model_cycles(p, k, n, rows, cols, dataflow) * (rows + 2 * cols) * ELEM_SECONDS


def operand_elems(layer: Layer, gemm: bool) -> int:
    p, k, n = gemm_dims(layer, gemm)
    ifmap = p * k if gemm else layer["ifmap_h"] * layer["ifmap_w"] * layer["channels"]
    return max(ifmap, k * n, p * n)


def fast_sram_kb(layers: Iterable[Layer], gemm: bool) -> int:
    """SRAM size (KiB, each of the three) for a no-stall run that SCALE-Sim simulates quickly.

    In CALC mode the read buffer keeps 100 'sets' of size/100 words and looks every request up
    in the filled sets of its active half (read_buffer_estimate_bw.check_hit), in Python. With
    the SRAM >= 32x the largest operand at most ~4 sets fill, so the lookups stay cheap; the
    counts and cycles are the same as with any SRAM that holds every operand (checked on the
    runs in scalesim_models.md). Only total_cycles_incl_prefetch depends on the size.
    """
    biggest = max(operand_elems(layer, gemm) for layer in layers)
    return min(1 << 18, max(64, 1 << math.ceil(math.log2(math.ceil(32 * biggest / 1024)))))


def _version(python: str) -> str:
    probe = "from importlib.metadata import version; print(version('scalesim'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def _shape_key(layer: Layer, gemm: bool) -> tuple:
    keys = GEMM_KEYS if gemm else CONV_KEYS
    return ("gemm" if gemm else "conv", "DP" in layer["name"], *(layer[k] for k in keys))


def topology_layers() -> dict[str, tuple[bool, list[Layer]]]:
    out: dict[str, tuple[bool, list[Layer]]] = {}
    for stem in CONV_TOPOLOGIES:
        out[stem] = (False, parse_topology(TOPO_DIR / f"{stem}.csv", gemm=False))
    for stem in GEMM_TOPOLOGIES:
        out[stem] = (True, parse_topology(TOPO_DIR / f"{stem}.csv", gemm=True))
    return out


def _append_rows(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _finish_topology_csv(path: Path, topos: dict[str, tuple[bool, list[Layer]]]) -> pd.DataFrame:
    df = pd.read_csv(path)
    df = df.drop_duplicates(["topology", "layer_index", "rows", "cols", "dataflow"], keep="last")
    order = {t: i for i, t in enumerate(topos)}
    plan_order = {(r, c, d): i for i, (r, c, d, _) in enumerate(PLAN)}
    df["_t"] = df["topology"].map(order)
    df["_p"] = [plan_order.get((r, c, d), 99) for r, c, d in zip(df["rows"], df["cols"],
                                                                  df["dataflow"])]
    df = df.sort_values(["_t", "layer_index", "_p"]).drop(columns=["_t", "_p"])
    for col in (*CONV_KEYS, *GEMM_KEYS):
        df[col] = df[col].astype("Int64")
    for col in ("compute_util_pct", "mapping_efficiency_pct"):
        df[col] = df[col].round(6)
    df = df.loc[:, TOPOLOGY_COLUMNS]
    df.to_csv(path, index=False)
    return df


def run_topologies(python: str, out: Path, *, resume: bool, budget_s: float | None) -> None:
    t0 = time.perf_counter()
    version = _version(python)
    topos = topology_layers()
    done: set[tuple] = set()
    if resume and out.exists():
        prev = pd.read_csv(out)
        done = set(zip(prev["topology"], prev["layer_index"], prev["rows"], prev["cols"],
                       prev["dataflow"]))
    elif out.exists():
        out.unlink()
    spent = 0.0
    for rows, cols, dataflow, group in PLAN:
        gemm = group == "gemm"
        # unique shapes, in first-appearance order, with every (topology, index) using them;
        # the chunks are cut from all shapes (done or not) so that a resumed run simulates
        # exactly the chunks (hence SRAM sizes) of an uninterrupted one
        users: dict[tuple, list[tuple[str, int, Layer]]] = {}
        for topo, (is_gemm, layers) in topos.items():
            if is_gemm != gemm:
                continue
            for idx, layer in enumerate(layers):
                users.setdefault(_shape_key(layer, gemm), []).append((topo, idx, layer))
        shapes = list(users)
        chunks: list[list[tuple]] = []
        cur: list[tuple] = []
        acc = 0.0
        for key in shapes:
            cost = est_seconds(users[key][0][2], gemm, rows, cols, dataflow)
            if cur and acc + cost > CHUNK_SECONDS:
                chunks.append(cur)
                cur, acc = [], 0.0
            cur.append(key)
            acc += cost
        if cur:
            chunks.append(cur)
        chunks = [chunk for chunk in chunks
                  if any((t, i, rows, cols, dataflow) not in done
                         for key in chunk for t, i, _ in users[key])]
        todo = [key for chunk in chunks for key in chunk]
        print(f"[{rows}x{cols} {dataflow} {group}] {len(todo)} of {len(shapes)} shapes to run "
              f"in {len(chunks)} runs, est "
              f"{sum(est_seconds(users[k][0][2], gemm, rows, cols, dataflow) for k in todo):.0f} s",
              flush=True)
        for chunk in chunks:
            if budget_s is not None and spent > budget_s:
                print(f"budget of {budget_s:.0f} s spent; stopping", flush=True)
                _finish_topology_csv(out, topos)
                return
            run_layers = []
            for i, key in enumerate(chunk):
                layer = dict(users[key][0][2])
                layer["name"] = f"u{i:03d}" + ("DP" if key[1] else "")
                run_layers.append(layer)
            sram_kb = fast_sram_kb(run_layers, gemm)
            res, wall = run_scalesim(run_layers, rows=rows, cols=cols, dataflow=dataflow,
                                     gemm=gemm, python=python, sram_kb=sram_kb)
            spent += wall
            est = sum(est_seconds(layer, gemm, rows, cols, dataflow) for layer in run_layers)
            print(f"  {len(chunk)} shapes: {wall:.1f} s (est {est:.0f} s, total {spent:.0f} s)",
                  flush=True)
            out_rows = []
            for i, key in enumerate(chunk):
                part = res[res["source_layer"] == run_layers[i]["name"]]
                for topo, idx, layer in users[key]:
                    for _, r in part.iterrows():
                        row = {k: r[k] for k in r.index if k in ORACLE_COLUMNS}
                        scalesim_layer = str(r["layer"]).replace(run_layers[i]["name"],
                                                                 layer["name"], 1)
                        row.update({
                            "topology": topo, "layer_index": idx,
                            "form": "gemm" if gemm else "conv", "name": layer["name"],
                            "scalesim_layer": scalesim_layer, "rows": rows, "cols": cols,
                            "dataflow": dataflow, "sram_kb": sram_kb,
                            "scalesim_version": version,
                        })
                        for k in (GEMM_KEYS if gemm else CONV_KEYS):
                            row[k] = layer[k]
                        out_rows.append(row)
            _append_rows(out, out_rows, TOPOLOGY_COLUMNS)
    df = _finish_topology_csv(out, topos)
    print(f"wrote {len(df)} rows to {out} in {time.perf_counter() - t0:.0f} s "
          f"(SCALE-Sim {spent:.0f} s)", flush=True)


# ----------------------------------------------------------------------------------------------
# Part 2: N:M sparsity mode
# ----------------------------------------------------------------------------------------------

NM_RANDOM_CONV = ("c00_pw", "c05_pw", "c09_s3", "c10_s3", "c13_tiny", "c17_large", "c27_c1",
                  "c31_rand", "c33_rand", "c39_DPconv")
NM_RANDOM_GEMM = ("g02", "g05", "g07", "g13")
NM_RESNET18 = ("Conv3_s", "Conv4_s", "Conv5_s", "FC")
NM_RATIOS = ("1:4", "2:4", "3:4", "4:4", "1:2", "2:8")
NM_ARRAYS = ((16, 32), (32, 16))
# (sparse_rep, arrays, dataflows, ratios, optimized_mapping, block_size): the representation
# only changes SPARSE_REPORT (checked on the ellpack/csr/csc overlap), so csr and csc run on one
# array, dataflow and three ratios; OptimizedMapping (ws only) ignores N:M except M (metadata).
NM_RUNS = (
    ("ellpack_block", NM_ARRAYS, DATAFLOWS, NM_RATIOS, False, 4),
    ("csr", ((16, 32),), ("os",), ("2:4", "4:4", "1:2"), False, 4),
    ("csc", ((16, 32),), ("os",), ("2:4", "4:4", "1:2"), False, 4),
    ("ellpack_block", ((16, 32),), ("ws",), ("2:4",), True, 4),
    ("ellpack_block", ((16, 32),), ("ws",), ("2:4",), True, 8),
)
NM_COLUMNS = [
    "source", "form", "name", "scalesim_layer", *CONV_KEYS, *GEMM_KEYS, "nm", "sparsity_n",
    "sparsity_m", "sparse_rep", "optimized_mapping", "block_size", "rows", "cols", "dataflow",
    "total_cycles", "stall_cycles", "total_cycles_incl_prefetch", "overall_util_pct",
    "mapping_efficiency_pct", "compute_util_pct", "sram_ifmap_reads", "sram_filter_reads",
    "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes",
    "original_filter_storage", "new_filter_storage", "filter_metadata_storage",
    "avg_filter_metadata_sram_bw", "sram_kb", "scalesim_version",
]


def _pick(layers: list[Layer], names: Iterable[str]) -> list[Layer]:
    by_name = {layer["name"]: layer for layer in layers}
    return [by_name[n] for n in names]


def nm_layers() -> list[tuple[str, bool, Layer]]:
    """(source, gemm, layer) of the N:M study."""
    conv = parse_topology(DATA / "scalesim_random_conv.csv", gemm=False)
    gemm = parse_topology(DATA / "scalesim_random_gemm.csv", gemm=True)
    resnet = parse_topology(TOPO_DIR / "Resnet18.csv", gemm=False)
    return ([("random_conv", False, layer) for layer in _pick(conv, NM_RANDOM_CONV)]
            + [("random_gemm", True, layer) for layer in _pick(gemm, NM_RANDOM_GEMM)]
            + [("resnet18", False, layer) for layer in _pick(resnet, NM_RESNET18)])


def gemm_as_conv(layer: Layer) -> Layer:
    """A GEMM layer in the conv form SCALE-Sim itself turns it into (topology_utils.
    load_arrays_gemm: an M x K ifmap, N filters of 1 x K, 1 channel, stride 1), so that conv
    and GEMM layers share one SCALE-Sim run."""
    return {"name": layer["name"], "ifmap_h": layer["m"], "ifmap_w": layer["k"], "filter_h": 1,
            "filter_w": layer["k"], "channels": 1, "num_filter": layer["n"], "stride": 1,
            **({"nm": layer["nm"]} if "nm" in layer else {})}


def _rows_for(res: pd.DataFrame, runs: list[tuple[str, bool, Layer, Layer]],
              extra: dict[str, Any], columns: list[str]) -> list[dict[str, Any]]:
    """Report rows back onto the original layers: runs are (source, gemm, layer, run layer)
    and the run layers are named r000, r001, ... (+ 'DP' for depthwise)."""
    out = []
    for source, gemm, layer, run_layer in runs:
        run_name = run_layer["name"]
        part = res[res["source_layer"] == run_name]
        for _, r in part.iterrows():
            row = {k: r[k] for k in r.index if k in columns}
            row.update(extra)
            row.update({
                "source": source, "form": "gemm" if gemm else "conv", "name": layer["name"],
                "scalesim_layer": str(r["layer"]).replace(run_name, layer["name"], 1),
            })
            for k in (GEMM_KEYS if gemm else CONV_KEYS):
                row[k] = layer[k]
            if "nm" in run_layer:
                n, m = run_layer["nm"].split(":")
                row.update({"nm": run_layer["nm"], "sparsity_n": int(n), "sparsity_m": int(m)})
            out.append(row)
    return out


def run_nm(python: str, out: Path) -> None:
    t0 = time.perf_counter()
    version = _version(python)
    rows_out: list[dict[str, Any]] = []
    spent = 0.0
    layers = nm_layers()
    for rep, arrays, dataflows, ratios, optimized, block in NM_RUNS:
        for rows, cols in arrays:
            for dataflow in dataflows:
                runs = []
                for source, gemm, layer in layers:
                    for nm in ratios:
                        name = f"r{len(runs):03d}" + ("DP" if "DP" in layer["name"] else "")
                        conv = gemm_as_conv(layer) if gemm else layer
                        runs.append((source, gemm, layer, {**conv, "name": name, "nm": nm}))
                run_layers = [r[3] for r in runs]
                sram_kb = fast_sram_kb(run_layers, False)
                label = f"{rep} opt={optimized} block={block} {rows}x{cols} {dataflow}"
                try:
                    res, wall = run_scalesim(
                        run_layers, rows=rows, cols=cols, dataflow=dataflow, gemm=False,
                        python=python, sram_kb=sram_kb, sparse_rep=rep,
                        optimized_mapping=optimized, block_size=block)
                except RuntimeError as exc:
                    print(f"  {label}: SCALE-Sim FAILED: {str(exc)[-300:]}", flush=True)
                    continue
                spent += wall
                print(f"  {label}: {len(run_layers)} layers {wall:.1f} s (total {spent:.0f} s)",
                      flush=True)
                rows_out += _rows_for(res, runs, {
                    "sparse_rep": rep, "optimized_mapping": optimized, "block_size": block,
                    "rows": rows, "cols": cols, "dataflow": dataflow, "sram_kb": sram_kb,
                    "scalesim_version": version}, NM_COLUMNS)
    df = pd.DataFrame(rows_out)
    for col in (*CONV_KEYS, *GEMM_KEYS):
        df[col] = df[col].astype("Int64")
    for col in ("overall_util_pct", "mapping_efficiency_pct", "compute_util_pct",
                "avg_filter_metadata_sram_bw", "new_filter_storage", "filter_metadata_storage"):
        df[col] = pd.to_numeric(df[col]).round(6)
    df = df.loc[:, NM_COLUMNS]
    df.to_csv(out, index=False)
    print(f"wrote {len(df)} rows to {out} in {time.perf_counter() - t0:.0f} s "
          f"(SCALE-Sim {spent:.0f} s)", flush=True)


# ----------------------------------------------------------------------------------------------
# Part 3: bandwidth-limited (USER mode) runs
# ----------------------------------------------------------------------------------------------

# The plan behind the committed data/scalesim_stall_oracle.csv. 8x8 arrays and more
# bandwidths/sizes take hours in SCALE-Sim's USER mode: one array and the extremes of
# bandwidth and SRAM (about 6 minutes).
STALL_CONV = ("c00_pw", "c09_s3", "c17_large", "c20_large", "c25_rect", "c31_rand", "c33_rand",
              "c36_rand")
STALL_GEMM = ("g07", "g13")
STALL_ARRAYS = ((16, 32),)
STALL_BANDWIDTHS = (1, 10)  # words per cycle, each DRAM<->SRAM interface
STALL_SRAM_KB = (8, 64)  # each of the three SRAMs
STALL_COLUMNS = [
    "source", "form", "name", "scalesim_layer", *CONV_KEYS, *GEMM_KEYS, "rows", "cols", "dataflow",
    "bandwidth", "sram_kb", "total_cycles", "stall_cycles", "total_cycles_incl_prefetch",
    "overall_util_pct", "mapping_efficiency_pct", "compute_util_pct", "sram_ifmap_reads",
    "sram_filter_reads", "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads",
    "dram_ofmap_writes", "dram_ifmap_start_cycle", "dram_ifmap_stop_cycle",
    "dram_filter_start_cycle", "dram_filter_stop_cycle", "dram_ofmap_start_cycle",
    "dram_ofmap_stop_cycle", "scalesim_version",
]


def run_stall(python: str, out: Path) -> None:
    t0 = time.perf_counter()
    version = _version(python)
    conv = _pick(parse_topology(DATA / "scalesim_random_conv.csv", gemm=False), STALL_CONV)
    gemm = _pick(parse_topology(DATA / "scalesim_random_gemm.csv", gemm=True), STALL_GEMM)
    runs = [("random", False, layer, {**layer, "name": f"r{i:03d}"})
            for i, layer in enumerate(conv)]
    runs += [("random", True, layer, {**gemm_as_conv(layer), "name": f"r{len(conv) + i:03d}"})
             for i, layer in enumerate(gemm)]
    rows_out: list[dict[str, Any]] = []
    spent = 0.0
    for rows, cols in STALL_ARRAYS:
        for dataflow in DATAFLOWS:
            for sram_kb in STALL_SRAM_KB:
                for bw in STALL_BANDWIDTHS:
                    res, wall = run_scalesim(
                        [r[3] for r in runs], rows=rows, cols=cols, dataflow=dataflow,
                        gemm=False, python=python, sram_kb=sram_kb, ideal_memory=False,
                        bandwidth=bw)
                    spent += wall
                    print(f"  {rows}x{cols} {dataflow} {sram_kb} KB bw {bw}: {wall:.1f} s "
                          f"(total {spent:.0f} s)", flush=True)
                    rows_out += _rows_for(res, runs, {
                        "rows": rows, "cols": cols, "dataflow": dataflow, "bandwidth": bw,
                        "sram_kb": sram_kb, "scalesim_version": version}, STALL_COLUMNS)
    df = pd.DataFrame(rows_out)
    for col in (*CONV_KEYS, *GEMM_KEYS):
        df[col] = df[col].astype("Int64")
    for col in ("overall_util_pct", "mapping_efficiency_pct", "compute_util_pct"):
        df[col] = pd.to_numeric(df[col]).round(6)
    order = {name: i for i, name in enumerate((*STALL_CONV, *STALL_GEMM))}
    df["_o"] = df["name"].map(order)
    df["_a"] = [STALL_ARRAYS.index((r, c)) for r, c in zip(df["rows"], df["cols"])]
    df["_d"] = df["dataflow"].map({d: i for i, d in enumerate(DATAFLOWS)})
    df = df.sort_values(["_o", "_a", "_d", "sram_kb", "bandwidth"], kind="stable")
    df = df.loc[:, STALL_COLUMNS]
    df.to_csv(out, index=False)
    print(f"wrote {len(df)} rows to {out} in {time.perf_counter() - t0:.0f} s "
          f"(SCALE-Sim {spent:.0f} s)", flush=True)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=("topology", "nm", "stall"),
                    default=["topology", "nm", "stall"])
    ap.add_argument("--python", default=None, help="SCALE-Sim's interpreter")
    ap.add_argument("--out-dir", type=Path, default=DATA)
    ap.add_argument("--resume", action="store_true",
                    help="topology part: keep the rows already in the output, run the rest")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="topology part: stop after this many minutes of SCALE-Sim")
    args = ap.parse_args(argv)
    python = scalesim_python(args.python)
    if python is None:
        ap.error(f"no SCALE-Sim interpreter: --python, ${ENV_PYTHON} or {CHECKOUT_VENV}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if "topology" in args.only:
        run_topologies(python, args.out_dir / "scalesim_topology_oracle.csv",
                       resume=args.resume,
                       budget_s=None if args.budget_min is None else 60 * args.budget_min)
    if "nm" in args.only:
        run_nm(python, args.out_dir / "scalesim_nm_oracle.csv")
    if "stall" in args.only:
        run_stall(python, args.out_dir / "scalesim_stall_oracle.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
