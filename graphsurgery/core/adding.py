"""Adding nodes: ``make_node``, ``add_node(s)`` and ``replace_node``'s core, each checking every
name before the proto changes. Mixed into :class:`~.graph.Graph` (``self`` is the Graph)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import onnx

from ..errors import EditError
from .attributes import encode
from .node import Node, check_is_node
from .scope import GRAPH_TYPES, add_reader, has_graph_attribute, holder_definitions, readers_in, tick


class NodeAdding:
    """Verbs of :class:`~.graph.Graph` that add nodes."""

    def make_node(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, *,
                  name: str | None = None, domain: str = "", before: Node | None = None,
                  after: Node | None = None, **attrs: Any) -> Node:
        """Create a node and add it. ``outputs`` is a count (fresh names are made) or a list
        of names. Attributes are plain Python values or numpy arrays."""
        inputs = list(inputs)
        encoded = [encode(key, value, None) for key, value in attrs.items() if value is not None] if attrs else []
        simple = before is None and after is None and not any(a.type in GRAPH_TYPES for a in encoded)
        if simple:  # checked here, from the arguments, without reading the proto back
            self._check_simple_reads(op_type, name, inputs)
        base = name or op_type
        fresh = isinstance(outputs, int)
        outputs = ([self.unique_name(f"{base}_out{i}" if i else f"{base}_out") for i in range(outputs)] if fresh
                   else list(outputs))
        proto = onnx.NodeProto()
        try:
            proto.op_type = op_type
            proto.domain = domain
            proto.name = name if name is not None else self.unique_name(op_type, kind="node")
            proto.input.extend(inputs)
            proto.output.extend(outputs)
        except (TypeError, ValueError) as exc:
            raise EditError(f"cannot make a {op_type!r} node from inputs {inputs!r} and outputs {outputs!r}: "
                            f"{exc}") from None
        if encoded:
            proto.attribute.extend(encoded)
        if not simple:
            return self.add_node(proto, before=before, after=after)
        if not fresh:
            self._check_simple_outputs(proto, outputs)
        return self._append_simple(proto, inputs, outputs, name is not None)

    def _check_simple_reads(self, op_type: str, name: str | None, inputs: list[str]) -> None:
        """Refuse inputs a new node (without subgraphs) of this graph cannot read."""
        self._ensure()
        for x in inputs:
            if not x:
                continue
            if not isinstance(x, str):
                raise EditError(f"new node {name or op_type!r}: input {x!r} is not a tensor name (a str)")
            if not self.defines(x):
                label = f"new node {name or op_type!r} ({op_type})"
                self._require_visible(x, label)
                if self.owner is not None:
                    self._admit_read_from_outside(x, label)

    def _check_simple_outputs(self, proto: onnx.NodeProto, outputs: list[str]) -> None:
        seen: set[str] = set()
        for o in outputs:
            if o and (o in seen or self.is_taken(o)):
                raise EditError(f"{_label(proto)} would produce {o!r}, which is already defined in "
                                f"{self.describe()}; pick a new name (graph.unique_name helps)")
            seen.add(o)

    def _append_simple(self, proto: onnx.NodeProto, inputs: list[str], outputs: list[str], named: bool) -> Node:
        """Append a checked node that holds no subgraph, ranked just after its inputs' producers."""
        self._establish_ranks()
        rep = self._proto.node
        rep.append(proto)
        ref = rep[len(rep) - 1]
        producer = self._producer
        latest = None
        for x in inputs:
            n = producer.get(x) if x else None
            if n is not None and (latest is None or n._rank > latest):
                latest = n._rank
        rank = (-1.0, tick()) if latest is None else (latest[0], tick())
        nodes = self._nodes
        if nodes and rank < next(reversed(nodes.values()))._rank:
            self._mark_unsorted()  # appended to the proto, ranked earlier
        self._appended(ref)
        node = Node(ref, self, rank)
        nodes[id(ref)] = node
        uses = self._uses
        for x in inputs:
            if x:
                add_reader(uses, x, node)
        for o in outputs:
            if o:
                producer[o] = node
        self._invalidate_free(inputs + outputs)
        if self.owner is not None:
            self._repair_outer(inputs)
            self._definitions_changed(outputs)
        if self.model is not None:
            self.model.names.add(outputs)
            if named:
                self.model.names.add_nodes((proto.name,))
        return node

    def add_node(self, proto: onnx.NodeProto, *, before: Node | None = None, after: Node | None = None) -> Node:
        """Add a copy of ``proto`` to this graph and return its :class:`Node`.

        Its inputs must be visible here and its outputs new; ``before``/``after`` place it
        next to another node (otherwise it goes after its inputs' producers).
        """
        return self.add_nodes([proto], before=before, after=after)[0]

    def add_nodes(self, protos: Iterable[onnx.NodeProto], *, before: Node | None = None,
                  after: Node | None = None, initializers: Iterable[onnx.TensorProto] = (),
                  _replacing: Node | None = None) -> list[Node]:
        """Add several nodes at once; later ones may read earlier ones' outputs, and all may read
        ``initializers``, which are added in the same step."""
        self._ensure()
        protos = list(protos)
        inits = list(initializers)
        anchor = before or after or _replacing
        if anchor is not None:
            self._check_alive(check_is_node(anchor))
        freed = {o for o in _replacing.proto.output if o} if _replacing is not None else set()
        if inits and self.is_function:
            raise EditError("functions have no initializers; use Constant nodes")

        taken = self.taken_check(_replacing)  # names inside a replaced node's subgraphs go away with it

        produced: set[str] = set()
        for t in inits:
            if t.name in produced or taken(t.name):
                raise EditError(f"initializer {t.name!r} is already defined in {self.describe()}")
            produced.add(t.name)
        outer_reads: set[str] = set()  # names read from this scope or above
        holders: set[int] = set()  # ids of the given protos that hold subgraphs
        is_sub = self.owner is not None
        for p in protos:
            if not isinstance(p, onnx.NodeProto):
                raise EditError(f"expected onnx.NodeProto, got {type(p).__name__}")
            for name in p.input:
                if not name or name in produced or name in outer_reads:
                    continue
                if name in freed:
                    raise EditError(f"{_label(p)} reads {name!r}, an output of the node it replaces")
                if not self.defines(name):
                    self._require_visible(name, _label(p))
                    if is_sub:
                        self._admit_read_from_outside(name, _label(p))
                outer_reads.add(name)
            for name in p.output:
                if not name:
                    continue
                if name in produced or (name not in freed and taken(name)):
                    raise EditError(f"{_label(p)} would produce {name!r}, which is already defined in "
                                    f"{self.describe()}; pick a new name (graph.unique_name helps)")
                produced.add(name)
            if p.attribute and has_graph_attribute(p):
                holders.add(id(p))
                outer_reads |= self._check_new_subgraphs(p, produced | freed)
        if _replacing is not None:
            missing = [o for o in freed if o not in produced and self.is_used(o)]
            if missing:
                raise EditError(f"replacement for node {_replacing.name!r} does not produce {missing}, "
                                "which other nodes or graph outputs read")
            self._check_replacement(_replacing, freed, outer_reads)
        # all checks passed: change the proto
        self._establish_ranks()
        base = anchor._rank if anchor is not None else None
        if _replacing is not None:
            self._detach([_replacing])
        for t in inits:
            self._proto.initializer.append(t)
            self._inits[t.name] = self._proto.initializer[len(self._proto.initializer) - 1]
        added = []
        rep = self._proto.node
        last = next(reversed(self._nodes.values()))._rank if self._nodes else None
        for p in protos:
            rep.append(p)
            ref = rep[len(rep) - 1]
            holds = id(p) in holders
            latest = self._latest_producer_rank(ref, holds)
            if base is None:
                rank = (-1.0, tick()) if latest is None else (latest[0], tick())
            elif before is not None:
                rank = (base[0] - 0.5, tick())
            else:  # after, or replacing: just after the anchor's place
                rank = (base[0], tick())
            if latest is not None and rank <= latest:  # asked to go before one of its producers
                rank = (latest[0], tick())
            node = Node(ref, self, rank)
            if last is not None and rank < last:  # appended to the proto, ranked earlier
                self._mark_unsorted()
            if last is None or rank > last:
                last = rank
            self._appended(ref)
            self._index_node(node, holds)
            added.append(node)
        if _replacing is not None:  # readers of the replaced outputs now read the new nodes
            for o in freed:
                p = self._producer.get(o)
                if p is not None:
                    for r in list(self._readers(p)):
                        self._order_edge(p, r)
        self._invalidate_free(outer_reads | produced)
        if is_sub:
            self._repair_outer(outer_reads)
            self._definitions_changed(produced)
        if self.model is not None:
            self.model.names.add(produced)
            self.model.names.add_nodes([p.name for p in protos])
            for node in added:  # and what their subgraphs define
                if id(node.proto) in self._sub_nodes:
                    self.model.names.add(holder_definitions(node))
        return added

    def _check_replacement(self, old: Node, freed: set[str], reads: set[str]) -> None:
        """Refuse a replacement that reads, from this scope, what is computed from the replaced
        node's readers (that would be a cycle)."""
        readers = {id(r.proto): r for o in freed for r in self._readers_of_name(o)}
        readers.pop(id(old.proto), None)
        for name in reads:
            p = self._producer.get(name) if self.defines(name) else None
            if p is None or p is old:
                continue
            for r in readers.values():
                if p is r or self.depends_on(p, r):
                    raise EditError(f"the replacement for node {old.name!r} reads {name!r}, which is computed "
                                    f"from node {r.name!r}, a reader of the replaced node: that would be a cycle")

    def _readers_of_name(self, name: str) -> list[Node]:
        out = readers_in(self._uses, name)
        out.extend(self._capturing(name))
        return out


def _label(p: onnx.NodeProto) -> str:
    return f"new node {p.name!r} ({p.op_type})"


__all__ = ["NodeAdding"]
