"""Sweeps: grids of simulations run in parallel, appended row by row, resumable after a crash.

A sweep spec is TOML::

    [sweep]
    name = "r18-sparsity"
    out = "r18_sparsity.csv"          # where rows go (inside the spec file's folder;
                                      # without it NAME.csv there)

    [base]                            # fixed for every point
    workload = "resnet18"
    arch = "default"
    "pe.operand" = "both"

    [grid]                            # the cartesian product of these lists
    "sparsity.weight_density" = [1.0, 0.5, 0.2, 0.1]
    "pe.kind" = ["dense", "skip"]
    "array.rows" = [16, 32]

    [[point]]                         # and/or explicit points (merged over [base])
    "pe.kind" = "nm"
    "sparsity.weight_nm" = [2, 4]     # or "2:4"

    [constraints]                     # optional budget: judged, never filtered
    area_mm2 = "<= 2"                 # OP NUMBER (<=, <, >=, >); a bare number means <=
    power_avg_w = "<= 1"

Keys: ``workload``, ``arch``, ``trace``; ``TABLE.FIELD`` of the arch (``array.rows``,
``pe.kind``, ...); ``sparsity.FIELD`` of :class:`~sparsesim.sparsity.masks.SparsityModel`
(not with ``trace``, whose layers and masks are already pruned: refused, as ``run`` does);
``training.FIELD`` (a training step: ``optimizer``, ``state_bits``, and ``grad_density``,
``grad_structure``, ``grad_nm`` of the gradient model); ``dynamic.FIELD`` (seeded per-input
pruning, :class:`~sparsesim.engine.dynamic.DynamicModel`: ``inputs``, ``channel_keep``,
``token_keep``, ``head_keep``, ``spread``, ``seed``). A dynamic point's totals are means
over its inputs, with ``cycles_p50`` and ``cycles_p99`` beside them.

Budgets (:mod:`sparsesim.budget`): ``[constraints]`` bounds numeric result columns
(:data:`BUDGET_COLUMNS`: ``area_mm2``, ``power_avg_w``, ``cycles``, ...). A sweep never loses a
row to them: every row records ``within_budget`` (empty for a failed point) and the ``budget``
text it was judged under; :func:`load_results` of a spec judges the rows again under the spec's
current constraints, so editing them needs no re-run.

Every finished point is appended at once, as one complete CSV line, to the results file, with
every parameter as a column, the whole-network totals, its status (``ok`` or ``error`` with
the message) and a ``point_id`` hashed from its parameters. Re-running the same spec skips the
points already in the file; a line cut short by a kill is dropped when the file is read back.
Points run in worker processes (``local``) or on a dask.distributed cluster (``dask``).

Safety: a spec's ``out`` stays inside its folder (``--out`` on the command line writes
elsewhere); the results file is locked while a sweep writes it (a second sweep on it is
refused) and checked before any byte of it changes; local workers exit when the main process
dies; a failed point's message is one line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from sparsesim.arch.config import Arch, load_arch, with_overrides
from sparsesim.api import simulate
from sparsesim.area import area_breakdown
from sparsesim.budget import Constraint, budget_from_table, budget_text, judge
from sparsesim.engine.dynamic import DynamicModel
from sparsesim.engine.inference import draw_trace
from sparsesim.errors import SparsesimError
from sparsesim.files import output_file, read_text, read_toml, regular_file
from sparsesim.formats.registry import as_format
from sparsesim.frames import frame_format, read_frame, write_frame
from sparsesim.progress import Progress
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.report import ENERGY_COLUMNS
from sparsesim.rules.nm import parse_nm
from sparsesim.sparsity.trace import Trace, load_trace, trace_accuracy
from sparsesim.engine.training import GradientModel, Training
from sparsesim.workload.network import Workload, load_workload

TOP_KEYS = {"workload", "arch", "trace"}
SPARSITY_FIELDS = {f.name for f in fields(SparsityModel)}
TRAINING_FIELDS = {"optimizer", "state_bits", "grad_density", "grad_structure", "grad_nm"}
DYNAMIC_FIELDS = {f.name for f in fields(DynamicModel)}
STATUS_COLUMNS = ("point_id", "status", "error", "elapsed_s")
BUDGET_RESULT_COLUMNS = ("within_budget", "budget")


@dataclass(frozen=True)
class SweepSpec:
    """What to run: ``points`` are full parameter dicts (base merged in), in order."""

    name: str
    points: tuple[dict[str, Any], ...]
    out: Path | None = None
    file: str | None = None
    params: tuple[str, ...] = field(default=())
    constraints: tuple[Constraint, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.points:
            raise SparsesimError("the sweep has no points", file=self.file, field="grid")

    @property
    def columns(self) -> tuple[str, ...]:
        """The results file's header: every parameter, the totals, the status columns."""
        return (*self.params, *RESULT_COLUMNS, *BUDGET_RESULT_COLUMNS, *STATUS_COLUMNS)


def spec_keys() -> dict[str, tuple[str, ...]]:
    """Every key a point may set, by group (the ``sweep --help`` text is made from this)."""
    arch = Arch().to_dict()
    keys: dict[str, tuple[str, ...]] = {"": tuple(sorted(TOP_KEYS))}
    for table, entries in arch.items():
        names = sorted(set(entries) - {"name", "description"} if table == "arch" else entries)
        if table == "energy":
            from sparsesim.arch.energy import ENERGY_TABLE_KEYS
            names = ["table", *ENERGY_TABLE_KEYS]
        keys[table] = tuple(names)
    keys.update(sparsity=tuple(sorted(SPARSITY_FIELDS)), training=tuple(sorted(TRAINING_FIELDS)),
                dynamic=tuple(sorted(DYNAMIC_FIELDS)))
    return keys


def point_id(params: Mapping[str, Any]) -> str:
    """A stable id of a point's parameters (order-independent)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec; every point is checked before anything runs."""
    file = str(path)
    data = read_toml(path, what="sweep spec")
    return spec_from_dict(data, file=file, root=Path(path).parent)


def spec_from_dict(data: Mapping[str, Any], *, file: str | None = None,
                   root: Path | None = None) -> SweepSpec:
    """The spec of parsed TOML; ``root`` is the folder its ``out`` is relative to (and
    confined to: a spec file cannot make a sweep write elsewhere)."""
    for key in data:
        if key not in ("sweep", "base", "grid", "point", "constraints"):
            raise SparsesimError("unknown table; expected sweep, base, grid, point, "
                                 "constraints", file=file, field=key)
    head, base, grid = (_table(data, key, file) for key in ("sweep", "base", "grid"))
    constraints = budget_from_table(_table(data, "constraints", file), BUDGET_COLUMNS, file=file)
    for key in head:
        if key not in ("name", "out"):
            raise SparsesimError("unknown key; expected name, out", file=file,
                                 field=f"sweep.{key}")
    explicit = data.get("point", [])
    if not isinstance(explicit, list) or not all(isinstance(p, dict) for p in explicit):
        raise SparsesimError("[[point]] must be an array of tables", file=file, field="point")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SparsesimError("a grid entry must be a non-empty list", file=file,
                                 field=f"grid.{key}")
    points: list[dict[str, Any]] = []
    if grid:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            points.append({**base, **dict(zip(keys, combo))})
    for extra in explicit:
        points.append({**base, **extra})
    if not points and base:
        points.append(dict(base))
    names = sorted({k for p in points for k in p})
    for i, p in enumerate(points):
        p.setdefault("workload", "resnet18")
        p.setdefault("arch", "default")
        try:
            build_point(p)
        except SparsesimError as err:
            raise SparsesimError(f"point {i + 1} {_short(p)}: {err.message}", file=file,
                                 layer=err.layer, field=err.field) from None
    params = tuple(dict.fromkeys(["workload", "arch", *names]))
    name = head.get("name", Path(file).stem if file else "sweep")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise SparsesimError(f"must be a plain name (no folders), got {name!r}", file=file,
                             field="sweep.name")
    out = head.get("out")
    if out is None and root is not None:  # beside the spec, as a spec's out is: not the cwd
        out_path: Path | None = root / f"{name}.csv"
    else:
        out_path = None if out is None else _confined(out, root or Path("."), file)
    return SweepSpec(name, tuple(points), out_path, file, params, constraints)


def _table(data: Mapping[str, Any], key: str, file: str | None) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SparsesimError(f"[{key}] must be a table, got {type(value).__name__}", file=file,
                             field=key)
    return dict(value)


def _confined(out: Any, root: Path, file: str | None) -> Path:
    """``out`` resolved inside ``root``: an absolute path or one climbing out is refused
    (``--out`` on the command line is the way to write elsewhere)."""
    if not isinstance(out, str) or not out:
        raise SparsesimError(f"must be a file name, got {out!r}", file=file, field="sweep.out")
    path = Path(out)
    inside = (root / path).resolve()
    if path.is_absolute() or not inside.is_relative_to(root.resolve()):
        raise SparsesimError(f"{out!r} is outside the spec's folder; give --out to write "
                             "elsewhere", file=file, field="sweep.out")
    return root / path


def _short(params: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in params.items()) + "}"


@lru_cache(maxsize=32)
def _workload(name: str) -> Workload:
    return load_workload(name)


@lru_cache(maxsize=4)
def _drawn(workload: str, model: SparsityModel) -> Trace:
    """Masks drawn once per worker for a (workload, model): points that vary only the
    hardware reuse them (the same masks a direct run would draw, seed for seed)."""
    return draw_trace(_workload(workload), model)


@lru_cache(maxsize=32)
def _arch(name: str) -> Arch:
    return load_arch(name)


@dataclass(frozen=True)
class Point:
    """One point, built: what :func:`run_point` simulates."""

    workload: str
    arch: Arch
    sparsity: SparsityModel | None
    trace: str | None
    training: Training | None
    dynamic: DynamicModel | None


_GROUPS = {"sparsity": SPARSITY_FIELDS, "training": TRAINING_FIELDS, "dynamic": DYNAMIC_FIELDS}


def build_point(params: Mapping[str, Any]) -> Point:
    """The workload, arch, models and trace of one point; errors name the field."""
    overrides: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
    for key, value in params.items():
        if key in TOP_KEYS:
            continue
        table, _, name = key.partition(".")
        if table in _GROUPS:
            if name not in _GROUPS[table]:
                raise SparsesimError(f"unknown {table} field; expected one of "
                                     f"{', '.join(sorted(_GROUPS[table]))}", field=key)
            if name.endswith("_nm") and isinstance(value, str):  # "2:4" as the CLI writes it
                value = parse_nm(value, field=key)
            groups[table][name] = tuple(value) if isinstance(value, list) else value
        elif name:
            overrides[key] = value
        else:
            raise SparsesimError("unknown parameter; expected workload, arch, trace, "
                                 "TABLE.FIELD, sparsity.FIELD, training.FIELD or "
                                 "dynamic.FIELD", field=key)
    for key in ("workload", "arch", "trace"):
        if key in params and not isinstance(params[key], str):
            raise SparsesimError(f"must be a name or a path, got {params[key]!r}", field=key)
    workload = str(params.get("workload", "resnet18"))
    if "trace" not in params:
        _workload(workload)  # an unknown workload fails now, not in every point
    arch = _arch(str(params.get("arch", "default")))
    if overrides:
        arch = with_overrides(arch, overrides)
    for op in ("a", "w", "o"):
        try:
            as_format(arch.memory.format_spec(op))
        except SparsesimError as err:
            raise SparsesimError(err.message, field=f"memory.format_{op}") from None
    sparsity = groups["sparsity"]
    if sparsity and params.get("trace") is not None:  # else silently ignored: the trace's
        # layers are already shaped (heads, tokens, KV) and masked (Q, K, V, P, O input)
        raise SparsesimError("a trace carries its own layers and masks (heads, tokens, KV "
                             "entries, attention internals): drop the sparsity fields",
                             field=f"sparsity.{sorted(sparsity)[0]}")
    with _group("sparsity"):
        model = SparsityModel(**sparsity) if sparsity else None
    training = None
    with _group("training"):
        if groups["training"]:
            t = dict(groups["training"])
            grads = GradientModel(density=t.pop("grad_density", 1.0),
                                  structure=t.pop("grad_structure", "unstructured"),
                                  nm=t.pop("grad_nm", None))
            training = Training(grads, **t)
    with _group("dynamic"):
        dynamic = DynamicModel(**groups["dynamic"]) if groups["dynamic"] else None
    trace = params.get("trace")
    if trace is not None:
        regular_file(trace, field="trace", what="trace file")
    return Point(workload, arch, model, None if trace is None else str(trace), training,
                 dynamic)


@contextmanager
def _group(name: str) -> Iterator[None]:
    """Errors of a model's fields named as a point names them: ``sparsity.seed``."""
    try:
        yield
    except SparsesimError as err:
        field = err.field or name
        if not field.startswith(f"{name}."):
            field = f"{name}.{field}"
        raise SparsesimError(err.message, layer=err.layer, field=field) from None


RESULT_COLUMNS = ("network", "layers", "dense_macs", "effectual_macs", "cycles",
                  "compute_cycles", "stall_cycles", "utilization", "seconds", "dram_read_bytes",
                  "dram_write_bytes", "energy_pj", *ENERGY_COLUMNS, "area_mm2", "leakage_w",
                  "power_avg_w", "power_peak_w", "cycles_p50", "cycles_p99",
                  "inputs", "accuracy", "accuracy_metric", "accuracy_includes")

BUDGET_COLUMNS = tuple(c for c in RESULT_COLUMNS
                       if c not in ("network", "accuracy_metric", "accuracy_includes"))
"""The result columns a ``[constraints]`` budget may bound (the numeric ones)."""


def run_point(params: Mapping[str, Any]) -> dict[str, Any]:
    """Run one point and return its row; never raises (errors become the row's status)."""
    start = time.perf_counter()
    row: dict[str, Any] = {"point_id": point_id(params)}
    try:
        p = build_point(params)
        workload = _workload(p.workload)
        trace: Trace | str | None = p.trace
        if trace is None and p.sparsity is not None:
            trace = _drawn(p.workload, p.sparsity)
        dynamic = None
        if p.dynamic is not None:
            dynamic = p.dynamic.draw(workload if p.trace is None else
                                     load_trace(p.trace).workload)
        result = simulate(workload, p.arch, trace=trace, training=p.training,
                          dynamic=dynamic)
        totals = result.totals
        row.update({"network": result.workload.name, "layers": len(result.layers)})
        row.update({k: _plain(totals[k]) for k in RESULT_COLUMNS if k in totals})
        area = area_breakdown(p.arch)  # the arch's silicon: what an area budget bounds
        row.update(area_mm2=area.total_mm2, leakage_w=area.leakage_w)
        accuracy = trace_accuracy(result.trace_meta)
        if accuracy is not None:  # the pruned model's, a number beside its metric's name
            row.update(accuracy=accuracy.value, accuracy_metric=accuracy.metric)
            if accuracy.includes is not None:  # what it was measured with, "+"-joined
                row.update(accuracy_includes="+".join(accuracy.includes) or "dense")
        row.update(status="ok", error="")
    except SparsesimError as err:
        row.update(status="error", error=_one_line(str(err)))
    except Exception as err:  # a bug, not the point's fault: say so, in one line
        row.update(status="error",
                   error=_one_line(f"internal error ({type(err).__name__}): {err}"))
    row["elapsed_s"] = round(time.perf_counter() - start, 6)
    return row


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# --- results file -----------------------------------------------------------------------------


def load_results(path: str | Path) -> pd.DataFrame:
    """A sweep's results as one DataFrame, one row per point, from the results file (CSV,
    Parquet or JSON by its extension) or from the spec (``.toml``: its ``out``, else
    ``NAME.csv`` in the current folder, where ``sparsesim sweep`` writes)."""
    p = Path(path)
    spec = None
    if p.suffix.lower() == ".toml":
        spec = load_spec(p)
        p = spec.out or Path(f"{spec.name}.csv")
    if frame_format(p, field=None) == "csv":
        if not p.exists():
            raise SparsesimError("no such results file", file=str(p))
        df = read_results(p)
    else:
        df = read_frame(p)
    return df if spec is None or df.empty else judged(df, spec.constraints)


def judged(df: pd.DataFrame, constraints: Sequence[Constraint]) -> pd.DataFrame:
    """Rows judged under ``constraints``: ``within_budget`` (empty for failed points) and
    ``budget``; every row kept."""
    out = judge(df, constraints)
    if "status" in out:
        out["within_budget"] = out["within_budget"].astype(object).where(
            out["status"] == "ok", None)
    return out


def read_results(path: Path) -> pd.DataFrame:
    """Finished rows of a results CSV; a last line cut short by a kill is ignored."""
    if not path.exists():
        return pd.DataFrame()
    text = read_text(path, what="results CSV", limit=MAX_RESULTS_BYTES)
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # drop the partial line
    if not text.strip():
        return pd.DataFrame()
    try:
        return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SparsesimError(f"malformed results CSV: {str(err).strip()}",
                             file=str(path)) from None


#: A results file is a row per point (~1 kB): 1 GiB is a million points, far beyond a sweep.
MAX_RESULTS_BYTES = 2**30


class _Appender:
    """The results file, locked for one writer, appended one complete CSV line at a time.

    Opening locks the file (``flock``; a second sweep on it is refused, and the lock ends with
    the process however it ends), then checks the header *before* changing any byte: a file
    with other columns is refused untouched. Only then is a last line cut short by a kill
    dropped. Each row is flushed and fsynced as it is written.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        _writable_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle: TextIO = open(path, "a+", encoding="utf-8", newline="")
        try:
            self._lock(path)
            self.handle.seek(0)
            header = self.handle.readline()
            if header:
                existing = next(csv.reader([header]))
                if existing != self.columns:
                    raise SparsesimError(_other_columns(existing, self.columns),
                                         file=str(path), field="columns")
                self._repair()
            else:
                self._write(self.columns)
        except BaseException:
            self.handle.close()
            raise

    def _lock(self, path: Path) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SparsesimError("another sweep is writing this results file; wait for it "
                                 "or give another --out", file=str(path)) from None

    def _repair(self) -> None:
        """Drop a last line cut short by a kill (the file already passed the header check)."""
        self.handle.seek(0)
        text = self.handle.read()
        if text and not text.endswith("\n"):
            self.handle.truncate(len(text[: text.rfind("\n") + 1].encode()))
        self.handle.seek(0, os.SEEK_END)

    def _write(self, values: Sequence[Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        self.handle.write(buf.getvalue())
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def append(self, row: Mapping[str, Any]) -> None:
        self._write(["" if row.get(c) is None else row.get(c) for c in self.columns])

    def close(self) -> None:
        self.handle.close()


def _other_columns(existing: Sequence[str], expected: Sequence[str]) -> str:
    """Why a results file cannot be resumed: the columns it lacks and has beyond the schema
    (older code, or another spec), or their order."""
    missing = [c for c in expected if c not in existing]
    extra = [c for c in existing if c not in expected]
    what = "; ".join(f"{label}: {', '.join(cols)}" for label, cols in
                     (("missing", missing), ("not in this spec's schema", extra)) if cols)
    return (f"results file has other columns ({what or 'same names, other order'}), e.g. "
            "written by older code or another spec; use another --out or delete it")


def _writable_file(path: Path) -> None:
    """A results path must be a regular file or not exist yet, in a folder (not under a file)."""
    output_file(path, what="results")


# --- executors --------------------------------------------------------------------------------


def _local(points: Sequence[dict[str, Any]], *, workers: int,
           scheduler: str | None = None) -> Iterator[dict[str, Any]]:
    if workers <= 1:
        for p in points:
            yield run_point(p)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_watch_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(run_point, p) for p in points]
        for future in as_completed(futures):
            yield future.result()


def _watch_parent(parent: int) -> None:
    """In a worker: exit when the sweep's main process is gone (killed, not only stopped
    cleanly), instead of running orphaned points whose rows nobody writes."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="sparsesim-watch-parent").start()


def _dask(points: Sequence[dict[str, Any]], *, workers: int,
          scheduler: str | None = None) -> Iterator[dict[str, Any]]:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise SparsesimError("the dask executor needs the extra: pip install 'sparsesim[dask]'",
                             field="--executor") from None
    cluster = None
    if scheduler in (None, "local"):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=30)
        except OSError as err:
            raise SparsesimError(f"cannot reach the dask scheduler: {err}",
                                 field="--scheduler") from None
    try:
        futures = client.map(run_point, list(points), pure=False)
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


EXECUTORS: dict[str, Callable[..., Iterator[dict[str, Any]]]] = {"local": _local, "dask": _dask}


@dataclass(frozen=True, slots=True)
class SweepSummary:
    total: int
    ran: int
    skipped: int
    failed: int
    seconds: float
    out: Path
    """The results file asked for (CSV, Parquet or JSON)."""
    log: Path
    """The resumable CSV the rows were appended to (``out`` itself for a CSV)."""


def run_sweep(spec: SweepSpec, *, out: Path | None = None, executor: str = "local",
              workers: int | None = None, scheduler: str | None = None,
              retry_failed: bool = False, progress: Progress | None | bool = True
              ) -> SweepSummary:
    """Run the points not yet in ``out``, appending each row as it finishes.

    The resumable file is always a CSV (a point is one appended line). An ``out`` named
    ``.parquet``/``.pq``/``.json`` keeps that CSV beside it, same name with ``.csv``
    (``r.parquet`` → ``r.csv``), and is written from it, whole, when the sweep ends; any other
    extension is refused before anything runs (:func:`sparsesim.frames.frame_format`)."""
    target = out or spec.out or Path(f"{spec.name}.csv")
    _writable_file(target)
    fmt = frame_format(target, field="--out" if out is not None else "sweep.out")
    path = target if fmt == "csv" else target.with_suffix(".csv")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise SparsesimError(f"must be a positive number of workers, got {workers}",
                             field="--workers")
    if executor not in EXECUTORS:
        raise SparsesimError(f"unknown executor {executor!r}; expected "
                             f"{', '.join(EXECUTORS)}", field="--executor")
    appender = _Appender(path, spec.columns)  # locked and checked before anything is read or run
    try:
        done = read_results(path)
        finished: set[str] = set()
        if not done.empty and "point_id" in done:
            keep = done if not retry_failed else done[done["status"] == "ok"]
            finished = set(keep["point_id"].astype(str))
        todo = [p for p in spec.points if point_id(p) not in finished]
        # Points sharing a workload and sparsity model run back to back: workers reuse masks.
        todo.sort(key=lambda p: json.dumps({k: v for k, v in p.items()
                                            if k == "workload" or k.startswith("sparsity.")},
                                           sort_keys=True, default=str))
        start = time.perf_counter()
        bar = Progress(len(todo), "points") if progress is True else (progress or None)
        failed = 0
        by_id = {point_id(p): p for p in todo}
        workers_n = workers if workers is not None else (os.cpu_count() or 1)
        for row in EXECUTORS[executor](todo, workers=workers_n, scheduler=scheduler):
            params = by_id[row["point_id"]]
            appender.append({**{k: _cell(v) for k, v in params.items()}, **row,
                             **_judged_row(row, spec.constraints)})
            failed += row["status"] != "ok"
            if bar is not None:
                bar.update(row["status"] == "ok")
    finally:
        appender.close()
    if target != path:
        write_frame(read_results(path), target)
    return SweepSummary(len(spec.points), len(todo), len(spec.points) - len(todo), failed,
                        time.perf_counter() - start, target, path)


def _judged_row(row: Mapping[str, Any], constraints: Sequence[Constraint]) -> dict[str, Any]:
    """``within_budget`` and ``budget`` of one finished row (a failed point: unknown)."""
    if row.get("status") != "ok":
        return {"within_budget": None, "budget": budget_text(constraints)}
    judged_row = judge(pd.DataFrame([dict(row)]), constraints).iloc[0]
    return {"within_budget": bool(judged_row["within_budget"]),
            "budget": judged_row["budget"]}


def _cell(value: Any) -> Any:
    """Lists (e.g. an N:M ratio) become ``2:4``-style text in a CSV cell."""
    if isinstance(value, (list, tuple)):
        return ":".join(str(v) for v in value)
    return value
