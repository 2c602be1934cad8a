"""GQA decode study: what sharing K/V between query heads saves in a decode.

SmolLM2-135M decode (``workloads/smollm2_135m_decode.toml``: 30 layers, 9 query heads of 64,
GQA with 3 K/V heads, batch 1) at a context of 2048 keys, generating 16 tokens (the KV length
grows 2048 … 2063, :mod:`sparsesim.workload.decode`), with ``kv_heads`` = 9 (MHA), 3 (GQA,
the real model) and 1 (MQA); every other shape unchanged. Default arch: 32×32
output-stationary, int8, 1 GHz, 16 B/cycle DRAM, 512 KiB A/W buffers, dense PEs.

Per configuration: the K/V cache bytes read from DRAM (the W operand of ``QKᵀ`` and ``PV``),
the KV-cache appends written (the K/V projections' outputs), all DRAM bytes and the cycles.
Closed form for the reads: ``30 · 2 · kv_heads · d · Σ_t (2048 + t)`` bytes.

Writes ``analysis/results/gqa_decode_study.{csv,png}``. Run: ``python
analysis/gqa_decode_study.py`` (~20 s).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from _cli import parse  # noqa: E402

from sparsesim import simulate  # noqa: E402
from sparsesim.workload.decode import decode_steps  # noqa: E402
from sparsesim.workload.layers import Attention  # noqa: E402
from sparsesim.workload.network import Workload, load_workload  # noqa: E402

KV_LEN, TOKENS = 2048, 16
CONFIGS = (("MHA", 9), ("GQA", 3), ("MQA", 1))
SCORE = ("qk", "pv", "qk_partial", "pv_partial")


def with_kv_heads(workload: Workload, kv_heads: int) -> Workload:
    layers = tuple(replace(x, kv_heads=kv_heads, kv_len=KV_LEN) if isinstance(x, Attention)
                   else x for x in workload.layers)
    return replace(workload, layers=layers)


def measure(label: str, kv_heads: int) -> dict[str, float]:
    base = with_kv_heads(load_workload("smollm2_135m_decode"), kv_heads)
    df = simulate(decode_steps(base, TOKENS), "default").df
    score, kv = df[df["gemm"].isin(SCORE)], df[df["gemm"].isin(["k", "v"])]
    first = df[df["layer"].str.startswith("step0.")]
    return {
        "config": label, "kv_heads": kv_heads, "kv_len": KV_LEN, "decode_tokens": TOKENS,
        "kv_read_bytes": int((score["dram_read_data_bytes_w"]
                              + score["dram_read_meta_bytes_w"]).sum()),
        "kv_append_bytes": int((kv["dram_write_data_bytes_o"]
                                + kv["dram_write_meta_bytes_o"]).sum()),
        "dram_bytes": int((df["dram_read_bytes"] + df["dram_write_bytes"]).sum()),
        "cycles": int(df["cycles"].sum()),
        "score_cycles": int(score["cycles"].sum()),
        "step0_cycles": int(first["cycles"].sum()),
        "step0_kv_read_bytes": int(first[first["gemm"].isin(SCORE)]["dram_read_data_bytes_w"]
                                   .sum()),
    }


def plot(frame: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    x = range(len(frame))
    labels = [f"{c}\n(kv_heads={k})" for c, k in zip(frame["config"], frame["kv_heads"])]
    other = frame["dram_bytes"] - frame["kv_read_bytes"]
    axes[0].bar(x, frame["kv_read_bytes"] / 1e6, label="K/V cache reads", color="tab:red")
    axes[0].bar(x, other / 1e6, bottom=frame["kv_read_bytes"] / 1e6,
                label="weights, activations, appends", color="tab:gray")
    axes[0].set_ylabel("DRAM traffic (MB)")
    axes[0].legend(fontsize=8, loc="upper right")
    score = frame["score_cycles"] / 1e6
    axes[1].bar(x, score, label="QKᵀ and PV", color="tab:red")
    axes[1].bar(x, frame["cycles"] / 1e6 - score, bottom=score, label="projections, MLP, lm_head",
                color="tab:gray")
    axes[1].set_ylabel("cycles (M)")
    axes[1].legend(fontsize=8, loc="upper right")
    for ax in axes:
        ax.set_xticks(list(x), labels)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    fig.suptitle(f"SmolLM2-135M decode, {TOKENS} tokens from KV {KV_LEN}, 32×32 os, 16 B/cycle",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    RESULTS = parse(__doc__, argv).out
    RESULTS.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([measure(label, kv) for label, kv in CONFIGS])
    frame.to_csv(RESULTS / "gqa_decode_study.csv", index=False)
    plot(frame, RESULTS / "gqa_decode_study.png")
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
