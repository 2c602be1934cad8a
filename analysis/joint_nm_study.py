"""Joint weight × activation N:M: what the N:M unit gains from each operand's metadata.

The ``nm`` PE kind (``sparsesim.pe.kinds``) has ``n`` multipliers per group of ``m`` along
K and takes its slots from the operand ``pe.nm_operand`` names: ``W`` (static 2:4 weights),
``A`` (activations pruned 2:4 along K at run time by the online unit, whose selection rows
stay charged) or ``both`` (the weights' slots set the cycles; a slot whose index the
activation did not keep is clock-gated). This study runs the whole machine (default arch:
32×32 os, 1 GHz, 16 B/cycle DRAM, 512/512/64 KiB SRAM) on

* BERT-base, sequence 128 (every GEMM; the network's input — the first attention's — stays
  dense, as the online unit is not in front of it), and
* ResNet-50's 1×1 convolutions (its 3×3 and 7×7 convs are left out: a channel-2:4 input is
  not 2:4 along their im2col K = (c, r, s), which the unit refuses; the 1×1 layers are
  ``POINTWISE_SHARE`` of its MACs), every input pruned,

for four cases: dense PEs on the dense network; 2:4 weights on ``nm_operand = W``; 2:4
activations on ``A`` (weights dense); both 2:4 on ``both``. Two storage settings: every
operand stored dense, and each 2:4 operand's buffer in the ``auto`` format (per tile the
smallest of the candidates: a 2:4 tile as a bitmap, 5 bits per 8-bit element — exactly the
``nm`` format's 2 × (8 + 2) bits per group of 4 — and a dense tile, such as attention's Q,
K or the O projection's input sharing the buffer, stays dense; ``nm`` itself cannot be the
format because those dense tensors share the operand's buffer), the others dense. The PE kind
sets compute only, the formats set the bytes. Reports compute cycles, total cycles (with memory stalls), the array's compute
energy (MAC + gated MAC + register on the GEMM rows; the online unit's comparators and
latches are in its own rows, in the total) and the total energy.

    python analysis/joint_nm_study.py        # about 30 s

Writes analysis/results/joint_nm_study.csv and .png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from _cli import parse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sparsesim import load_arch, simulate  # noqa: E402
from sparsesim.arch.config import with_overrides  # noqa: E402
from sparsesim.sparsity.masks import SparsityModel  # noqa: E402
from sparsesim.workload.network import Workload, load_workload  # noqa: E402

NM = (2, 4)
# case → (pe overrides, weights 2:4, activations 2:4)
CASES = {
    "dense": ({"pe.kind": "dense"}, False, False),
    "W 2:4": ({"pe.kind": "nm", "pe.nm_operand": "W"}, True, False),
    "A 2:4": ({"pe.kind": "nm", "pe.nm_operand": "A"}, False, True),
    "both 2:4": ({"pe.kind": "nm", "pe.nm_operand": "both"}, True, True),
}
STORAGES = ("dense", "compressed")  # every operand dense; each 2:4 operand's buffer auto
COMPUTE_ENERGY = ("energy_mac_pj", "energy_gated_mac_pj", "energy_register_pj")


def networks() -> dict[str, tuple[Workload, bool]]:
    """name → (workload, dense first input)."""
    r50 = load_workload("resnet50")
    pointwise = tuple(layer for layer in r50.layers
                      if getattr(layer, "r", 0) == 1 and getattr(layer, "s", 0) == 1)
    return {"BERT-base-128": (load_workload("bert_base_seq128"), True),
            "ResNet-50 1×1 convs": (Workload("resnet50_1x1", pointwise, r50.source), False)}


def run_case(workload: Workload, first_dense: bool, case: str, storage: str) -> dict:
    overrides, w_nm, a_nm = CASES[case]
    overrides = dict(overrides)
    if storage == "compressed":
        if w_nm:
            overrides["memory.format_w"] = "auto"
        if a_nm:
            overrides["memory.format_a"] = "auto"
    arch = with_overrides(load_arch("default"), overrides)
    model = SparsityModel(weight_nm=NM if w_nm else None, act_prune="nm" if a_nm else "none",
                          act_nm=NM if a_nm else None, dense_first_input=first_dense)
    df = simulate(workload, arch, sparsity=model).df
    gemm = df[df["kind"] == "gemm"]
    return {"case": case, "storage": storage, "cycles": int(df["cycles"].sum()),
            "compute_cycles": int(gemm["compute_cycles"].sum()),
            "stall_cycles": int(df["stall_cycles"].sum()),
            "online_cycles": int(df.loc[df["kind"] == "online", "cycles"].sum()),
            "dense_macs": int(gemm["dense_macs"].sum()),
            "effectual_macs": int(gemm["effectual_macs"].sum()),
            "dram_read_bytes": int(df["dram_read_bytes"].sum()),
            "compute_energy_pj": float(gemm[list(COMPUTE_ENERGY)].to_numpy().sum()),
            "energy_mac_pj": float(df["energy_mac_pj"].sum()),
            "energy_gated_mac_pj": float(df["energy_gated_mac_pj"].sum()),
            "energy_online_pj": float(df["energy_online_pj"].sum()),
            "energy_pj": float(df["energy_pj"].sum())}


def plot(df: pd.DataFrame, path: Path) -> None:
    nets = list(dict.fromkeys(df["network"]))
    panels = (("compute_cycles", "compute cycles (M)", 1e6, False),
              ("cycles", "total cycles (M)", 1e6, True),
              ("compute_energy_pj", "array compute energy (mJ)", 1e9, False),
              ("energy_pj", "total energy (mJ)", 1e9, True))
    cases = list(CASES)
    colors = dict(zip(cases, ("#888888", "#1f77b4", "#ff7f0e", "#2ca02c")))
    fig, axes = plt.subplots(len(nets), len(panels), figsize=(16, 3.6 * len(nets)),
                             squeeze=False)
    width = 0.38
    for r, net in enumerate(nets):
        sub = df[df["network"] == net]
        for c, (col, label, scale, by_storage) in enumerate(panels):
            ax = axes[r, c]
            base = float(sub.loc[(sub["case"] == "dense") & (sub["storage"] == "dense"),
                                 col].iloc[0])
            for i, case in enumerate(cases):
                rows = sub[sub["case"] == case].set_index("storage")[col]
                bars = ((-width / 2, "dense", None), (width / 2, "compressed", "//")) if by_storage \
                    else ((0.0, "dense", None),)
                for dx, storage, hatch in bars:
                    value = float(rows[storage])
                    ax.bar(i + dx, value / scale, width if by_storage else 0.6,
                           color=colors[case], hatch=hatch, edgecolor="black", linewidth=0.5)
                    ax.text(i + dx, value / scale, f"{value / base:.2f}", ha="center",
                            va="bottom", fontsize=7)
            ax.set_xticks(range(len(cases)), cases, fontsize=8)
            ax.set_ylabel(label, fontsize=9)
            ax.margins(y=0.15)
            if r == 0:
                ax.set_title(label.split(" (")[0], fontsize=10)
        axes[r, 0].annotate(net, xy=(-0.32, 0.5), xycoords="axes fraction", rotation=90,
                            ha="center", va="center", fontsize=11, fontweight="bold")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black"),
               plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch="//")]
    fig.legend(handles, ["every operand stored dense",
                         "2:4 operands stored compressed (auto: bitmap, 5 bits/element)"],
               loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle("2:4 N:M unit (32×32 os, default memory): which operand's metadata sets K′ "
                 "— numbers over bars: ratio to dense PEs, dense storage", fontsize=11)
    fig.tight_layout(rect=(0.02, 0.05, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    OUT = parse(__doc__, argv).out / "joint_nm_study"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    rows = []
    for net, (workload, first_dense) in networks().items():
        for case in CASES:
            for storage in STORAGES:
                if storage == "compressed" and case == "dense":
                    row = dict(rows[-1], storage=storage)  # nothing is 2:4: the same run
                else:
                    row = run_case(workload, first_dense, case, storage)
                rows.append({"network": net, **row})
    df = pd.DataFrame(rows)
    share = {}
    r50 = simulate("resnet50", "default").df
    pw = networks()["ResNet-50 1×1 convs"][0]
    share["ResNet-50 1×1 convs"] = (
        df.loc[(df["network"] == "ResNet-50 1×1 convs"), "dense_macs"].iloc[0]
        / r50.loc[r50["kind"] == "gemm", "dense_macs"].sum())
    df.to_csv(OUT.with_suffix(".csv"), index=False)
    plot(df, OUT.with_suffix(".png"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df[["network", "case", "storage", "compute_cycles", "cycles", "stall_cycles",
                  "compute_energy_pj", "energy_pj"]].to_string(index=False))
    print(f"ResNet-50's 1×1 convs: {len(pw.layers)} layers, "
          f"{share['ResNet-50 1×1 convs']:.1%} of its MACs")
    print(f"{time.time() - start:.0f} s → {OUT.with_suffix('.csv')}, {OUT.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
