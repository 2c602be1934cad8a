"""The checks' common ground: result rows, anchors and their sources, the run context, the
registry of check functions (in report order) and running it.

Each check compares what the simulator reports with an external anchor under a tolerance fixed
in its module before the run, and returns frozen :class:`Check` rows (pass or fail, never tuned
after the fact). Adding a check is one function and its registration, in the module of its
group (which adds its report section with :func:`add_group`)::

    @register("nm", fast=True)
    def _nm_something(ctx: Context) -> list[Check]:
        ...
        return [Check(id="nm.something", group="nm", what=..., anchor=..., source=...,
                      ours=..., tolerance=..., passed=..., note=...)]

Numeric anchors live in :data:`ANCHORS` (a test overrides one to see the command fail).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsesim.arch.config import Arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.progress import ProgressFactory
from sparsesim.validation.data import data_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# results, anchors, registry


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the report: what is compared, the anchor and where it comes from, our
    figure, the tolerance fixed before the run, and whether ours falls inside it."""

    id: str
    group: str
    what: str
    anchor: str
    source: str
    ours: str
    tolerance: str
    passed: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    """A report section: its title and the setting and differences, in words."""

    title: str
    text: str


@dataclass(frozen=True, slots=True)
class FigureFile:
    group: str
    file: str
    caption: str


@dataclass(frozen=True, slots=True)
class ValidationRun:
    """What :func:`run_checks` returns: the rows, the figures written, per-group notes."""

    checks: tuple[Check, ...]
    figures: tuple[FigureFile, ...]
    notes: Mapping[str, tuple[str, ...]]
    fast: bool
    seconds: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)


ANCHORS: dict[str, Any] = {
    # 2:4 on K: the streamed steps of a fold halve (DESIGN.md §3: K' = floor(K/4)·2 + ...).
    "nm.compute_ratio": 2.0,
    # Sparseloop artifact, Fig. 1: energy of bitmask+gating and coordinate list+skipping cross
    # between the 4 % and 8 % densities of its sweep.
    "sparseloop.crossover": (0.04, 0.08),
    # Cnvlutin over DaDianNao, zero activations skipped: 1.24x to 1.55x (1.37x average).
    "cnvlutin.speedup": (1.24, 1.55),
    "cnvlutin.average": 1.37,
    # SCNN over a comparably provisioned dense accelerator (DCNN): 2.7x perf, 2.3x energy.
    "scnn.speedup": 2.7,
    "scnn.energy": 2.3,
}
"""Numeric anchors by name (the published or derived figure each check is held to)."""

SOURCES = {
    "scalesim": "SCALE-Sim v3.0.0 (pip `scalesim`)",
    "design": "DESIGN.md §2–3 (the seed's closed forms), written again in sparsesim/validate.py",
    "nm": "2:4 arithmetic: K' = floor(K/4)·2 + min(2, K mod 4); 16-bit values + 2-bit indices",
    "sparseloop": "Wu et al., Sparseloop, MICRO 2022, Fig. 1; artifact "
                  "Accelergy-Project/micro22-sparseloop-artifact, fig1_format_comparison_setup",
    "cnvlutin": "Albericio et al., Cnvlutin, ISCA 2016 (abstract: 1.24x–1.55x, 1.37x average)",
    "scnn": "Parashar et al., SCNN, ISCA 2017 (abstract: 2.7x performance, 2.3x energy)",
    "registers": "closed form of the PE register level (sparsesim.validation.registers)",
}


@dataclass
class Context:
    """Settings of one validation run and what its checks leave for the report."""

    fast: bool
    out_dir: Path
    data_dir: Path = field(default_factory=data_path)
    live: bool = False
    scalesim_python: str | None = None
    anchors: Mapping[str, Any] = field(default_factory=lambda: dict(ANCHORS))
    figures: list[FigureFile] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def note(self, group: str, text: str) -> None:
        self.notes.setdefault(group, []).append(text)

    def save_figure(self, fig: Figure, group: str, name: str, caption: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            fig.savefig(self.out_dir / name, dpi=150, bbox_inches="tight")
        except OSError as err:
            raise SparsesimError(f"cannot write the figure: {err.strerror}",
                                 file=str(self.out_dir / name)) from None
        self.figures.append(FigureFile(group, name, caption))


CheckFn = Callable[[Context], list[Check]]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    name: str
    group: str
    fast: bool
    live: bool
    fn: CheckFn


CHECKS: dict[str, CheckSpec] = {}
"""The registry, in report order."""


def register(group: str, *, fast: bool, live: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Add a check function to :data:`CHECKS` as ``group.name`` (its function name without
    the leading ``_group_``); ``fast`` puts it in the test-suite subset, ``live`` runs it only
    when asked to run SCALE-Sim itself."""

    def add(fn: CheckFn) -> CheckFn:
        name = f"{group}.{fn.__name__.lstrip('_').removeprefix(group + '_')}"
        if name in CHECKS:
            raise ValueError(f"check {name} registered twice")
        CHECKS[name] = CheckSpec(name, group, fast, live, fn)
        return fn

    return add


GROUPS: dict[str, Group] = {}
"""The report's sections by group key, in report order (each group module adds its own)."""


def add_group(key: str, group: Group) -> Group:
    """Add a group's report section to :data:`GROUPS` (its checks register under ``key``)."""
    if key in GROUPS:
        raise ValueError(f"group {key} added twice")
    GROUPS[key] = group
    return group


# ---------------------------------------------------------------------------------------------
# what check functions share: row text, exact-count rows, the no-stall arch


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _count_text(good: int, total: int, what: str) -> str:
    return f"{good}/{total} {what}"


def exact_row(*, id: str, group: str, what: str, anchor: str, source: str,
              good: int, total: int, unit: str, tolerance: str = "exact (0 difference)",
              failures: Sequence[str] = (), note: str = "") -> Check:
    extra = f"; first misses: {'; '.join(failures[:3])}" if failures else ""
    return Check(id=id, group=group, what=what, anchor=anchor, source=source,
                 ours=_count_text(good, total, unit), tolerance=tolerance,
                 passed=good == total and total > 0, note=(note + extra).strip("; "))


def ideal_memory(arch: Arch) -> Arch:
    """``arch`` with memory that never stalls (the compute-only checks)."""
    return with_overrides(arch, {"memory.ideal": True})


def run_checks(*, fast: bool, out_dir: Path, live: bool = False, data_dir: Path | None = None,
               scalesim_python: str | None = None, only: Sequence[str] | None = None,
               anchors: Mapping[str, Any] | None = None,
               progress: ProgressFactory | None = None) -> ValidationRun:
    """Run the registered checks (``fast``: the test-suite subset) and return their rows.

    ``live`` adds the checks that run SCALE-Sim itself (the interpreter:
    :func:`~sparsesim.validation.scalesim_runner.scalesim_python` of ``scalesim_python``);
    ``only`` keeps the checks whose registered name starts with one of its prefixes
    (``"nm"``, ``"scalesim.cycles"``); ``anchors`` overrides entries of :data:`ANCHORS`.
    Figures go to ``out_dir``. A check that raises is reported as a failed row with the error.
    ``progress`` (:mod:`sparsesim.progress`) is told of each check group run.
    """
    start = time.perf_counter()
    ctx = Context(fast=fast, out_dir=Path(out_dir), data_dir=data_dir or data_path(), live=live,
                  scalesim_python=scalesim_python, anchors={**ANCHORS, **(anchors or {})})
    specs = [s for s in CHECKS.values()
             if (s.live and live) or (not s.live and (s.fast or not fast))]
    if only:
        specs = [s for s in specs if any(s.name.startswith(p) for p in only)]
    if not specs:
        raise SparsesimError(f"no check matches {', '.join(only or [])}; checks: "
                             f"{', '.join(CHECKS)}", field="--only")
    checks: list[Check] = []
    bar = progress(len(specs), "check groups") if progress else None
    for spec in specs:
        t0 = time.perf_counter()
        try:
            checks.extend(spec.fn(ctx))
        except Exception as err:  # a crashed check is a failed row, with its error
            log.exception("check %s raised", spec.name)
            checks.append(Check(id=spec.name, group=spec.group, what=spec.name,
                                anchor="—", source="—", ours="error", tolerance="—",
                                passed=False, note=f"{type(err).__name__}: {err}"))
        log.info("%s: %.1f s", spec.name, time.perf_counter() - t0)
        if bar is not None:
            bar.update(all(c.passed for c in checks[-1:]))
    return ValidationRun(tuple(checks), tuple(ctx.figures),
                         {g: tuple(v) for g, v in ctx.notes.items()}, fast,
                         time.perf_counter() - start)

