"""The ``sparsesim`` command: argument parsing, files and exit codes — nothing else.

Exit status: 0 on success, 2 on a user error (one line on stderr naming file, layer, field).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

from sparsesim.api import simulate
from sparsesim.arch import builtin_archs, load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.masks import SparsityModel
from sparsesim.units import fmt_si
from sparsesim.workload import builtin_workloads, load_workload

DEFAULT_WORKLOAD = "resnet18"
DEFAULT_ARCH = "default"


def _parse_value(text: str) -> object:
    """A TOML scalar (``64``, ``1e9``, ``true``, ``"x"``), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _overrides(pairs: Sequence[str]) -> dict[str, object]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SparsesimError(f"expected TABLE.FIELD=VALUE, got {pair!r}", field="--set")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _nm_ratio(text: str) -> tuple[int, int]:
    n, sep, m = text.partition(":")
    if not sep or not n.strip().isdigit() or not m.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected N:M such as 2:4, got {text!r}")
    return int(n), int(m)


def _sparsity(args: argparse.Namespace) -> SparsityModel | None:
    model = SparsityModel(
        weight_density=args.weight_density, weight_nm=args.weight_nm,
        act_density=args.act_density, act_channel_std=args.act_channel_std,
        token_keep=args.token_keep, head_keep=args.head_keep, kv_keep=args.kv_keep,
        seed=args.seed)
    return None if model.is_dense else model


def _cmd_run(args: argparse.Namespace) -> int:
    arch = load_arch(args.arch)
    if args.set:
        arch = with_overrides(arch, _overrides(args.set))
    sparsity = _sparsity(args)
    if args.trace is not None and sparsity is not None:
        raise SparsesimError("a trace carries its own masks: drop the density options",
                             field="--trace")
    result = simulate(args.workload, arch, sparsity=sparsity, trace=args.trace)
    if args.format == "csv":
        sys.stdout.write(result.df.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(result.df.to_json(orient="records", indent=1) + "\n")
    else:
        print(result.table())
    if args.out is not None:
        _write_frame(result.df, args.out)
        print(f"wrote {len(result.df)} rows to {args.out}", file=sys.stderr)
    return 0


def _write_frame(df, path: Path) -> None:  # type: ignore[no-untyped-def]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
    except OSError as err:
        raise SparsesimError(f"cannot write: {err.strerror}", file=str(path)) from None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from sparsesim.sweep import load_spec, read_results, run_sweep

    spec = load_spec(args.spec)
    summary = run_sweep(spec, out=args.out, executor=args.executor, workers=args.workers,
                        scheduler=args.scheduler, retry_failed=args.retry_failed)
    df = read_results(summary.out)
    if args.format == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(df.to_json(orient="records", indent=1) + "\n")
    elif len(df) <= args.max_rows:
        shown = [c for c in (*spec.params, "cycles", "effectual_macs", "utilization", "seconds",
                             "status") if c in df]
        rows = [[_cell_text(r[c], c) for c in shown] for _, r in df.iterrows()]
        _print_rows([*spec.params, "cycles", "effectual MACs", "util %", "time ms", "status"][
            : len(shown)], rows)
    print(f"{spec.name}: {summary.total} points — {summary.ran} ran, {summary.skipped} already "
          f"done, {summary.failed} failed — {summary.seconds:.1f} s; results in {summary.out}",
          file=sys.stderr)
    return 1 if summary.failed else 0


def _cell_text(value: object, column: str) -> str:
    if isinstance(value, float) and value != value:  # NaN: parameter not set for this point
        return ""
    if column == "utilization" and isinstance(value, float):
        return f"{100 * value:.1f}"
    if column == "seconds" and isinstance(value, float):
        return f"{1e3 * value:,.3f}"
    if column in ("cycles", "effectual_macs") and isinstance(value, (int, float)):
        return fmt_si(float(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cmd_formats(args: argparse.Namespace) -> int:
    from sparsesim.format_study import crossover_study, plot_crossover, render_table

    df = crossover_study(n_elements=args.elements, value_bits=tuple(args.bits), seed=args.seed)
    print(render_table(df))
    if args.out is not None:
        _write_frame(df, args.out)
        print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
    if args.plot is not None:
        try:
            plot_crossover(df).savefig(args.plot, dpi=150)
        except OSError as err:
            raise SparsesimError(f"cannot write: {err.strerror}", file=str(args.plot)) from None
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _cmd_archs(args: argparse.Namespace) -> int:
    rows = []
    for name in builtin_archs():
        a = load_arch(name)
        rows.append((name, f"{a.array.rows}×{a.array.cols}", a.array.dataflow,
                     fmt_si(a.clock_hz, "Hz"),
                     f"{a.precision.a_bits}/{a.precision.w_bits}/{a.precision.o_bits}",
                     a.description))
    _print_rows(("preset", "array", "dataflow", "clock", "bits a/w/o", "description"), rows)
    return 0


def _cmd_workloads(args: argparse.Namespace) -> int:
    rows = []
    for name in builtin_workloads():
        w = load_workload(name)
        rows.append((name, str(len(w.layers)), fmt_si(w.dense_macs, "MAC"),
                     fmt_si(w.params), _clip(w.source, 70)))
    _print_rows(("workload", "layers", "dense MACs", "params", "source"), rows)
    return 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["─" * w for w in widths], *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsesim",
        description="Simulate pruned DNNs on sparse systolic accelerators: cycles, MACs, "
                    "utilization per layer and in total.",
        epilog="Start with `sparsesim run` (ResNet-18 on the default 32×32 array); "
               "`sparsesim COMMAND --help` explains each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", help="simulate a workload on an arch and print the per-layer table",
        description="Simulate a workload on an arch: one row per layer with MACs, cycles, "
                    "utilization and time, then the totals. With no arguments: ResNet-18 on "
                    "the default 32×32 output-stationary array.",
    )
    run.add_argument("-w", "--workload", default=DEFAULT_WORKLOAD, metavar="NAME|PATH",
                     help="built-in workload (see `sparsesim workloads`), a workload .toml, or "
                          "a SCALE-Sim topology .csv (default: %(default)s)")
    run.add_argument("-a", "--arch", default=DEFAULT_ARCH, metavar="NAME|PATH",
                     help="arch preset (see `sparsesim archs`) or an arch .toml "
                          "(default: %(default)s)")
    run.add_argument("--set", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                     help="override an arch field, e.g. --set pe.kind=skip --set pe.sync=row "
                          "--set array.rows=64 (repeatable)")
    run.add_argument("-t", "--trace", type=Path, metavar="PATH",
                     help="a pruned trace (.npz): its layers and real masks replace the "
                          "workload's")
    sp = run.add_argument_group(
        "sparsity model", "masks drawn at random (seeded) when there is no trace; densities "
                          "are fractions of non-zeros in [0, 1]")
    sp.add_argument("--weight-density", type=float, default=1.0, metavar="D",
                    help="unstructured weight density per tensor (default: %(default)s)")
    sp.add_argument("--weight-nm", type=_nm_ratio, metavar="N:M",
                    help="N:M weight masks instead, N kept of every M along K (e.g. 2:4)")
    sp.add_argument("--act-density", type=float, default=1.0, metavar="D",
                    help="input-activation density of every layer but the first "
                         "(default: %(default)s)")
    sp.add_argument("--act-channel-std", type=float, default=0.0, metavar="S",
                    help="spread of per-channel activation densities (default: %(default)s)")
    sp.add_argument("--token-keep", type=float, default=1.0, metavar="F",
                    help="fraction of query tokens attention keeps (default: %(default)s)")
    sp.add_argument("--head-keep", type=float, default=1.0, metavar="F",
                    help="fraction of attention heads kept (default: %(default)s)")
    sp.add_argument("--kv-keep", type=float, default=1.0, metavar="F",
                    help="fraction of keys/values kept (default: %(default)s)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the masks (default: 0)")
    run.add_argument("-o", "--out", type=Path, metavar="PATH",
                     help="also write the per-GEMM results as CSV to PATH")
    run.add_argument("--format", choices=("table", "csv", "json"), default="table",
                     help="what to print on stdout (default: %(default)s)")
    run.set_defaults(func=_cmd_run)

    sweep = sub.add_parser(
        "sweep", help="run a grid of simulations in parallel, resumably",
        description="Run every point of a sweep spec (TOML: [sweep], [base], [grid], "
                    "[[point]]; see sparsesim/sweep.py) in parallel. Each finished point is "
                    "appended to the results CSV at once; re-running skips finished points, so "
                    "a killed sweep loses nothing. Exit status 1 if any point failed.")
    sweep.add_argument("spec", type=Path, help="the sweep spec (.toml)")
    sweep.add_argument("-o", "--out", type=Path, metavar="PATH",
                       help="results CSV (default: [sweep] out, else NAME.csv)")
    sweep.add_argument("--executor", choices=("local", "dask"), default="local",
                       help="worker processes here, or a dask.distributed cluster "
                            "(default: %(default)s)")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask scheduler address (tcp://host:8786); omit or 'local' to "
                            "start a LocalCluster")
    sweep.add_argument("-j", "--workers", type=int, metavar="N",
                       help="local worker processes (default: one per core)")
    sweep.add_argument("--retry-failed", action="store_true",
                       help="run again the points that failed last time")
    sweep.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="what to print when done (default: %(default)s)")
    sweep.add_argument("--max-rows", type=int, default=60, metavar="N",
                       help="print the table only up to N rows (default: %(default)s)")
    sweep.set_defaults(func=_cmd_sweep)

    formats = sub.add_parser(
        "formats", help="which sparse format is smallest at which sparsity (crossover table)",
        description="Encode random masks from 0 to 99.99 %% sparsity in every format with the "
                    "real encoders, and print bits per element, where each format starts to "
                    "win, and the closed-form crossovers beside the measured ones.")
    formats.add_argument("--elements", type=int, default=1_000_000, metavar="N",
                         help="tensor size (default: %(default)s)")
    formats.add_argument("--bits", type=int, nargs="+", default=[8, 16], metavar="B",
                         help="value widths in bits (default: 8 16)")
    formats.add_argument("--seed", type=int, default=0, help="mask seed (default: 0)")
    formats.add_argument("-o", "--out", type=Path, metavar="PATH",
                         help="also write the tidy measurements as CSV")
    formats.add_argument("--plot", type=Path, metavar="PATH",
                         help="also save the figure (.png, .svg or .pdf)")
    formats.set_defaults(func=_cmd_formats)

    archs = sub.add_parser("archs", help="list the arch presets",
                           description="List the arch presets shipped with sparsesim.")
    archs.set_defaults(func=_cmd_archs)

    workloads = sub.add_parser("workloads", help="list the built-in workloads",
                               description="List the built-in workloads with their dense MACs, "
                                           "parameters and sources.")
    workloads.set_defaults(func=_cmd_workloads)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except SparsesimError as err:
        print(f"sparsesim: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
