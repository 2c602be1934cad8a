"""The dataflow graph of a workload: which tensor each layer reads and where paths join.

Structured pruning needs it: a removed filter of one layer is a removed input channel of every
layer that reads it, and where two paths meet (a residual add) a channel exists on both. The
layer list alone does not say this (a ResNet's shortcut conv reads the block's input, not the
previous conv's output), so a workload TOML states its edges:

* a layer (or a join) reads ``input = "name"`` — an earlier layer or join; ``"@input"`` is
  the network input, ``"@block"`` inside a block body the input of this repetition (the last
  node of the previous repetition, or what precedes the block). A name inside a body refers to
  the same repetition's node of that name, else to a node of the whole network. No ``input``:
  the previous node (the network input for the first).
* joins are ``[[layer]]`` entries without MACs: ``op = "add"`` and ``"mul"`` (element-wise,
  every input has the same channels: a residual add, SwiGLU's gate × up), ``"concat"`` (along
  channels, in the order given), each with ``input = [...]``; ``op = "layernorm"`` is a
  channel-mixing op without MACs (LayerNorm, RMSNorm: every output channel depends on every
  input channel). ReLU, batch-norm and pooling are per channel and not listed: an edge passes
  through them.
* three more nodes are written by graphs read from a captured model
  (``sparsesim.prune.torch.graphs``), where an edge passes through ops a TOML leaves implicit:
  ``op = "pad"`` (zero padding of the spatial axes: channel ``j`` stays channel ``j``, but a
  constant map is constant only away from the borders), ``op = "offset"`` (a per-channel op
  that maps 0 to a non-zero value — batch-norm, a sigmoid, ``+ b``: a constant stays
  constant, a zero does not stay zero) and ``op = "opaque"`` (an op whose channel mapping is
  not provable, or a network output: its input's channels are never removed; ``note`` says
  why).

A workload is said to have a graph when its TOML names an ``input``, lists a join, or sets
``[network] graph = true`` (a plain chain such as VGG); otherwise ``Workload.graph`` is
``None``: its edges are unknown, and nothing is removed across them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sparsesim.errors import SparsesimError

NETWORK_INPUT = "@input"
BLOCK_INPUT = "@block"
#: element-wise joins: channel ``j`` of the output is channel ``j`` of every input
ELEMENTWISE = ("add", "mul")
JOIN_OPS = ELEMENTWISE + ("concat",)
#: channel-mixing ops without MACs; ``opaque``: an op the graph reader cannot map (it pins)
MIX_OPS = ("layernorm", "opaque")
#: per-channel ops that change what a removed (constant) channel holds: see the docstring
PER_CHANNEL_OPS = ("pad", "offset")
GRAPH_OPS = JOIN_OPS + MIX_OPS + PER_CHANNEL_OPS


@dataclass(frozen=True, slots=True)
class Node:
    """One node: a layer (``op`` is its kind) or a join / mixing op, and the nodes it reads."""

    name: str
    op: str
    inputs: tuple[str, ...]
    note: str = ""  # why an ``opaque`` node pins (the op it stands for)

    @property
    def is_layer(self) -> bool:
        return self.op not in GRAPH_OPS


@dataclass(frozen=True, slots=True)
class Graph:
    """Nodes in execution (topological) order; every input names an earlier node or
    :data:`NETWORK_INPUT`."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        seen = {NETWORK_INPUT}
        for node in self.nodes:
            for src in node.inputs:
                if src not in seen:
                    raise SparsesimError(f"reads {src!r}, which is not an earlier layer or join",
                                         layer=node.name, field="input")
            if node.op in JOIN_OPS and len(node.inputs) < 2:
                raise SparsesimError(f"a {node.op} joins at least two inputs",
                                     layer=node.name, field="input")
            if node.op not in JOIN_OPS and len(node.inputs) != 1:
                raise SparsesimError(f"a {node.op} reads one input, got {len(node.inputs)}",
                                     layer=node.name, field="input")
            if node.name in seen:
                raise SparsesimError("duplicate node name", layer=node.name, field="name")
            seen.add(node.name)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise SparsesimError("no such node in the graph", layer=name)

    def readers(self) -> dict[str, list[str]]:
        """Tensor (node name or :data:`NETWORK_INPUT`) → the nodes that read it."""
        out: dict[str, list[str]] = {NETWORK_INPUT: []}
        for node in self.nodes:
            out.setdefault(node.name, [])
            for src in node.inputs:
                out[src].append(node.name)
        return out

    @property
    def outputs(self) -> tuple[str, ...]:
        """The network's outputs: nodes nobody reads."""
        return tuple(n for n, r in self.readers().items() if not r and n != NETWORK_INPUT)


class GraphBuilder:
    """Collects nodes while a TOML's layer list is expanded (blocks repeated)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.declared = False

    @property
    def previous(self) -> str:
        return self.nodes[-1].name if self.nodes else NETWORK_INPUT

    def add(self, name: str, op: str, entry: Mapping[str, object], *, scope: Mapping[str, str],
            block_input: str | None) -> None:
        """Add node ``name`` (already prefixed); ``scope`` maps a body's short names to the
        repetition's full names; ``block_input`` is what ``"@block"`` means here."""
        raw = entry.get("input")
        if raw is None:
            if op in JOIN_OPS:
                raise SparsesimError(f"a {op} needs input = [names]", layer=name, field="input")
            inputs: tuple[str, ...] = (self.previous,)
        else:
            self.declared = True
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(items, list) or not items or not all(
                    isinstance(x, str) and x for x in items):
                raise SparsesimError(f"must be a name or a list of names, got {raw!r}",
                                     layer=name, field="input")
            inputs = tuple(self._resolve(x, name, scope, block_input) for x in items)
        if op in GRAPH_OPS:
            self.declared = True
        self.nodes.append(Node(name, op, inputs))

    @staticmethod
    def _resolve(ref: str, name: str, scope: Mapping[str, str], block_input: str | None) -> str:
        if ref == BLOCK_INPUT:
            if block_input is None:
                raise SparsesimError('"@block" is only meaningful inside a block body',
                                     layer=name, field="input")
            return block_input
        return scope.get(ref, ref)

    def graph(self) -> Graph:
        return Graph(tuple(self.nodes))
