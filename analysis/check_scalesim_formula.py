"""Check DESIGN.md §3's dense cycle formula against sparsesim/validation/data/scalesim_oracle.csv.

Independent of sparsesim: stdlib only. For each oracle row it lowers the layer to
P = E·F output pixels, K = R·S·C (C = 1 per channel of a 'DP' layer), N = filters, and compares

    os:     folds · (T + Ra + Ca − 2) − 1
    ws, is: folds · (2·Ra + Ca + T − 2) − 1
    folds = ceil(Sr/Ra) · ceil(Sc/Ca)
    os: Sr = P, Sc = N, T = K;  ws: Sr = K, Sc = N, T = P;  is: Sr = K, Sc = P, T = N

with SCALE-Sim's "Total Cycles", once with E = ceil((H − R + s)/s) (SCALE-Sim's rule) and once
with E = floor((H − R)/s) + 1 (the usual rule), and prints every disagreement.

    python analysis/check_scalesim_formula.py [sparsesim/validation/data/scalesim_oracle.csv]

Exit status 1 if the SCALE-Sim rule disagrees on any row.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path

ORACLE = (Path(__file__).resolve().parents[1] / "sparsesim" / "validation" / "data"
          / "scalesim_oracle.csv")


def out_ceil(size: int, filt: int, stride: int) -> int:
    return math.ceil((size - filt + stride) / stride)


def out_floor(size: int, filt: int, stride: int) -> int:
    return (size - filt) // stride + 1


def pkn(row: dict[str, str], out_dim: Callable[[int, int, int], int]) -> tuple[int, int, int]:
    if row["form"] == "gemm":
        return int(row["m"]), int(row["k"]), int(row["n"])
    h, w, r, s_, c, n, st = (
        int(row[k])
        for k in ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filter", "stride")
    )
    if "DP" in row["name"]:
        c = 1
    return out_dim(h, r, st) * out_dim(w, s_, st), r * s_ * c, n


def formula(p: int, k: int, n: int, ra: int, ca: int, dataflow: str) -> int:
    sr, sc, t = {"os": (p, n, k), "ws": (k, n, p), "is": (k, p, n)}[dataflow]
    folds = math.ceil(sr / ra) * math.ceil(sc / ca)
    fold = t + ra + ca - 2 if dataflow == "os" else 2 * ra + ca + t - 2
    return folds * fold - 1


def main(path: Path) -> int:
    rows = list(csv.DictReader(path.open()))
    bad = {"ceil": 0, "floor": 0}
    for row in rows:
        ra, ca, df = int(row["rows"]), int(row["cols"]), row["dataflow"]
        got = int(row["total_cycles"])
        for label, rule in (("ceil", out_ceil), ("floor", out_floor)):
            want = formula(*pkn(row, rule), ra, ca, df)
            if want != got:
                bad[label] += 1
                print(f"{label:5s} MISMATCH {row['scalesim_layer']} {ra}x{ca} {df}: "
                      f"formula {want} scalesim {got}")
        if int(row["stall_cycles"]) != 0:
            print(f"stalls in {row['scalesim_layer']} {ra}x{ca} {df}: {row['stall_cycles']}")
    print(f"{len(rows)} rows; mismatches: ceil rule {bad['ceil']}, floor rule {bad['floor']}")
    return 1 if bad["ceil"] else 0


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("oracle", type=Path, nargs="?", default=ORACLE,
                     help="the oracle CSV (default: the one shipped in the package)")
    raise SystemExit(main(cli.parse_args().oracle))
