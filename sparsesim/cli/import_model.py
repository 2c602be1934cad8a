"""``sparsesim import``: a user's own PyTorch model as it is (its own zeros) to a trace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsesim.cli.common import save_trace
from sparsesim.cli.onnx_model import add_onnx_args, check_not_onnx, is_onnx, onnx_trace
from sparsesim.cli.prune import add_allow_uncaptured, add_sim_batch, model_source, \
    print_capture, user_model_trace
from sparsesim.errors import SparsesimError
from sparsesim.units import fmt_si


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``import`` subcommand and its flags."""
    parser = sub.add_parser(
        "import", help="capture your own PyTorch model as it is and write its trace (.npz)",
        description="Capture a model by graph (torch.export: every GEMM node a layer, "
                    "attention's QKᵀ and PV included) on its example inputs, with its own "
                    "weights and zeros (no pruning), measure every GEMM operand's zeros on "
                    "those inputs, and write the trace `sparsesim run --trace` simulates. "
                    "Needs sparsesim[torch].")
    parser.add_argument("--model", type=model_source, metavar="FILE.py:FACTORY|FILE.onnx",
                        help="a function returning (model, example_inputs) or (model, args, "
                             "kwargs), or an ONNX file (needs sparsesim[onnx])")
    parser.add_argument("model_file", nargs="?", type=model_source, metavar="MODEL",
                        help="the same as --model (sparsesim import model.onnx ...)")
    add_allow_uncaptured(parser)
    add_sim_batch(parser)
    add_onnx_args(parser, seed=True)
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="PATH",
                        help="the trace file to write (.npz)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Capture, measure, write."""
    from sparsesim.cli.prune import SHIPPED

    if (args.model is None) == (args.model_file is None):
        raise SparsesimError("give the model once: --model MODEL or MODEL", field="--model")
    args.model = args.model or args.model_file
    if args.model in SHIPPED:
        raise SparsesimError("import takes FILE.py:FACTORY; the shipped models are pruned with "
                             "`sparsesim prune --model`", field="--model")
    if is_onnx(args.model):
        if args.sim_batch is not None:
            raise SparsesimError("is for a FILE.py:FACTORY model (an ONNX model is simulated "
                                 "at its --input-shape batch)", field="--sim-batch")
        trace = onnx_trace(args, None)
    else:
        check_not_onnx(args)
        if args.seed is not None:
            raise SparsesimError("is for --model model.onnx (its random calibration inputs)",
                                 field="--seed")
        trace = user_model_trace(args.model, None, args.allow_uncaptured, args.sim_batch)
    out: Path = args.out
    save_trace(trace, out)
    print(f"{trace.workload.name}: {len(trace.workload.layers)} layers, weight sparsity "
          f"{trace.meta.get('weight_sparsity', 0.0):.4f} (its own zeros)")
    print_capture(trace.meta)
    print(f"wrote {out}: {fmt_si(out.stat().st_size, 'B')}", file=sys.stderr)
    return 0
