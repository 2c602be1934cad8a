"""``sparsesim prune``: prune a workload (synthetic weights) or a shipped real model and write
its trace (.npz) for ``sparsesim run --trace``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsesim.cli.common import (DEFAULT_WORKLOAD, add_attention_args, add_quiet, nm_ratio,
                                  progress_bar, save_trace)
from sparsesim.cli.flags import FRACTION, SEED, count, real
from sparsesim.cli.onnx_model import add_onnx_args, check_not_onnx, is_onnx, onnx_trace
from sparsesim.errors import SparsesimError
from sparsesim.files import output_file
from sparsesim.sparsity.trace import Trace, accuracy_rows, compaction_text
from sparsesim.units import fmt_si
from sparsesim.workload.network import load_workload

DEFAULT_SPARSITY = 0.5
"""``--sparsity`` when it is not given and the method uses it."""

SHIPPED = ("digits", "efficientnet_lite0", "minilm", "smollm2")
"""The real models ``--model`` names (anything else is ``FILE.py:FACTORY``)."""


def model_source(value: str) -> str:
    """A shipped model's name or ``FILE.py:FACTORY`` (argparse type)."""
    from sparsesim.prune.spec import is_model_factory  # not at start-up: sparsesim.prune
    # imports the engine (pandas, Numba, simpy)

    if value in SHIPPED or is_model_factory(value) or is_onnx(value):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is neither one of {', '.join(SHIPPED)} nor "
                                     "FILE.py:FACTORY nor FILE.onnx")


def add_allow_uncaptured(parser: argparse.ArgumentParser) -> None:
    """``--allow-uncaptured``: the parity gate's allowance for a user's model."""
    parser.add_argument("--allow-uncaptured", type=float, default=0.0, metavar="FRACTION",
                        help="FILE.py:FACTORY and FILE.onnx models: accept a capture missing "
                             "up to this fraction of the MACs the independent count finds "
                             "(default %(default)s: every GEMM captured, or an error listing "
                             "the ops missed)")


def add_sim_batch(parser: argparse.ArgumentParser) -> None:
    """``--sim-batch``: simulate fewer samples than the calibration batch holds."""
    parser.add_argument("--sim-batch", type=count(1), metavar="N",
                        help="FILE.py:FACTORY models: simulate the first N samples of the "
                             "calibration inputs (their masks), while the criterion's "
                             "statistics (wanda's input norms) come from all of them "
                             "(default: the whole calibration batch)")


def user_model_trace(model: str, spec: object, allow: float,
                     sim_batch: int | None = None) -> Trace:
    """The trace of a user's model (``spec`` None: as it is)."""
    try:
        from sparsesim.prune.torch.factory import user_trace
    except ImportError as err:
        raise SparsesimError(f"--model needs PyTorch: pip install 'sparsesim[torch]' ({err})",
                             field="--model") from None
    trace: Trace = user_trace(model, spec, allow_uncaptured=allow, sim_batch=sim_batch)
    return trace


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``prune`` subcommand and its flags."""
    parser = sub.add_parser(
        "prune", help="prune a workload or a real model and write a trace (.npz)",
        description="Prune a built-in workload on synthetic (seeded) weights, or a shipped "
                    "real model (--model, needs sparsesim[torch]) on its calibration inputs, "
                    "and write the trace that `sparsesim run --trace` simulates.")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("-w", "--workload", default=DEFAULT_WORKLOAD, metavar="NAME|PATH",
                     help="workload pruned on synthetic weights (default: %(default)s)")
    src.add_argument("--model", type=model_source, metavar="NAME|FILE.py:FACTORY",
                     help="a real model with real weights and measured activations: one of "
                          f"{', '.join(SHIPPED)}, or your own, FILE.py:FACTORY (a function "
                          "returning (model, example_inputs) or (model, args, kwargs); "
                          "captured by torch.export, every GEMM node a layer), or FILE.onnx "
                          "(with --input-shape; needs sparsesim[onnx])")
    add_allow_uncaptured(parser)
    add_sim_batch(parser)
    add_onnx_args(parser, seed=False)
    parser.add_argument("--method", default="magnitude",
                        choices=("magnitude", "random", "taylor", "fisher", "wanda", "slimming"),
                        help="criterion (default: %(default)s); taylor, fisher and wanda need "
                             "--model, slimming needs --model digits")
    parser.add_argument("--granularity", default="unstructured",
                        choices=("unstructured", "nm", "filter", "channel", "block", "head",
                                 "token", "kv"), help="what goes together (default: %(default)s)")
    parser.add_argument("--sparsity", type=real(0, 1, high_open=True), metavar="S",
                        help="fraction removed, rounded as torch.nn.utils.prune does (default "
                             f"{DEFAULT_SPARSITY}; not with --granularity nm, which removes "
                             "1 - N/M, nor --schedule imp, whose rounds set it; required with "
                             "--act-prune: 0 prunes activations only)")
    parser.add_argument("--nm", type=nm_ratio, metavar="N:M",
                        help="N kept of every M along the reduction axis (with --granularity nm; "
                             "default 2:4)")
    parser.add_argument("--nm-layout", choices=("flat", "channel"), default="flat",
                        help="with --granularity nm: groups along K as the lowering orders it, "
                             "conv (c, r, s) (flat, default), or along input channels at each "
                             "kernel tap (channel: NVIDIA ASP's layout; an N:M array's K is "
                             "(c, r, s), so beyond 1x1 convs it refuses such masks unless "
                             "pe.nm_nonconformant = dense)")
    parser.add_argument("--block", type=count(1), metavar="K",
                        help=f"k×k block size, with --granularity block (default: {BLOCK})")
    parser.add_argument("--keep-shape", action="store_true",
                        help="filter, channel, block, head: keep the masked, uncompacted shapes "
                             "(hardware that cannot compact); default: what is pruned leaves "
                             "the shapes along the workload's graph")
    parser.add_argument("--scope", choices=("layer", "global"), default="layer",
                        help="rank per weight tensor or over all of them (default: %(default)s)")
    parser.add_argument("--compare", choices=("tensor", "row"),
                        help="row: each output row prunes the same fraction (Wanda's rule); "
                             "default: row for --method wanda (unstructured, layer scope), "
                             "as its paper defines it, else tensor")
    parser.add_argument("--calibration", choices=("once", "sequential"), default="once",
                        help="wanda on a FILE.py:FACTORY model: measure input norms in one pass "
                             "(once, default) or block by block, each block on the already "
                             "pruned earlier blocks (sequential, as Wanda's reference code)")
    parser.add_argument("--norm", type=real(1), default=1.0, metavar="P",
                        help="filter, channel, block, head: units scored by the p-norm of "
                             "their weights' scores over their size, (mean s^p)^(1/p) (1: L1, "
                             "2: L2; default: %(default)s)")
    parser.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                        help="layer names (fnmatch) left dense (repeatable)")
    parser.add_argument("--token-layers", type=count(0), nargs="+", metavar="I",
                        help="token pruning: attention-layer indices that drop tokens "
                             "(default: all)")
    parser.add_argument("--schedule", choices=("oneshot", "iterative", "imp"), default="oneshot",
                        help="iterative fine-tuning or IMP with rewinding: --model digits")
    parser.add_argument("--steps", type=count(1), metavar="N",
                        help=f"levels of an iterative schedule / IMP rounds (default: {STEPS})")
    parser.add_argument("--lambda", dest="lam", type=real(0), metavar="L",
                        help="train with L1 (unstructured) or group lasso (filter, channel) of "
                             "weight L, prune the zeros, cut to --sparsity if short: --model "
                             "digits")
    parser.add_argument("--act-prune", metavar="KIND:VALUE",
                        help="activation pruning on a real model: threshold:T, dynamic:A, "
                             "topk:A or nm:N:M")
    parser.add_argument("--dynamic", action="append", default=[], metavar="KIND:VALUE",
                        help="measure per-input keep ratios on a real model's calibration "
                             "inputs into the trace (repeatable): tokens:T (keep tokens whose "
                             "cumulative attention is >= T x the mean), tokens-fixed:F (the "
                             "control: F of the tokens alive at the last layer, every input), "
                             "heads:T (skip heads whose output norm is < T x the mean), "
                             "channels:T (conv channels above T x the largest)")
    parser.add_argument("--act-density", type=FRACTION, default=1.0, metavar="D",
                        help="synthetic: activation-density model of every layer but the first "
                             "(default: %(default)s)")
    add_attention_args(parser)
    parser.add_argument("--distribution", choices=("normal", "uniform", "laplace"),
                        help="synthetic weight law, not with --model (default: normal)")
    parser.add_argument("--seed", type=SEED, default=0, help="seed (default: 0)")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="PATH",
                        help="the trace file to write (.npz)")
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prune a workload (synthetic weights) or a shipped real model and write its trace."""
    import os

    from sparsesim.prune import ActPrune, PruneSpec, Regularizer, mask_bits, prune_workload
    from sparsesim.prune.spec import COMPACTING, DynamicSpec

    output_file(args.out, what="trace")  # before the pruning, not after it
    refuse_noops(args)
    slimming = args.method == "slimming"
    sparsity = _sparsity(args)
    if args.keep_shape and (slimming or args.granularity not in COMPACTING):
        raise SparsesimError(f"{'slimming' if slimming else args.granularity} pruning has no "
                             f"compacted shape to keep: --keep-shape is for "
                             f"{', '.join(COMPACTING)}", field="--keep-shape")
    spec = PruneSpec(
        criterion="magnitude" if slimming else args.method, granularity=args.granularity,
        sparsity=sparsity, nm=args.nm or (2, 4), nm_layout=args.nm_layout, block=args.block,
        scope=args.scope,
        compare=args.compare, norm=args.norm, calibration=args.calibration,
        skip=tuple(args.skip), distribution=args.distribution,
        token_layers=None if args.token_layers is None else tuple(args.token_layers),
        seed=args.seed, regularizer=None if args.lam is None else Regularizer(args.lam),
        compact=not args.keep_shape)
    if args.nm is not None and args.granularity != "nm":
        raise SparsesimError("--nm is for --granularity nm", field="--nm")
    act = None if args.act_prune is None else ActPrune.parse(args.act_prune)
    dynamic = DynamicSpec.parse(args.dynamic) if args.dynamic else None
    from sparsesim.sparsity.masks import SparsityModel

    attention = SparsityModel(attn_density=args.attn_density, attn_top_k=args.attn_top_k,
                              seed=args.seed)
    if attention.sparse_attention and dynamic is not None:
        raise SparsesimError("per-input ratios with masked attention probabilities are not "
                             "modelled: drop one", field="--attn-top-k")
    if args.allow_uncaptured and (args.model is None or args.model in SHIPPED):
        raise SparsesimError("the parity gate's allowance is for a FILE.py:FACTORY model",
                             field="--allow-uncaptured")
    if not is_onnx(args.model):
        check_not_onnx(args)
    if is_onnx(args.model) and args.calibration != "once":
        raise SparsesimError("sequential calibration runs on torch.export captures "
                             "(FILE.py:FACTORY), not on ONNX models yet", field="--calibration")
    if args.sim_batch is not None and (args.model is None or args.model in SHIPPED
                                       or is_onnx(args.model)):
        raise SparsesimError("the simulated batch of a shipped model, a workload or an ONNX "
                             "model is its own: --sim-batch is for a FILE.py:FACTORY model",
                             field="--sim-batch")
    if args.model is not None and args.model not in SHIPPED:
        _user_options(args, act, dynamic)
        trace = onnx_trace(args, spec) if is_onnx(args.model) else \
            user_model_trace(args.model, spec, args.allow_uncaptured, args.sim_batch)
    elif args.model is not None:
        if args.attn_density != 1:
            raise SparsesimError("a real model's probabilities are pruned by their top-k: use "
                                 "--attn-top-k (--attn-density is the seeded model)",
                                 field="--attn-density")
        extra = {} if args.attn_top_k is None else {"attn_top_k": args.attn_top_k}
        try:
            from sparsesim.prune.torch import pipelines
        except ImportError as err:
            raise SparsesimError(f"--model needs PyTorch: pip install 'sparsesim[torch]' "
                                 f"({err})", field="--model") from None
        pipelines.check_granularity(args.model, args.granularity)
        if slimming:
            if args.model != "digits":
                raise SparsesimError("network slimming trains the model: only --model digits",
                                     field="--method")
            if extra:
                raise SparsesimError("the digits CNN has no attention", field="--attn-top-k")
            pruned = pipelines.run_digits_slimming(sparsity, seed=args.seed, dynamic=dynamic,
                                                   progress=progress_bar(args))
        elif args.model == "digits":
            if extra:
                raise SparsesimError("the digits CNN has no attention", field="--attn-top-k")
            pruned = pipelines.run_digits(spec, schedule=args.schedule, steps=args.steps,
                                          act_prune=act, seed=args.seed, dynamic=dynamic,
                                          progress=progress_bar(args))
        else:
            if args.schedule != "oneshot":
                raise SparsesimError("fine-tuning schedules need training data: only --model "
                                     "digits", field="--schedule")
            pruned = pipelines.run_model(args.model, spec, act_prune=act, dynamic=dynamic,
                                         progress=progress_bar(args), **extra)
        trace = pruned.trace
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
        trace = prune_workload(workload, spec, act_models=models, progress=progress_bar(args))
        if attention.sparse_attention:
            from sparsesim.prune.front import with_sparse_attention

            trace = with_sparse_attention(trace, attention)
    out: Path = args.out
    save_trace(trace, out)
    meta = trace.meta
    size = os.path.getsize(out)
    print(f"{trace.workload.name}: {len(trace.workload.layers)} layers, "
          f"{meta.get('method', {}).get('criterion', args.method)} "
          f"{args.granularity}, weight sparsity {meta.get('weight_sparsity', 0.0):.4f}")
    print_capture(meta)
    comp = compaction_text(meta)
    if comp is not None:
        print(f"  {comp}")
    for row in accuracy_rows(meta):
        print(f"  {row.stage} sparsity {row.sparsity:.3f}: {row.label} {row.value:.4f} "
              f"(includes {row.includes_text})")
    for kind in ("token_keep", "head_keep", "channel_keep"):  # per input: mean over layers
        per = [r[kind] for r in meta.get("dynamic", {}).get("layers", {}).values() if kind in r]
        if per:
            means = [sum(v) / len(v) for v in zip(*per)]
            print(f"  dynamic {kind} on {len(per)} layers, per input: mean "
                  f"{sum(means) / len(means):.3f}, min {min(means):.3f}, max {max(means):.3f}")
    print(f"wrote {out}: {fmt_si(size, 'B')} (masks {fmt_si(mask_bits(trace) / 8, 'B')} "
          "bit-packed)", file=sys.stderr)
    return 0


def print_capture(meta: dict[str, object]) -> None:
    """The parity gate's verdict of a captured model, and what it missed."""
    cap = meta.get("capture")
    if not isinstance(cap, dict):
        return
    who = "the ONNX per-node count finds" if cap.get("method") == "onnx" else "PyTorch counts"
    print(f"  captured {cap['captured_macs']:,} of {cap['total_macs']:,} MACs {who} "
          f"(coverage {cap['coverage']:.4f})")
    for u in cap.get("uncaptured", []):
        print(f"  uncaptured: {u['module'] or 'model'} ({u['op']}, node {u['node']}): "
              f"{u['macs']:,} MACs, {u['reason']}")


def _user_options(args: argparse.Namespace, act: object, dynamic: object) -> None:
    """Refuse what a captured user model does not do yet (each option by its flag)."""
    refused = {
        "--method": args.method == "slimming",
        "--granularity": args.granularity in ("token", "kv"),
        "--schedule": args.schedule != "oneshot",
        "--lambda": args.lam is not None,
        "--act-prune": act is not None,
        "--dynamic": dynamic is not None,
        "--attn-top-k": args.attn_top_k is not None,
        "--attn-density": args.attn_density != 1,
        "--act-density": args.act_density != 1,
    }
    for flag, bad in refused.items():
        if bad:
            raise SparsesimError(f"not available for a FILE.py:FACTORY model yet (it has no "
                                 "training data, attention layers with heads, or gates): "
                                 "weight criteria magnitude, random, wanda on unstructured, "
                                 "nm, filter, channel, block or head", field=flag)


BLOCK, STEPS = 4, 3


def refuse_noops(args: argparse.Namespace) -> None:
    """Refuse a flag the run would accept and ignore (one line, naming it), then fill in the
    defaults of ``--block``, ``--steps`` and ``--distribution``, which are ``None`` so that
    giving them where nothing reads them can be told from not giving them."""
    model = args.model is not None
    checks = [
        ("--block", args.block is not None and args.granularity != "block",
         f"sets the block of --granularity block; {args.granularity} pruning ignores it"),
        ("--steps", args.steps is not None and args.schedule == "oneshot",
         "counts the levels of --schedule iterative or imp; one-shot pruning ignores it"),
        ("--distribution", args.distribution is not None and model,
         "draws synthetic weights; a --model has its own weights"),
        ("--act-density", args.act_density != 1 and model,
         "is the synthetic activation model; a --model's activations are measured (use "
         "--act-prune to prune them)"),
    ]
    if args.sparsity == 0 and args.method != "slimming":
        shape = args.granularity in ("head", "token", "kv")
        other = (args.act_prune is not None or args.lam is not None or bool(args.dynamic)
                 or args.attn_top_k is not None or args.attn_density != 1
                 or args.act_density != 1)
        checks.append(("--sparsity", shape or not other,
                       f"0 removes no {args.granularity} " + (
                           "(nothing else changes the shapes)" if shape else
                           "and nothing else prunes (no --act-prune, --lambda, --dynamic or "
                           "attention pruning): give a sparsity, or use `sparsesim import` "
                           "for a model as it is")))
    for flag, bad, why in checks:
        if bad:
            raise SparsesimError(f"{flag} {why}", field=flag)
    args.block = BLOCK if args.block is None else args.block
    args.steps = STEPS if args.steps is None else args.steps
    args.distribution = "normal" if args.distribution is None else args.distribution


def _sparsity(args: argparse.Namespace) -> float:
    """``--sparsity``, refused where the method would ignore it, required where its default
    would prune what the user did not ask for (weights, beside activation pruning)."""
    given: float | None = args.sparsity
    if given is not None and args.granularity == "nm":
        raise SparsesimError("N:M pruning removes 1 - N/M of the weights by construction: give "
                             "--nm, not --sparsity", field="--sparsity")
    if given is not None and args.schedule == "imp":
        raise SparsesimError(f"IMP prunes a fifth of the remaining weights per round: its "
                             f"sparsity is set by --steps ({args.steps} rounds), not --sparsity",
                             field="--sparsity")
    if given is None and args.act_prune is not None:
        raise SparsesimError("--act-prune also prunes the weights unless told otherwise: give "
                             "--sparsity 0 to prune activations only, or the weight sparsity",
                             field="--sparsity")
    return DEFAULT_SPARSITY if given is None else given
