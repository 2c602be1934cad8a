"""Sweeps: grids of simulations run in parallel, appended row by row, resumable after a crash.

A sweep spec is TOML::

    [sweep]
    name = "r18-sparsity"
    out = "r18_sparsity.csv"          # where rows go (relative to the spec file)

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
    "sparsity.weight_nm" = [2, 4]

Keys: ``workload``, ``arch``, ``trace``; ``TABLE.FIELD`` of the arch (``array.rows``,
``pe.kind``, ...); ``sparsity.FIELD`` of :class:`~sparsesim.sparsity.masks.SparsityModel`;
``training.FIELD`` (a training step: ``optimizer``, ``state_bits``, and ``grad_density``,
``grad_structure``, ``grad_nm`` of the gradient model); ``dynamic.FIELD`` (seeded per-input
pruning, :class:`~sparsesim.engine.dynamic.DynamicModel`: ``inputs``, ``channel_keep``,
``token_keep``, ``head_keep``, ``spread``, ``seed``). A dynamic point's totals are means
over its inputs, with ``cycles_p50`` and ``cycles_p99`` beside them.

Every finished point is appended at once, as one complete CSV line, to the results file, with
every parameter as a column, the whole-network totals, its status (``ok`` or ``error`` with
the message) and a ``point_id`` hashed from its parameters. Re-running the same spec skips the
points already in the file; a line cut short by a kill is dropped when the file is read back.
Points run in worker processes (``local``) or on a dask.distributed cluster (``dask``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from sparsesim.arch.config import Arch, load_arch, with_overrides
from sparsesim.api import simulate
from sparsesim.engine.dynamic import DynamicModel
from sparsesim.engine.inference import draw_trace
from sparsesim.errors import SparsesimError
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.report import ENERGY_COLUMNS
from sparsesim.sparsity.trace import Trace, load_trace, trace_accuracy
from sparsesim.engine.training import GradientModel, Training
from sparsesim.workload.network import Workload, load_workload

TOP_KEYS = {"workload", "arch", "trace"}
SPARSITY_FIELDS = {f.name for f in fields(SparsityModel)}
TRAINING_FIELDS = {"optimizer", "state_bits", "grad_density", "grad_structure", "grad_nm"}
DYNAMIC_FIELDS = {f.name for f in fields(DynamicModel)}
STATUS_COLUMNS = ("point_id", "status", "error", "elapsed_s")


@dataclass(frozen=True)
class SweepSpec:
    """What to run: ``points`` are full parameter dicts (base merged in), in order."""

    name: str
    points: tuple[dict[str, Any], ...]
    out: Path | None = None
    file: str | None = None
    params: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.points:
            raise SparsesimError("the sweep has no points", file=self.file, field="grid")


def point_id(params: Mapping[str, Any]) -> str:
    """A stable id of a point's parameters (order-independent)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec; every point is checked before anything runs."""
    file = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise SparsesimError(f"cannot read: {err.strerror}", file=file) from None
    except tomllib.TOMLDecodeError as err:
        raise SparsesimError(f"malformed TOML: {err}", file=file) from None
    return spec_from_dict(data, file=file, root=Path(path).parent)


def spec_from_dict(data: Mapping[str, Any], *, file: str | None = None,
                   root: Path | None = None) -> SweepSpec:
    for key in data:
        if key not in ("sweep", "base", "grid", "point"):
            raise SparsesimError("unknown table; expected sweep, base, grid, point", file=file,
                                 field=key)
    head = dict(data.get("sweep", {}))
    for key in head:
        if key not in ("name", "out"):
            raise SparsesimError("unknown key; expected name, out", file=file,
                                 field=f"sweep.{key}")
    base = dict(data.get("base", {}))
    grid = dict(data.get("grid", {}))
    explicit = list(data.get("point", []))
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
    out = head.get("out")
    out_path = None if out is None else (root or Path(".")) / str(out)
    return SweepSpec(str(head.get("name", Path(file).stem if file else "sweep")),
                     tuple(points), out_path, file, params)


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
            groups[table][name] = tuple(value) if isinstance(value, list) else value
        elif name:
            overrides[key] = value
        else:
            raise SparsesimError("unknown parameter; expected workload, arch, trace, "
                                 "TABLE.FIELD, sparsity.FIELD, training.FIELD or "
                                 "dynamic.FIELD", field=key)
    arch = _arch(str(params.get("arch", "default")))
    if overrides:
        arch = with_overrides(arch, overrides)
    sparsity = groups["sparsity"]
    model = SparsityModel(**sparsity) if sparsity else None
    training = None
    if groups["training"]:
        t = dict(groups["training"])
        grads = GradientModel(density=t.pop("grad_density", 1.0),
                              structure=t.pop("grad_structure", "unstructured"),
                              nm=t.pop("grad_nm", None))
        training = Training(grads, **t)
    trace = params.get("trace")
    return Point(str(params.get("workload", "resnet18")), arch, model,
                 None if trace is None else str(trace), training,
                 DynamicModel(**groups["dynamic"]) if groups["dynamic"] else None)


RESULT_COLUMNS = ("network", "layers", "dense_macs", "effectual_macs", "cycles",
                  "compute_cycles", "stall_cycles", "utilization", "seconds", "dram_read_bytes",
                  "dram_write_bytes", "energy_pj", *ENERGY_COLUMNS, "cycles_p50", "cycles_p99",
                  "inputs", "accuracy", "accuracy_metric")


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
        accuracy = trace_accuracy(result.trace_meta)
        if accuracy is not None:  # the pruned model's, a number beside its metric's name
            row.update(accuracy=accuracy.value, accuracy_metric=accuracy.metric)
        row.update(status="ok", error="")
    except SparsesimError as err:
        row.update(status="error", error=str(err))
    except Exception as err:
        row.update(status="error", error=f"{type(err).__name__}: {err}")
    row["elapsed_s"] = round(time.perf_counter() - start, 6)
    return row


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# --- results file -----------------------------------------------------------------------------


def read_results(path: Path) -> pd.DataFrame:
    """Finished rows of a results file; a last line cut short by a kill is ignored."""
    if not path.exists():
        return pd.DataFrame()
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # drop the partial line
    if not text.strip():
        return pd.DataFrame()
    return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])


class _Appender:
    """Appends complete CSV lines, flushed and fsynced one at a time (single writer)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            self._repair(path)
            header = path.read_text(encoding="utf-8").split("\n", 1)[0]
            existing = next(csv.reader([header]))
            if existing != self.columns:
                raise SparsesimError(
                    f"results file has other columns ({', '.join(existing)}); use another "
                    "--out or the same spec", file=str(path), field="columns")
        self.handle: TextIO = open(path, "a", encoding="utf-8", newline="")
        if not exists:
            self._write(self.columns)

    @staticmethod
    def _repair(path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            with open(path, "r+", encoding="utf-8") as handle:
                handle.truncate(len(text[: text.rfind("\n") + 1].encode()))

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


# --- executors --------------------------------------------------------------------------------


def _local(points: Sequence[dict[str, Any]], *, workers: int,
           scheduler: str | None = None) -> Iterator[dict[str, Any]]:
    if workers <= 1:
        for p in points:
            yield run_point(p)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_point, p) for p in points]
        for future in as_completed(futures):
            yield future.result()


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


class Progress:
    """One status line on stderr with rate and ETA, redrawn at most every ``every`` s."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.perf_counter()
        self.every = 0.5 if self.tty else 10.0  # a log file gets a line every 10 s

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        now = time.perf_counter()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else math.inf
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "█" * filled + "·" * (width - filled)
        text = (f"[{bar}] {self.done}/{self.total} points · {rate:.1f}/s · "
                f"ETA {_duration(eta)} · {self.failed} failed")
        end = "\r" if self.tty and self.done < self.total else "\n"
        self.stream.write(text + end)
        self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_sweep(spec: SweepSpec, *, out: Path | None = None, executor: str = "local",
              workers: int | None = None, scheduler: str | None = None,
              retry_failed: bool = False, progress: Progress | None | bool = True
              ) -> SweepSummary:
    """Run the points not yet in ``out``, appending each row as it finishes."""
    path = out or spec.out or Path(f"{spec.name}.csv")
    if executor not in EXECUTORS:
        raise SparsesimError(f"unknown executor {executor!r}; expected "
                             f"{', '.join(EXECUTORS)}", field="--executor")
    done = read_results(path)
    finished: set[str] = set()
    if not done.empty and "point_id" in done:
        keep = done if not retry_failed else done[done["status"] == "ok"]
        finished = set(keep["point_id"].astype(str))
    todo = [p for p in spec.points if point_id(p) not in finished]
    # Points sharing a workload and sparsity model run back to back, so workers reuse masks.
    todo.sort(key=lambda p: json.dumps({k: v for k, v in p.items()
                                        if k == "workload" or k.startswith("sparsity.")},
                                       sort_keys=True, default=str))
    columns = [*spec.params, *RESULT_COLUMNS, *STATUS_COLUMNS]
    appender = _Appender(path, columns)
    start = time.perf_counter()
    bar = Progress(len(todo)) if progress is True else (progress or None)
    failed = 0
    by_id = {point_id(p): p for p in todo}
    try:
        workers_n = workers if workers is not None else (os.cpu_count() or 1)
        for row in EXECUTORS[executor](todo, workers=workers_n, scheduler=scheduler):
            params = by_id[row["point_id"]]
            appender.append({**{k: _cell(v) for k, v in params.items()}, **row})
            failed += row["status"] != "ok"
            if bar is not None:
                bar.update(row["status"] == "ok")
    finally:
        appender.close()
    return SweepSummary(len(spec.points), len(todo), len(spec.points) - len(todo), failed,
                        time.perf_counter() - start, path)


def _cell(value: Any) -> Any:
    """Lists (e.g. an N:M ratio) become ``2:4``-style text in a CSV cell."""
    if isinstance(value, (list, tuple)):
        return ":".join(str(v) for v in value)
    return value
