"""The ONNX half of ``--model``: ``sparsesim import|prune --model model.onnx --input-shape``.

An ``.onnx`` file is captured by :mod:`sparsesim.prune.onnx.capture` (the ``onnx`` extra:
onnx and onnxruntime; without them, one line naming the extra). ``--input-shape`` binds its
symbolic dimensions, ``--calibration-inputs FILE.npz`` gives its calibration inputs (one array per
input name), else they are random normal from ``--seed``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsesim.errors import SparsesimError
from sparsesim.sparsity.trace import Trace


def is_onnx(value: str | None) -> bool:
    """``--model`` names an ONNX file."""
    return bool(value) and str(value).lower().endswith(".onnx")


def add_onnx_args(parser: argparse.ArgumentParser, *, seed: bool) -> None:
    """``--input-shape`` and ``--calibration-inputs`` (and ``--seed`` where the command has none)."""
    parser.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]D1xD2...",
                        help="model.onnx: an input's shape, binding its symbolic dimensions "
                             "(repeatable; without NAME= in the order of the model's inputs)")
    parser.add_argument("--calibration-inputs", metavar="FILE.npz",
                        help="model.onnx: calibration inputs, one array per input name "
                             "(default: random normal from --seed, float inputs only)")
    if seed:
        parser.add_argument("--seed", type=int, default=None,
                            help="model.onnx: seed of the random normal calibration inputs "
                                 "(default 0)")


def onnx_trace(args: argparse.Namespace, spec: object) -> Trace:
    """The trace of ``args.model`` (an ONNX file), pruned by ``spec`` or as it is (None)."""
    try:
        from sparsesim.prune.onnx.capture import user_trace
    except ImportError as err:
        raise SparsesimError(f"--model model.onnx needs onnx and onnxruntime: pip install "
                             f"'sparsesim[onnx]' ({err})", field="--model") from None
    if args.calibration_inputs is not None and not Path(args.calibration_inputs).is_file():
        raise SparsesimError("no such file", file=args.calibration_inputs, field="--calibration-inputs")
    trace: Trace = user_trace(args.model, spec,  # type: ignore[arg-type]
                              input_shapes=tuple(args.input_shape),
                              calibration=args.calibration_inputs, seed=args.seed or 0,
                              allow_uncaptured=args.allow_uncaptured)
    return trace


def check_not_onnx(args: argparse.Namespace) -> None:
    """The ONNX flags on another model would change nothing: refused."""
    for flag, given in (("--input-shape", args.input_shape), ("--calibration-inputs", args.calibration_inputs)):
        if given:
            raise SparsesimError("is for --model model.onnx", field=flag)


__all__ = ["add_onnx_args", "check_not_onnx", "is_onnx", "onnx_trace"]
