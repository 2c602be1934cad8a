"""Training-step study: what weight and gradient pruning buy in forward, backward and update.

One training step (batch 1) of ResNet-18 and of BERT-base (sequence 128) on the default
32×32 output-stationary array at 1 GHz with zero-skipping PEs (``pe.kind = "skip"``, both
operands, ``row`` synchronisation) and weights stored as bitmaps (``memory.format_w =
"bitmap"``), real memory (16 B/cycle DRAM). Grid: weight density {1.0, 0.5, 0.2} (unstructured,
seeded) × output-gradient density {1.0, 0.5, 0.2} pruned per ``row`` (top-k of each pixel's or
token's channel vector, found at run time by the online pruning unit). ReLU-like activations
are 50 % dense in the CNN (Bernoulli, the first input dense); the transformer's are dense
(GELU). The reference ("dense") is the same network, unpruned, on plain dense PEs with dense
storage: the speed-up is of the whole step (forward + backward + update) over it; a second
speed-up is over the unpruned step on the sparse arch (what the pruning alone buys there).

Writes ``analysis/results/training_study.{csv,md,png}`` (``--quick``: ``training_study_quick.*``,
MiniLM-L6 instead of BERT-base and weight/gradient densities {1.0, 0.2}).
Run: ``python analysis/training_study.py`` — about 3 min on two busy cores (``--quick``: ~45 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sparsesim import simulate  # noqa: E402
from sparsesim.arch.config import Arch, load_arch, with_overrides  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402
from sparsesim.plot.style import OKABE_ITO  # noqa: E402
from sparsesim.engine.training import GradientModel, Training  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NETWORKS = {"resnet18": 0.5, "bert_base_seq128": 1.0}  # network → activation density
QUICK_NETWORKS = {"resnet18": 0.5, "minilm_l6_seq128": 1.0}
WEIGHT_DENSITIES = (1.0, 0.5, 0.2)
GRAD_DENSITIES = (1.0, 0.5, 0.2)
QUICK_DENSITIES = (1.0, 0.2)
GRAD_STRUCTURE = "row"
OPTIMIZER = "sgd"
SEED = 0
SPARSE_ARCH = {"pe.kind": "skip", "pe.operand": "both", "pe.sync": "row",
               "memory.format_w": "bitmap"}
DENSE_ARCH = {"pe.kind": "dense", "memory.format_w": "dense"}
PHASES = ("forward", "backward", "update")
COLOURS = {"forward": OKABE_ITO[0], "backward": OKABE_ITO[1], "update": OKABE_ITO[2]}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_case(network: str, act_density: float, arch: Arch, weight_density: float,
             grad_density: float, label: str) -> dict[str, Any]:
    """One training step, summarised per phase as one tidy row."""
    model = SparsityModel(weight_density=weight_density, act_density=act_density, seed=SEED)
    training = Training(GradientModel(grad_density, GRAD_STRUCTURE, seed=SEED),
                        optimizer=OPTIMIZER)
    df = simulate(network, arch, sparsity=model, training=training).df
    row: dict[str, Any] = {
        "network": network, "config": label, "pe_kind": arch.pe.kind, "pe_sync": arch.pe.sync,
        "format_w": arch.memory.format_w, "act_density": act_density,
        "weight_density": weight_density, "grad_density": grad_density,
        "grad_structure": GRAD_STRUCTURE, "optimizer": OPTIMIZER}
    online = (df["count"] == 0) & df["gemm"].str.startswith("online_")
    for phase in PHASES:
        p = df[df["phase"] == phase]
        row[f"cycles_{phase}"] = int(p["cycles"].sum())
        row[f"stall_cycles_{phase}"] = int(p["stall_cycles"].sum())
        row[f"dram_bytes_{phase}"] = int(p["dram_read_bytes"].sum() + p["dram_write_bytes"].sum())
        row[f"energy_pj_{phase}"] = float(p["energy_pj"].sum())
        row[f"effectual_macs_{phase}"] = int(p["effectual_macs"].sum())
    row["cycles_online"] = int(df.loc[online, "cycles"].sum())
    row["energy_pj_online"] = float(df.loc[online, "energy_pj"].sum())
    row["dense_macs"] = int(df["dense_macs"].sum())
    row["cycles"] = int(df["cycles"].sum())
    row["dram_bytes"] = int(df["dram_read_bytes"].sum() + df["dram_write_bytes"].sum())
    row["energy_pj"] = float(df["energy_pj"].sum())
    row["seconds"] = float(df["seconds"].sum())
    return row


def study(quick: bool) -> pd.DataFrame:
    networks = QUICK_NETWORKS if quick else NETWORKS
    wds = QUICK_DENSITIES if quick else WEIGHT_DENSITIES
    gds = QUICK_DENSITIES if quick else GRAD_DENSITIES
    base = load_arch("default")
    sparse, dense = with_overrides(base, SPARSE_ARCH), with_overrides(base, DENSE_ARCH)
    cases = [(n, a, dense, 1.0, 1.0, "dense") for n, a in networks.items()]
    cases += [(n, a, sparse, w, g, f"w{w:g} g{g:g}")
              for n, a in networks.items() for w in wds for g in gds]
    rows = []
    for i, case in enumerate(cases, 1):
        start = time.perf_counter()
        rows.append(run_case(*case))
        r = rows[-1]
        log(f"[{i}/{len(cases)}] {case[0]} {case[5]}: {r['cycles'] / 1e6:.2f} M cycles, "
            f"{r['energy_pj'] * 1e-9:.2f} mJ ({time.perf_counter() - start:.1f} s)")
    df = pd.DataFrame(rows)
    for network, block in df.groupby("network", sort=False):
        ref = block[block["config"] == "dense"].iloc[0]
        unpruned = block[(block["config"] != "dense") & (block["weight_density"] == 1)
                         & (block["grad_density"] == 1)].iloc[0]
        idx = block.index
        df.loc[idx, "speedup_vs_dense"] = ref["cycles"] / block["cycles"]
        df.loc[idx, "energy_ratio_vs_dense"] = block["energy_pj"] / ref["energy_pj"]
        df.loc[idx, "speedup_vs_unpruned"] = unpruned["cycles"] / block["cycles"]
    return df


def _table(block: pd.DataFrame) -> str:
    head = ["config", "fwd Mcyc", "bwd Mcyc", "upd Mcyc", "step Mcyc", "online kcyc",
            "fwd MB", "bwd MB", "upd MB", "fwd mJ", "bwd mJ", "upd mJ", "step mJ",
            "speed-up vs dense", "vs unpruned", "energy vs dense"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for r in block.itertuples():
        cells = [r.config if r.config == "dense" else
                 f"w {r.weight_density:g}, g {r.grad_density:g}"]
        cells += [f"{getattr(r, f'cycles_{p}') / 1e6:.2f}" for p in PHASES]
        cells += [f"{r.cycles / 1e6:.2f}", f"{r.cycles_online / 1e3:.1f}"]
        cells += [f"{getattr(r, f'dram_bytes_{p}') / 1e6:.1f}" for p in PHASES]
        cells += [f"{getattr(r, f'energy_pj_{p}') * 1e-9:.1f}" for p in PHASES]
        cells += [f"{r.energy_pj * 1e-9:.1f}", f"{r.speedup_vs_dense:.2f}×",
                  f"{r.speedup_vs_unpruned:.2f}×", f"{r.energy_ratio_vs_dense:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pick(block: pd.DataFrame, w: float, g: float) -> pd.Series:
    return block[(block["config"] != "dense") & (block["weight_density"] == w)
                 & (block["grad_density"] == g)].iloc[0]


def _mc(r: pd.Series, phase: str) -> str:
    """A phase's cycles as 'total M (compute + stall)'."""
    total, stall = r[f"cycles_{phase}"], r[f"stall_cycles_{phase}"]
    return f"{total / 1e6:.2f} M cycles ({(total - stall) / 1e6:.2f} compute + " \
        f"{stall / 1e6:.2f} stall)"


def render_markdown(df: pd.DataFrame, elapsed: float, quick: bool) -> str:
    wds = sorted(df.loc[df["config"] != "dense", "weight_density"].unique(), reverse=True)
    gds = sorted(df.loc[df["config"] != "dense", "grad_density"].unique(), reverse=True)
    lo_w, lo_g = min(wds), min(gds)
    out = [
        "# Training-step study" + (" (quick)" if quick else ""),
        "",
        "One training step (batch 1, SGD) on the default 32×32 output-stationary array, 1 GHz, "
        "int8 operands, 16 B/cycle DRAM; zero-skipping PEs (both operands, row sync), weights "
        f"stored as bitmaps. Weight density × output-gradient density ({GRAD_STRUCTURE}-pruned: "
        "top-k per pixel/token channel vector, found by the online top-k unit). \"dense\" is "
        "the unpruned step on plain dense PEs with dense storage. Cycles are clock cycles; "
        "MB = 10⁶ bytes of DRAM traffic (read + write); energy from the default 45 nm table. "
        f"Generated by `python analysis/training_study.py{' --quick' if quick else ''}` "
        f"in {elapsed:.0f} s.",
        ""]
    for network, block in df.groupby("network", sort=False):
        act = block["act_density"].iloc[0]
        ref, unp, both = (block[block["config"] == "dense"].iloc[0], _pick(block, 1.0, 1.0),
                          _pick(block, lo_w, lo_g))
        only_w, only_g = _pick(block, lo_w, 1.0), _pick(block, 1.0, lo_g)
        share = {p: unp[f"cycles_{p}"] / unp["cycles"] for p in PHASES}
        out += [
            f"## {network} (activations {act:.0%} dense)", "",
            _table(block), "",
            f"- Unpruned on the sparse arch, the step splits {100 * share['forward']:.0f} % "
            f"forward, {100 * share['backward']:.0f} % backward, {100 * share['update']:.0f} % "
            f"update (cycles); backward/forward = "
            f"{unp['cycles_backward'] / unp['cycles_forward']:.2f} (the dense MAC ratio is 2).",
            f"- Weights at {lo_w:g} alone: forward {_mc(unp, 'forward')} → "
            f"{_mc(only_w, 'forward')}, update {unp['cycles_update'] / 1e6:.2f} → "
            f"{only_w['cycles_update'] / 1e6:.2f} M (kept weights only); step "
            f"{only_w['speedup_vs_unpruned']:.2f}× over unpruned.",
            f"- Gradients at {lo_g:g} alone: backward effectual MACs "
            f"{unp['effectual_macs_backward'] / 1e9:.2f} → "
            f"{only_g['effectual_macs_backward'] / 1e9:.2f} G, but backward "
            f"{_mc(unp, 'backward')} → {_mc(only_g, 'backward')}; step "
            f"{only_g['speedup_vs_unpruned']:.2f}×. The online top-k unit exposes "
            f"{only_g['cycles_online']:,} cycles and {only_g['energy_pj_online'] * 1e-6:.2f} µJ.",
            "- The online top-k unit at weight density 1: "
            + "; ".join(f"g {g:g}: {_pick(block, 1.0, g)['cycles_online'] / 1e3:,.1f} k cycles "
                        f"exposed, {_pick(block, 1.0, g)['energy_pj_online'] * 1e-6:,.0f} µJ"
                        for g in gds if g < 1)
            + ". A top-k of `k` ≤ 32 per row runs through the 32-wide bitonic network; a "
            "larger `k` is a quickselect over the buffered row (`online.py`), whose last row "
            "is exposed after the producing GEMM.",
            f"- Both at their lowest: {both['speedup_vs_dense']:.2f}× over dense "
            f"({both['speedup_vs_unpruned']:.2f}× over unpruned on the sparse arch), energy "
            f"{both['energy_ratio_vs_dense']:.2f}× of dense; DRAM "
            f"{ref['dram_bytes'] / 1e6:.0f} → {both['dram_bytes'] / 1e6:.0f} MB.",
            ""]
    out += [
        "## Assumptions that drive these numbers",
        "",
        "From `sparsesim/training.py`, `sparsesim/online.py` and `sparsesim/engine.py`:",
        "",
        "- **Backward GEMMs.** For a forward `O = A·W`: `dA = dO·Wᵀ` (the weight mask carries "
        "into it) and `dW = Aᵀ·dO` (the activation zeros carry into it); a pruned `dO` is an "
        "operand of both. A dense step is 3× the forward MACs less the first layer's `dA`, "
        "which is not computed (its input is the data, which needs no gradient; "
        "`Training(input_gradient=True)` adds it).",
        "- **Gradient masks are drawn, not computed**: seeded per GEMM, independently of the "
        "activation masks. At gradient density 1 the output gradient is dense — for conv + "
        "batch-norm that is what BN's backward gives; ReLU's zeros in `dO` are not modelled "
        "(the CNN's `dO` would be sparser without BN). The loss gradient of the last layer is "
        "pruned like the others.",
        "- **Gradient pruning is found at run time**: `row` = top-k of each row's `N` channels in "
        "the online unit (bitonic sorter 32 wide, one block per cycle, for `k` ≤ 32; "
        "quickselect on 32 comparators for larger `k`). Its "
        "work hides behind the GEMM that produces `dO` (for the last layer, the loss: nothing "
        "to hide behind); what is exposed is its pipeline depth (`s(s+1)/2 + s + 1` = 21 "
        "cycles for width 32) per tensor plus any work beyond the producer's cycles (the "
        "`online kcyc` column); its comparisons cost energy.",
        "- **Storage**: gradients are `o_bits` = 8 bits wide, like the forward outputs (a real "
        "trainer keeps bf16/fp32 gradients: the backward and update traffic here is a lower "
        "bound). `dO` is read in the A format (dense) by `dA` and in the W format (bitmap) by "
        "`dW`, so a pruned `dO` shrinks `dW`'s reads, not `dA`'s. `dA` of a convolution is "
        "written through col2im: each input pixel's gradient once (overlapping windows are "
        "summed on chip).",
        "- **Update**: SGD, no optimizer state; each *kept* weight is read with its gradient "
        "and written back (pruned weights stay zero, masks fixed during the step): 2 B read + "
        "1 B written per kept weight, on a 32-lane vector unit. With 16 B/cycle DRAM it is "
        "DRAM-bound: update cycles ≈ 3 B × kept weights / 16 + 100 latency, proportional to "
        "the weight density. The gradient `dW` is written by the `dW` GEMM and read back by "
        "the update (no fusion).",
        "- **Phases run one after another** (forward, then per layer from the last: online "
        "pruning of `dO`, `dA`, `dW`, update); nothing overlaps across GEMMs; every GEMM starts "
        "from cold buffers.",
        "- **Skipping**: row sync on an output-stationary array — a stream step (one `k`) is "
        "skipped only when no PE of a row (one output row `m`, 32 columns `n`) has an "
        "effectual product there. A zero of the A operand empties its row's step by itself; "
        "zeros of the W operand must cover all 32 columns `n` of a `k` (at 20 % density, "
        "0.8³² ≈ 0.1 % of the steps). So weight pruning shortens the forward pass through "
        "fewer bytes (bitmap weights, fewer stalls) more than through skipped steps, and "
        "row-pruned `dO` speeds up `dA` (where it is the A operand, and each row keeps the "
        "same count: no imbalance) but hardly `dW` (where it is the W operand).",
        "- **Memory-bound**: with 16 B/cycle most GEMMs here stall on DRAM; skipping that "
        "shortens compute shows up only partly in cycles (the `stall` figures above).",
        "- **Activations**: Bernoulli, 50 % for the CNN (per tensor, seed 0), dense for BERT. "
        "Batch 1 throughout.",
        "",
    ]
    return "\n".join(out)


def plot(df: pd.DataFrame) -> plt.Figure:
    networks = list(dict.fromkeys(df["network"]))
    fig, axes = plt.subplots(len(networks), 2, figsize=(13, 4.3 * len(networks)),
                             squeeze=False, layout="constrained")
    for row, network in zip(axes, networks):
        block = df[df["network"] == network].reset_index(drop=True)
        labels = ["dense\nref." if c == "dense" else f"w {w:g}\ng {g:g}"
                  for c, w, g in zip(block["config"], block["weight_density"],
                                     block["grad_density"])]
        pos = np.arange(len(block))
        for ax, (key, scale, unit) in zip(row, (("cycles", 1e-6, "cycles (millions)"),
                                                ("energy_pj", 1e-9, "energy (mJ)"))):
            bottom = np.zeros(len(block))
            for phase in PHASES:
                values = block[f"{key}_{phase}"].to_numpy(float) * scale
                ax.bar(pos, values, bottom=bottom, color=COLOURS[phase], label=phase,
                       width=0.75)
                bottom += values
            ratio = block["speedup_vs_dense"] if key == "cycles" else \
                block["energy_ratio_vs_dense"]
            for x, top, r in zip(pos, bottom, ratio):
                ax.annotate(f"{r:.2f}×", (x, top), textcoords="offset points", xytext=(0, 2),
                            ha="center", va="bottom", fontsize="x-small")
            ax.set_ylim(0, bottom.max() * 1.12)
            ax.set_xticks(pos, labels, fontsize="x-small")
            ax.set_ylabel(unit)
            ax.grid(True, axis="y", alpha=0.3)
            ax.axvline(0.5, color="0.6", lw=0.8)
            what = "speed-up over dense above bars" if key == "cycles" else \
                "energy relative to dense above bars"
            ax.set_title(f"{network}: {'cycles' if key == 'cycles' else 'energy'} per step "
                         f"({what})", fontsize="small")
        row[0].set_xlabel("weight density w, gradient density g")
        row[1].set_xlabel("weight density w, gradient density g")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", frameon=False, title="phase")
    fig.suptitle("One training step (batch 1, SGD) on a 32×32 array, skipping PEs (row sync), "
                 "bitmap weights, gradients row-pruned", fontsize="medium")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="MiniLM instead of BERT-base, densities {1.0, 0.2} (~45 s)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where the .csv, .md and .png go (default: analysis/results)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    df = study(args.quick)
    elapsed = time.perf_counter() - start
    stem = args.out_dir / ("training_study_quick" if args.quick else "training_study")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(render_markdown(df, elapsed, args.quick))
    plot(df).savefig(stem.with_suffix(".png"), dpi=150)
    log(f"{len(df)} steps in {elapsed:.0f} s; wrote {stem}.csv, .md, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
