"""Why real masks matter: zero-skipping cycles from real masks vs the "density × dense" estimate.

ResNet-18 (batch 1) on the default 32×32 array, output- and weight-stationary, with skipping
PEs (``pe.kind = "skip"``, ``pe.operand = "both"``): a step is skipped only when every PE of
its synchronisation group (``pe``, ``row``, ``col`` or the whole ``wavefront``) has a zero
product there (DESIGN.md §3). Weights are unstructured-pruned at 0–95 % sparsity (exact
per-tensor density, seed 0); activations are Bernoulli at 50 % density (the network's first
input stays dense).

The naive estimate is what papers usually quote: skipping cycles = (effectual MACs / dense MACs)
× dense cycles, i.e. speed-up = dense MACs / effectual MACs. A second, kinder estimate keeps
each fold's fill/drain and scales only its stream steps by the GEMM's density. The real-mask
runs fall short of both: the slowest group of a fold sets its length (load imbalance), and
coarse groups rarely find a step where all of their PEs are idle.

Writes ``analysis/results/imbalance_study.{csv,png}`` (one CSV row per dataflow × sync ×
sparsity; the naive estimates are columns of every row) and prints the table.
Run: ``python analysis/imbalance_study.py`` (about 30 s).
"""

from __future__ import annotations

import time
import matplotlib.pyplot as plt
import pandas as pd
from _cli import parse
from matplotlib import ticker

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.mapping.dataflows import DATAFLOWS
from sparsesim.sparsity.masks import SparsityModel

NETWORK = "resnet18"
DATAFLOW_NAMES = ("os", "ws")
SYNCS = ("pe", "row", "col", "wavefront")
WEIGHT_SPARSITY_PCT = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
ACT_DENSITY = 0.5
SEED = 0

# Okabe–Ito (colour-blind safe); the naive estimates are black / grey.
COLOURS = {"pe": "#0072B2", "row": "#E69F00", "col": "#009E73", "wavefront": "#CC79A7"}
MARKERS = {"pe": "o", "row": "s", "col": "^", "wavefront": "D"}
LABELS = {"pe": "per-PE sync", "row": "per-row sync", "col": "per-column sync",
          "wavefront": "wavefront sync"}


def run_case(dataflow: str, sync: str, sparsity_pct: int, dense_cycles: int) -> dict:
    """One real-mask run, summarised as a tidy row (with both naive estimates)."""
    arch = with_overrides(load_arch("default"), {"array.dataflow": dataflow, "pe.kind": "skip",
                                                 "pe.operand": "both", "pe.sync": sync})
    model = SparsityModel(weight_density=1 - sparsity_pct / 100, act_density=ACT_DENSITY,
                          seed=SEED)
    df = simulate(NETWORK, arch, sparsity=model).df
    overhead = df["folds"] * DATAFLOWS[dataflow].overhead_cycles(arch.array.rows,
                                                                  arch.array.cols)
    dense_steps = df["folds"] * df["fold_cycles"] - overhead  # every stream step issued
    density = df["effectual_macs"] / df["dense_macs"]
    # Σ over folds of the slowest group's steps, and of the mean group's (from load_imbalance).
    max_steps = df["compute_cycles"] - overhead
    mean_steps = max_steps / df["load_imbalance"]
    cycles = int(df["compute_cycles"].sum())
    naive = dense_cycles * df["effectual_macs"].sum() / df["dense_macs"].sum()
    naive_fill = float((overhead + density * dense_steps).sum())
    return {
        "network": NETWORK, "dataflow": dataflow, "sync": sync,
        "weight_sparsity_pct": sparsity_pct, "act_density": ACT_DENSITY, "seed": SEED,
        "dense_macs": int(df["dense_macs"].sum()),
        "effectual_macs": int(df["effectual_macs"].sum()),
        "dense_cycles": dense_cycles, "cycles": cycles,
        "naive_cycles": naive, "naive_fill_cycles": naive_fill,
        "speedup": dense_cycles / cycles, "naive_speedup": dense_cycles / naive,
        "naive_fill_speedup": dense_cycles / naive_fill,
        "load_imbalance": float(max_steps.sum() / mean_steps.sum()),
    }


def study() -> pd.DataFrame:
    rows = []
    for dataflow in DATAFLOW_NAMES:
        dense = simulate(NETWORK, with_overrides(load_arch("default"),
                                                 {"array.dataflow": dataflow}))
        dense_cycles = int(dense.df["compute_cycles"].sum())
        rows += [run_case(dataflow, sync, s, dense_cycles)
                 for sync in SYNCS for s in WEIGHT_SPARSITY_PCT]
    return pd.DataFrame(rows)


def render_table(df: pd.DataFrame) -> str:
    """Speed-ups over dense (×) and load imbalance, one block per dataflow."""
    head = (["sparsity %", "naive ×", "naive+fill ×"] + [f"{s} ×" for s in SYNCS]
            + [f"imb {s}" for s in SYNCS[:3]])
    lines = []
    for dataflow, block in df.groupby("dataflow", sort=False):
        wide = block.pivot(index="weight_sparsity_pct", columns="sync")
        body = [[f"{s}", f"{wide['naive_speedup'].loc[s].iloc[0]:.2f}",
                 f"{wide['naive_fill_speedup'].loc[s].iloc[0]:.2f}"]
                + [f"{wide['speedup'].loc[s, y]:.2f}" for y in SYNCS]
                + [f"{wide['load_imbalance'].loc[s, y]:.2f}" for y in SYNCS[:3]]
                for s in wide.index]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines.append(f"{NETWORK}, 32×32 {dataflow}, skip both, activations "
                     f"{ACT_DENSITY:.0%} dense: speed-up over dense, load imbalance")
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head, *body]]
        lines.append("")
    return "\n".join(lines).rstrip()


def _log_axis(ax: plt.Axes, ticks: tuple[float, ...], suffix: str) -> None:
    """Log y with readable fixed ticks (only those inside the data range)."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_yticks([t for t in ticks if lo <= t <= hi])
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}{suffix}"))


def plot(df: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(2, len(DATAFLOW_NAMES), figsize=(11, 8.6), sharex=True,
                             layout="constrained")
    for j, dataflow in enumerate(DATAFLOW_NAMES):
        block = df[df["dataflow"] == dataflow]
        naive = block[block["sync"] == SYNCS[0]]
        top, bottom = axes[0, j], axes[1, j]
        top.plot(naive["weight_sparsity_pct"], naive["naive_speedup"], color="black", lw=2,
                 label="naive: density × dense cycles")
        top.plot(naive["weight_sparsity_pct"], naive["naive_fill_speedup"], color="0.45",
                 ls="--", lw=1.6, label="naive, fill/drain kept per fold")
        # Coarse groups first; per-PE last with hollow markers so coinciding curves stay visible.
        for z, sync in enumerate(reversed(SYNCS)):
            d = block[block["sync"] == sync]
            kw = {"color": COLOURS[sync], "marker": MARKERS[sync], "label": LABELS[sync],
                  "zorder": 3 + z, "ms": 8 if sync == "pe" else 5, "mew": 1.5,
                  "mfc": "none" if sync == "pe" else COLOURS[sync]}
            top.plot(d["weight_sparsity_pct"], d["speedup"], **kw)
            bottom.plot(d["weight_sparsity_pct"], d["load_imbalance"], **kw)
        top.axhline(1, color="0.7", lw=0.8, zorder=0)
        _log_axis(top, (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48), "×")
        fine = block["load_imbalance"].max() < 3
        _log_axis(bottom, (1, 1.1, 1.2, 1.3, 1.5, 1.75, 2) if fine
                  else (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24), "")
        top.set_title(f"{dataflow.upper()} dataflow ({'output' if dataflow == 'os' else 'weight'}"
                      "-stationary)")
        top.set_ylabel("speed-up over the dense array (×, log scale)")
        bottom.set_ylabel("load imbalance: slowest / mean group (log scale)")
        bottom.set_xlabel("weight sparsity (%)")
        for ax in (top, bottom):
            ax.grid(True, which="major", alpha=0.3)
            ax.set_xticks(range(0, 100, 10))
    note = {"fontsize": 8.5, "color": "0.25", "ha": "left", "va": "center"}
    ws_top = axes[0, DATAFLOW_NAMES.index("ws")]
    ws_top.text(2, 22, "per-PE and per-row coincide (1.37×): a zero weight idles its\n"
                "PE, but the fold still streams every activation row, so only\n"
                "activation zeros shorten it. Per-column ≈ wavefront ≈ 1×.", **note)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    order = [0, 1, *(labels.index(LABELS[s]) for s in SYNCS)]
    axes[0, 0].legend([handles[i] for i in order], [labels[i] for i in order],
                      loc="upper left", fontsize=8.5, frameon=True, title="all panels",
                      title_fontsize=8.5)
    fig.suptitle(f"ResNet-18 on a 32×32 array, zero-skipping PEs (both operands), "
                 f"activations {ACT_DENSITY:.0%} dense, unstructured weight pruning\n"
                 "naive = (effectual MACs / dense MACs) × dense cycles;  real masks: "
                 "fold = slowest sync group's effectual steps + fill/drain", fontsize=11)
    return fig


def main(argv: list[str] | None = None) -> None:
    RESULTS = parse(__doc__, argv).out
    start = time.perf_counter()
    df = study()
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "imbalance_study.csv", index=False)
    plot(df).savefig(RESULTS / "imbalance_study.png", dpi=150)
    print(render_table(df))
    print(f"\n{len(df)} cases in {time.perf_counter() - start:.1f} s; "
          f"wrote {RESULTS / 'imbalance_study.csv'} and {RESULTS / 'imbalance_study.png'}")


if __name__ == "__main__":
    main()
