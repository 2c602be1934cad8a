"""Identical work simulated once: a per-run cache of GEMM result rows (issue 20 item 3).

A transformer's blocks, a ResNet's repeated bottlenecks and a dense network's equal layers
lower to GEMMs that differ only in their names. :class:`GemmMemo` keeps the row of every GEMM
simulated in one run under a key (:func:`gemm_key`) that covers everything the row's numbers
depend on, so an identical GEMM reuses them and only its labels (network, layer, op, GEMM
name, row kind) are its own.

**What the key covers**, read from :func:`sparsesim.engine.inference.run_gemm` and what it
calls: the GEMM's shape, instance count, W operand kind and phase (its ``layer`` and
``name`` only label rows and errors); the whole :class:`~sparsesim.arch.config.Arch` (array
and dataflow, PE kind and operand, precision, memory incl. formats, energy config, clock —
more than every number needs, never less) and the energy table read from it; each operand
mask (A, W, O) by its content — shape, dtype, memory layout and a BLAKE2b digest of its
bit-packed values, never its object identity; and a convolution's im2col view by its
operand, orientation, the conv's geometry (the layer without its name) and the content of
its input mask.

**The memory state at entry does not matter.** :func:`sparsesim.memory.simulate_gemm`
builds a fresh machine per GEMM instance — a new simpy environment at cycle 0, an idle DRAM
channel, empty A/W/O buffers (:class:`sparsesim.memory.machine._Machine`) — and returns
numbers relative to it: no state passes from one GEMM to the next (DESIGN.md §4b: instances
run from cold buffers), so the key needs none. The pure helpers it calls cache only pure
functions of their arguments (tile sizes, touched pixels).

**Scope.** One cache per :func:`sparsesim.api.simulate` call (made there and passed down; no
module-level state). It is a mutable object on purpose — a cache — and only ever holds
finished rows. Errors are raised on a GEMM's first simulation, so a cached GEMM is one that
succeeded. ``memo=False`` runs every GEMM afresh: the same rows, more time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsesim.arch.config import Arch
from sparsesim.arch.energy import EnergyTable
from sparsesim.mapping.conv import ConvView
from sparsesim.mapping.gemm import GemmOperands

if TYPE_CHECKING:  # the rows' type lives in the module that uses this one
    from sparsesim.engine.inference import GemmResult

MaskKey = tuple[tuple[int, ...], str, tuple[int, ...], bytes] | None
"""A mask's content: (shape, dtype, axis order in memory, digest of its packed bits)."""


def mask_key(mask: np.ndarray | None) -> MaskKey:
    """``mask`` by content: its values bit-packed in its own memory order (axes sorted by
    stride, so a transposed view is read without the transposed copy) and hashed. Equal
    content in the same layout gives the same key; a different layout only misses."""
    if mask is None:
        return None
    m = np.asarray(mask)
    order = tuple(int(x) for x in np.argsort([-s for s in m.strides], kind="stable"))
    flat = np.ascontiguousarray(m.transpose(order)).reshape(-1)
    digest = hashlib.blake2b(np.packbits(flat).data, digest_size=20).digest()
    return (tuple(m.shape), m.dtype.str, order, digest)


def view_key(view: ConvView | None) -> tuple[Any, ...] | None:
    """A convolution's im2col view by geometry and input content (its layer's name aside)."""
    if view is None:
        return None
    conv = view.im2col.layer
    geometry = tuple(getattr(conv, f.name) for f in fields(conv) if f.name != "name")
    return (view.operand, view.transposed, type(conv), geometry, mask_key(view.im2col.inputs))


def gemm_key(ops: GemmOperands, arch: Arch, table: EnergyTable) -> tuple[Any, ...]:
    """Everything a GEMM's result row depends on but its labels (see the module docstring)."""
    g = ops.gemm
    return (g.m, g.k, g.n, g.count, g.w_kind, g.phase, arch, table,
            mask_key(ops.a), mask_key(ops.w), mask_key(ops.o), view_key(ops.view))


@dataclass(slots=True)
class GemmMemo:
    """Rows of GEMMs already simulated in one run, by :func:`gemm_key`; ``hits`` and
    ``misses`` count the look-ups (a hit is a GEMM not simulated again)."""

    rows: dict[tuple[Any, ...], GemmResult] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, key: tuple[Any, ...]) -> GemmResult | None:
        row = self.rows.get(key)
        if row is None:
            self.misses += 1
        else:
            self.hits += 1
        return row

    def put(self, key: tuple[Any, ...], row: GemmResult) -> None:
        self.rows[key] = row
