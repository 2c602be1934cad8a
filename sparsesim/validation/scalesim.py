"""SCALE-Sim v3, dense: our cycles and traffic beside its committed reports (DESIGN.md §3).

The comparison (:func:`scalesim_comparison`) puts our numbers beside SCALE-Sim's for every
layer, array and dataflow of an oracle table, and :data:`TRAFFIC_RULES` says, operand by
operand, how our traffic relates to its and why; both are shared with
``tests/test_scalesim.py``. The checks here are the dense cycles and the traffic rules on the
committed oracle tables; the N:M mode, the bandwidth-limited mode and live runs have modules
of their own (``scalesim_nm``, ``scalesim_stall``, ``scalesim_live``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sparsesim.api import simulate
from sparsesim.arch.array import ArrayConfig
from sparsesim.arch.config import Arch, with_overrides
from sparsesim.arch.pe import PeConfig
from sparsesim.arch.memory import MemoryConfig
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.validation.registry import (
    SOURCES,
    Check,
    Context,
    Group,
    add_group,
    exact_row,
    register,
)
from sparsesim.validation.scalesim_runner import CONV_HEADER, CONV_KEYS, GEMM_HEADER, GEMM_KEYS
from sparsesim.workload.network import Workload, load_scalesim_csv

add_group("scalesim", Group("SCALE-Sim v3, dense", """\
Dense timing must equal SCALE-Sim v3's for the same array, dataflow and layer when memory does
not stall (DESIGN.md §3).
`sparsesim/validation/data/scalesim_oracle.csv` holds SCALE-Sim 3.0.0's reports for
40 random conv-form and 14 GEMM-form layers on arrays 8×8, 16×32 and 32×16 and dataflows
os/ws/is, in its bandwidth-estimate mode with SRAMs that hold every operand; when
`sparsesim/validation/data/scalesim_topology_oracle.csv` is present (SCALE-Sim's bundled
topologies, written by
analysis/scalesim_validation_oracle.py — row by row as SCALE-Sim finishes, so a run during its
generation checks the rows there so far), the full run checks it too. Ours: memory that never
stalls, 1-byte bursts (SCALE-Sim counts words, int8).
SCALE-Sim reports the index of the last cycle, so its "Total Cycles" + 1 is compared; a layer
named `DP` is C single-channel layers to it, whose rows are summed. Traffic is compared rule by
rule; where the models differ by choice, the rule states the direction and size that choice
implies (each rule's note says why). With `--live`, the random GEMM layers that SCALE-Sim
simulates in seconds are run through it again now (a subset: conv layers are run live by
`tests/test_scalesim.py`)."""))


def scalesim_arch(rows: int, cols: int, dataflow: str, conv_halo: str = "refetch",
                  nm: tuple[int, int] | None = None) -> Arch:
    """The arch of a SCALE-Sim comparison: memory that never stalls (its bandwidth-estimate
    mode), 1-byte bursts (it counts words; int8 here), no accumulator register level
    (``pe.acc_entries = 0``: it writes every partial sum to its OFMAP SRAM); with ``nm``, N:M
    PEs and N:M-stored weights (its sparsity mode)."""
    arch = Arch(array=ArrayConfig(rows, cols, dataflow), pe=PeConfig(acc_entries=0),
                memory=MemoryConfig(ideal=True, burst_bytes=1, conv_halo=conv_halo))
    if nm is None:
        return arch
    n, m = nm
    return with_overrides(arch, {"pe.kind": "nm", "pe.n": n, "pe.m": m,
                                 "memory.format_w": f"nm:n={n},m={m}"})


def oracle_workload(part: pd.DataFrame, form: str, name: str = "oracle") -> Workload:
    """The layers of one form of an oracle table, read by our SCALE-Sim loader (its shape
    rules) from a topology written from the table's defining columns."""
    keys = GEMM_KEYS if form == "gemm" else CONV_KEYS
    layers = part.drop_duplicates("name")
    lines = [GEMM_HEADER if form == "gemm" else CONV_HEADER]
    for _, row in layers.iterrows():
        lines.append(", ".join([str(row["name"]), *(str(int(row[k])) for k in keys)]) + ",")
    with tempfile.TemporaryDirectory(prefix="sparsesim_oracle_") as tmp:
        path = Path(tmp) / f"{name}_{form}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        wl = load_scalesim_csv(path)
    return Workload(name, wl.layers, "SCALE-Sim oracle table")


_THEIRS = {"cycles": "total_cycles", "dram_a": "dram_ifmap_reads", "dram_w": "dram_filter_reads",
           "dram_o": "dram_ofmap_writes", "sram_a": "sram_ifmap_reads",
           "sram_w": "sram_filter_reads", "sram_o": "sram_ofmap_writes"}
_OURS = {"dram_a": "dram_read_data_bytes_a", "dram_w": "dram_read_data_bytes_w",
         "dram_o": "dram_write_data_bytes_o", "sram_a": "sram_read_bytes_a",
         "sram_w": "sram_read_bytes_w", "sram_o": "sram_write_bytes_o"}


def scalesim_comparison(oracle: pd.DataFrame, *, conv_halo: str = "refetch",
                        nm: tuple[int, int] | None = None) -> pd.DataFrame:
    """Ours beside SCALE-Sim's for every (layer, array, dataflow) of an oracle table.

    One row per layer and configuration: ``topology`` (when the table has one), ``form``,
    ``name``, ``rows``, ``cols``, ``dataflow``, our GEMM ``k`` and ``folds``, then
    ``{cycles, dram_a, dram_w, dram_o, sram_a, sram_w, sram_o}_{ours, theirs}``. SCALE-Sim's
    figures are summed over a ``DP`` layer's channel rows; its cycles are its "Total Cycles"
    + 1 (it reports the index of the last cycle). ``conv_halo`` is our memory's (refetch,
    line_buffer); ``nm`` runs our N:M PEs on N:M weights (against its sparsity mode), adding
    ``w_meta_ours`` (the N:M index bits, bytes).
    """
    group_keys = ["topology", "form"] if "topology" in oracle else ["form"]
    out = []
    for key, part in oracle.groupby(group_keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        form = key[-1]
        label = str(key[0]) if len(key) > 1 else "oracle"
        workload = oracle_workload(part, form, label)
        for (rows, cols, dataflow), cfg in part.groupby(["rows", "cols", "dataflow"],
                                                        sort=False):
            arch = scalesim_arch(int(rows), int(cols), str(dataflow), conv_halo, nm)
            model = None if nm is None else SparsityModel(weight_nm=nm)
            ours = {r.layer: r for r in simulate(workload, arch, sparsity=model).rows}
            sums = cfg.groupby("name", sort=False)[list(_THEIRS.values())].sum()
            for name, t in sums.iterrows():
                r = ours[str(name)]
                row: dict[str, Any] = dict(zip(group_keys, key))
                row.update(name=name, rows=int(rows), cols=int(cols), dataflow=dataflow,
                           k=r.k, n=r.n, count=r.count, folds=r.folds, cycles_ours=r.cycles,
                           cycles_theirs=int(t["total_cycles"]) + int(
                               (cfg["name"] == name).sum()))
                for q, col in _OURS.items():
                    row[f"{q}_ours"] = int(r.traffic[col])
                    row[f"{q}_theirs"] = int(t[_THEIRS[q]])
                row["w_meta_ours"] = int(r.traffic["dram_read_meta_bytes_w"])
                out.append(row)
    return pd.DataFrame(out)


@dataclass(frozen=True, slots=True)
class TrafficRule:
    """How our traffic relates to SCALE-Sim's for one operand, and why (the report's words)."""

    id: str
    what: str
    why: str
    applies: Callable[[pd.Series], bool]
    holds: Callable[[pd.Series], bool]


def _is_dp(row: pd.Series) -> bool:
    return "DP" in str(row["name"])


def _row_folds(row: pd.Series) -> int:
    return -(-int(row["k"]) // int(row["rows"]))


TRAFFIC_RULES: tuple[TrafficRule, ...] = (
    TrafficRule("dram_w", "DRAM W (filter) reads equal", "each weight is read once by both",
                lambda r: True, lambda r: r.dram_w_ours == r.dram_w_theirs),
    TrafficRule("dram_a_gemm", "DRAM A reads of GEMM layers equal",
                "each input element is read once by both",
                lambda r: r.form == "gemm", lambda r: r.dram_a_ours == r.dram_a_theirs),
    TrafficRule("dram_a_conv", "DRAM A reads of conv layers: ours ≥ SCALE-Sim",
                "ours moves each A tile's input region, so neighbouring tiles' halos (r − stride "
                "rows/columns) are fetched once per tile, and where K is split over row folds "
                "(ws, is) a tile holding only some of a channel's R·S taps still moves the "
                "channel's whole region; SCALE-Sim with SRAM that holds the whole ifmap reads "
                "each input element once",
                lambda r: r.form == "conv", lambda r: r.dram_a_ours >= r.dram_a_theirs),
    TrafficRule("dram_o_os", "DRAM O writes in os equal", "each output is written once by both",
                lambda r: r.dataflow == "os", lambda r: r.dram_o_ours == r.dram_o_theirs),
    TrafficRule("dram_o_psum",
                "DRAM O writes in ws/is: SCALE-Sim = ours × row folds (±0.1 %); depthwise ≤",
                "K is split over row folds; SCALE-Sim writes every row fold's partial sums to "
                "DRAM, ours keeps them in the O buffer and writes finished outputs once "
                "(SCALE-Sim's count is a few words off the exact product on some layers)",
                lambda r: r.dataflow != "os",
                lambda r: (r.dram_o_ours <= r.dram_o_theirs) if _is_dp(r) else
                abs(r.dram_o_ours * _row_folds(r) - r.dram_o_theirs)
                <= 1e-3 * max(r.dram_o_theirs, 1)),
    TrafficRule("sram_w", "SRAM W reads equal",
                "both read each weight once per fold that uses it",
                lambda r: True, lambda r: r.sram_w_ours == r.sram_w_theirs),
    TrafficRule("sram_a_gemm", "SRAM A reads of GEMM layers equal",
                "both read each A element once per fold that uses it",
                lambda r: r.form == "gemm", lambda r: r.sram_a_ours == r.sram_a_theirs),
    TrafficRule("sram_o", "SRAM O writes: ws/is equal; os: SCALE-Sim = ours + folds·(rows + cols)",
                "ws/is write every row fold's partial sums in both; in os SCALE-Sim's output "
                "trace has rows + cols extra write entries per fold (its drain), ours writes "
                "each output once",
                lambda r: True,
                lambda r: r.sram_o_theirs == r.sram_o_ours + (
                    r.folds * (r.rows + r.cols) if r.dataflow == "os" else 0)),
)
"""How our DRAM/SRAM traffic relates to SCALE-Sim's, rule by rule (conv SRAM A reads are not
comparable: SCALE-Sim reads the im2col copy, R·S reads per input pixel; ours the region)."""


def traffic_mismatches(comparison: pd.DataFrame) -> dict[str, tuple[int, list[str]]]:
    """Per rule of :data:`TRAFFIC_RULES`: (rows it applies to, the rows where it fails)."""
    out: dict[str, tuple[int, list[str]]] = {}
    for rule in TRAFFIC_RULES:
        n, bad = 0, []
        for _, row in comparison.iterrows():
            if rule.applies(row):
                n += 1
                if not rule.holds(row):
                    bad.append(f"{row['name']} {row['rows']}x{row['cols']} {row['dataflow']}")
        out[rule.id] = (n, bad)
    return out


def _oracle_files(ctx: Context) -> list[tuple[str, Path]]:
    files = [("random", ctx.data_dir / "scalesim_oracle.csv")]
    topo = ctx.data_dir / "scalesim_topology_oracle.csv"
    if not ctx.fast and topo.exists():
        files.append(("topology", topo))
    return files


def _oracle_source(label: str) -> str:
    script = {"random": "analysis/scalesim_oracle.py",
              "topology": "analysis/scalesim_validation_oracle.py"}[label]
    return f"{SOURCES['scalesim']}, run by {script}"


def _comparison(ctx: Context, label: str, path: Path, conv_halo: str = "refetch"
                ) -> pd.DataFrame:
    key = f"scalesim:{label}:{conv_halo}"
    if key not in ctx.cache:
        ctx.cache[key] = scalesim_comparison(pd.read_csv(path), conv_halo=conv_halo)
    return ctx.cache[key]


def missing_oracle(group: str, id: str, what: str, path: Path) -> Check:
    return Check(id=id, group=group, what=what, anchor="SCALE-Sim's figures",
                 source=SOURCES["scalesim"], ours="not run", tolerance="exact",
                 passed=False, note=f"oracle file {path} not found (the package ships it)")


def _oracle_comparisons(ctx: Context, prefix: str, what: str, out: list[Check]
                        ) -> Iterator[tuple[str, Path, pd.DataFrame]]:
    """(label, file, comparison) of each dense oracle table; a missing file is a failing row
    in ``out``."""
    for label, path in _oracle_files(ctx):
        if not path.exists():
            out.append(missing_oracle("scalesim", f"{prefix}.{label}", what, path))
            continue
        yield label, path, _comparison(ctx, label, path)


@register("scalesim", fast=True)
def _scalesim_cycles(ctx: Context) -> list[Check]:
    out: list[Check] = []
    for label, path, comp in _oracle_comparisons(ctx, "scalesim.cycles",
                                                 "dense compute cycles", out):
        arrays = sorted({(r, c) for r, c in zip(comp["rows"], comp["cols"])})
        missing = [df for df in ("os", "ws", "is") if not (comp["dataflow"] == df).any()]
        if missing:
            ctx.note("scalesim", f"{path.name} has no rows for {', '.join(missing)} (yet): no "
                                 "check row for those dataflows.")
        shapes = ", ".join(f"{r}×{c}" for r, c in arrays)

        def what(df: str, name: str = path.name, shapes: str = shapes) -> str:
            return f"dense compute cycles, {name}, {df}, arrays {shapes}"

        out += cycle_rows(
            comp, f"scalesim.cycles.{label}", what,
            source=_oracle_source(label), unit="(layer, array) exact", keys=("name",))
    return out


def cycle_rows(comp: pd.DataFrame, prefix: str, what: Callable[[str], str], *, source: str,
               unit: str, keys: Sequence[str], note: str = "") -> list[Check]:
    """One exact-cycles row per dataflow of a comparison with ours/theirs cycles."""
    out = []
    for df in ("os", "ws", "is"):
        part = comp[comp["dataflow"] == df]
        if part.empty:
            continue
        bad = part[part["cycles_ours"] != part["cycles_theirs"]]
        out.append(exact_row(
            id=f"{prefix}.{df}", group="scalesim", what=what(df),
            anchor="Total Cycles + 1, every layer", source=source,
            good=len(part) - len(bad), total=len(part), unit=unit, note=note,
            failures=[f"{' '.join(str(r[k]) for k in keys)} {r['rows']}x{r['cols']}: ours "
                      f"{r['cycles_ours']}, theirs {r['cycles_theirs']}"
                      for _, r in bad.iterrows()]))
    return out


@register("scalesim", fast=True)
def _scalesim_traffic(ctx: Context) -> list[Check]:
    out: list[Check] = []
    for label, path, comp in _oracle_comparisons(ctx, "scalesim.traffic", "DRAM/SRAM traffic",
                                                 out):
        result = traffic_mismatches(comp)
        for rule in TRAFFIC_RULES:
            n, bad = result[rule.id]
            if n == 0:  # e.g. no GEMM-form layer in the table: nothing to compare
                continue
            out.append(exact_row(
                id=f"scalesim.traffic.{label}.{rule.id}", group="scalesim",
                what=f"{rule.what} ({path.name})", anchor="SCALE-Sim's per-layer counts",
                source=_oracle_source(label), good=n - len(bad), total=n,
                unit="(layer, array, dataflow) rows hold", tolerance="as stated, no slack",
                failures=bad, note=rule.why))
        conv = comp[comp["form"] == "conv"]
        if len(conv):
            lined = _comparison(ctx, label, path, "line_buffer")
            lined = lined[lined["form"] == "conv"]
            bad_rows = lined[lined["dram_a_ours"] != lined["dram_a_theirs"]]
            out.append(exact_row(
                id=f"scalesim.traffic.{label}.dram_a_conv_line_buffer", group="scalesim",
                what=f"DRAM A reads of conv layers with a line buffer (memory.conv_halo = "
                     f"line_buffer) equal ({path.name})", anchor="SCALE-Sim's per-layer counts",
                source=_oracle_source(label), good=len(lined) - len(bad_rows),
                total=len(lined), unit="(layer, array, dataflow) rows hold",
                tolerance="exact", failures=[
                    f"{r['name']} {r['rows']}x{r['cols']} {r['dataflow']}: ours "
                    f"{r['dram_a_ours']}, theirs {r['dram_a_theirs']}"
                    for _, r in bad_rows.iterrows()],
                note="with the halo rows kept on chip each input pixel a window touches is "
                     "read once, as SCALE-Sim's SRAM (sized to hold the ifmap) reads it"))
            ratio = conv["dram_a_ours"] / conv["dram_a_theirs"].clip(lower=1)
            sram = conv["sram_a_ours"] / conv["sram_a_theirs"].clip(lower=1)
            ctx.note("scalesim", f"{path.name}: conv DRAM A ours/SCALE-Sim from "
                                 f"{ratio.min():.2f} to {ratio.max():.2f} (median "
                                 f"{ratio.median():.2f}); conv SRAM A reads are not compared "
                                 f"(ratio {sram.min():.2f}–{sram.max():.2f}): SCALE-Sim reads "
                                 "the im2col copy, ours the input region of each tile. The "
                                 "largest DRAM A ratios are big filters on 8×8 arrays in is: "
                                 "each 8-pixel, 8-tap tile re-reads its whole R × S region.")
    return out

