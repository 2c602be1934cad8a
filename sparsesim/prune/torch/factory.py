"""A user's own model from a Python file: ``path/to/file.py:factory``.

The factory is a function of no arguments returning ``(model, example_inputs)`` or
``(model, args, kwargs)``; ``example_inputs`` is one tensor, a tuple of positional inputs or a
dict of keyword inputs (HF models: ``{"input_ids": ids, "use_cache": False}``). The inputs are
the calibration batch: the workload is the model on exactly them (batch, sequence, image
size). The file is run as a module, as ``python file.py`` would import it, so it may import
its own libraries (torchvision, timm, transformers) and build or load its weights. When
torchvision is installed, it is imported first through
:func:`~sparsesim.prune.torch.vision.import_torchvision`, so that PyPI's wheel works beside the
CPU torch (its model code, without its compiled detection ops) for the file's own
``import torchvision`` / ``import timm``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsesim.errors import SparsesimError
from sparsesim.prune.spec import is_model_factory


@dataclass(frozen=True)
class UserModel:
    """A model and the inputs it is captured and calibrated on."""

    model: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    name: str
    source: str


def load_factory(spec: str) -> UserModel:
    """Import ``file.py``, call ``function()``, check what it returns."""
    if not is_model_factory(spec):
        raise SparsesimError(f"expected path/to/file.py:function, got {spec!r}", field="--model")
    path, _, func = spec.rpartition(":")
    file = Path(path)
    if not file.is_file():
        raise SparsesimError("no such file", file=path, field="--model")
    name = f"sparsesim_user_model_{abs(hash(str(file.resolve())))}"
    loader = importlib.util.spec_from_file_location(name, file)
    if loader is None or loader.loader is None:
        raise SparsesimError("cannot import as a Python module", file=path, field="--model")
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is not None:
        from sparsesim.prune.torch.vision import import_torchvision

        import_torchvision()
    sys.path.insert(0, str(file.resolve().parent))  # its own helper modules beside it
    try:
        loader.loader.exec_module(module)
        fn = getattr(module, func, None)
        if not callable(fn):
            raise SparsesimError(f"no function {func!r} in the file", file=path,
                                 field="--model")
        out = fn()
    except SparsesimError:
        raise
    except Exception as err:  # the user's code: one line, not its traceback
        raise SparsesimError(f"{func}() failed: {type(err).__name__}: {err}", file=path,
                             field="--model") from None
    finally:
        sys.path.remove(str(file.resolve().parent))
    return _user_model(out, path, func)


def _user_model(out: Any, path: str, func: str) -> UserModel:
    shape = "(model, example_inputs) or (model, args, kwargs)"
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise SparsesimError(f"{func}() must return {shape}, got {type(out).__name__}",
                             file=path, field="--model")
    model = out[0]
    if not isinstance(model, nn.Module):
        raise SparsesimError(f"{func}() returned a {type(model).__name__} as the model, not a "
                             "torch.nn.Module", file=path, field="--model")
    if len(out) == 3:
        args, kwargs = out[1], out[2]
    elif isinstance(out[1], Mapping):
        args, kwargs = (), out[1]
    elif isinstance(out[1], torch.Tensor):
        args, kwargs = (out[1],), {}
    else:
        args, kwargs = out[1], {}
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, Mapping):
        raise SparsesimError(f"{func}() must return {shape} with args a tuple and kwargs a "
                             "dict", file=path, field="--model")
    return UserModel(model, tuple(args), dict(kwargs), f"{Path(path).stem}.{func}",
                     f"{type(model).__name__} from {path}:{func} (torch.export)")



def user_trace(spec: str, prune: Any = None, *, allow_uncaptured: float = 0.0,
               sim_batch: int | None = None) -> Any:
    """Load ``file.py:factory``, capture it by graph (the parity gate at ``allow_uncaptured``)
    and return its trace: pruned by ``prune`` (a :class:`~sparsesim.prune.spec.PruneSpec`,
    weight granularities) or, with ``None``, as it is (its own zeros); ``sim_batch``: simulate
    the first N of the calibration samples (:func:`~sparsesim.prune.torch.export.capture`)."""
    from sparsesim.prune.torch.export import capture

    user = load_factory(spec)
    path = spec.rpartition(":")[0]
    if prune is not None and prune.criterion in ("taylor", "fisher"):
        raise SparsesimError(f"criterion {prune.criterion!r} needs a loss; a user's model "
                             "ships none: use magnitude, random or wanda", field="--method")
    try:
        cap = capture(user.model, user.args, user.kwargs, name=user.name, source=user.source,
                      allow_uncaptured=allow_uncaptured,
                      norms=prune is not None and prune.criterion == "wanda",
                      sim_batch=sim_batch)
    except SparsesimError as err:
        raise err.located(file=path) from None
    if prune is not None and prune.calibration == "sequential":
        from sparsesim.prune.torch.sequential import sequential_masks

        masks, passes = sequential_masks(cap, prune)
        return cap.trace(prune, masks=masks, meta={"calibration_passes": passes})
    return cap.trace(prune)

__all__ = ["UserModel", "load_factory", "user_trace"]
