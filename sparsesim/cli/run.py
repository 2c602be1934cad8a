"""``sparsesim run``: one simulation (a workload, or a pruned trace, on an arch; optionally a
training step or a dynamic run), printed as the per-layer table or as CSV/JSON rows."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.cli.common import (DEFAULT_ARCH, DEFAULT_WORKLOAD, add_attention_args, add_out,
                                  add_quiet, check_out, nm_ratio, overrides, print_frame,
                                  progress_bar)
from sparsesim.cli.flags import FRACTION, KEEP, SEED, SPREAD, count
from sparsesim.checks import MAX_INPUTS
from sparsesim.engine.size import LIMITS, SizeLimits
from sparsesim.engine.training import GRADIENT_STRUCTURES, OPTIMIZERS, GradientModel, Training
from sparsesim.errors import SparsesimError
from sparsesim.frames import write_frame
from sparsesim.sparsity.masks import ACT_PRUNE_KINDS, SparsityModel, with_draw_version
from sparsesim.sparsity.trace import compaction_text, load_trace, trace_accuracy
from sparsesim.units import fmt_si
from sparsesim.workload.layers import Attention
from sparsesim.workload.network import Workload, load_workload

if TYPE_CHECKING:
    from sparsesim.engine.dynamic import DynamicModel


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``run`` subcommand and its flags."""
    parser = sub.add_parser(
        "run", help="simulate a workload on an arch and print the per-layer table",
        description="Simulate a workload on an arch: one row per layer with MACs, cycles, "
                    "utilization and time, then the totals. With no arguments: ResNet-18 on "
                    "the default 32×32 output-stationary array.",
    )
    parser.add_argument("-w", "--workload", metavar="NAME|PATH",
                        help="built-in workload (see `sparsesim workloads`), a workload .toml, or "
                             f"a SCALE-Sim topology .csv (default: {DEFAULT_WORKLOAD}; with "
                             "--trace, checked against the trace's layers)")
    parser.add_argument("-a", "--arch", default=DEFAULT_ARCH, metavar="NAME|PATH",
                        help="arch preset (see `sparsesim archs`) or an arch .toml "
                             "(default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                        help="override an arch field, e.g. --set pe.kind=skip --set pe.sync=row "
                             "--set array.rows=64 (repeatable)")
    parser.add_argument("--decode-tokens", type=count(1), metavar="T",
                        help="a decode workload (attention with one new token) run for T "
                             "generated tokens, the KV length growing by one per token; layers "
                             "are named step0., step1., ... (in place of the workload's [network] "
                             "decode_tokens)")
    parser.add_argument("-t", "--trace", type=Path, metavar="PATH",
                        help="a pruned trace (.npz): its layers and real masks replace the "
                             "workload's")
    sp = parser.add_argument_group(
        "sparsity model", "masks drawn at random (seeded) when there is no trace; densities "
                          "are fractions of non-zeros in [0, 1]")
    sp.add_argument("--weight-density", type=FRACTION, default=1.0, metavar="D",
                    help="unstructured weight density per tensor (default: %(default)s)")
    sp.add_argument("--weight-nm", type=nm_ratio, metavar="N:M",
                    help="N:M weight masks instead, N kept of every M along K (e.g. 2:4)")
    sp.add_argument("--act-density", type=FRACTION, default=1.0, metavar="D",
                    help="input-activation density of every layer but the first "
                         "(default: %(default)s)")
    sp.add_argument("--act-channel-std", type=SPREAD, default=0.0, metavar="S",
                    help="spread of per-channel activation densities (default: %(default)s)")
    sp.add_argument("--token-keep", type=KEEP, default=1.0, metavar="F",
                    help="fraction of query tokens attention keeps (default: %(default)s)")
    sp.add_argument("--head-keep", type=KEEP, default=1.0, metavar="F",
                    help="fraction of attention heads kept (default: %(default)s)")
    sp.add_argument("--kv-keep", type=KEEP, default=1.0, metavar="F",
                    help="fraction of keys/values kept (default: %(default)s)")
    sp.add_argument("--act-prune", choices=ACT_PRUNE_KINDS, default="none",
                    help="how activation zeros arise: none (ReLU zeros, free) or found at run "
                         "time by the online pruning unit ([online] in the arch), whose cycles "
                         "and energy get their own rows: threshold, dynamic (per-tensor), topk "
                         "(per pixel/token), nm (with --act-nm) (default: %(default)s)")
    sp.add_argument("--act-nm", type=nm_ratio, metavar="N:M",
                    help="N:M activation pruning along the channels (with --act-prune nm)")
    add_attention_args(sp)
    sp.add_argument("--seed", type=SEED, default=0, help="seed of the masks (default: 0)")
    sp.add_argument("--mask-draw-version", type=int, metavar="V",
                    help="how unstructured weight and Bernoulli activation masks are drawn: 1 "
                         "(runs before version 2 existed), 2 (faster; the default)")
    tr = parser.add_argument_group(
        "training step", "simulate forward + backward (input and weight gradients) + update")
    tr.add_argument("--training", action="store_true",
                    help="simulate a training step; the report splits forward, backward and "
                         "update")
    tr.add_argument("--grad-density", type=KEEP, default=1.0, metavar="D",
                    help="fraction of each output gradient kept (pruned online; default: "
                         "%(default)s)")
    tr.add_argument("--grad-structure", choices=GRADIENT_STRUCTURES, default="unstructured",
                    help="which gradient entries go: unstructured (threshold), row (top-k per "
                         "pixel/token), channel (whole channels), nm (with --grad-nm) "
                         "(default: %(default)s)")
    tr.add_argument("--grad-nm", type=nm_ratio, metavar="N:M",
                    help="N:M gradient pruning along the channels (with --grad-structure nm)")
    tr.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd",
                    help="optimizer of the weight update: its state is read and written "
                         "(default: %(default)s)")
    dy = parser.add_argument_group(
        "dynamic pruning", "per-input channel gating, token and head pruning: one run per "
                           "input, reported as a distribution (a trace may carry measured "
                           "ratios instead)")
    dy.add_argument("--dynamic", type=count(1, MAX_INPUTS), metavar="N",
                    help="draw seeded per-input keep ratios for N inputs")
    dy.add_argument("--channel-keep", type=KEEP, metavar="F",
                    help="mean fraction of output channels a gate keeps per input, in conv "
                         "and linear layers (default: 1.0)")
    dy.add_argument("--dyn-token-keep", type=KEEP, metavar="F",
                    help="mean fraction of tokens alive after the last attention layer "
                         "(cascading; default: 1.0)")
    dy.add_argument("--dyn-head-keep", type=KEEP, metavar="F",
                    help="mean fraction of heads computed per input (default: 1.0)")
    dy.add_argument("--dyn-spread", type=SPREAD, metavar="S",
                    help="standard deviation of the ratios across inputs (default: 0.1)")
    add_out(parser, "the per-GEMM results")
    add_quiet(parser)
    lim = parser.add_argument_group(
        "size limits", "a run beyond them is refused before it starts (sparsesim.engine.size)")
    lim.add_argument("--max-elements", type=count(1), metavar="N",
                     help=f"largest operand in elements, one byte each in memory (default: "
                          f"{LIMITS.elements:,})")
    lim.add_argument("--max-folds", type=count(1), metavar="N",
                     help=f"array folds of the whole run, each one simulated (default: "
                          f"{LIMITS.folds:,})")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="what to print on stdout (default: %(default)s)")
    parser.set_defaults(func=run)


def _limits(args: argparse.Namespace) -> SizeLimits:
    """The size limits with ``--max-elements`` / ``--max-folds`` applied."""
    given = {"elements": args.max_elements, "folds": args.max_folds}
    return replace(LIMITS, **{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    """Simulate once and print (and optionally write) the rows."""
    check_out(args.out)  # before the run, not after it
    # the simulator (pandas, Numba, simpy) is imported when a run starts, not for --help
    from sparsesim.api import simulate

    arch = load_arch(args.arch)
    if args.set:
        arch = with_overrides(arch, overrides(args.set))
    sparsity = _sparsity(args)
    if args.trace is not None and sparsity is not None:
        raise SparsesimError("a trace carries its own masks: drop the density options",
                             field="--trace")
    if args.trace is not None and args.decode_tokens is not None:
        raise SparsesimError("a trace carries its own layers: unroll the decode steps before "
                             "pruning, or drop --decode-tokens", field="--decode-tokens")
    trace = None
    if args.trace is None:
        workload = load_workload(args.workload or DEFAULT_WORKLOAD,
                                 decode_tokens=args.decode_tokens)
    else:
        trace = load_trace(args.trace, packed=True)
        if args.workload is not None:  # both given: the trace must be of that workload
            given = load_workload(args.workload)
            if given.name != trace.workload.name:
                raise SparsesimError(f"the trace is of network {trace.workload.name!r}, not "
                                     f"{given.name!r}", file=str(args.trace), field="network")
            trace.check_workload(given)
        workload = trace.workload  # simulate() takes the trace's layers
    dynamic = None
    if args.dynamic is not None:
        if trace is not None and "dynamic" in trace.meta:
            raise SparsesimError("the trace carries its own per-input ratios: drop --dynamic",
                                 field="--dynamic")
        dynamic = _dynamic(args).draw(workload)
    elif stray := [flag for flag, dest in _DYNAMIC_FLAGS.items()
                   if getattr(args, dest) is not None]:
        raise SparsesimError("per-input ratios describe a dynamic run: add --dynamic N",
                             field=stray[0])
    _check_attention_flags(args, workload)
    result = simulate(workload, arch, sparsity=sparsity, trace=trace, training=_training(args),
                      dynamic=dynamic, progress=progress_bar(args), limits=_limits(args))
    accuracy = trace_accuracy(result.trace_meta)
    compaction = compaction_text(result.trace_meta)  # what the shapes already lost
    notes = [] if compaction is None else [compaction]
    line = None
    if accuracy is not None:  # beside the hardware numbers it goes with
        t = result.totals
        line = (f"accuracy of the pruned model ({accuracy.label}"
                f"{', ' + accuracy.stage if accuracy.stage else ''}): {accuracy.value:.4f} "
                f"at {t['cycles']:,.0f} cycles, {fmt_si(t['energy_pj'] * 1e-12, 'J')}"
                f"{' (mean per input)' if 'inputs' in t else ''}; includes "
                f"{accuracy.includes_text}")
    if line is not None:
        notes.append(line)
    if not print_frame(result.df, args.format):
        print(result.table())
        for note in notes:
            print(note)
    else:  # stdout is the frame: what goes with it goes beside it
        for note in notes:
            print(note, file=sys.stderr)
    if args.out is not None:
        write_frame(result.df, args.out)
        print(f"wrote {len(result.df)} rows to {args.out}", file=sys.stderr)
    return 0


def _sparsity(args: argparse.Namespace) -> SparsityModel | None:
    model = SparsityModel(
        weight_density=args.weight_density, weight_nm=args.weight_nm,
        act_density=args.act_density, act_channel_std=args.act_channel_std,
        token_keep=args.token_keep, head_keep=args.head_keep, kv_keep=args.kv_keep,
        act_prune=args.act_prune, act_nm=args.act_nm, attn_density=args.attn_density,
        attn_top_k=args.attn_top_k, seed=args.seed)
    model = with_draw_version(model, args.mask_draw_version, field="--mask-draw-version")
    return None if model.is_dense else model


def _training(args: argparse.Namespace) -> Training | None:
    try:
        grads = GradientModel(density=args.grad_density, structure=args.grad_structure,
                              nm=args.grad_nm, seed=args.seed)
    except SparsesimError as err:  # name the flag the user typed, not the model's field
        flag = "--" + (err.field or "training").replace("_", "-")
        raise SparsesimError(err.message, field=flag) from None
    if not args.training:
        if not grads.is_dense or args.optimizer != "sgd":
            raise SparsesimError("gradient and optimizer options describe a training step: "
                                 "add --training", field="--training")
        return None
    return Training(grads, optimizer=args.optimizer)


#: The flags of a dynamic run and their ``DynamicModel`` fields (``None``: not given).
_DYNAMIC_FLAGS = {"--channel-keep": "channel_keep", "--dyn-token-keep": "dyn_token_keep",
                  "--dyn-head-keep": "dyn_head_keep", "--dyn-spread": "dyn_spread"}


def _dynamic(args: argparse.Namespace) -> DynamicModel:
    from sparsesim.engine.dynamic import DynamicModel

    given = {"channel_keep": args.channel_keep, "token_keep": args.dyn_token_keep,
             "head_keep": args.dyn_head_keep, "spread": args.dyn_spread}
    return DynamicModel(inputs=args.dynamic, seed=args.seed,
                        **{k: v for k, v in given.items() if v is not None})


def _check_attention_flags(args: argparse.Namespace, workload: Workload) -> None:
    """Token, head and KV ratios act on attention layers only: on a network without one they
    would change nothing, so they are refused rather than ignored."""
    if any(isinstance(layer, Attention) for layer in workload.layers):
        return
    for flag, value in (("--token-keep", args.token_keep), ("--head-keep", args.head_keep),
                        ("--kv-keep", args.kv_keep), ("--dyn-token-keep", args.dyn_token_keep),
                        ("--dyn-head-keep", args.dyn_head_keep)):
        if value is not None and value != 1:
            raise SparsesimError(f"workload {workload.name!r} has no attention layer: the "
                                 "ratio would change nothing", field=flag)
