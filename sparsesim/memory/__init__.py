"""Memory: DRAM → SRAM (A, W, O buffers) → array, for one GEMM instance, in simpy.

Two steps, as STYLE.md asks: a pure function builds the :class:`FoldSchedule` (which tile
each fold needs and how many bytes every tile is in its storage format:
:mod:`~sparsesim.memory.schedule`), then :func:`simulate_gemm` runs it through a small
discrete-event machine (:mod:`~sparsesim.memory.machine`, ideal memory included);
:func:`simulate_tiled` picks the stream chunk (:mod:`~sparsesim.memory.tiling`); the result
types and the energy action counts are in :mod:`~sparsesim.memory.traffic`. The public names
are re-exported here.
"""

from __future__ import annotations

from sparsesim.memory.machine import simulate_gemm
from sparsesim.memory.schedule import (OPERANDS, FoldSchedule, OperandTiles, chunk_ladder,
                                       fold_schedule)
from sparsesim.memory.tiling import simulate_tiled
from sparsesim.memory.traffic import MemoryResult, OperandTraffic, actions

__all__ = [
    "OPERANDS",
    "FoldSchedule",
    "MemoryResult",
    "OperandTiles",
    "OperandTraffic",
    "actions",
    "chunk_ladder",
    "fold_schedule",
    "simulate_gemm",
    "simulate_tiled",
]
