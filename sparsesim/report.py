"""Result rows → tidy DataFrames, aggregated layer tables, and text tables people read.

Column schema of the per-GEMM frame (units in the names where they are not counts):

=============== =================================================================
network, layer  workload and layer name
op, gemm        layer kind (conv2d, linear, attention, matmul; ``gate``: a dynamic gate's
                GEMV); GEMM within it (backward: ``<gemm>.dx``, ``<gemm>.dw``;
                ``online_<kind>``: the online pruning unit; ``update``: the optimizer step)
kind            what the row accounts for (``sparsesim.names.RowKind``): gemm (on the array),
                online (the online pruning unit), update (the optimizer step), gate (a
                dynamic gate: its GEMV on the array and its ranking in the online unit)
phase           forward, backward or update (a training step's parts)
count           identical GEMM instances (conv groups, batch × heads); 0: work beside the array
M, K, N         GEMM shape of one instance: O[M×N] = A[M×K] · W[K×N] (0 beside the array)
elements        elements a unit beside the array processed (0 for GEMMs)
dataflow        os, ws or is; rows, cols: array size (PEs); pe_kind: dense, gate, skip, nm
nm_mode         N:M arrays: ``nm`` (K compressed to K′) or ``dense`` (run uncompressed, the
                dense array's cycles: a layer left dense, attention's score GEMMs, a
                non-conformant layer with ``pe.nm_nonconformant = "dense"``); ``none``
                on other PE kinds
folds           folds of all instances; fold_cycles: cycles of one dense fold (of K′ for nm)
dense_macs      multiply-accumulates of the dense GEMM
effectual_macs  products with both operands non-zero (the work the masks leave)
a_density       non-zero fraction of the A operand (im2col'd input); w_density: of W
cycles          compute_cycles + stall_cycles (clock cycles)
load_imbalance  slowest synchronisation group / mean group (1 = balanced)
utilization     effectual_macs / (cycles · rows · cols)
dram_read_bytes, dram_write_bytes   DRAM traffic of all operands (bursts, metadata included)
energy_pj       total energy (pJ); events: simpy events processed
*_{a,w,o}       per operand: dram_read_data_bytes, dram_read_meta_bytes, dram_write_data_bytes,
                dram_write_meta_bytes, refetch_bytes (re-fetched after eviction),
                sram_read_bytes, sram_write_bytes, decoded_elements
energy_*_pj     energy by component: mac, gated_mac, register, sram_{a,w,o}_{read,write},
                dram, decode, online, merge (dynamic: per action) and static (the arch's leakage
                for the row's seconds, stalls included); they sum to energy_pj
seconds         cycles / clock_hz
=============== =================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import pandas as pd

from sparsesim.energy import ENERGY_COMPONENTS
from sparsesim.engine.inference import TRAFFIC_FIELDS, GemmResult
from sparsesim.units import fmt_si

_RENAME = {"m": "M", "k": "K", "n": "N"}
_NESTED = ("traffic", "energy")
TRAFFIC_COLUMNS = tuple(f"{name}_{op}" for op in "awo" for name in TRAFFIC_FIELDS)
ENERGY_COLUMNS = tuple(f"energy_{c}_pj" for c in ENERGY_COMPONENTS)
COLUMNS: tuple[str, ...] = (
    *(_RENAME.get(f.name, f.name) for f in fields(GemmResult) if f.name not in _NESTED),
    *TRAFFIC_COLUMNS, *ENERGY_COLUMNS)
_SUMMED = ("folds", "dense_macs", "effectual_macs", "cycles", "compute_cycles", "stall_cycles",
           "seconds", "dram_read_bytes", "dram_write_bytes", "energy_pj", "events",
           *TRAFFIC_COLUMNS, *ENERGY_COLUMNS)


def _flat(row: GemmResult) -> dict[str, object]:
    out = {f.name: getattr(row, f.name) for f in fields(GemmResult) if f.name not in _NESTED}
    out.update(row.traffic)
    out.update({f"energy_{k}_pj": v for k, v in row.energy.items()})
    return out


def to_frame(rows: Sequence[GemmResult]) -> pd.DataFrame:
    """One row per GEMM, columns in the documented order."""
    frame = pd.DataFrame([_flat(r) for r in rows])
    if frame.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    return frame.rename(columns=_RENAME)[list(COLUMNS)]


def layer_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per layer and phase (GEMMs summed), in execution order."""
    grouped = df.groupby(["phase", "layer"], sort=False)
    out = grouped.agg({"network": "first", "op": "first", "dataflow": "first",
                       "rows": "first", "cols": "first",
                       **{c: "sum" for c in _SUMMED}}).reset_index()
    out.insert(4, "gemms", grouped["count"].sum().to_numpy())
    out.insert(5, "shape", grouped.apply(_shape, include_groups=False).to_numpy())
    out["utilization"] = out["effectual_macs"] / (out["cycles"] * out["rows"] * out["cols"])
    return out


def _shape(group: pd.DataFrame) -> str:
    """``M×K×N`` of a layer's single GEMM (``g × M×K×N`` if repeated), else its GEMM names
    (their count when that gets long; ``+ online`` when the online pruning unit ran)."""
    if len(group) > 1:
        gemms = group.loc[group["count"] > 0, "gemm"]
        text = ",".join(gemms)
        if len(text) > 24:
            text = f"{len(gemms)} GEMMs"
        return text + (" + online" if (group["count"] == 0).any() else "")
    row = group.iloc[0]
    if row["count"] == 0:  # work beside the array: elements processed
        return f"{row['gemm']}: {row['elements']:,} elements"
    shape = f"{row['M']}×{row['K']}×{row['N']}"
    return f"{row['count']} × {shape}" if row["count"] > 1 else shape


def phase_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per phase (forward, backward, update), in execution order: a training step's
    cycles, traffic and energy apart."""
    out = df.groupby("phase", sort=False)[list(_SUMMED)].sum().reset_index()
    pes = df["rows"].iloc[0] * df["cols"].iloc[0] if len(df) else 1
    out["utilization"] = out["effectual_macs"] / (out["cycles"] * pes).where(out["cycles"] > 0)
    return out.fillna({"utilization": 0.0})


def totals(df: pd.DataFrame) -> dict[str, float]:
    """Whole-network sums, plus the overall utilization and power: ``power_avg_w`` (all the
    energy over all the time) and ``power_peak_w`` (the most power-hungry row's: the finest
    grain the rows have, each row's energy over its own seconds)."""
    out = {c: df[c].sum() for c in _SUMMED}
    pes = int(df["rows"].iloc[0]) * int(df["cols"].iloc[0])
    out["utilization"] = out["effectual_macs"] / (out["cycles"] * pes) if out["cycles"] else 0.0
    out.update(power(df))
    return out


def power(df: pd.DataFrame) -> dict[str, float]:
    """``power_avg_w`` and ``power_peak_w`` of the rows of ``df`` (0 for no time)."""
    timed = df[df["seconds"] > 0]
    seconds = float(timed["seconds"].sum())
    if not seconds:
        return {"power_avg_w": 0.0, "power_peak_w": 0.0}
    per_row = timed["energy_pj"] * 1e-12 / timed["seconds"]
    return {"power_avg_w": float(timed["energy_pj"].sum()) * 1e-12 / seconds,
            "power_peak_w": float(per_row.max())}


def render_table(df: pd.DataFrame, *, title: str = "") -> str:
    """The per-layer table with a totals line, aligned, units in the header."""
    layers = layer_frame(df)
    phases = phase_frame(df)
    training = len(phases) > 1
    header = ("layer", "op", "GEMM M×K×N", "MACs", "effectual", "cycles", "stall", "util %",
              "time µs", "DRAM", "energy")

    def cells(r: Any, first: str, second: str, third: str) -> tuple[str, ...]:
        return (first, second, third, fmt_si(r.dense_macs), fmt_si(r.effectual_macs),
                f"{int(r.cycles):,}", f"{int(r.stall_cycles):,}", f"{100 * r.utilization:.1f}",
                f"{1e6 * r.seconds:,.2f}", fmt_si(r.dram_read_bytes + r.dram_write_bytes, "B"),
                fmt_si(r.energy_pj * 1e-12, "J"))

    body = [cells(r, r.layer, f"{r.op} {r.phase}" if training else r.op, r.shape)
            for r in layers.itertuples()]
    sub = [cells(r, f"{r.phase} total", "", "") for r in phases.itertuples()] if training else []
    t = pd.Series(totals(df))
    foot = cells(t, "total", f"{layers['layer'].nunique()} layers",
                 f"{int(layers['gemms'].sum())} GEMMs")
    widths = [max(len(row[i]) for row in (header, *body, *sub, foot))
              for i in range(len(header))]
    left = {0, 1, 2}

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("─" * w for w in widths)
    parts = [title] if title else []
    parts += [line(header), rule, *(line(r) for r in body), rule, *(line(r) for r in sub),
              line(foot)]
    return "\n".join(parts)
