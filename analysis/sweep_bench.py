"""The 1,000-point sweep benchmark: resnet18 × sparsity × format × PE kind × array size.

    python analysis/sweep_bench.py      # merges "sweep_1000" into analysis/results/benchmark.json

10 weight sparsities × 4 weight formats × 5 PE configurations × 5 array sizes = 1,000 points,
full machine (compute, simpy memory, energy) on the default arch, all cores, from scratch
(the results file is deleted first). Target: ≤ 5 minutes on the 2-core dev machine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _cli import parse  # noqa: E402

from sparsesim.sweep import read_results, run_sweep, spec_from_dict  # noqa: E402

SPEC = {
    "sweep": {"name": "sweep_1000"},
    "base": {"workload": "resnet18", "sparsity.act_density": 0.5, "pe.operand": "both"},
    "grid": {
        "sparsity.weight_density": [1.0, 0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.02],
        "memory.format_w": ["dense", "bitmap", "rle", "csc"],
        "pe.kind": ["dense", "gate", "skip"],
        "pe.sync": ["pe", "row", "col"],
        "array.rows": [8, 16, 32, 64, 128],
    },
}


def main(argv: list[str] | None = None) -> int:
    out_dir = parse(__doc__, argv).out
    spec = spec_from_dict(SPEC)
    # dense and gate do not synchronise: one sync for them → 10·4·(1 + 1 + 3)·5 = 1,000
    points = [p for p in spec.points if p["pe.kind"] == "skip" or p["pe.sync"] == "pe"]
    assert len(points) == 1000
    spec = type(spec)(spec.name, tuple(points), None, None, spec.params)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.csv"
        start = time.perf_counter()
        summary = run_sweep(spec, out=out)
        wall = time.perf_counter() - start
        df = read_results(out)
    figure = {"points": len(points), "wall_s": wall, "points_per_s": len(points) / wall,
              "failed": summary.failed, "workers": os.cpu_count(), "target_s": 300,
              "ok_rows": int((df["status"] == "ok").sum())}
    print(json.dumps(figure))
    path = out_dir / "benchmark.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {"figures": {}}
    doc["figures"]["sweep_1000"] = figure
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
