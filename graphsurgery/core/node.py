"""A node of a graph: a thin, stable handle over one live ``onnx.NodeProto``.

(Types of the scope above, ``Graph``, are named in annotations only: this module imports
nothing above it.)"""

from __future__ import annotations

import onnx

from ..errors import EditError
from . import hooks
from .attributes import Attributes

_GRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


class Node:
    """One node. Read its fields directly; change its wiring through the methods here,
    which keep the graph's producer and consumer indexes current.

    Inputs and outputs are tensor names (``""`` marks an omitted optional input).
    """

    __slots__ = ("proto", "_graph", "_rank", "_subgraphs", "__weakref__")

    def __init__(self, proto: onnx.NodeProto, graph: Graph, rank: tuple):  # noqa: F821 (a type of the scope above, named only)
        self.proto = proto
        self._graph = graph
        self._rank = rank
        self._subgraphs: dict | None = None

    # ---- plain fields -------------------------------------------------
    @property
    def graph(self) -> Graph:  # noqa: F821 (a type of the scope above, named only)
        """The graph (or subgraph, or function body) this node belongs to."""
        return self._graph

    @property
    def alive(self) -> bool:
        """False once the node has been removed from its graph."""
        return self._rank is not None

    @property
    def name(self) -> str:
        return self.proto.name

    @name.setter
    def name(self, value: str) -> None:
        self._graph._check_alive(self)
        self.proto.name = value

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    @op_type.setter
    def op_type(self, value: str) -> None:
        self._graph._check_alive(self)
        self.proto.op_type = value

    @property
    def domain(self) -> str:
        return self.proto.domain

    @domain.setter
    def domain(self, value: str) -> None:
        self._graph._check_alive(self)
        self.proto.domain = value

    @property
    def doc_string(self) -> str:
        return self.proto.doc_string

    @property
    def inputs(self) -> tuple[str, ...]:
        """Input tensor names, read-only: change them with :meth:`set_input`."""
        return tuple(self.proto.input)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Output tensor names, read-only: change them with :meth:`Graph.rename`."""
        return tuple(self.proto.output)

    @property
    def attrs(self) -> Attributes:
        """Attributes as Python values; assignment keeps the attribute's type."""
        return Attributes(self)

    # ---- links --------------------------------------------------------
    def producers(self) -> list[Node | None]:
        """The node producing each input (None for graph inputs, initializers, omitted inputs)."""
        return [self._graph.producer(n) if n else None for n in self.proto.input]

    def consumers(self) -> list[Node]:
        """Every node that reads one of this node's outputs, subgraph nodes included."""
        seen: dict[int, Node] = {}
        for out in self.proto.output:
            if out:
                for c in self._graph.consumers(out):
                    seen.setdefault(id(c), c)
        return list(seen.values())

    def subgraphs(self) -> dict[str, Graph | list[Graph]]:  # noqa: F821 (a type of the scope above, named only)
        """Graph-valued attributes (If branches, Loop/Scan bodies) as :class:`Graph` objects."""
        out: dict = {}
        for attr in self.proto.attribute:
            if attr.type in _GRAPH_TYPES:
                out[attr.name] = self.attrs[attr.name]
        return out

    def has_subgraphs(self) -> bool:
        return any(a.type in _GRAPH_TYPES for a in self.proto.attribute)

    # ---- edits --------------------------------------------------------
    def set_input(self, index: int, name: str) -> None:
        """Make input ``index`` read tensor ``name`` ("" omits an optional input).

        Refused, with nothing changed, when ``name`` is not defined where this node can see it.
        """
        self._graph._set_input(self, index, name)

    def append_input(self, name: str) -> None:
        """Add an input at the end (for variadic operators or trailing optional inputs)."""
        self._graph._set_input(self, len(self.proto.input), name)

    def _repr_html_(self) -> str:
        return hooks.render("node", self)

    def __repr__(self) -> str:
        ins = ", ".join(self.proto.input)
        outs = ", ".join(self.proto.output)
        dom = f"{self.domain}." if self.domain else ""
        return f"<Node {self.name!r} {dom}{self.op_type}({ins}) -> {outs}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other.proto is self.proto

    def __hash__(self) -> int:
        return id(self.proto)


def check_is_node(obj: object) -> Node:
    if not isinstance(obj, Node):
        raise EditError(f"expected a graphsurgery Node, got {type(obj).__name__}")
    return obj
