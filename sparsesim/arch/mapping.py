"""How GEMMs are mapped onto the array in time: an arch's ``[mapping]`` table (pure data).

The spatial unrolling is the dataflow's (``[array] dataflow``); this table chooses the
temporal side, the same for every GEMM of a run unless a layer overrides it (the model and
what each value does: :mod:`sparsesim.mapping.loops`)::

    [mapping]
    order = "scalesim"     # or output_reuse | weight_reuse | input_reuse, or a loop order
                           # over the GEMM axes, outer to inner: ["n", "k", "m"]
    stream_tile = 0        # DRAM→SRAM tile length along the streamed axis (elements);
                           # 0: the tiling policy's choice (sparsesim.memory.tiling)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparsesim.arch.section import MAX_COUNT, Section
from sparsesim.errors import SparsesimError
from sparsesim.names import MappingOrder, choices

#: The GEMM axes a loop order permutes, ``O[m, n] = Σ_k A[m, k] · W[k, n]``.
GEMM_AXES = ("m", "k", "n")


@dataclass(frozen=True, slots=True)
class MappingConfig(Section):
    """The temporal mapping of every GEMM (:mod:`sparsesim.mapping.loops`).

    ``order``: a :class:`~sparsesim.names.MappingOrder` name, or the three GEMM axes
    ``m``, ``k``, ``n`` in loop order, outer to inner (a TOML list; kept as a tuple).
    ``stream_tile``: elements of the streamed axis per DRAM→SRAM tile (at most the axis'
    extent is taken: a tile cannot be longer than the tensor), ``0`` for the tiling policy.
    """

    order: str | tuple[str, ...] = MappingOrder.SCALESIM.value
    stream_tile: int = 0

    def __post_init__(self) -> None:
        order = self.order
        if isinstance(order, (list, tuple)):
            axes = tuple(order)
            if sorted(str(a) for a in axes) != sorted(GEMM_AXES) or \
                    not all(isinstance(a, str) for a in axes):
                raise SparsesimError(f"a loop order lists the GEMM axes m, k, n once each, "
                                     f"outer to inner, got {list(axes)!r}",
                                     field="mapping.order")
            object.__setattr__(self, "order", axes)
        elif not isinstance(order, str) or order not in tuple(MappingOrder):
            raise SparsesimError(f"unknown order {order!r}; expected one of "
                                 f"{choices(MappingOrder)}, or the axes m, k, n in loop "
                                 f"order (e.g. [\"n\", \"k\", \"m\"])", field="mapping.order")
        tile = self.stream_tile
        if isinstance(tile, bool) or not isinstance(tile, int) or not 0 <= tile <= MAX_COUNT:
            raise SparsesimError(f"must be 0 (the tiling policy's) or a positive integer of at "
                                 f"most {MAX_COUNT:,} elements, got {tile!r}",
                                 field="mapping.stream_tile")

    def to_table(self) -> dict[str, Any]:
        order = list(self.order) if isinstance(self.order, tuple) else str(self.order)
        return {"order": order, "stream_tile": self.stream_tile}
