"""When does pruning activations online pay for itself? Break-even densities, CNN and transformer.

Activation zeros that ReLU makes are free; pruning activations further (a threshold, a
per-tensor "dynamic" threshold, a top-k per pixel/token, N:M along the channels) needs the
online pruning unit on the output path (``[online]`` of the arch, ``sparsesim.pe.online``), which
costs comparisons (energy) and, where it cannot hide behind the producing GEMM, cycles. This
study runs the whole machine (default arch: 32×32 os, skipping PEs on A zeros with row
synchronisation, activations stored as bitmaps) on

* ResNet-18 and MobileNet-v2, whose ReLU leaves ``--cnn-natural`` (0.5) of the activations
  non-zero — MobileNet-v2's depthwise layers use each activation in only 9 MACs, ResNet's
  3×3 convs in hundreds, so the unit's cost weighs differently — and
* BERT-base (seq 128), whose GELU activations are dense (natural density 1.0),

for kept densities below the natural one, and reports the network's energy and cycles
relative to the free baseline (natural zeros, no unit). The break-even density is the
highest density at which the ratio reaches 1: prune below it and the unit pays for itself.

    python analysis/online_study.py            # about 3 minutes on 2 cores
    python analysis/online_study.py --quick    # fewer densities, for a look

Writes analysis/results/online_study.csv, .md and .png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sparsesim import load_arch, simulate  # noqa: E402
from sparsesim.arch.config import with_overrides  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402

OUT = ROOT / "analysis" / "results" / "online_study"
ARCH_OVERRIDES = {"pe.kind": "skip", "pe.operand": "A", "pe.sync": "row",
                  "memory.format_a": "bitmap"}
NETWORKS = {"cnn": "resnet18", "depthwise cnn": "mobilenet_v2",
            "transformer": "bert_base_seq128"}
KINDS = ("threshold", "dynamic", "topk", "nm")
NM = ((3, 4), (2, 4), (1, 4), (1, 8))
COLOURS = {"threshold": "#0072B2", "dynamic": "#D55E00", "topk": "#009E73", "nm": "#CC79A7"}
MARKERS = {"threshold": "o", "dynamic": "s", "topk": "^", "nm": "D"}


def _totals(workload: str, arch, model: SparsityModel) -> dict[str, float]:  # type: ignore[no-untyped-def]
    r = simulate(workload, arch, sparsity=model)
    df = r.df
    online = df[df["count"] == 0]
    return {"cycles": float(df["cycles"].sum()), "energy_pj": float(df["energy_pj"].sum()),
            "online_cycles": float(online["cycles"].sum()),
            "online_energy_pj": float(online["energy_pj"].sum()),
            "effectual_macs": float(df["effectual_macs"].sum())}


def run(densities: list[float], cnn_natural: float) -> pd.DataFrame:
    arch = with_overrides(load_arch("default"), ARCH_OVERRIDES)
    rows = []
    for net, workload in NETWORKS.items():
        natural = 1.0 if net == "transformer" else cnn_natural
        start = time.perf_counter()
        base = _totals(workload, arch, SparsityModel(act_density=natural))
        rows.append({"network": net, "workload": workload, "kind": "none",
                     "density": natural, **base})
        points = [(k, d, None) for k in ("threshold", "dynamic", "topk") for d in densities
                  if d < natural] + [("nm", n / m, (n, m)) for n, m in NM if n / m < natural]
        for kind, density, nm in points:
            model = SparsityModel(act_density=1.0 if nm else density, act_prune=kind,
                                  act_nm=nm)
            rows.append({"network": net, "workload": workload, "kind": kind,
                         "density": density, **_totals(workload, arch, model)})
            print(f"{net} {kind} d={density:.3f}", file=sys.stderr)
        print(f"{net}: {len(points) + 1} runs in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
    df = pd.DataFrame(rows)
    for metric in ("cycles", "energy_pj"):
        base = df[df.kind == "none"].set_index("network")[metric]
        df[f"{metric}_ratio"] = df[metric] / df["network"].map(base)
    df["online_energy_share"] = df["online_energy_pj"] / df["energy_pj"]
    return df


def break_even(df: pd.DataFrame, network: str, kind: str, metric: str
               ) -> tuple[float | None, bool]:
    """(highest density with ratio ≤ 1, whether the ratio crosses 1 above it on the grid).

    The crossing is interpolated between grid points; without one (the unit pays at the
    highest density tried) the break-even lies between that density and the natural one.
    """
    base = df[(df.network == network) & (df.kind == "none")].iloc[0]
    pts = df[(df.network == network) & (df.kind == kind)].sort_values("density")
    d = pts["density"].to_numpy()
    r = pts[f"{metric}_ratio"].to_numpy()
    best: float | None = None
    crossed = False
    for i in range(len(d)):
        if r[i] <= 1:
            best, crossed = float(d[i]), False
            if i + 1 < len(d) and r[i + 1] > 1:  # crosses 1 between d[i] and d[i+1]
                best = float(d[i] + (1 - r[i]) * (d[i + 1] - d[i]) / (r[i + 1] - r[i]))
                crossed = True
    if best is not None and not crossed and best >= float(base["density"]):
        crossed = True
    return best, crossed


def figure(df: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(2, len(NETWORKS), figsize=(15, 7.5), sharex="col",
                             constrained_layout=True)
    for col, net in enumerate(NETWORKS):
        natural = float(df[(df.network == net) & (df.kind == "none")]["density"].iloc[0])
        for row, (metric, label) in enumerate((("energy_pj", "energy"),
                                               ("cycles", "cycles"))):
            ax = axes[row, col]
            for kind in KINDS:
                pts = df[(df.network == net) & (df.kind == kind)].sort_values("density")
                if pts.empty:
                    continue
                ax.plot(pts["density"], pts[f"{metric}_ratio"], marker=MARKERS[kind],
                        color=COLOURS[kind], label=kind, lw=1.6, ms=5)
                be, crossed = break_even(df, net, kind, metric)
                if be is not None and crossed:
                    ax.axvline(be, color=COLOURS[kind], lw=0.8, ls=":")
            ax.axhline(1.0, color="0.3", lw=1)
            ax.axvline(natural, color="0.5", lw=1, ls="--")
            ax.text(natural, ax.get_ylim()[1], " natural", va="top", ha="right" if natural > 0.9
                    else "left", color="0.4", fontsize=8)
            ax.set_ylabel(f"{label} / free baseline")
            ax.set_title(f"{NETWORKS[net]} — {label}", fontsize=10)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("activation density kept (non-zero fraction)")
    axes[0, -1].legend(title="online unit", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Online activation pruning vs free (ReLU/GELU) zeros: below 1 it pays "
                 "(dotted: break-even)", fontsize=11)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def report(df: pd.DataFrame, path: Path, seconds: float) -> None:
    lines = ["# Online activation pruning: break-even densities", "",
             "Generated by `python analysis/online_study.py` "
             f"({seconds:.0f} s). Arch: default 32×32 os, 16 B/cycle DRAM, skipping PEs on A "
             "zeros (row sync), bitmap activations; online unit 32 lanes, 32-wide bitonic "
             "top-k network (`sparsesim/online.py` gives the cost model).", "",
             "Baseline: the network's natural zeros, free (ReLU: 0.5 for ResNet-18; GELU: "
             "dense for BERT). Ratios below 1 mean the pruned network, unit included, is "
             "cheaper. Break-even = the highest kept density with ratio ≤ 1, interpolated "
             "where the ratio crosses 1 on the grid; '≥ d (pays at once)': already cheaper at "
             "the highest density tried below the natural one.", "",
             "| network | unit | energy break-even density | cycles break-even density | "
             "unit's energy share at the lowest density |", "|---|---|---|---|---|"]
    for net in NETWORKS:
        for kind in KINDS:
            pts = df[(df.network == net) & (df.kind == kind)]
            if pts.empty:
                continue
            e = break_even(df, net, kind, "energy_pj")
            c = break_even(df, net, kind, "cycles")
            share = pts.sort_values("density")["online_energy_share"].iloc[0]

            def fmt(found: tuple[float | None, bool]) -> str:
                value, crossed = found
                if value is None:
                    return "never (on this grid)"
                return f"{value:.3f}" if crossed else f"≥ {value:.3f} (pays at once)"

            lines.append(f"| {NETWORKS[net]} | {kind} | {fmt(e)} | {fmt(c)} | "
                         f"{100 * share:.2f} % |")
    lines += ["", "All points:", "", "| network | unit | density | energy ratio | cycles "
              "ratio | unit energy share |", "|---|---|---|---|---|---|"]
    for r in df.sort_values(["network", "kind", "density"]).itertuples():
        lines.append(f"| {r.workload} | {r.kind} | {r.density:.3f} | {r.energy_pj_ratio:.4f} | "
                     f"{r.cycles_ratio:.4f} | {100 * r.online_energy_share:.2f} % |")
    lines += ["", "![online study](online_study.png)", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three densities only")
    parser.add_argument("--cnn-natural", type=float, default=0.5,
                        help="ReLU activation density of the CNN (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT, help="output path without suffix")
    args = parser.parse_args(argv)
    densities = [0.45, 0.3, 0.1] if args.quick else [
        0.99, 0.95, 0.9, 0.8, 0.6, 0.49, 0.48, 0.45, 0.4, 0.3, 0.2, 0.1]
    start = time.perf_counter()
    df = run(densities, args.cnn_natural)
    seconds = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out.with_suffix(".csv"), index=False)
    figure(df, args.out.with_suffix(".png"))
    report(df, args.out.with_suffix(".md"), seconds)
    print(args.out.with_suffix(".md").read_text().split("All points")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
