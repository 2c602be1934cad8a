"""The parity gate's verdict, shared by every graph capture (torch.export, ONNX).

A capture's layers hold some MACs; an independent count of the same forward pass (PyTorch's
own dispatch for torch, a per-node count from the shapes for ONNX: neither is our lowering)
gives the total. :func:`check_coverage` refuses a capture that misses more than the fraction
the user allows, with one error listing the uncaptured ops; one that holds *more* MACs than
the count is a capture bug and never allowed. No framework is imported here, so the ONNX path
runs without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparsesim.errors import SparsesimError


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
    """Captured MACs against the independent count (``counter`` says which) of the same
    forward pass."""

    captured_macs: int
    total_macs: int
    uncaptured: tuple[Uncaptured, ...] = ()
    counter: str = ""

    @property
    def fraction(self) -> float:
        """Captured / total (1.0 for a model without GEMMs is meaningless: total 0 is refused)."""
        return self.captured_macs / self.total_macs if self.total_macs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"captured_macs": self.captured_macs, "total_macs": self.total_macs,
                "coverage": self.fraction, "counter": self.counter,
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
                             "the independent count finds for the same forward pass", file=file,
                             field="parity")
    missing = cov.total_macs - cov.captured_macs
    if missing > allow * cov.total_macs:
        listed = "; ".join(u.line() for u in cov.uncaptured) or (
            "no graph node accounts for them (the exported graph differs from the eager pass)")
        raise SparsesimError(
            f"{missing} of {cov.total_macs} MACs ({missing / cov.total_macs:.2%}) are not "
            f"captured, more than --allow-uncaptured {allow}: {listed}", file=file,
            field="parity")


__all__ = ["Coverage", "Uncaptured", "check_coverage"]
