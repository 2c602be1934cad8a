"""Drive SCALE-Sim v3 (the external oracle of DESIGN.md §3) from Python and read its reports.

SCALE-Sim lives in its own interpreter (it needs ``numpy<2.4``), so this module only writes its
input files, runs it by subprocess and parses the CSV reports it leaves behind. The caller side
needs the standard library and pandas only.

    from sparsesim.validation.scalesim_runner import run_scalesim
    df, wall_s = run_scalesim(
        [{"name": "c1", "ifmap_h": 12, "ifmap_w": 10, "filter_h": 3, "filter_w": 3,
          "channels": 4, "num_filter": 20, "stride": 1}],
        rows=8, cols=8, dataflow="os", gemm=False,
    )

The interpreter is ``python=``, else the one :func:`scalesim_python` finds — the only place
that looks for SCALE-Sim, used by ``sparsesim validate --live``, the tests and the analysis
scripts alike.

What SCALE-Sim does with the inputs (scalesim 3.0.0 source):

* ``ideal_memory=True`` runs its bandwidth-estimate mode (``InterfaceBandwidth = CALC``): reads
  always hit (``read_buffer_estimate_bw.service_reads`` returns request cycle + 1), and the
  SRAMs are sized here to at least twice the largest operand of the run, so the OFMAP write
  buffer never fills and each operand element is fetched from DRAM once. Stall cycles are
  then 0 (the returned ``stall_cycles`` column shows it).
* ``total_cycles`` is its "Total Cycles" column, which is ``max(ofmap serviced cycle)``: the
  *index* of the last cycle, i.e. one less than the number of cycles.
* A conv layer whose name contains ``DP`` is expanded by SCALE-Sim into ``channels``
  single-channel layers named ``<name>Channel_<i>``; the returned frame has one row per
  expanded layer (``source_layer`` names the input layer).
* GEMM rows ``(M, N, K)`` become a conv of an ``M×K`` ifmap with ``N`` filters of ``1×K``:
  ``P = M`` output pixels, window ``K``, ``N`` filters.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sparsesim.errors import SparsesimError
from sparsesim.rules.nm import parse_nm

__all__ = ["CONV_KEYS", "ENV_PYTHON", "GEMM_KEYS", "run_scalesim", "scalesim_python",
           "write_topology"]

log = logging.getLogger(__name__)

ENV_PYTHON = "SPARSESIM_SCALESIM_PYTHON"
CHECKOUT_VENV = Path(__file__).resolve().parents[2] / ".venv-scalesim"
"""The source checkout's SCALE-Sim venv (the test suite makes it on first use); an installed
sparsesim has none there."""

CONV_KEYS = ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filter", "stride")
GEMM_KEYS = ("m", "n", "k")
CONV_HEADER = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
    "Num Filter, Strides,"
)
GEMM_HEADER = "Layer, M, N, K,"
_LAYOUT_HEADER = "Layer name,"  # header-only layout file: custom layouts are off
_DATAFLOWS = ("os", "ws", "is")
_RUN_NAME = "run"

# Column names of SCALE-Sim's reports (stripped) → ours.
_COMPUTE_COLS = {
    "Total Cycles (incl. prefetch)": "total_cycles_incl_prefetch",
    "Total Cycles": "total_cycles",
    "Stall Cycles": "stall_cycles",
    "Overall Util %": "overall_util_pct",
    "Mapping Efficiency %": "mapping_efficiency_pct",
    "Compute Util %": "compute_util_pct",
}
_DETAIL_COLS = {
    "SRAM IFMAP Reads": "sram_ifmap_reads",
    "SRAM Filter Reads": "sram_filter_reads",
    "SRAM OFMAP Writes": "sram_ofmap_writes",
    "DRAM IFMAP Reads": "dram_ifmap_reads",
    "DRAM Filter Reads": "dram_filter_reads",
    "DRAM OFMAP Writes": "dram_ofmap_writes",
    "SRAM IFMAP Start Cycle": "sram_ifmap_start_cycle",
    "SRAM IFMAP Stop Cycle": "sram_ifmap_stop_cycle",
    "SRAM Filter Start Cycle": "sram_filter_start_cycle",
    "SRAM Filter Stop Cycle": "sram_filter_stop_cycle",
    "SRAM OFMAP Start Cycle": "sram_ofmap_start_cycle",
    "SRAM OFMAP Stop Cycle": "sram_ofmap_stop_cycle",
    "DRAM IFMAP Start Cycle": "dram_ifmap_start_cycle",
    "DRAM IFMAP Stop Cycle": "dram_ifmap_stop_cycle",
    "DRAM Filter Start Cycle": "dram_filter_start_cycle",
    "DRAM Filter Stop Cycle": "dram_filter_stop_cycle",
    "DRAM OFMAP Start Cycle": "dram_ofmap_start_cycle",
    "DRAM OFMAP Stop Cycle": "dram_ofmap_stop_cycle",
}
_BANDWIDTH_COLS = {
    "Avg IFMAP SRAM BW": "avg_ifmap_sram_bw",
    "Avg FILTER SRAM BW": "avg_filter_sram_bw",
    "Avg FILTER Metadata SRAM BW": "avg_filter_metadata_sram_bw",
    "Avg OFMAP SRAM BW": "avg_ofmap_sram_bw",
    "Avg IFMAP DRAM BW": "avg_ifmap_dram_bw",
    "Avg FILTER DRAM BW": "avg_filter_dram_bw",
    "Avg OFMAP DRAM BW": "avg_ofmap_dram_bw",
}

# SPARSE_REPORT.csv (sparsity mode only). Its "Avg FILTER Metadata SRAM BW" duplicates the
# bandwidth report's column of the same name, so it is not read again here.
_SPARSE_COLS = {
    "Sparsity Representation": "sparse_rep",
    "Original Filter Storage": "original_filter_storage",
    "New Storage (Filter+Metadata)": "new_filter_storage",
    "Filter Metadata Storage": "filter_metadata_storage",
}

# Run inside SCALE-Sim's interpreter. Uses its `scalesim` class directly: its own CLI
# (scalesim.scale) ignores `-s N` and always writes per-layer traces, which is slow.
_DRIVER = """\
import sys
from scalesim.scale_sim import scalesim
cfg, topo, layout, out, gemm = sys.argv[1:6]
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo,
             layout=layout, input_type_gemm=(gemm == "1"))
s.run_scale(top_path=out)
"""


def scalesim_python(explicit: str | None = None) -> str | None:
    """SCALE-Sim's interpreter (absolute), the first of these that exists:

    1. ``explicit`` (``--scalesim-python``, ``--python`` of the analysis scripts);
    2. ``$SPARSESIM_SCALESIM_PYTHON``;
    3. ``.venv-scalesim/bin/python`` in the source checkout (:data:`CHECKOUT_VENV`).

    A given path that does not exist is passed over with a warning. None when none exists:
    the live validation checks are then reported as not run, and the benchmark skips its
    SCALE-Sim figure.
    """
    given = ((explicit, "given"), (os.environ.get(ENV_PYTHON), f"${ENV_PYTHON}"))
    for candidate, origin in given:
        if candidate and Path(candidate).exists():
            return str(Path(candidate).absolute())
        if candidate:
            log.warning("SCALE-Sim interpreter %s (%s) not found; looking further",
                        candidate, origin)
    venv_python = CHECKOUT_VENV / "bin" / "python"
    return str(venv_python) if venv_python.exists() else None


def _int_field(layer: Mapping[str, Any], key: str) -> int:
    try:
        value = layer[key]
    except KeyError:
        raise ValueError(f"layer {layer.get('name')!r}: missing field {key!r}") from None
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"layer {layer.get('name')!r}: {key}={value!r} must be an integer >= 1")
    return int(value)


def _name(layer: Mapping[str, Any]) -> str:
    name = str(layer.get("name", "")).strip()
    if not name or "," in name or "\n" in name:
        raise ValueError(f"layer name {name!r} must be non-empty without commas or newlines")
    return name


def write_topology(layers: Sequence[Mapping[str, Any]], path: Path, *, gemm: bool) -> None:
    """Write ``layers`` as a SCALE-Sim topology CSV (rows end with a trailing comma).

    Conv form: name, ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filter, stride.
    GEMM form: name, m, n, k. An optional ``nm`` entry ("N:M", e.g. "2:4") is written as the
    sparsity-ratio column SCALE-Sim reads after the last dimension.
    """
    keys = GEMM_KEYS if gemm else CONV_KEYS
    lines = [GEMM_HEADER if gemm else CONV_HEADER]
    for layer in layers:
        fields = [_name(layer)] + [str(_int_field(layer, k)) for k in keys]
        if not gemm:
            ih, iw, fh, fw = (_int_field(layer, k) for k in keys[:4])
            if fh > ih or fw > iw:
                raise ValueError(f"layer {fields[0]!r}: filter {fh}x{fw} larger than ifmap {ih}x{iw}")
        nm = layer.get("nm")
        if nm is not None:
            try:
                n, m = parse_nm(nm)
            except SparsesimError as err:
                raise err.located(layer=fields[0]) from None
            fields.append(f"{n}:{m}")
        lines.append(", ".join(fields) + ",")
    path.write_text("\n".join(lines) + "\n")


def _operand_elems(layer: Mapping[str, Any], gemm: bool) -> int:
    """Largest of the ifmap, filter and ofmap sizes of one layer, in elements."""
    if gemm:
        m, n, k = (_int_field(layer, key) for key in GEMM_KEYS)
        return max(m * k, k * n, m * n)
    ih, iw, fh, fw, c, nf, s = (_int_field(layer, key) for key in CONV_KEYS)
    e = math.ceil((ih - fh + s) / s)
    f = math.ceil((iw - fw + s) / s)
    return max(ih * iw * c, fh * fw * c * nf, e * f * nf)


def _write_config(
    path: Path,
    *,
    rows: int,
    cols: int,
    dataflow: str,
    sram_kb: int,
    ideal_memory: bool,
    bandwidth: int,
    sparse_rep: str | None,
    optimized_mapping: bool = False,
    block_size: int = 4,
) -> None:
    bw_mode = "CALC" if ideal_memory else "USER"
    sparse = sparse_rep is not None
    text = f"""\
[general]
run_name = {_RUN_NAME}

[run_presets]
InterfaceBandwidth = {bw_mode}
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {sram_kb}
FilterSramSzkB = {sram_kb}
OfmapSramSzkB = {sram_kb}
IfmapOffset = 0
FilterOffset = 100000000
OfmapOffset = 200000000
Bandwidth = {bandwidth}
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {bandwidth}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {bandwidth}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = {"true" if sparse else "false"}
SparseRep = {sparse_rep or "ellpack_block"}
OptimizedMapping = {"true" if optimized_mapping else "false"}
BlockSize = {block_size}
RandomNumberGeneratorSeed = 40
"""
    path.write_text(text)


def _read_report(path: Path, rename: Mapping[str, str]) -> pd.DataFrame:
    df = pd.read_csv(path, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    df = df.loc[:, [c for c in df.columns if c and not c.startswith("Unnamed")]]
    keep = {"LayerID": "layer_id", **{k: v for k, v in rename.items() if k in df.columns}}
    return df.loc[:, list(keep)].rename(columns=keep)


def _expanded_names(layers: Sequence[Mapping[str, Any]], gemm: bool) -> list[tuple[str, str]]:
    """(SCALE-Sim layer name, input layer name), in SCALE-Sim's layer order."""
    out: list[tuple[str, str]] = []
    for layer in layers:
        name = _name(layer)
        if not gemm and "DP" in name:
            out += [(f"{name}Channel_{i}", name) for i in range(_int_field(layer, "channels"))]
        else:
            out.append((name, name))
    return out


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_scalesim(
    layers: list[dict[str, Any]],
    *,
    rows: int,
    cols: int,
    dataflow: str,
    gemm: bool,
    python: str | None = None,
    workdir: Path | None = None,
    ideal_memory: bool = True,
    sram_kb: int | None = None,
    bandwidth: int = 10,
    sparse_rep: str | None = None,
    timeout_s: float | None = None,
    optimized_mapping: bool = False,
    block_size: int = 4,
) -> tuple[pd.DataFrame, float]:
    """Run SCALE-Sim on ``layers`` for a ``rows × cols`` array and return (per-layer frame, wall s).

    ``layers`` are conv-form dicts {name, ifmap_h, ifmap_w, filter_h, filter_w, channels,
    num_filter, stride} or, with ``gemm=True``, {name, m, n, k}; either may carry ``nm="N:M"``
    (only used when ``sparse_rep`` turns SCALE-Sim's sparsity mode on: "ellpack_block", "csr",
    "csc"). ``ideal_memory=False`` uses SCALE-Sim's USER-bandwidth mode with ``bandwidth``
    words/cycle. ``sram_kb`` (each of the three SRAMs) defaults to a size that holds every
    operand twice over. ``workdir`` keeps the inputs and reports (a temp dir otherwise, removed).
    ``optimized_mapping`` and ``block_size`` set SCALE-Sim's ``[sparsity] OptimizedMapping`` and
    ``BlockSize`` (sparsity mode only; the optimized mapping ignores ``nm`` and draws a random
    N in [1, block_size/2] per filter from its fixed seed).

    Returned columns: layer (SCALE-Sim's name), source_layer, layer_id, total_cycles (its
    "Total Cycles", the last cycle's index), total_cycles_incl_prefetch, stall_cycles,
    overall_util_pct, mapping_efficiency_pct, compute_util_pct, sram_{ifmap,filter}_reads,
    sram_ofmap_writes, dram_{ifmap,filter}_reads, dram_ofmap_writes, SRAM and DRAM start/stop
    cycles and the average bandwidths; in sparsity mode also avg_filter_metadata_sram_bw and
    SPARSE_REPORT's sparse_rep, original_filter_storage, new_filter_storage (filter +
    metadata) and filter_metadata_storage. The float is the subprocess wall time in seconds.

    Raises ValueError for bad arguments and RuntimeError (with SCALE-Sim's output tail) when
    SCALE-Sim fails or leaves no reports.
    """
    if dataflow not in _DATAFLOWS:
        raise ValueError(f"dataflow={dataflow!r} must be one of {_DATAFLOWS}")
    for label, value in (("rows", rows), ("cols", cols), ("bandwidth", bandwidth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}={value!r} must be an integer >= 1")
    if not layers:
        raise ValueError("layers is empty")
    if sram_kb is None:
        biggest = max(_operand_elems(layer, gemm) for layer in layers)
        sram_kb = max(64, 1 << math.ceil(math.log2(math.ceil(2.5 * biggest / 1024))))
    exe = python or scalesim_python()
    if exe is None:
        raise RuntimeError(f"no SCALE-Sim interpreter: pass python=, set ${ENV_PYTHON} or make "
                           f"{CHECKOUT_VENV}")

    tmp: str | None = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="scalesim_")
        work = Path(tmp)
    else:
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        topo = work / ("topology_gemm.csv" if gemm else "topology_conv.csv")
        cfg = work / "scale.cfg"
        layout = work / "layout.csv"
        out = work / "results"
        write_topology(layers, topo, gemm=gemm)
        layout.write_text(_LAYOUT_HEADER + "\n")
        _write_config(
            cfg,
            rows=rows,
            cols=cols,
            dataflow=dataflow,
            sram_kb=sram_kb,
            ideal_memory=ideal_memory,
            bandwidth=bandwidth,
            sparse_rep=sparse_rep,
            optimized_mapping=optimized_mapping,
            block_size=block_size,
        )
        report_dir = out / _RUN_NAME
        if report_dir.exists():
            shutil.rmtree(report_dir)
        cmd = [exe, "-c", _DRIVER, str(cfg), str(topo), str(layout), str(out), "1" if gemm else "0"]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=work, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except FileNotFoundError as exc:
            raise RuntimeError(f"SCALE-Sim interpreter not found: {exe} ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"SCALE-Sim timed out after {timeout_s} s in {work}") from exc
        wall_s = time.perf_counter() - start
        compute = report_dir / "COMPUTE_REPORT.csv"
        if proc.returncode != 0 or not compute.exists():
            raise RuntimeError(
                f"SCALE-Sim failed (exit {proc.returncode}, python {exe}, dir {work}).\n"
                f"stderr tail:\n{_tail(proc.stderr)}\nstdout tail:\n{_tail(proc.stdout)}"
            )
        df = _read_report(compute, _COMPUTE_COLS)
        df = df.merge(_read_report(report_dir / "DETAILED_ACCESS_REPORT.csv", _DETAIL_COLS), on="layer_id")
        df = df.merge(_read_report(report_dir / "BANDWIDTH_REPORT.csv", _BANDWIDTH_COLS), on="layer_id")
        sparse = report_dir / "SPARSE_REPORT.csv"
        if sparse_rep is not None and sparse.exists():
            df = df.merge(_read_report(sparse, _SPARSE_COLS), on="layer_id")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    names = _expanded_names(layers, gemm)
    if len(names) != len(df):
        raise RuntimeError(f"SCALE-Sim reported {len(df)} layers, expected {len(names)}")
    df = df.sort_values("layer_id").reset_index(drop=True)
    df.insert(0, "source_layer", [src for _, src in names])
    df.insert(0, "layer", [name for name, _ in names])
    for col in df.columns:
        if col.endswith(("_cycles", "_reads", "_writes", "_cycle", "_prefetch")):
            df[col] = pd.to_numeric(df[col]).round().astype("int64")
    return df, wall_s
