"""Refactor guard: run a fixed set of cases through the CLI and fingerprint every result.

A refactor must change no number. This script runs, in process and through the command-line
entry point (the surface that stays when modules move), every case below and writes each
one's full output — per-GEMM result CSVs, sweep CSVs, trace contents, the formats study —
to ``--out DIR`` with a ``manifest.json`` of SHA-256 fingerprints. Columns that measure
wall time (``elapsed_s``, a trace's ``meta.seconds``) are dropped first; everything else must be byte-identical.

    python analysis/regression.py --out /tmp/before            # before the change
    python analysis/regression.py --out /tmp/after --check analysis/results/regression.json

``--check FILE`` compares the fingerprints with a committed manifest and exits 1 naming each
case that differs (diff the two folders to see how). ``--update FILE`` writes the manifest.
``--legacy-rows`` checks against a manifest written before result rows had their ``kind``
and ``elements`` columns (issue 14): rows are mapped back to that layout before hashing, so
every other number is still compared byte for byte.

Cases (about 140):
* ``run``: every built-in workload × 3 archs (default 32×32 os, gemmini_like 16×16 ws,
  wide_16x64 is) × {dense PEs; skipping PEs at weight density 0.2 and activation density 0.5
  with bitmap weights; 2:4 N:M PEs with 2:4 weights (dense format)}, whole event-driven machine;
* SCALE-Sim topology import; gating PEs; row/col sync; ``auto`` format and the line buffer;
* online activation pruning (threshold, dynamic, top-k, N:M);
* training steps (ResNet-18 and BERT-base seq 128, pruned gradients, three optimizers);
* dynamic pruning (channel gates; tokens + heads), seeded;
* sweeps: a small grid (formats × densities × PE kinds) and one with training/dynamic fields;
* prune traces on synthetic weights (unstructured, N:M, filter, channel, block, head, token,
  kv; global scope; row compare) and each trace simulated; with torch installed, the digits
  CNN (magnitude, slimming, activation top-k) — skipped, and said so, without torch;
* the formats study (``sparsesim formats``) on 20,000 elements.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sparsesim.cli import main as cli_main  # noqa: E402
from sparsesim.validation.data import data_path  # noqa: E402

WORKLOADS = ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "bert_base_seq128",
             "bert_base_seq512", "vit_b16", "llama2_7b_block_prefill", "llama2_7b_block_decode",
             "smollm2_135m_decode", "minilm_l6_seq128")
ARCHS = ("default", "gemmini_like", "wide_16x64")
PE_SETTINGS = {
    "dense": [],
    "skip": ["--weight-density", "0.2", "--act-density", "0.5", "--set", "pe.kind=skip",
             "--set", "pe.operand=both", "--set", "memory.format_w=bitmap"],
    "nm": ["--weight-nm", "2:4", "--set", "pe.kind=nm"],
}
TIME_COLUMNS = ("elapsed_s",)

SWEEP_SMALL = """
[sweep]
name = "regression-small"
[base]
workload = "resnet18"
"pe.operand" = "both"
"sparsity.act_density" = 0.5
[grid]
"sparsity.weight_density" = [1.0, 0.3, 0.05]
"memory.format_w" = ["dense", "bitmap", "rle", "csc", "coo"]
"pe.kind" = ["gate", "skip"]
"""

SWEEP_MODES = """
[sweep]
name = "regression-modes"
[base]
workload = "bert_base_seq128"
"pe.kind" = "skip"
"sparsity.act_density" = 0.5
[[point]]
"training.optimizer" = "adam"
"training.grad_density" = 0.5
[[point]]
"dynamic.inputs" = 4
"dynamic.token_keep" = 0.5
"dynamic.head_keep" = 0.75
[[point]]
"sparsity.weight_nm" = [2, 4]
"pe.kind" = "nm"
"""


def _cases(tmp: Path, torch_ok: bool) -> list[tuple[str, Callable[[Path], list[Path]]]]:
    """(name, function writing the case's outputs under a folder → the files to fingerprint)."""
    cases: list[tuple[str, Callable[[Path], list[Path]]]] = []

    def run(name: str, argv: list[str]) -> None:
        def go(out: Path) -> list[Path]:
            csv = out / f"{name}.csv"
            _cli(["run", *argv, "-o", str(csv)])
            return [csv]
        cases.append((name, go))

    for wl in WORKLOADS:
        for arch in ARCHS:
            for pe, extra in PE_SETTINGS.items():
                run(f"run.{wl}.{arch}.{pe}", ["-w", wl, "-a", arch, *extra])
    topo = data_path("scalesim_topologies", "Resnet18.csv")
    if topo.exists():
        run("run.scalesim_topology", ["-w", str(topo), "-a", "tpu_like"])
    sparse = ["--weight-density", "0.3", "--act-density", "0.4", "--act-channel-std", "0.2"]
    run("run.gate", ["-w", "resnet18", *sparse, "--set", "pe.kind=gate", "--set",
                     "pe.operand=both"])
    for sync in ("row", "col", "wavefront"):
        run(f"run.sync_{sync}", ["-w", "resnet18", *sparse, "--set", "pe.kind=skip",
                                  "--set", f"pe.sync={sync}", "--set", "pe.operand=both"])
    run("run.auto_linebuffer", ["-w", "resnet50", *sparse, "--set", "pe.kind=skip",
                                "--set", "memory.format_w=auto", "--set", "memory.format_a=auto",
                                "--set", "memory.conv_halo=line_buffer"])
    run("run.ideal", ["-w", "resnet18", *sparse, "--set", "memory.ideal=true",
                      "--set", "pe.kind=skip"])
    run("run.tokens_heads_kv", ["-w", "vit_b16", "--token-keep", "0.5", "--head-keep", "0.75",
                                "--kv-keep", "0.6", "--set", "pe.kind=skip"])
    for kind in ("threshold", "dynamic", "topk"):
        run(f"run.act_prune_{kind}", ["-w", "bert_base_seq128", "--act-density", "0.3",
                                      "--act-prune", kind, "--set", "pe.kind=skip"])
    run("run.act_prune_nm", ["-w", "resnet18", "--act-prune", "nm", "--act-nm", "2:4",
                             "--set", "pe.kind=skip"])
    for wl, opt in (("resnet18", "sgd"), ("resnet18", "adam"), ("bert_base_seq128", "momentum")):
        run(f"run.training.{wl}.{opt}", ["-w", wl, "--training", "--weight-density", "0.2",
                                         "--act-density", "0.5", "--grad-density", "0.5",
                                         "--grad-structure", "row", "--optimizer", opt,
                                         "--set", "pe.kind=skip"])
    run("run.training.nm_grad", ["-w", "resnet18", "--training", "--act-density", "0.5",
                                 "--grad-structure", "nm", "--grad-nm", "2:4",
                                 "--set", "pe.kind=skip"])
    run("run.dynamic.channels", ["-w", "resnet18", "--dynamic", "6", "--channel-keep", "0.6",
                                 "--set", "pe.kind=skip", "--seed", "3"])
    run("run.dynamic.tokens_heads", ["-w", "bert_base_seq128", "--dynamic", "6",
                                     "--dyn-token-keep", "0.5", "--dyn-head-keep", "0.75",
                                     "--set", "pe.kind=skip"])

    for name, spec in (("sweep.small", SWEEP_SMALL), ("sweep.modes", SWEEP_MODES)):
        def sweep(out: Path, name: str = name, spec: str = spec) -> list[Path]:
            toml = tmp / f"{name}.toml"
            toml.write_text(spec)
            work = tmp / f"{name}.csv"
            work.unlink(missing_ok=True)  # a sweep resumes: start from nothing
            _cli(["sweep", str(toml), "-o", str(work), "-j", "1", "--format", "csv"])
            csv = out / f"{name}.csv"
            csv.write_bytes(work.read_bytes())
            return [csv]
        cases.append((name, sweep))

    prunes = {
        "unstructured": ["-w", "resnet18", "--sparsity", "0.8"],
        "global": ["-w", "resnet18", "--sparsity", "0.7", "--scope", "global",
                   "--distribution", "laplace"],
        "nm": ["-w", "bert_base_seq128", "--granularity", "nm", "--nm", "2:4"],
        "filter": ["-w", "resnet18", "--granularity", "filter", "--sparsity", "0.5"],
        "channel": ["-w", "vgg16", "--granularity", "channel", "--sparsity", "0.3"],
        "block": ["-w", "resnet18", "--granularity", "block", "--block", "4",
                  "--sparsity", "0.6", "--method", "random"],
        "head": ["-w", "bert_base_seq128", "--granularity", "head", "--sparsity", "0.5"],
        "token": ["-w", "vit_b16", "--granularity", "token", "--sparsity", "0.3"],
        "kv": ["-w", "llama2_7b_block_decode", "--granularity", "kv", "--sparsity", "0.5"],
        "row_compare": ["-w", "resnet18", "--sparsity", "0.5", "--compare", "row",
                        "--act-density", "0.6", "--skip", "conv1"],
    }
    if torch_ok:
        prunes |= {
            "digits_magnitude": ["--model", "digits", "--sparsity", "0.6"],
            "digits_slimming": ["--model", "digits", "--method", "slimming", "--sparsity", "0.5"],
            "digits_topk": ["--model", "digits", "--sparsity", "0", "--act-prune", "topk:0.5"],
        }
    for name, argv in prunes.items():
        def prune(out: Path, name: str = name, argv: list[str] = argv) -> list[Path]:
            npz = tmp / f"prune.{name}.npz"
            _cli(["prune", *argv, "-o", str(npz)])
            dump = out / f"prune.{name}.trace.txt"
            dump.write_text(_trace_text(npz))
            csv = out / f"prune.{name}.run.csv"
            _cli(["run", "--trace", str(npz), "--set", "pe.kind=skip", "-o", str(csv)])
            return [dump, csv]
        cases.append((f"prune.{name}", prune))

    def formats(out: Path) -> list[Path]:
        csv = out / "formats.csv"
        _cli(["formats", "--elements", "20000", "--bits", "8", "16", "-o", str(csv)])
        return [csv]
    cases.append(("formats", formats))
    return cases


def _cli(argv: list[str]) -> None:
    """Run one CLI command in process, its printed output discarded; a failure raises."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            status = cli_main(argv)
        except SystemExit as exit_:
            status = exit_.code
    if status not in (0, None):
        raise RuntimeError(f"sparsesim {' '.join(argv)} exited {status}:\n{sink.getvalue()}")


def _trace_text(path: Path) -> str:
    """A trace's contents as text: its manifest (sorted) and a fingerprint of every array."""
    with np.load(path, allow_pickle=False) as arrays:
        lines = []
        for key in sorted(arrays.files):
            value = arrays[key]
            if key == "manifest":
                manifest = json.loads(value.tobytes().decode())
                manifest.get("meta", {}).pop("seconds", None)  # the pruning's wall time
                lines.append("manifest " + json.dumps(manifest, sort_keys=True))
            else:
                digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
                lines.append(f"{key} {value.dtype} {value.shape} {digest}")
    return "\n".join(lines) + "\n"


def _legacy_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Result rows in the pre-redesign layout: no ``kind`` or ``elements`` column, and rows
    beside the array (``count`` 0) carrying their elements as ``M`` with ``K = N = 1`` — so
    the redesign's schema change can be checked against the pre-redesign manifest."""
    if "kind" not in df.columns or "elements" not in df.columns:
        return df
    side = df["count"] == "0"
    df = df.copy()
    df.loc[side, "M"] = df.loc[side, "elements"]
    df.loc[side, ["K", "N"]] = "1"
    return df.drop(columns=["kind", "elements"])


def _normalise(path: Path) -> None:
    """Drop wall-time columns and sort sweep rows by point, so order and speed do not count."""
    if path.suffix != ".csv":
        return
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = df.drop(columns=[c for c in TIME_COLUMNS if c in df.columns])
    if "point_id" in df.columns:
        df = df.sort_values(["point_id", *[c for c in df.columns if c != "point_id"]],
                            kind="stable")
    df.to_csv(path, index=False)


def _digest(paths: list[Path], legacy: bool = False) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        if legacy and path.suffix == ".csv":
            df = _legacy_rows(pd.read_csv(path, dtype=str, keep_default_na=False))
            h.update(df.to_csv(index=False).encode())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the case outputs")
    parser.add_argument("--check", type=Path, help="manifest to compare with (exit 1 if any "
                        "case differs)")
    parser.add_argument("--update", type=Path, help="write the manifest here")
    parser.add_argument("--only", nargs="+", default=[], metavar="PREFIX",
                        help="run only the cases whose name starts with PREFIX")
    parser.add_argument("--legacy-rows", action="store_true",
                        help="--check hashes result rows in the pre-redesign layout (no "
                        "kind/elements columns; rows beside the array with M = elements, "
                        "K = N = 1); --update still writes the current layout's hashes")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "_work"
    tmp.mkdir(exist_ok=True)
    torch_ok = importlib.util.find_spec("torch") is not None
    if not torch_ok:
        print("torch is not installed: the digits prune cases are skipped", file=sys.stderr)
    results: dict[str, str] = {}
    legacy: dict[str, str] = {}
    start = time.perf_counter()
    cases = [c for c in _cases(tmp, torch_ok)
             if not args.only or any(c[0].startswith(p) for p in args.only)]
    for i, (name, case) in enumerate(cases, 1):
        t0 = time.perf_counter()
        files = case(args.out)
        for path in files:
            _normalise(path)
        results[name] = _digest(files)
        legacy[name] = _digest(files, legacy=True) if args.legacy_rows else results[name]
        print(f"[{i}/{len(cases)}] {name}  {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    (args.out / "manifest.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"{len(results)} cases in {time.perf_counter() - start:.0f} s → {args.out}",
          file=sys.stderr)
    expected = None if args.check is None else json.loads(args.check.read_text())
    if args.update:  # after reading --check: the two may be the same file
        args.update.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if expected is not None:
        differ = [n for n in legacy if expected.get(n) != legacy[n]]
        missing = [n for n in expected if n not in legacy and not args.only]
        for n in differ:
            print(f"DIFFERS: {n}" + ("" if n in expected else " (not in the manifest)"))
        for n in missing:
            print(f"MISSING: {n}")
        if differ or missing:
            return 1
        print(f"all {len(results)} cases identical to {args.check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
