"""torchvision's model code beside the pinned CPU torch, offline.

PyPI's torchvision wheel (0.28.0 is the release for torch 2.13.0; ``pip install
-c constraints.txt torchvision`` keeps the CPU torch and picks it) installs cleanly, but its
compiled ops (``torchvision/_C.so``) link the CUDA build of torch (``libc10_cuda.so``,
``libtorch_cuda.so``) and do not load beside the CPU build; ``import torchvision`` then stops
with ``operator torchvision::nms does not exist``, raised while it registers fake kernels for
those ops (``torchvision._meta_registrations``). The model code (ResNet, MobileNet, ViT,
Inception, DeepLab, and timm, which imports torchvision) uses none of them: with that one
registration module stubbed, everything but the compiled detection ops (``nms``,
``roi_align``, …, which then fail when called) imports and runs. :func:`import_torchvision`
imports torchvision as it is and falls back to the stub only on that failure.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import Any

log = logging.getLogger(__name__)

_STUBBED = "torchvision._meta_registrations"


def _missing_ops(err: BaseException) -> bool:
    text = str(err)
    return "torchvision::" in text or "_C.so" in text or "libc10" in text


def import_torchvision() -> Any:
    """``torchvision``, imported beside a torch build its compiled ops do not fit (see the
    module docstring): its model code without those ops. Raises ``ImportError`` when it is
    not installed; any other import failure is raised as it is."""
    try:
        return importlib.import_module("torchvision")
    except (RuntimeError, OSError) as err:
        if not _missing_ops(err):
            raise
        log.warning("torchvision's compiled ops do not load beside this torch build (%s): "
                    "using its model code without them", str(err).splitlines()[0])
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules[_STUBBED] = types.ModuleType(_STUBBED)
    return importlib.import_module("torchvision")


__all__ = ["import_torchvision"]
