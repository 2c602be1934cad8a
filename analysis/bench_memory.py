"""Speed of the simpy memory model, written to ``analysis/results/bench_memory.json``.

    python analysis/bench_memory.py

Figures (medians of warm runs): for every GEMM of ResNet-50 (one instance each) on the
default preset (32×32 os, realistic memory), the time to build the fold schedules (formats'
per-tile sizes) and to simulate them, the simpy events processed and events per second;
the same with 80 % unstructured weight sparsity in bitmap; and the largest single layer.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _cli import parse  # noqa: E402

from sparsesim.arch.config import Arch, load_arch, with_overrides  # noqa: E402
from sparsesim.mapping.dataflows import plan  # noqa: E402
from sparsesim.mapping.lower import gemm_operands  # noqa: E402
from sparsesim.memory import fold_schedule, simulate_gemm  # noqa: E402
from sparsesim.workload.network import load_workload  # noqa: E402



def _cases(arch: Arch, w_density: float | None, seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(seed)
    out = []
    for layer in load_workload("resnet50").layers:
        for ops in gemm_operands(layer, None):
            g = ops.gemm
            w = None if w_density is None else rng.random((g.k, g.n)) < w_density
            out.append((plan(g, arch.array.dataflow, arch.array.rows, arch.array.cols), w))
    return out


def _median(fn: Any, repeat: int = 5) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def _network(arch: Arch, w_density: float | None) -> dict[str, Any]:
    cases = _cases(arch, w_density)
    build_s, schedules = _median(lambda: [fold_schedule(p, arch, None, w) for p, w in cases])
    sim_s, results = _median(lambda: [simulate_gemm(s, arch.memory) for s in schedules])
    events = sum(r.events for r in results)
    return {
        "gemms": len(cases), "folds": sum(s.folds for s in schedules),
        "schedule_s": round(build_s, 4), "simulate_s": round(sim_s, 4), "events": events,
        "events_per_s": round(events / sim_s), "cycles": sum(r.cycles for r in results),
        "stall_cycles": sum(r.stall_cycles for r in results),
        "dram_read_bytes": sum(r.dram_read_bytes for r in results),
        "refetch_bytes": sum(r.a.refetch_bytes + r.w.refetch_bytes for r in results),
    }


def main(argv: list[str] | None = None) -> None:
    RESULTS = parse(__doc__, argv).out / "bench_memory.json"
    arch = load_arch("default")
    figures: dict[str, Any] = {
        "dense_resnet50_default": _network(arch, None),
        "bitmap_w80_resnet50_default": _network(
            with_overrides(arch, {"memory.format_w": "bitmap"}), 0.2),
    }
    # the largest layer by folds: conv1, 12544 × 147 × 64 → 392 × 2 folds; small A buffer
    small = with_overrides(arch, {"memory.sram_kib_a": 64.0})
    [(p, _)] = [c for c in _cases(small, None) if c[0].gemm.layer == "conv1"]
    sched = fold_schedule(p, small)
    sim_s, r = _median(lambda: simulate_gemm(sched, small.memory), repeat=9)
    figures["conv1_default_64kib_a"] = {"folds": sched.folds, "simulate_s": round(sim_s, 5),
                                        "events": r.events,
                                        "events_per_s": round(r.events / sim_s)}
    out = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "python": platform.python_version(), "machine": platform.machine(),
           "figures": figures}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
