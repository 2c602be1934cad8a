"""The parity gate: an independent count of a forward pass's MACs, by PyTorch's own dispatch.

The count is :class:`torch.utils.flop_counter.FlopCounterMode` (PyTorch's formulas for
``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``convolution`` and the fused attention kernels),
halved (it counts a multiply-add as two FLOPs). It sees the aten ops the eager forward
dispatches, not our graph walk nor our lowering, so a GEMM the capture misses shows up as a
difference. One addition: PyTorch 2.13 registers no formula for the CPU flash-attention kernel
that ``scaled_dot_product_attention`` dispatches to on CPU, so without it SDPA's two GEMMs would
count as zero; we register PyTorch's own ``sdpa_flop`` for it (``2·b·h·l·s·(d_qk + d_v)``
FLOPs, the query heads' count also under GQA). The mathematical fallback SDPA takes with some
masks dispatches ``bmm``, which is counted anyway. And ``nn.MultiheadAttention`` (and
``nn.TransformerEncoderLayer``) in eval mode without grad takes an inference fast path, one
fused ``_native_multi_head_attention`` op that has no formula (it would count zero): the count
runs the eager forward with that fast path off (``torch.backends.mha``), the same math as the
exported graph's linear / attention / linear.

:func:`~sparsesim.prune.coverage.check_coverage` (shared with the ONNX import) is the gate:
captured MACs must equal the count, or the shortfall be at most the fraction the user allows;
otherwise one error listing the uncaptured ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils import flop_counter

from sparsesim.prune.coverage import Coverage, Uncaptured, check_coverage

_aten = torch.ops.aten


def _cpu_sdpa(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """PyTorch's registered ``sdpa_flop`` (already taking tensors, hence "raw")."""
    return int(flop_counter.sdpa_flop(*args, out_val=out_val, **kwargs))


_cpu_sdpa._get_raw = True  # type: ignore[attr-defined]
_EXTRA: dict[Any, Any] = {}
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA[_aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa


COUNTER = ("torch.utils.flop_counter.FlopCounterMode / 2 (eager forward; + sdpa_flop for the "
           "CPU flash-attention kernel)")
"""What :class:`~sparsesim.prune.coverage.Coverage` records as the torch capture's counter."""


def counter() -> flop_counter.FlopCounterMode:
    """A silent FlopCounterMode with the CPU attention formula added."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=dict(_EXTRA))


def macs_of(mode: flop_counter.FlopCounterMode) -> int:
    """MACs counted so far (FLOPs / 2)."""
    return int(mode.get_total_flops()) // 2


def count_call(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` under the counter: its result and the MACs it dispatched."""
    with counter() as mode:
        out = fn()
    return out, macs_of(mode)


def independent_macs(model: torch.nn.Module, args: Sequence[Any],
                     kwargs: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
    """Total MACs of the eager ``model(*args, **kwargs)`` (no grad) and MACs per aten op."""
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else False
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), counter() as mode:
            model(*args, **kwargs)
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fast)
    per_op = {str(op): int(v) // 2 for op, v in mode.get_flop_counts().get("Global", {}).items()}
    return macs_of(mode), per_op


__all__ = ["COUNTER", "Coverage", "Uncaptured", "check_coverage", "count_call", "counter",
           "independent_macs", "macs_of"]
