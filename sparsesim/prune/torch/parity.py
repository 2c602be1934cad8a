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

:func:`check_coverage` is the gate: captured MACs must equal the count, or the shortfall
be at most the fraction the user allows; otherwise one error listing the uncaptured ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import flop_counter

from sparsesim.errors import SparsesimError

_aten = torch.ops.aten


def _cpu_sdpa(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """PyTorch's registered ``sdpa_flop`` (already taking tensors, hence "raw")."""
    return int(flop_counter.sdpa_flop(*args, out_val=out_val, **kwargs))


_cpu_sdpa._get_raw = True  # type: ignore[attr-defined]
_EXTRA: dict[Any, Any] = {}
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA[_aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa


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


@dataclass(frozen=True, slots=True)
class Uncaptured:
    """A graph node whose MACs no workload layer holds, and why."""

    node: str
    op: str
    module: str
    macs: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "module": self.module, "macs": self.macs,
                "reason": self.reason}

    def line(self) -> str:
        return f"{self.module or 'model'} ({self.op}, node {self.node}): {self.macs} MACs, " \
               f"{self.reason}"


@dataclass(frozen=True, slots=True)
class Coverage:
    """Captured MACs against the independent count of the same forward pass."""

    captured_macs: int
    total_macs: int
    uncaptured: tuple[Uncaptured, ...] = ()

    @property
    def fraction(self) -> float:
        """Captured / total (1.0 for a model without GEMMs is meaningless: total 0 is refused)."""
        return self.captured_macs / self.total_macs if self.total_macs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"captured_macs": self.captured_macs, "total_macs": self.total_macs,
                "coverage": self.fraction,
                "counter": "torch.utils.flop_counter.FlopCounterMode / 2 (eager forward; "
                           "+ sdpa_flop for the CPU flash-attention kernel)",
                "uncaptured": [u.as_dict() for u in self.uncaptured]}


def check_coverage(cov: Coverage, allow: float = 0.0, *, file: str | None = None) -> None:
    """Refuse a capture that misses more than ``allow`` (a fraction) of the counted MACs, or
    that holds MACs the count does not (a capture bug: never allowed)."""
    if not 0 <= allow < 1:
        raise SparsesimError(f"must be in [0, 1), got {allow!r}", field="allow_uncaptured")
    if cov.total_macs <= 0:
        raise SparsesimError("the forward pass dispatched no GEMM (mm, addmm, bmm, "
                             "convolution, attention)", file=file, field="model")
    if cov.captured_macs > cov.total_macs:
        raise SparsesimError(f"captured {cov.captured_macs} MACs, more than the {cov.total_macs} "
                             "PyTorch counts for the same forward pass", file=file,
                             field="parity")
    missing = cov.total_macs - cov.captured_macs
    if missing > allow * cov.total_macs:
        listed = "; ".join(u.line() for u in cov.uncaptured) or (
            "no graph node accounts for them (the exported graph differs from the eager pass)")
        raise SparsesimError(
            f"{missing} of {cov.total_macs} MACs ({missing / cov.total_macs:.2%}) are not "
            f"captured, more than --allow-uncaptured {allow}: {listed}", file=file,
            field="parity")


__all__ = ["Coverage", "Uncaptured", "check_coverage", "count_call", "counter",
           "independent_macs", "macs_of"]
