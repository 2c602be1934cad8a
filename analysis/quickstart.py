"""The README's three jobs, end to end, and the small figures it shows.

    python analysis/quickstart.py

1. simulate a pruned network: ResNet-50, 80 % weight / 50 % activation sparsity, skipping
   PEs, bitmap weights → analysis/results/quickstart_layers.png (cycles and energy per layer);
2. sweep sparsity vs format (analysis/specs/format_sweep.toml)
   → analysis/results/quickstart_formats.png (latency and energy vs sparsity per format);
3. plot the trade-offs of a design sweep (analysis/specs/design_sweep.toml)
   → analysis/results/quickstart_pareto.png.
Sweeps resume: a second run only redraws the figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsesim import simulate  # noqa: E402
from sparsesim.arch.config import load_arch, with_overrides  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402
from sparsesim.plot import layer_breakdown, pareto, sparsity_tradeoff  # noqa: E402
from sparsesim.sweep import load_spec, read_results, run_sweep  # noqa: E402

RESULTS = ROOT / "analysis" / "results"
SPECS = ROOT / "analysis" / "specs"


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    arch = with_overrides(load_arch("default"), {"pe.kind": "skip", "pe.operand": "both",
                                                 "memory.format_w": "bitmap"})
    result = simulate("resnet50", arch,
                      sparsity=SparsityModel(weight_density=0.2, act_density=0.5))
    result.df.to_csv(RESULTS / "quickstart_resnet50.csv", index=False)
    layer_breakdown(result.df, top=None).savefig(RESULTS / "quickstart_layers.png", dpi=80,
                                                 bbox_inches="tight")
    print(result.table().splitlines()[-1])

    for name, figure, plot in (("format_sweep", "quickstart_formats.png", sparsity_tradeoff),
                               ("design_sweep", "quickstart_pareto.png", pareto)):
        spec = load_spec(SPECS / f"{name}.toml")
        summary = run_sweep(spec)
        df = read_results(summary.out)
        plot(df).savefig(RESULTS / figure, dpi=80, bbox_inches="tight")
        print(f"{name}: {summary.ran} ran, {summary.skipped} already done → {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
