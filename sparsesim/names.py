"""The names of the model's choices, defined once (the bottom layer).

Every registry (dataflows, PE kinds, the online unit's kinds, result row kinds), every config
validator, CLI choice list, help text and table title reads these enums; a name is added here
and in the registry that implements it, nowhere else. They are ``StrEnum``s, so a member *is*
its string: configs, TOML files, CSV columns and CLI arguments keep the plain names, and
``"os" == Dataflow.OS`` holds.
"""

from __future__ import annotations

from enum import StrEnum


class DataflowName(StrEnum):
    """Which GEMM operand stays in the PEs: output, weight or input stationary (DESIGN.md §3)."""

    OS = "os"
    WS = "ws"
    IS = "is"


class PeKind(StrEnum):
    """What a PE does with zeros: compute them, clock-gate them, skip them, or N:M hardware."""

    DENSE = "dense"
    GATE = "gate"
    SKIP = "skip"
    NM = "nm"


class PeOperand(StrEnum):
    """Whose zeros a gating or skipping PE acts on (``pe.operand``), and whose N:M metadata an
    N:M unit compresses K by (``pe.nm_operand``)."""

    A = "A"
    W = "W"
    BOTH = "both"


class NmMode(StrEnum):
    """How an N:M array ran a GEMM (the ``nm_mode`` result column): K compressed to K′, or
    uncompressed (no operand carried N:M metadata: dense weights, attention's score GEMMs, a
    non-conformant layer the arch lets run densely); ``none`` on arrays of other PE kinds."""

    NM = "nm"
    DENSE = "dense"
    NONE = "none"


class NmNonconformant(StrEnum):
    """What an N:M array does with a forward GEMM whose N:M operand is sparse but not
    conformant (``pe.nm_nonconformant``): refuse it (the N:M error) or run it densely."""

    REFUSE = "refuse"
    DENSE = "dense"


class Sync(StrEnum):
    """Which PEs a skipping array synchronises: each PE alone, a row, a column, or the whole
    wavefront of a fold."""

    PE = "pe"
    ROW = "row"
    COL = "col"
    WAVEFRONT = "wavefront"


class Operand(StrEnum):
    """The GEMM's tensors, ``O[M×N] = A[M×K] · W[K×N]``: each has its own buffer and format
    (config fields and result columns use the lower-case letter: ``format_w``, ``sram_read_bytes_w``)."""

    A = "A"
    W = "W"
    O = "O"  # noqa: E741


class MappingOrder(StrEnum):
    """Named temporal loop orders over a GEMM's folds (``mapping.order``;
    :mod:`sparsesim.mapping.loops`): SCALE-Sim's, or named by the operand whose tile stays
    while the innermost loop runs (its loop is the GEMM axis that operand lacks)."""

    SCALESIM = "scalesim"
    OUTPUT_REUSE = "output_reuse"
    WEIGHT_REUSE = "weight_reuse"
    INPUT_REUSE = "input_reuse"


class AttnOperand(StrEnum):
    """Attention's internal activations that carry masks (``LayerMasks.activations`` keys,
    trace members ``{i}/act/{name}``): the queries, keys, values, probabilities and the
    O projection's input (the heads' concatenated context)."""

    Q = "q"
    K = "k"
    V = "v"
    P = "p"
    O_IN = "o_in"


class OnlineKind(StrEnum):
    """How the online pruning unit on the array's output path drops activations."""

    THRESHOLD = "threshold"
    DYNAMIC = "dynamic"
    TOPK = "topk"
    NM = "nm"


class RowKind(StrEnum):
    """What a result row accounts for: a GEMM on the array, the online pruning unit, an
    optimizer update, or a dynamic gate's decision GEMM."""

    GEMM = "gemm"
    ONLINE = "online"
    UPDATE = "update"
    GATE = "gate"


def choices(names: type[StrEnum]) -> str:
    """``a, b, c``: the names as an error message or help text lists them."""
    return ", ".join(names)


def check_complete(registry: object, names: type[StrEnum], what: str) -> None:
    """A registry keyed by ``names`` must implement every name and nothing else: called at
    import, so a name added to an enum without its implementation fails at once, not mid-run."""
    keys = set(registry)  # type: ignore[call-overload]
    missing, extra = set(names) - keys, keys - set(names)
    if missing or extra:
        raise RuntimeError(f"{what} registry out of step with {names.__name__}: "
                           f"missing {sorted(missing)}, unknown {sorted(extra)}")
