"""Loop orders and the PE register level on a whole network (issue 19 items 1-2).

Runs a workload on an arch under every named ``mapping.order`` and a few ``pe.acc_entries``
and writes one row per run (network totals): cycles, compute cycles, DRAM bytes per operand,
O SRAM bytes, energy and its SRAM-O, register and static parts. The README's Mapping
paragraph quotes this file.

    python analysis/mapping_orders.py --out analysis/results/mapping_orders.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sparsesim.api import simulate  # noqa: E402
from sparsesim.arch.config import load_arch, with_overrides  # noqa: E402
from sparsesim.names import MappingOrder  # noqa: E402


def rows(workload: str, arch_name: str, entries: tuple[int, ...]) -> list[dict[str, object]]:
    out = []
    for order in MappingOrder:
        for acc in entries:
            arch = with_overrides(load_arch(arch_name), {"mapping.order": str(order),
                                                         "pe.acc_entries": acc})
            result = simulate(workload, arch).rows
            t = pd.DataFrame([r.traffic for r in result]).sum()
            out.append({
                "workload": workload, "arch": arch_name, "order": str(order),
                "acc_entries": acc,
                "cycles": sum(r.cycles for r in result),
                "compute_cycles": sum(r.compute_cycles for r in result),
                "dram_bytes": sum(r.dram_read_bytes + r.dram_write_bytes for r in result),
                **{f"dram_read_bytes_{op}": int(t[f"dram_read_data_bytes_{op}"]
                                                + t[f"dram_read_meta_bytes_{op}"])
                   for op in "awo"},
                "dram_write_bytes_o": int(t["dram_write_data_bytes_o"]
                                          + t["dram_write_meta_bytes_o"]),
                "sram_bytes_o": int(t["sram_read_bytes_o"] + t["sram_write_bytes_o"]),
                "energy_pj": sum(r.energy_pj for r in result),
                **{f"energy_{k}_pj": sum(r.energy[k] for r in result)
                   for k in ("sram_o_read", "sram_o_write", "register", "dram", "static")},
            })
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--workload", default="resnet18")
    parser.add_argument("--archs", nargs="+", default=["gemmini_like", "default"])
    parser.add_argument("--acc-entries", nargs="+", type=int, default=[1, 64])
    args = parser.parse_args(argv)
    table = pd.DataFrame([r for a in args.archs
                          for r in rows(args.workload, a, tuple(args.acc_entries))])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table[["arch", "order", "acc_entries", "cycles", "dram_bytes", "sram_bytes_o",
                 "energy_pj"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
