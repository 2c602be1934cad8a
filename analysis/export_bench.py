"""Speed of capture by graph (issue 16 item 9): a 12-layer BERT-base-sized model.

    python analysis/export_bench.py          # writes analysis/results/export_bench.json
    python analysis/export_bench.py --out DIR   # writes DIR/export_bench.json instead

HF ``BertModel(BertConfig())`` (12 layers, hidden 768, 12 heads, FFN 3072; random weights,
no download) on one sequence of 128 tokens: ``capture`` (torch.export, the graph walk, the
measured pass with PyTorch's counter on every node, the eager independent count) and
``trace`` + save, seconds, one run each, with the parts timed separately. An eager forward
pass is timed beside them: the machine is shared, and the load average at the start and the
end is recorded, so a figure can be read against what the same cores did for plain PyTorch.
Target (the issue): capture + trace <= 10 s on 2 cores. Needs ``sparsesim[torch]`` and
transformers (``sparsesim[models]``).
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

import torch  # noqa: E402
import transformers  # noqa: E402
from _cli import parse  # noqa: E402

from sparsesim.prune.torch import export, parity  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    RESULTS = parse(__doc__, argv).out / "export_bench.json"
    load0 = os.getloadavg()
    torch.manual_seed(0)
    cfg = transformers.BertConfig()
    model = transformers.BertModel(cfg).eval()
    kwargs = {"input_ids": torch.randint(0, cfg.vocab_size, (1, 128))}
    t = time.perf_counter()
    with torch.no_grad():
        model(**kwargs)
    eager = time.perf_counter() - t
    parts = {}
    t = time.perf_counter()
    program = torch.export.export(model, (), kwargs)
    parts["export_s"] = time.perf_counter() - t
    t = time.perf_counter()
    graph = export.walk(program)
    parts["walk_s"] = time.perf_counter() - t
    t = time.perf_counter()
    export.run(graph, (), kwargs, count=True)
    parts["measured_counted_pass_s"] = time.perf_counter() - t
    t = time.perf_counter()
    parity.independent_macs(model, (), kwargs)
    parts["eager_count_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cap = export.capture(model, (), kwargs, name="bert_base")
    capture_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        trace = cap.trace()
        trace.save(Path(tmp) / "bert.npz")
        trace_s = time.perf_counter() - t
        size = (Path(tmp) / "bert.npz").stat().st_size
    out = {
        "model": "transformers.BertModel(BertConfig()), random weights, 1 x 128 tokens",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "layers": len(cap.workload.layers), "captured_macs": cap.coverage.captured_macs,
        "total_macs": cap.coverage.total_macs, "coverage": cap.coverage.fraction,
        "capture_s": round(capture_s, 2), "trace_and_save_s": round(trace_s, 2),
        "total_s": round(capture_s + trace_s, 2), "target_s": 10.0,
        "parts_s": {k: round(v, 2) for k, v in parts.items()},
        "eager_forward_s": round(eager, 3), "trace_bytes": size,
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
