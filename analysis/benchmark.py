"""Speed figures of sparsesim, written to ``analysis/results/benchmark.json``.

    python analysis/benchmark.py            # all figures (SCALE-Sim part needs its venv)
    python analysis/benchmark.py --no-scalesim

Figures (medians of repeated warm runs, seconds):

* ``dense_resnet50_os32``: dense ResNet-50, whole network, 32×32 os (target ≤ 0.2 s), both the
  simulation alone (workload and arch already loaded) and end to end from names.
* ``scalesim_vs_sparsesim``: the same ResNet-18 layers through SCALE-Sim 3.0.0 (no-stall
  memory, subprocess wall time, one run — it takes long) and through sparsesim (warm median),
  with their cycles side by side: the speed ratio is one measurement (target ≥ 1000×, identical
  cycles). SCALE-Sim runs in its own venv, the interpreter
  ``sparsesim.validation.scalesim_runner.scalesim_python`` finds (``$SPARSESIM_SCALESIM_PYTHON``,
  else the checkout's ``.venv-scalesim``); without one this figure is skipped, and said so.
* ``sparse_resnet50_skip_both_os32``: ResNet-50, 80 % unstructured weight sparsity, 50 %
  ReLU-like activation density, skip/both PEs on 32×32 os, compute model (target ≤ 2 s); timed
  on pre-drawn masks and with the mask drawing included.
* ``sparse_bert512_nm24_os32``: BERT-base seq 512 with 2:4 weights on 2:4 N:M PEs (≤ 2 s).
* ``machine``: the full event-driven run (compute, simpy memory, energy) on the default arch:
  ResNet-50 with 80 % weight / 50 % activation sparsity, skip/both PEs, bitmap weights
  (target ≤ 3 s, events per second reported); Llama-2-7B one decode block at kv 2048 (≤ 1 s).
* ``training_resnet18``: one ResNet-18 training step (forward, input- and weight-gradient
  GEMMs, SGD update) through the full event-driven machine on the default arch: 80 % weight
  sparsity, 50 % ReLU-like activation density, output gradients pruned to 50 % (top-k per
  pixel, priced in the online unit), skip/both PEs, bitmap weights (target ≤ 3 s), on
  pre-drawn masks.
* ``memo``: identical GEMMs simulated once (issue 20 item 3), full machine on the default
  arch, dense: Llama-2-7B's 32 blocks at prefill 2048 (the block workload repeated with
  ``repeat``), BERT-base seq 512 and ResNet-50; CPU seconds (median of 3) with and without
  the memo, its hits and misses, and the rows' equality.
* ``startup``: CPU and wall seconds (median of 3) of ``sparsesim --help`` and of a cold
  ``sparsesim run`` (default workload), each a fresh interpreter (issue 20 item 5).
* ``llm``: whole Llama-2 models (``llama2_7b_prefill``, ``llama2_7b_decode``,
  ``llama2_70b_decode``) dense and at 50 % weights (prefill also 50 % activations), skip/both
  PEs, bitmap weights, default arch, full machine: one fresh interpreter per case, its
  simulation CPU seconds, process CPU seconds and peak RSS (issue 20 items 6-7).
* ``capture``: ``sparsesim import``'s work on a user's model — ``torch.export`` capture, the
  measured pass, the parity gate's independent count and the trace (masks bit-packed when
  saved) — of a 12-layer BERT-base (seq 128) and a ViT-B/16 (224², HF ``ViTModel``), built
  offline from HF transformers' code with random weights (seeded), as
  tests/test_export_capture.py builds its small ones; wall seconds and CPU seconds (all
  threads), medians of 3, with the 1-minute load average (target ≤ 10 s wall on 2 idle
  cores, issue 16 item 9). Skipped, and said so, without transformers.
* ``formats_tile_sizes_resnet50``: per-tile encoded sizes of all ResNet-50 weights in every
  format on a 32×32 os tiling (from ``analysis/bench_formats.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataclasses import asdict  # noqa: E402

from sparsesim import load_arch, load_workload, simulate  # noqa: E402
from sparsesim.arch.config import with_overrides  # noqa: E402
from sparsesim.engine.inference import draw_trace, run  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402
from sparsesim.validation.scalesim_runner import (  # noqa: E402
    CHECKOUT_VENV,
    ENV_PYTHON,
    scalesim_python,
)

RESULTS = ROOT / "analysis" / "results" / "benchmark.json"

# ResNet-18 layers in SCALE-Sim's conv form (inputs pre-padded as its topologies do).
SCALESIM_LAYERS = [
    {"name": "conv1", "ifmap_h": 230, "ifmap_w": 230, "filter_h": 7, "filter_w": 7,
     "channels": 3, "num_filter": 64, "stride": 2},
    {"name": "layer2_0_conv1", "ifmap_h": 58, "ifmap_w": 58, "filter_h": 3, "filter_w": 3,
     "channels": 64, "num_filter": 128, "stride": 2},
    {"name": "layer4_1_conv2", "ifmap_h": 9, "ifmap_w": 9, "filter_h": 3, "filter_w": 3,
     "channels": 512, "num_filter": 512, "stride": 1},
]


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Median and min wall seconds of ``repeats`` warm calls (one untimed warm-up first)."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "repeats": repeats}


def _ideal(arch: Any) -> Any:
    return with_overrides(arch, {"memory.ideal": True})


def bench_dense_resnet50(repeats: int) -> dict[str, Any]:
    """Dense compute model (ideal memory), the SCALE-Sim-equivalent figure."""
    wl, arch = load_workload("resnet50"), _ideal(load_arch("default"))
    sim = timed(lambda: run(wl, arch), repeats)
    e2e = timed(lambda: simulate("resnet50", arch).df, repeats)
    rows = run(wl, arch)
    return {"simulate": sim, "end_to_end_with_frame": e2e, "layers": len(wl.layers),
            "gemms": len(rows), "cycles": sum(r.cycles for r in rows),
            "target_median_s": 0.2}


def bench_sparse(workload: str, pe: dict[str, Any], model: SparsityModel, repeats: int,
                 target_s: float) -> dict[str, Any]:
    """Sparse compute model: with mask drawing (end to end) and on pre-drawn masks."""
    arch = with_overrides(load_arch("default"), {"memory.ideal": True,
                                                 **{f"pe.{k}": v for k, v in pe.items()}})
    wl = load_workload(workload)
    trace = draw_trace(wl, model)  # masks drawn once: the timed part is the compute model
    compute_only = timed(lambda: run(wl, arch, trace=trace), repeats)
    with_masks = timed(lambda: run(wl, arch, sparsity=model), max(3, repeats // 4))
    rows = run(wl, arch, trace=trace)
    dense = run(wl, _ideal(load_arch("default")))
    return {"workload": workload, "arch": "32x32 os", "pe": pe,
            "model": {k: v for k, v in asdict(model).items() if v not in (None, 1.0)},
            "compute_model_only": compute_only, "including_mask_drawing": with_masks,
            "cycles": sum(r.cycles for r in rows),
            "dense_cycles": sum(r.cycles for r in dense),
            "effectual_macs": sum(r.effectual_macs for r in rows),
            "dense_macs": sum(r.dense_macs for r in rows),
            "target_median_s": target_s}


def bench_machine(repeats: int) -> dict[str, Any]:
    """The full event-driven machine (compute + simpy memory + energy) on the default arch."""
    arch = with_overrides(load_arch("default"), {
        "pe.kind": "skip", "pe.operand": "both", "pe.sync": "pe", "memory.format_w": "bitmap"})
    model = SparsityModel(weight_density=0.2, act_density=0.5, seed=0)
    wl = load_workload("resnet50")
    r50 = timed(lambda: run(wl, arch, sparsity=model), max(3, repeats // 3))
    rows = run(wl, arch, sparsity=model)
    events = sum(r.events for r in rows)
    decode = load_workload("llama2_7b_block_decode")
    llama = timed(lambda: run(decode, load_arch("default")), repeats)
    lrows = run(decode, load_arch("default"))
    return {
        "resnet50_skip_bitmap_default": {
            **r50, "events": events, "events_per_s": events / r50["median_s"],
            "cycles": sum(r.cycles for r in rows), "stall_cycles": sum(r.stall_cycles for r in rows),
            "energy_pj": sum(r.energy_pj for r in rows), "target_median_s": 3.0},
        "llama2_7b_decode_default": {
            **llama, "cycles": sum(r.cycles for r in lrows),
            "stall_cycles": sum(r.stall_cycles for r in lrows), "target_median_s": 1.0},
    }


def bench_training(repeats: int) -> dict[str, Any]:
    """A ResNet-18 training step through the whole machine (masks drawn beforehand)."""
    from sparsesim.engine.training import GradientModel, Training

    arch = with_overrides(load_arch("default"), {
        "pe.kind": "skip", "pe.operand": "both", "pe.sync": "pe", "memory.format_w": "bitmap"})
    wl = load_workload("resnet18")
    trace = draw_trace(wl, SparsityModel(weight_density=0.2, act_density=0.5, seed=0))
    step = Training(GradientModel(0.5, "row"))
    t = timed(lambda: run(wl, arch, trace=trace, training=step), repeats)
    rows = run(wl, arch, trace=trace, training=step)
    events = sum(r.events for r in rows)
    by_phase: dict[str, dict[str, float]] = {}
    for r in rows:
        p = by_phase.setdefault(r.phase, {"cycles": 0, "energy_pj": 0.0, "dram_bytes": 0})
        p["cycles"] += r.cycles
        p["energy_pj"] += r.energy_pj
        p["dram_bytes"] += r.dram_read_bytes + r.dram_write_bytes
    return {**t, "events": events, "events_per_s": events / t["median_s"],
            "phases": by_phase, "target_median_s": 3.0}


def cpu_timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Median and min CPU seconds (this process) of ``repeats`` calls (no warm-up: the
    calls here are seconds long, and the first run's compile is in the other figures)."""
    samples = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        samples.append(time.process_time() - t0)
    return {"median_cpu_s": statistics.median(samples), "min_cpu_s": min(samples),
            "repeats": repeats}


def llama2_7b_prefill_32() -> Any:
    """Llama-2-7B's 32 decoder blocks at prefill 2048: the built-in block's layers as the
    body of a ``repeat = 32`` block (layers ``layers.0.self_attn`` …)."""
    import tomllib
    from importlib import resources

    from sparsesim.workload.network import workload_from_dict

    text = (resources.files("sparsesim.workload.builtin") / "llama2_7b_block_prefill.toml"
            ).read_text()
    data = tomllib.loads(text)
    data["network"]["name"] = "llama2_7b_prefill_32"
    data["layer"] = [{"name": "layers", "op": "block", "repeat": 32, "body": data["layer"]}]
    return workload_from_dict(data, file="llama2_7b_prefill_32")


def bench_memo(repeats: int = 3) -> dict[str, Any]:
    """Dense networks with repeated GEMMs, with and without the memo (the same rows)."""
    from sparsesim.engine.memo import GemmMemo

    arch = load_arch("default")
    out: dict[str, Any] = {}
    for name, wl in (("llama2_7b_32_blocks_prefill_dense", llama2_7b_prefill_32()),
                     ("bert_base_seq512_dense", load_workload("bert_base_seq512")),
                     ("resnet50_dense", load_workload("resnet50"))):
        memo = GemmMemo()
        rows = run(wl, arch, memo=memo)
        plain = run(wl, arch)
        on = cpu_timed(lambda: run(wl, arch, memo=GemmMemo()), repeats)
        off = cpu_timed(lambda: run(wl, arch), repeats)
        out[name] = {"memo": on, "no_memo": off,
                     "speedup_median": off["median_cpu_s"] / on["median_cpu_s"],
                     "gemms": len(rows), "hits": memo.hits, "misses": memo.misses,
                     "identical_rows": rows == plain, "cycles": sum(r.cycles for r in rows),
                     "events_simulated": sum(r.events for r in plain)}
    return out


def bench_startup(repeats: int = 3) -> dict[str, Any]:
    """``sparsesim --help`` and a cold ``sparsesim run``, each in a fresh interpreter."""
    import resource
    import subprocess

    def one(argv: list[str]) -> dict[str, float]:
        cpu, wall = [], []
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sparsesim.cli", *argv], check=True,
                           stdout=subprocess.DEVNULL, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
            wall.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return {"median_cpu_s": statistics.median(cpu), "median_wall_s": statistics.median(wall),
                "repeats": repeats}

    return {"help": one(["--help"]), "run_default": one(["run"])}


#: Whole-LLM cases of ``bench_llm`` (issue 20 items 6-7): (workload, weight density,
#: activation density, PE kind), each on the default arch, bitmap weights, full machine.
LLM_CASES = (("llama2_7b_prefill", 1.0, 1.0, "dense"), ("llama2_7b_prefill", 0.5, 0.5, "skip"),
             ("llama2_7b_decode", 1.0, 1.0, "dense"), ("llama2_7b_decode", 0.5, 1.0, "skip"),
             ("llama2_70b_decode", 1.0, 1.0, "dense"), ("llama2_70b_decode", 0.5, 1.0, "skip"))

_LLM_RUN = """
import sys, time
from sparsesim import load_arch, simulate
from sparsesim.arch.config import with_overrides
from sparsesim.sparsity.masks import SparsityModel
name, wd, ad, kind = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
arch = with_overrides(load_arch("default"), {"pe.kind": kind, "pe.operand": "both",
                                             "memory.format_w": "bitmap"})
model = SparsityModel(weight_density=wd, act_density=ad, seed=0)
t = time.process_time()
r = simulate(name, arch, sparsity=None if model.is_dense else model)
import resource
u = resource.getrusage(resource.RUSAGE_SELF)
print(time.process_time() - t, int(r.df["cycles"].sum()), u.ru_utime + u.ru_stime,
      u.ru_maxrss / 1024)
"""


def bench_llm() -> dict[str, Any]:
    """Whole Llama-2 models, one fresh interpreter per case (one run each: they are long):
    the simulation's CPU seconds, the process's CPU seconds and peak RSS (start-up, imports
    and Numba's cache included), and the cycles. Targets (issue 20): 7B prefill 50 % <= 20 s
    and <= 2 GB, dense <= 2 s; 7B decode 50 % <= 5 s and <= 1 GB."""
    import subprocess

    out: dict[str, Any] = {}
    for name, wd, ad, kind in LLM_CASES:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _LLM_RUN, name, str(wd), str(ad), kind],
                              check=True, capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - t0
        sim_cpu, cycles, cpu, rss = done.stdout.split()
        out[f"{name}_w{wd}_a{ad}_{kind}"] = {
            "simulate_cpu_s": float(sim_cpu), "process_cpu_s": float(cpu), "wall_s": wall,
            "peak_rss_mb": float(rss), "cycles": int(cycles), "load": os.getloadavg()[0]}
    return out


def bench_scalesim(repeats: int, python: str) -> dict[str, Any]:
    import tempfile

    from sparsesim.validation.scalesim_runner import run_scalesim, write_topology

    with tempfile.TemporaryDirectory() as tmp:
        topo = Path(tmp) / "resnet18_part.csv"
        write_topology(SCALESIM_LAYERS, topo, gemm=False)
        wl, arch = load_workload(topo), _ideal(load_arch("default"))
        ours = timed(lambda: run(wl, arch), repeats)
        our_cycles = {r.layer: r.cycles for r in run(wl, arch)}
        df, wall = run_scalesim(SCALESIM_LAYERS, rows=32, cols=32, dataflow="os", gemm=False,
                                python=python)
    theirs = {str(r.layer): int(r.total_cycles) + 1 for r in df.itertuples()}
    return {
        "layers": [layer["name"] for layer in SCALESIM_LAYERS],
        "array": "32x32 os",
        "scalesim_wall_s": wall,
        "sparsesim": ours,
        "speedup_median": wall / ours["median_s"],
        "cycles_sparsesim": our_cycles,
        "cycles_scalesim_plus_1": theirs,
        "identical_cycles": our_cycles == theirs,
        "note": "SCALE-Sim wall time includes its interpreter start-up (about 1-2 s).",
    }


def _capture_models() -> dict[str, tuple[Any, dict[str, Any]]]:
    """BERT-base and ViT-B/16 from HF transformers' code, random (seeded) weights, offline."""
    import torch
    import transformers

    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig()).eval()
    vit = transformers.ViTModel(transformers.ViTConfig(), add_pooling_layer=False).eval()
    return {"bert_base_seq128": (bert, {"input_ids": torch.randint(0, 30522, (1, 128))}),
            "vit_b16_224": (vit, {"pixel_values": torch.randn(1, 3, 224, 224)})}


def bench_capture(repeats: int = 3) -> dict[str, Any]:
    """Capture + trace of BERT-base and ViT-B/16 (wall seconds, median of ``repeats``)."""
    try:
        models = _capture_models()
    except ImportError as err:
        return {"skipped": f"needs torch and transformers ({err})"}
    import torch

    from sparsesim.prune.torch.export import capture

    out: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    for name, (model, kwargs) in models.items():
        trace = None

        def one() -> None:
            nonlocal trace
            trace = capture(model, (), kwargs, name=name).trace(None)

        cpu = cpu_timed(one, repeats)  # CPU seconds of all threads: the machine's load aside
        t = timed(one, repeats)
        assert trace is not None
        out[name] = {**t, **cpu, "layers": len(trace.workload.layers),
                     "macs": sum(layer.dense_macs for layer in trace.workload.layers),
                     "load_avg_1min": os.getloadavg()[0], "target_median_s": 10.0}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--no-scalesim", action="store_true", help="skip the SCALE-Sim figure")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", choices=("training", "memo", "startup", "llm", "capture"),
                        help="re-measure one figure and keep the others in the file")
    args = parser.parse_args(argv)

    figures: dict[str, Any] = json.loads(args.out.read_text())["figures"] if args.out.exists() \
        else {}
    if args.only == "capture":
        figures["capture"] = bench_capture()
        print("capture:", json.dumps(figures["capture"]))
        return _write(args.out, figures)
    if args.only in ("memo", "startup", "llm"):
        figures[args.only] = {"memo": bench_memo, "startup": bench_startup,
                              "llm": bench_llm}[args.only]()
        print(f"{args.only}:", json.dumps(figures[args.only]))
        return _write(args.out, figures)
    figures["training_resnet18"] = bench_training(max(3, args.repeats // 3))
    print("training ResNet-18:", json.dumps({k: figures["training_resnet18"][k]
                                             for k in ("median_s", "events_per_s")}))
    if args.only == "training":
        return _write(args.out, figures)
    figures["dense_resnet50_os32"] = bench_dense_resnet50(args.repeats)
    print("dense ResNet-50:", json.dumps(figures["dense_resnet50_os32"]["simulate"]))
    figures["sparse_resnet50_skip_both_os32"] = bench_sparse(
        "resnet50", {"kind": "skip", "operand": "both", "sync": "pe"},
        SparsityModel(weight_density=0.2, act_density=0.5, seed=0), args.repeats, 2.0)
    print("sparse ResNet-50 skip/both:",
          json.dumps(figures["sparse_resnet50_skip_both_os32"]["compute_model_only"]))
    figures["sparse_bert512_nm24_os32"] = bench_sparse(
        "bert_base_seq512", {"kind": "nm", "n": 2, "m": 4}, SparsityModel(weight_nm=(2, 4)),
        max(3, args.repeats // 3), 2.0)
    print("BERT-512 2:4:", json.dumps(figures["sparse_bert512_nm24_os32"]["compute_model_only"]))
    figures["machine"] = bench_machine(args.repeats)
    print("machine:", json.dumps({k: v["median_s"] for k, v in figures["machine"].items()}))
    figures["memo"] = bench_memo()
    print("memo:", json.dumps({k: v["speedup_median"] for k, v in figures["memo"].items()}))
    figures["startup"] = bench_startup()
    print("startup:", json.dumps(figures["startup"]))
    figures["llm"] = bench_llm()
    print("llm:", json.dumps(figures["llm"]))
    figures["capture"] = bench_capture()
    print("capture:", json.dumps(figures["capture"]))
    try:
        from analysis.bench_formats import bench_tile_sizes
    except ImportError:
        pass
    else:
        figures["formats_tile_sizes_resnet50"] = bench_tile_sizes(repeats=5)
        print("format tile sizes:", json.dumps(figures["formats_tile_sizes_resnet50"]))
    python = None if args.no_scalesim else scalesim_python()
    if not args.no_scalesim and python is None:
        print(f"SCALE-Sim figure skipped: no SCALE-Sim interpreter (set ${ENV_PYTHON} or make "
              f"{CHECKOUT_VENV}); the file keeps its earlier figure, if any")
    if python is not None:
        figures["scalesim_vs_sparsesim"] = bench_scalesim(args.repeats, python)
        s = figures["scalesim_vs_sparsesim"]
        print(f"SCALE-Sim {s['scalesim_wall_s']:.1f} s vs sparsesim "
              f"{s['sparsesim']['median_s'] * 1e6:.0f} µs: {s['speedup_median']:,.0f}×, "
              f"identical cycles: {s['identical_cycles']}")
    return _write(args.out, figures)


def _write(out: Path, figures: dict[str, Any]) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                    platform.machine(), "cores": os.cpu_count()},
        "figures": figures,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
