"""The README's three jobs, end to end, and the small figures it shows.

    python analysis/quickstart.py                  # writes into analysis/results/
    python analysis/quickstart.py --out DIR        # writes into DIR instead
    python analysis/quickstart.py --fresh          # recompute the sweeps from scratch

1. simulate a pruned network: ResNet-50, 80 % weight / 50 % activation sparsity, skipping
   PEs, bitmap weights → ``quickstart_resnet50.csv`` (one row per GEMM) and
   ``quickstart_layers.png`` (cycles and energy per layer);
2. sweep sparsity vs format (``analysis/specs/format_sweep.toml``) → ``format_sweep.csv`` and
   ``quickstart_formats.png`` (latency and energy vs sparsity per format);
3. plot the trade-offs of a design sweep (``analysis/specs/design_sweep.toml``)
   → ``design_sweep.csv`` and ``quickstart_pareto.png``.

Every file goes to ``--out`` (default ``analysis/results``, where the README's figures and the
committed sweep results live, so a run there regenerates them). Sweeps resume: a second run
only redraws the figures. A results file written by older code, whose columns differ from the
current schema, is never resumed or overwritten silently: the script stops with one line naming
the file (exit 2); ``--fresh`` recomputes both sweeps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsesim import simulate  # noqa: E402
from sparsesim.arch.config import load_arch, with_overrides  # noqa: E402
from sparsesim.errors import SparsesimError  # noqa: E402
from sparsesim.plot import layer_breakdown, pareto, sparsity_tradeoff  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402
from sparsesim.sweep import SweepSpec, load_spec, read_results, run_sweep  # noqa: E402

RESULTS = ROOT / "analysis" / "results"
SPECS = ROOT / "analysis" / "specs"
SWEEPS = (("format_sweep", "quickstart_formats.png", sparsity_tradeoff),
          ("design_sweep", "quickstart_pareto.png", pareto))
"""Each sweep spec of ``analysis/specs``, the figure drawn from its results, the plot kind."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, metavar="DIR",
                        help="folder of every file written (default: analysis/results)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the two sweeps' results in --out first and recompute them")
    args = parser.parse_args(argv)
    try:
        return _run(args.out, fresh=args.fresh)
    except SparsesimError as err:
        print(f"quickstart: error: {err} (--fresh recomputes the sweeps)", file=sys.stderr)
        return 2


def _run(out: Path, *, fresh: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    specs = [(load_spec(SPECS / f"{name}.toml"), out / f"{name}.csv", figure, plot)
             for name, figure, plot in SWEEPS]
    for spec, csv, _, _ in specs:
        if fresh:
            csv.unlink(missing_ok=True)
        _check_resumable(spec, csv)  # before any file here changes
    arch = with_overrides(load_arch("default"), {"pe.kind": "skip", "pe.operand": "both",
                                                 "memory.format_w": "bitmap"})
    result = simulate("resnet50", arch,
                      sparsity=SparsityModel(weight_density=0.2, act_density=0.5))
    result.df.to_csv(out / "quickstart_resnet50.csv", index=False)
    layer_breakdown(result.df, top=None).savefig(out / "quickstart_layers.png", dpi=80,
                                                 bbox_inches="tight")
    print(result.table().splitlines()[-1])

    for spec, csv, figure, plot in specs:
        summary = run_sweep(spec, out=csv)  # refuses a file with other columns, untouched
        plot(read_results(summary.out)).savefig(out / figure, dpi=80, bbox_inches="tight")
        print(f"{spec.name}: {summary.ran} ran, {summary.skipped} already done → {csv}, "
              f"{out / figure}")
    return 0


def _check_resumable(spec: SweepSpec, csv: Path) -> None:
    """Refuse (one line) a results file whose header is not this spec's current schema."""
    if not csv.exists() or csv.stat().st_size == 0:
        return
    with csv.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n").split(",")
    if header != list(spec.columns):
        missing = [c for c in spec.columns if c not in header]
        raise SparsesimError(f"written by older code or another spec: not resumed (missing "
                             f"columns: {', '.join(missing) or 'none, other order'})",
                             file=str(csv), field="columns")


if __name__ == "__main__":
    sys.exit(main())
