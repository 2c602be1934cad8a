"""Workloads: a named, ordered list of layers, loaded from TOML or a SCALE-Sim topology CSV.

TOML schema (``workloads/*.toml`` are the examples)::

    [network]
    name = "resnet18"
    source = "He et al., CVPR 2016; torchvision resnet18"   # where the shapes come from
    decode_tokens = 16  # optional, decode workloads only: unroll T generated tokens
                        # (sparsesim.workload.decode)
    graph = true        # optional: the edges are known (default: when any layer names an
                        # input or a join is listed; sparsesim.workload.graph)

    [defaults]          # optional: a value for every layer whose kind has that field
    n = 1

    [[layer]]
    name = "conv1"
    op = "conv2d"       # conv2d | linear | attention | matmul | block
    c = 3
    ...

    [[layer]]           # a block repeats its body; layers are named "encoder.0.attn", ...
    name = "encoder"
    op = "block"
    repeat = 12
      [[layer.body]]
      name = "attn"
      op = "attention"
      input = "@block"  # optional: what it reads (sparsesim.workload.graph)

    [[layer]]           # a join: no MACs, only edges (add | mul | concat | layernorm)
    name = "res"
    op = "add"
    input = ["encoder.11.attn", "@input"]

SCALE-Sim CSVs are told apart by their header: the conv form starts ``Layer name, IFMAP
Height, ...``; the GEMM form is ``Layer, M, N, K``. They load with SCALE-Sim's own shape rules
(no padding, output ``ceil((H − R + s)/s)``; a layer whose name contains ``DP`` is C
single-channel convolutions) so that its files give its numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from sparsesim.errors import SparsesimError
from sparsesim.files import parse_toml, read_text, read_toml, regular_file
from sparsesim.rules.nm import parse_nm
from sparsesim.workload.decode import decode_steps
from sparsesim.workload.graph import GRAPH_OPS, NETWORK_INPUT, Graph, GraphBuilder
from sparsesim.workload.layers import LAYER_TYPES, Conv2d, Layer, MatMul, layer_fields

#: Most layers a workload may expand to (blocks repeated): ~2 ms of simulation each, so 10⁵ is
#: minutes, and hundreds of times the largest built-in (a few hundred layers).
MAX_LAYERS = 100_000
BLOCK_KEYS = frozenset({"name", "op", "repeat", "body"})
NETWORK_KEYS = frozenset({"name", "source", "description", "decode_tokens", "graph"})
JOIN_KEYS = frozenset({"name", "op", "input"})
TOP_KEYS = frozenset({"network", "defaults", "layer"})


@dataclass(frozen=True, slots=True)
class Workload:
    """A network as the simulator sees it: layers in execution order; ``graph`` their edges
    where they are known (``None``: unknown, nothing is removed across them)."""

    name: str
    layers: tuple[Layer, ...]
    source: str = ""
    file: str | None = None
    graph: Graph | None = None
    #: Per-layer overrides of the arch's ``[mapping]``: ``(layer name, ((key, value), ...))``,
    #: a layer's ``mapping`` table in the TOML (checked against the arch's mapping fields
    #: when the layer runs: :func:`sparsesim.engine.inference.layer_mappings`).
    mappings: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def __post_init__(self) -> None:
        if not self.layers:
            raise SparsesimError("a workload needs at least one layer", file=self.file,
                                 field="layer")
        seen: set[str] = set()
        for layer in self.layers:
            if layer.name in seen:
                raise SparsesimError("duplicate layer name", file=self.file, layer=layer.name,
                                     field="name")
            seen.add(layer.name)
        for name, _ in self.mappings:
            if name not in seen:
                raise SparsesimError("a mapping override for a layer the workload does not "
                                     "have", file=self.file, layer=name, field="mapping")
        if self.graph is not None:
            ops = {n.name: n.op for n in self.graph.nodes if n.is_layer}
            for layer in self.layers:
                if ops.get(layer.name) != layer.op:
                    raise SparsesimError("layer missing from the workload's graph",
                                         file=self.file, layer=layer.name, field="input")

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise SparsesimError("no such layer", file=self.file, layer=name)


def builtin_workloads() -> list[str]:
    """Names of the workloads shipped with the package."""
    root = resources.files("sparsesim.workload.builtin")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_workload(spec: str | Path, *, decode_tokens: int | None = None) -> Workload:
    """A built-in workload by name, or a ``.toml`` / SCALE-Sim ``.csv`` file by path.

    ``decode_tokens`` unrolls a decode workload over that many generated tokens
    (:func:`sparsesim.workload.decode.decode_steps`), in place of its TOML's
    ``[network] decode_tokens``."""
    path = Path(spec)
    if path.suffix.lower() in (".toml", ".csv") or path.exists():
        regular_file(path, what="workload file")
        if path.suffix.lower() == ".csv":
            csv_workload = load_scalesim_csv(path)
            if decode_tokens is None:
                return csv_workload
            return decode_steps(csv_workload, decode_tokens)
        return workload_from_dict(read_toml(path, what="workload file"), file=str(path),
                                  decode_tokens=decode_tokens)
    name = str(spec)
    if name not in builtin_workloads():
        raise SparsesimError(
            f"unknown workload {name!r}; built-in: {', '.join(builtin_workloads())}, "
            "or give a path to a .toml or SCALE-Sim .csv file", field="workload",
        )
    text = (resources.files("sparsesim.workload.builtin") / f"{name}.toml").read_text(encoding="utf-8")
    return _parse_toml(text, f"{name}.toml", decode_tokens)


def _parse_toml(text: str, file: str, decode_tokens: int | None = None) -> Workload:
    return workload_from_dict(parse_toml(text, file=file), file=file,
                              decode_tokens=decode_tokens)


def workload_from_dict(data: Mapping[str, Any], *, file: str | None = None,
                       decode_tokens: int | None = None) -> Workload:
    """Build a workload from parsed TOML; every error names the file, layer and field.

    ``decode_tokens`` (else ``[network] decode_tokens``, if given) unrolls a decode workload
    over that many generated tokens."""
    _reject_unknown(data, TOP_KEYS, file=file, layer=None)
    network = data.get("network", {})
    if not isinstance(network, Mapping) or "name" not in network:
        raise SparsesimError("missing [network] table with a name", file=file, field="network")
    _reject_unknown(network, NETWORK_KEYS, file=file, layer=None, prefix="network.")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise SparsesimError("must be a table", file=file, field="defaults")
    accepted = set().union(*(layer_fields(op) for op in LAYER_TYPES)) - {"name"}
    for key in defaults:
        if key not in accepted:
            raise SparsesimError("no layer kind has this field", file=file,
                                 field=f"defaults.{key}")
    entries = data.get("layer")
    if not isinstance(entries, list) or not entries:
        raise SparsesimError("needs at least one [[layer]]", file=file, field="layer")
    count = _count(entries)
    if count > MAX_LAYERS:
        raise SparsesimError(f"the blocks expand to {count:,} layers, more than {MAX_LAYERS:,} "
                             "(each is simulated: hours): lower a block's repeat", file=file,
                             field="repeat")
    declared = network.get("graph")
    if declared is not None and not isinstance(declared, bool):
        raise SparsesimError(f"must be true or false, got {declared!r}", file=file,
                             field="network.graph")
    builder = GraphBuilder()
    mappings: dict[str, tuple[tuple[str, Any], ...]] = {}
    try:
        layers = tuple(_expand(entries, defaults, prefix="", file=file, builder=builder,
                               scope={}, block_input=None, mappings=mappings))
        known = builder.declared if declared is None else declared
        graph = builder.graph() if known else None
        if graph is not None:
            check_edges(graph, layers)
        workload = Workload(
            name=str(network["name"]), layers=layers, source=str(network.get("source", "")),
            file=file, graph=graph, mappings=tuple(mappings.items()),
        )
    except SparsesimError as err:
        raise err.located(file=file) from None
    if decode_tokens is not None:
        return decode_steps(workload, decode_tokens)
    if "decode_tokens" in network:
        return decode_steps(workload, network["decode_tokens"], field="network.decode_tokens")
    return workload


def _count(entries: Any) -> int:
    """How many layers ``entries`` expand to, blocks repeated, without building them (a bad
    entry counts 1: :func:`_expand` names it)."""
    total = 0
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, Mapping) and entry.get("op") == "block":
            repeat, body = entry.get("repeat", 1), entry.get("body")
            if isinstance(repeat, int) and not isinstance(repeat, bool) and repeat > 0:
                total += repeat * _count(body)
                if total > MAX_LAYERS:
                    return total
                continue
        total += 1
    return total


def _expand(
    entries: Iterable[Any], defaults: Mapping[str, Any], *, prefix: str, file: str | None,
    builder: GraphBuilder, scope: Mapping[str, str], block_input: str | None,
    mappings: dict[str, tuple[tuple[str, Any], ...]],
) -> Iterable[Layer]:
    entries = list(entries)
    if prefix:  # inside a body, its short names mean this repetition's nodes
        scope = {**scope, **{e["name"]: prefix + e["name"] for e in entries
                             if isinstance(e, Mapping) and isinstance(e.get("name"), str)}}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise SparsesimError("each layer must be a table", field=f"layer[{index}]")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise SparsesimError("missing layer name", layer=f"#{index + 1}", field="name")
        full = prefix + name
        op = entry.get("op")
        if op == "block":
            _reject_unknown(entry, BLOCK_KEYS, file=file, layer=full)
            repeat = entry.get("repeat", 1)
            if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat <= 0:
                raise SparsesimError(f"must be a positive integer, got {repeat!r}", layer=full,
                                     field="repeat")
            body = entry.get("body")
            if not isinstance(body, list) or not body:
                raise SparsesimError("a block needs at least one [[layer.body]]", layer=full,
                                     field="body")
            for i in range(repeat):
                yield from _expand(body, defaults, prefix=f"{full}.{i}.", file=file,
                                   builder=builder, scope=scope, block_input=builder.previous,
                                   mappings=mappings)
            continue
        if op in GRAPH_OPS:
            _reject_unknown(entry, JOIN_KEYS, file=file, layer=full)
            builder.add(full, op, entry, scope=scope, block_input=block_input)
            continue
        if not isinstance(op, str) or op not in LAYER_TYPES:
            raise SparsesimError(
                f"unknown op {op!r}; expected one of "
                f"{', '.join([*LAYER_TYPES, 'block', *GRAPH_OPS])}",
                layer=full, field="op",
            )
        allowed = set(layer_fields(op))
        _reject_unknown(entry, allowed | {"op", "input", "mapping"}, file=file, layer=full)
        builder.add(full, op, entry, scope=scope, block_input=block_input)
        if "mapping" in entry:
            if not isinstance(entry["mapping"], Mapping):
                raise SparsesimError("must be a table (order, stream_tile)", layer=full,
                                     field="mapping")
            mappings[full] = tuple((k, tuple(v) if isinstance(v, list) else v)
                                   for k, v in entry["mapping"].items())
        kwargs = {k: v for k, v in defaults.items() if k in allowed}
        kwargs.update({k: v for k, v in entry.items() if k not in ("op", "input", "mapping")})
        kwargs["name"] = full
        cls = LAYER_TYPES[op]
        missing = [f for f in _required(op) if f not in kwargs]
        if missing:
            raise SparsesimError("missing required field", layer=full, field=missing[0])
        yield cls(**kwargs)


def check_edges(graph: Graph, layers: Iterable[Layer]) -> None:
    """Every declared edge joins matching channel counts (a conv reads as many channels as
    its producer writes, a linear a whole number of features per channel; an add's inputs
    agree): a wrong ``input`` is one error naming the layer, not a wrong compaction."""
    by_name = {layer.name: layer for layer in layers}
    width: dict[str, int | None] = {NETWORK_INPUT: None}
    for node in graph.nodes:
        ins = [width[src] for src in node.inputs]
        layer = by_name.get(node.name)
        if layer is not None:
            if ins[0] is not None and layer.in_channels is not None \
                    and layer.channel_span(ins[0]) is None:
                raise SparsesimError(
                    f"reads {node.inputs[0]!r} with {ins[0]} channels, but takes "
                    f"{layer.in_channels} inputs", layer=node.name, field="input")
            width[node.name] = layer.out_channels
        elif node.op == "concat":
            width[node.name] = None if None in ins else sum(w for w in ins if w is not None)
        else:
            known = {w for w in ins if w is not None}
            if len(known) > 1:
                raise SparsesimError(f"joins inputs of {sorted(known)} channels",
                                     layer=node.name, field="input")
            width[node.name] = known.pop() if known else None


def _required(op: str) -> list[str]:
    return [f.name for f in fields(LAYER_TYPES[op]) if f.default is MISSING]


def _reject_unknown(
    table: Mapping[str, Any], allowed: Iterable[str], *, file: str | None, layer: str | None,
    prefix: str = "",
) -> None:
    allowed = set(allowed)
    for key in table:
        if key not in allowed:
            raise SparsesimError(
                f"unknown key; expected one of {', '.join(sorted(allowed))}", file=file,
                layer=layer, field=prefix + key,
            )


# --- SCALE-Sim topology CSV -------------------------------------------------------------------

_CONV_COLUMNS = ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filter", "stride")
_GEMM_COLUMNS = ("m", "n", "k")


def load_scalesim_csv(path: str | Path) -> Workload:
    """A SCALE-Sim v3 topology file, conv form or GEMM form (told apart by the header)."""
    file = str(path)
    text = read_text(path, what="SCALE-Sim topology file")
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
    except csv.Error as err:
        raise SparsesimError(f"malformed CSV: {err}", file=file) from None
    rows = [_trim(row) for row in rows]
    rows = [row for row in rows if row]
    if not rows:
        raise SparsesimError("empty topology file", file=file)
    header = [cell.lower() for cell in rows[0]]
    gemm = [h.replace(" ", "") for h in header[1:4]] == ["m", "n", "k"]
    conv = len(header) > 1 and "ifmap" in header[1]
    if not (gemm or conv):
        raise SparsesimError(
            "unrecognised header: expected SCALE-Sim's conv form (Layer name, IFMAP Height, ...) "
            "or GEMM form (Layer, M, N, K)", file=file, field="header",
        )
    columns = _GEMM_COLUMNS if gemm else _CONV_COLUMNS
    stem = Path(file).stem
    layers: list[Layer] = []
    for line, row in enumerate(rows[1:], start=2):
        name = row[0] or f"line{line}"
        if len(row) < 1 + len(columns):
            raise SparsesimError(
                f"line {line}: expected {1 + len(columns)} columns, got {len(row)}", file=file,
                layer=name, field=columns[len(row) - 1] if len(row) > 1 else columns[0],
            )
        values: dict[str, int] = {}
        for col, cell in zip(columns, row[1:]):
            try:
                values[col] = int(cell)
            except ValueError:
                raise SparsesimError(f"line {line}: not an integer: {cell!r}", file=file,
                                     layer=name, field=col) from None
        extra = row[1 + len(columns):]
        if extra:
            _check_nm_column(extra[0], file=file, layer=name)
        try:
            layers.append(_gemm_layer(name, values) if gemm else _conv_layer(name, values))
        except SparsesimError as err:
            raise err.located(file=file) from None
    return Workload(name=stem, layers=tuple(layers), source=f"SCALE-Sim topology {file}",
                    file=file)


def _trim(row: list[str]) -> list[str]:
    while row and row[-1] == "":
        row = row[:-1]
    return row


def _check_nm_column(cell: str, *, file: str, layer: str) -> None:
    """SCALE-Sim's optional N:M column; only dense (N = M) is a dense workload."""
    try:
        n, m = parse_nm(cell, field="sparsity")
    except SparsesimError as err:
        raise err.located(file=file, layer=layer) from None
    if n != m:
        raise SparsesimError(
            f"N:M weight sparsity {cell} needs the `nm` PE kind; load the dense topology "
            "and set [pe] in the arch instead", file=file, layer=layer, field="sparsity",
        )


def _conv_layer(name: str, v: dict[str, int]) -> Conv2d:
    # SCALE-Sim: no padding, output ceil((H - R + s) / s); 'DP' layers are C single-channel
    # convolutions of num_filter filters each, i.e. a grouped conv with groups = C.
    depthwise = "DP" in name
    groups = v["channels"] if depthwise else 1
    return Conv2d(
        name=name, c=v["channels"], h=v["ifmap_h"], w=v["ifmap_w"],
        m=v["num_filter"] * groups, r=v["filter_h"], s=v["filter_w"], stride=v["stride"],
        groups=groups, ceil_mode=True,
    )


def _gemm_layer(name: str, v: dict[str, int]) -> MatMul:
    return MatMul(name=name, m=v["m"], k=v["k"], n=v["n"])
