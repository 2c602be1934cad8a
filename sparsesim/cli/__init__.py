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
from sparsesim.engine.dynamic import synthetic_dynamic
from sparsesim.arch.config import builtin_archs, load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.sparsity.masks import ACT_PRUNE_KINDS, SparsityModel
from sparsesim.sparsity.trace import load_trace
from sparsesim.engine.training import GRADIENT_STRUCTURES, OPTIMIZERS, GradientModel, Training
from sparsesim.units import fmt_si
from sparsesim.workload.network import builtin_workloads, load_workload

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
        act_prune=args.act_prune, act_nm=args.act_nm, seed=args.seed)
    return None if model.is_dense else model


def _training(args: argparse.Namespace) -> Training | None:
    grads = GradientModel(density=args.grad_density, structure=args.grad_structure,
                          nm=args.grad_nm, seed=args.seed)
    if not args.training:
        if not grads.is_dense or args.optimizer != "sgd":
            raise SparsesimError("gradient and optimizer options describe a training step: "
                                 "add --training", field="--training")
        return None
    return Training(grads, optimizer=args.optimizer)


def _cmd_run(args: argparse.Namespace) -> int:
    arch = load_arch(args.arch)
    if args.set:
        arch = with_overrides(arch, _overrides(args.set))
    sparsity = _sparsity(args)
    if args.trace is not None and sparsity is not None:
        raise SparsesimError("a trace carries its own masks: drop the density options",
                             field="--trace")
    trace = None
    if args.trace is not None:
        trace = load_trace(args.trace)
        if args.workload is not None:  # both given: the trace must be of that workload
            given = load_workload(args.workload)
            if given.name != trace.workload.name:
                raise SparsesimError(f"the trace is of network {trace.workload.name!r}, not "
                                     f"{given.name!r}", file=str(args.trace), field="network")
            trace.check_workload(given)
    dynamic = None
    if args.dynamic is not None:
        if trace is not None and "dynamic" in trace.meta:
            raise SparsesimError("the trace carries its own per-input ratios: drop --dynamic",
                                 field="--dynamic")
        base = trace.workload if trace is not None else load_workload(
            args.workload or DEFAULT_WORKLOAD)
        dynamic = synthetic_dynamic(base, inputs=args.dynamic, channel_keep=args.channel_keep,
                                    token_keep=args.dyn_token_keep, head_keep=args.dyn_head_keep,
                                    spread=args.dyn_spread, seed=args.seed)
    result = simulate(args.workload or DEFAULT_WORKLOAD, arch, sparsity=sparsity,
                          trace=trace, training=_training(args), dynamic=dynamic)
    if not _print_frame(result.df, args.format):
        print(result.table())
    if args.out is not None:
        _write_frame(result.df, args.out)
        print(f"wrote {len(result.df)} rows to {args.out}", file=sys.stderr)
    return 0


def _print_frame(df, fmt: str) -> bool:  # type: ignore[no-untyped-def]
    """Print ``df`` as CSV or JSON records if ``fmt`` asks for it; False for ``table``."""
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(df.to_json(orient="records", indent=1) + "\n")
    return fmt in ("csv", "json")


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
    if not _print_frame(df, args.format) and len(df) <= args.max_rows:
        shown = [c for c in (*spec.params, "cycles", "effectual_macs", "utilization", "seconds",
                             "status") if c in df]
        rows = [[_cell_text(r[c], c) for c in shown] for _, r in df.iterrows()]
        _print_rows([_SWEEP_HEADERS.get(c, c) for c in shown], rows)
    print(f"{spec.name}: {summary.total} points — {summary.ran} ran, {summary.skipped} already "
          f"done, {summary.failed} failed — {summary.seconds:.1f} s; results in {summary.out}",
          file=sys.stderr)
    return 1 if summary.failed else 0


_SWEEP_HEADERS = {"effectual_macs": "effectual MACs", "utilization": "util %",
                  "seconds": "time ms"}


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


def _cmd_plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from sparsesim.plot import PLOTS

    try:
        df = pd.read_csv(args.results)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SparsesimError(f"cannot read results: {err}", file=str(args.results)) from None
    kwargs: dict[str, object] = {}
    if args.kind == "sparsity" and args.x:
        kwargs["x"] = args.x
    if args.kind == "roofline":
        arch = load_arch(args.arch)
        kwargs.update(peak_macs_per_cycle=arch.array.rows * arch.array.cols,
                      dram_bytes_per_cycle=arch.memory.dram_bytes_per_cycle)
    try:
        fig = PLOTS[args.kind](df, **kwargs)
    except SparsesimError as err:
        raise err.located(file=str(args.results)) from None
    out = args.out or args.results.with_suffix(f".{args.kind}.png")
    try:
        fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    except (OSError, ValueError) as err:
        raise SparsesimError(f"cannot write the figure: {err}", file=str(out)) from None
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_formats(args: argparse.Namespace) -> int:
    from sparsesim.formats.study import crossover_study, plot_crossover, render_table

    df = crossover_study(n_elements=args.elements, value_bits=tuple(args.bits), seed=args.seed)
    print(render_table(df))
    if args.out is not None:
        _write_frame(df, args.out)
        print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
    if args.plot is not None:
        try:
            plot_crossover(df).savefig(args.plot, dpi=150, bbox_inches="tight")
        except OSError as err:
            raise SparsesimError(f"cannot write: {err.strerror}", file=str(args.plot)) from None
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """Run the validation checks, write the report; exit 1 if any check fails."""
    from sparsesim.validation import run_checks, write_report

    run = run_checks(fast=args.fast, out_dir=args.out, live=args.live, only=args.only,
                     scalesim_python=args.scalesim_python)
    path = write_report(run, args.out)
    rows = [("pass" if c.passed else "FAIL", c.id, _clip(c.ours, 60), _clip(c.anchor, 50))
            for c in run.checks]
    _print_rows(("result", "check", "ours", "anchor"), rows)
    print(f"{sum(c.passed for c in run.checks)}/{len(run.checks)} checks pass in "
          f"{run.seconds:.0f} s; wrote {path}", file=sys.stderr)
    return 0 if run.passed else 1


def _add_validate_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    validate = sub.add_parser(
        "validate", help="check the simulator against SCALE-Sim, closed forms and papers",
        description="Reproduce the published anchors and bounds: SCALE-Sim v3 dense cycles and "
                    "traffic, the seed's closed forms, N:M bounds, Sparseloop's Fig. 1 trend, "
                    "Cnvlutin and SCNN in shape. Writes validation.md and its figures; exit "
                    "status 1 if any check fails.")
    validate.add_argument("-o", "--out", type=Path, default=Path("analysis/results"),
                          metavar="DIR", help="report and figures folder (default: "
                                              "%(default)s)")
    validate.add_argument("--fast", action="store_true",
                          help="only the fast subset the test suite runs (~15 s)")
    validate.add_argument("--live", action="store_true",
                          help="also rerun SCALE-Sim on a subset ($SPARSESIM_SCALESIM_PYTHON "
                               "or .venv-scalesim/bin/python)")
    validate.add_argument("--scalesim-python", metavar="PATH",
                          help="SCALE-Sim's interpreter for --live")
    validate.add_argument("--only", nargs="+", metavar="PREFIX",
                          help="run the checks whose name starts with PREFIX (e.g. nm "
                               "scalesim.cycles)")
    validate.set_defaults(func=_cmd_validate)


def _cmd_prune(args: argparse.Namespace) -> int:
    """Prune a workload (synthetic weights) or a shipped real model and write its trace."""
    import os

    from sparsesim.prune import ActPrune, PruneSpec, Regularizer, mask_bits, prune_workload
    from sparsesim.prune.spec import DynamicSpec

    slimming = args.method == "slimming"
    spec = PruneSpec(
        criterion="magnitude" if slimming else args.method, granularity=args.granularity,
        sparsity=args.sparsity, nm=args.nm or (2, 4), block=args.block, scope=args.scope,
        compare=args.compare, skip=tuple(args.skip), distribution=args.distribution,
        token_layers=None if args.token_layers is None else tuple(args.token_layers),
        seed=args.seed, regularizer=None if args.lam is None else Regularizer(args.lam))
    if args.nm is not None and args.granularity != "nm":
        raise SparsesimError("--nm is for --granularity nm", field="--nm")
    act = None if args.act_prune is None else ActPrune.parse(args.act_prune)
    dynamic = DynamicSpec.parse(args.dynamic) if args.dynamic else None
    if args.model is not None:
        try:
            from sparsesim.prune.torch import pipelines
        except ImportError as err:
            raise SparsesimError(f"--model needs PyTorch: pip install 'sparsesim[torch]' "
                                 f"({err})", field="--model") from None
        if slimming:
            if args.model != "digits":
                raise SparsesimError("network slimming trains the model: only --model digits",
                                     field="--method")
            run = pipelines.run_digits_slimming(args.sparsity, seed=args.seed, dynamic=dynamic)
        elif args.model == "digits":
            run = pipelines.run_digits(spec, schedule=args.schedule, steps=args.steps,
                                       act_prune=act, seed=args.seed, dynamic=dynamic)
        else:
            if args.schedule != "oneshot":
                raise SparsesimError("fine-tuning schedules need training data: only --model "
                                     "digits", field="--schedule")
            run = pipelines.run_model(args.model, spec, act_prune=act, dynamic=dynamic)
        trace = run.trace
    else:
        if dynamic is not None:
            raise SparsesimError("per-input ratios are measured on a real model: use --model",
                                 field="--dynamic")
        if slimming or act is not None or args.schedule != "oneshot" or args.lam is not None:
            raise SparsesimError("slimming, activation pruning, fine-tuning schedules and "
                                 "regularization need a real model: use --model",
                                 field="--method" if slimming else "--act-prune" if act
                                 is not None else "--lambda" if args.lam is not None
                                 else "--schedule")
        from sparsesim.sparsity.masks import ActivationModel

        workload = load_workload(args.workload)
        models = {}
        if args.act_density < 1:  # the network input stays dense, as in `run`'s model
            for i, layer in enumerate(workload.layers[1:], start=1):
                models[layer.name] = ActivationModel(args.act_density, None,
                                                     args.seed * 100_003 + i)
        trace = prune_workload(workload, spec, act_models=models)
    out: Path = args.out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        trace.save(out)
    except OSError as err:
        raise SparsesimError(f"cannot write: {err.strerror}", file=str(out)) from None
    meta = trace.meta
    size = os.path.getsize(out)
    print(f"{trace.workload.name}: {len(trace.workload.layers)} layers, "
          f"{meta.get('method', {}).get('criterion', args.method)} "
          f"{args.granularity}, weight sparsity {meta.get('weight_sparsity', 0.0):.4f}")
    for row in meta.get("accuracy", []):
        value = row.get("accuracy", row.get("value"))
        label = row.get("metric", "test accuracy")
        print(f"  {row.get('stage', '')} sparsity {row.get('sparsity', 0.0):.3f}: "
              f"{label} {value:.4f}")
    for kind in ("token_keep", "head_keep", "channel_keep"):  # per input: mean over layers
        per = [r[kind] for r in meta.get("dynamic", {}).get("layers", {}).values() if kind in r]
        if per:
            means = [sum(v) / len(v) for v in zip(*per)]
            print(f"  dynamic {kind} on {len(per)} layers, per input: mean "
                  f"{sum(means) / len(means):.3f}, min {min(means):.3f}, max {max(means):.3f}")
    print(f"wrote {out}: {fmt_si(size, 'B')} (masks {fmt_si(mask_bits(trace) / 8, 'B')} "
          "bit-packed)", file=sys.stderr)
    return 0


def _add_prune_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    prune = sub.add_parser(
        "prune", help="prune a workload or a real model and write a trace (.npz)",
        description="Prune a built-in workload on synthetic (seeded) weights, or a shipped "
                    "real model (--model, needs sparsesim[torch]) on its calibration inputs, "
                    "and write the trace that `sparsesim run --trace` simulates.")
    src = prune.add_mutually_exclusive_group()
    src.add_argument("-w", "--workload", default=DEFAULT_WORKLOAD, metavar="NAME|PATH",
                     help="workload pruned on synthetic weights (default: %(default)s)")
    src.add_argument("--model", choices=("digits", "efficientnet_lite0", "minilm", "smollm2"),
                     help="a real model with real weights and measured activations")
    prune.add_argument("--method", default="magnitude",
                       choices=("magnitude", "random", "taylor", "fisher", "wanda", "slimming"),
                       help="criterion (default: %(default)s); taylor, fisher and wanda need "
                            "--model, slimming needs --model digits")
    prune.add_argument("--granularity", default="unstructured",
                       choices=("unstructured", "nm", "filter", "channel", "block", "head",
                                "token", "kv"), help="what goes together (default: %(default)s)")
    prune.add_argument("--sparsity", type=float, default=0.5, metavar="S",
                       help="fraction removed, rounded as torch.nn.utils.prune does "
                            "(default: %(default)s)")
    prune.add_argument("--nm", type=_nm_ratio, metavar="N:M",
                       help="N kept of every M along the reduction axis (with --granularity nm; "
                            "default 2:4)")
    prune.add_argument("--block", type=int, default=4, metavar="K",
                       help="k×k block size (default: %(default)s)")
    prune.add_argument("--scope", choices=("layer", "global"), default="layer",
                       help="rank per weight tensor or over all of them (default: %(default)s)")
    prune.add_argument("--compare", choices=("tensor", "row"), default="tensor",
                       help="row: each output row prunes the same fraction (Wanda's rule)")
    prune.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                       help="layer names (fnmatch) left dense (repeatable)")
    prune.add_argument("--token-layers", type=int, nargs="+", metavar="I",
                       help="token pruning: attention-layer indices that drop tokens "
                            "(default: all)")
    prune.add_argument("--schedule", choices=("oneshot", "iterative", "imp"), default="oneshot",
                       help="iterative fine-tuning or IMP with rewinding: --model digits")
    prune.add_argument("--steps", type=int, default=3, metavar="N",
                       help="levels of an iterative schedule / IMP rounds (default: %(default)s)")
    prune.add_argument("--lambda", dest="lam", type=float, metavar="L",
                       help="train with L1 (unstructured) or group lasso (filter, channel) of "
                            "weight L, prune the zeros, cut to --sparsity if short: --model "
                            "digits")
    prune.add_argument("--act-prune", metavar="KIND:VALUE",
                       help="activation pruning on a real model: threshold:T, dynamic:A, "
                            "topk:A or nm:N:M")
    prune.add_argument("--dynamic", action="append", default=[], metavar="KIND:VALUE",
                       help="measure per-input keep ratios on a real model's calibration "
                            "inputs into the trace (repeatable): tokens:T (keep tokens whose "
                            "cumulative attention is >= T x the mean), tokens-fixed:F (the "
                            "control: F of the tokens alive at the last layer, every input), "
                            "heads:T (skip heads whose output norm is < T x the mean), "
                            "channels:T (conv channels above T x the largest)")
    prune.add_argument("--act-density", type=float, default=1.0, metavar="D",
                       help="synthetic: activation-density model of every layer but the first "
                            "(default: %(default)s)")
    prune.add_argument("--distribution", choices=("normal", "uniform", "laplace"),
                       default="normal", help="synthetic weight law (default: %(default)s)")
    prune.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    prune.add_argument("-o", "--out", type=Path, required=True, metavar="PATH",
                       help="the trace file to write (.npz)")
    prune.set_defaults(func=_cmd_prune)


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


PLOT_KINDS = ("formats", "sparsity", "layers", "pareto", "roofline", "accuracy", "phases",
              "latency")
"""The keys of :data:`sparsesim.plot.PLOTS` (named here: the CLI imports matplotlib only to
draw; a test keeps the two equal)."""


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
    run.add_argument("-w", "--workload", metavar="NAME|PATH",
                     help="built-in workload (see `sparsesim workloads`), a workload .toml, or "
                          f"a SCALE-Sim topology .csv (default: {DEFAULT_WORKLOAD}; with "
                          "--trace, checked against the trace's layers)")
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
    sp.add_argument("--act-prune", choices=ACT_PRUNE_KINDS, default="none",
                    help="how activation zeros arise: none (ReLU zeros, free) or found at run "
                         "time by the online pruning unit ([online] in the arch), whose cycles "
                         "and energy get their own rows: threshold, dynamic (per-tensor), topk "
                         "(per pixel/token), nm (with --act-nm) (default: %(default)s)")
    sp.add_argument("--act-nm", type=_nm_ratio, metavar="N:M",
                    help="N:M activation pruning along the channels (with --act-prune nm)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the masks (default: 0)")
    tr = run.add_argument_group(
        "training step", "simulate forward + backward (input and weight gradients) + update")
    tr.add_argument("--training", action="store_true",
                    help="simulate a training step; the report splits forward, backward and "
                         "update")
    tr.add_argument("--grad-density", type=float, default=1.0, metavar="D",
                    help="fraction of each output gradient kept (pruned online; default: "
                         "%(default)s)")
    tr.add_argument("--grad-structure", choices=GRADIENT_STRUCTURES, default="unstructured",
                    help="which gradient entries go: unstructured (threshold), row (top-k per "
                         "pixel/token), channel (whole channels), nm (with --grad-nm) "
                         "(default: %(default)s)")
    tr.add_argument("--grad-nm", type=_nm_ratio, metavar="N:M",
                    help="N:M gradient pruning along the channels (with --grad-structure nm)")
    tr.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd",
                    help="optimizer of the weight update: its state is read and written "
                         "(default: %(default)s)")
    dy = run.add_argument_group(
        "dynamic pruning", "per-input channel gating, token and head pruning: one run per "
                           "input, reported as a distribution (a trace may carry measured "
                           "ratios instead)")
    dy.add_argument("--dynamic", type=int, metavar="N",
                    help="draw seeded per-input keep ratios for N inputs")
    dy.add_argument("--channel-keep", type=float, default=1.0, metavar="F",
                    help="mean fraction of output channels a gate keeps per input, in conv "
                         "and linear layers (default: %(default)s)")
    dy.add_argument("--dyn-token-keep", type=float, default=1.0, metavar="F",
                    help="mean fraction of tokens alive after the last attention layer "
                         "(cascading; default: %(default)s)")
    dy.add_argument("--dyn-head-keep", type=float, default=1.0, metavar="F",
                    help="mean fraction of heads computed per input (default: %(default)s)")
    dy.add_argument("--dyn-spread", type=float, default=0.1, metavar="S",
                    help="standard deviation of the ratios across inputs (default: "
                         "%(default)s)")
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
                       help="worker processes, here or in the dask LocalCluster started when "
                            "no --scheduler is given (default: one per core)")
    sweep.add_argument("--retry-failed", action="store_true",
                       help="run again the points that failed last time")
    sweep.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="what to print when done (default: %(default)s)")
    sweep.add_argument("--max-rows", type=int, default=60, metavar="N",
                       help="print the table only up to N rows (default: %(default)s)")
    sweep.set_defaults(func=_cmd_sweep)

    plot = sub.add_parser(
        "plot", help="draw a trade-off figure from a results CSV",
        description="Draw a figure from results: 'formats' (sparsesim formats -o), "
                    "'sparsity' and 'pareto' and 'accuracy' (sparsesim sweep results), "
                    "'layers' and 'roofline' (sparsesim run -o), 'phases' (sparsesim run "
                    "--training -o), 'latency' (sparsesim run --dynamic N -o). PNG, SVG or "
                    "PDF by the --out suffix.")
    plot.add_argument("kind", choices=PLOT_KINDS, help="which figure")
    plot.add_argument("results", type=Path, help="the results CSV")
    plot.add_argument("-o", "--out", type=Path, metavar="PATH",
                      help="figure file (.png, .svg, .pdf; default: RESULTS.KIND.png)")
    plot.add_argument("-x", metavar="COLUMN",
                      help="sparsity: the density or sparsity column on the x axis "
                           "(default: sparsity.weight_density)")
    plot.add_argument("-a", "--arch", default=DEFAULT_ARCH, metavar="NAME|PATH",
                      help="roofline: the arch whose roofs to draw (default: %(default)s)")
    plot.add_argument("--dpi", type=int, default=150, help="raster resolution (default: 150)")
    plot.set_defaults(func=_cmd_plot)

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

    _add_prune_parser(sub)
    _add_validate_parser(sub)

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
