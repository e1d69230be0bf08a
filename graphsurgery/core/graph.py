"""A graph (main graph, subgraph or function body) over a live ``GraphProto``/``FunctionProto``:
the editing verbs, on top of the scope index of :mod:`.scope`.

The proto stays the single source of truth; the index is built on first use and kept current
by every verb here, so callers never need a "cleanup" step to repair it. Edits are checked
before anything changes: a refused edit leaves the graph exactly as it was. Each verb costs
time in proportion to the change, not to the graph.

Node order: new nodes get a rank after their inputs' producers (or beside the node named by
``before``/``after``); ranks always form a topological order. The proto's node list catches up
(removed nodes cut out, order restored, stably) when the proto or the node list is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .. import tensors
from ..errors import EditError, not_found
from ..ops import subgraph_protos
from . import hooks
from .adding import NodeAdding
from .edits import TensorEdits
from .node import Node, check_is_node
from .scope import Scope, Use, add_reader, drop_reader, flatten
from .values import Value, sparse_to_dense


def _dtype_code(dtype: Any) -> int:
    if isinstance(dtype, int):
        return dtype
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class Graph(TensorEdits, NodeAdding, Scope):
    """A scope of nodes and tensors, and the verbs that edit it. Subgraphs see the names of their ancestors."""

    @property
    def proto(self):
        """The live GraphProto/FunctionProto, its node and initializer lists brought up to date
        with the edits."""
        if self._order_dirty or self._dead_inits:
            self._sync()
        return self._proto

    @property
    def name(self) -> str:
        return self._proto.name

    @property
    def nodes(self) -> list[Node]:
        """The nodes in topological order (a snapshot: safe to edit while iterating)."""
        self._ensure()
        self._sync()
        return list(self._nodes.values())

    def nodes_in_file_order(self) -> list[Node]:
        """The nodes in the proto's current order (no re-sort), for pairing with a copy."""
        if not self._built:  # wrappers only: asking does not build the index
            return [self._wrap(p, i) for i, p in enumerate(self._proto.node)]
        return list(self._nodes.values())

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self._proto.node) - len(self._dead)

    def node(self, name: str) -> Node:
        """The node called ``name`` (the first, if names repeat)."""
        if self._built:
            for n in self.nodes:
                if n.proto.name == name:
                    return n
        else:
            for i, p in enumerate(self._proto.node):
                if p.name == name:
                    return self._wrap(p, i)
        raise not_found("node", name, (p.name for p in self.proto.node), self.describe())

    def find_nodes(self, op_type: str | None = None, domain: str | None = None, *, name: str | None = None,
                   recursive: bool = False) -> list[Node]:
        """Nodes of this op type / domain / name; ``recursive`` also searches subgraphs."""
        by_type = op_type is not None and domain is None and name is None  # the usual question
        if self._built:  # filter first, then order the matches only: the proto is not rewritten
            if by_type:
                out = [n for n in self._nodes.values() if n.proto.op_type == op_type]
            else:
                out = [n for n in self._nodes.values() if _matches(n.proto, op_type, domain, name)]
            if self._order_dirty and self._ranks_valid:
                out.sort(key=_rank_of)
        else:  # a scan of the proto: no index needed to find nodes
            wrap = self._wrap
            if by_type:
                out = [wrap(p, i) for i, p in enumerate(self._proto.node) if p.op_type == op_type]
            else:
                out = [wrap(p, i) for i, p in enumerate(self._proto.node) if _matches(p, op_type, domain, name)]
        if recursive:
            for g in self.subgraphs():
                out.extend(g.find_nodes(op_type, domain, name=name, recursive=True))
        return out

    def walk(self) -> Iterator[Node]:
        """Every node of this graph and, depth-first, of its subgraphs."""
        for n in self.nodes:
            yield n
            if n.has_subgraphs():
                for g in flatten(n.subgraphs().values()):
                    yield from g.walk()

    def _subgraph_for(self, node: Node, key: str, gproto: onnx.GraphProto) -> Graph:
        cache = node._subgraphs
        if cache is None:
            cache = node._subgraphs = {}
        g = cache.get(key)
        if g is None or g._proto is not gproto:
            g = Graph(gproto, self.model, parent=self, owner=node, attr_name=key)
            cache[key] = g
        return g

    @property
    def input_names(self) -> list[str]:
        self._ensure()
        return list(self._inputs)

    @property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        """Initializer protos by name (a snapshot). Read values with :meth:`initializer`."""
        self._ensure()
        return dict(self._inits)

    def has_initializer(self, name: str) -> bool:
        """True when this graph has an initializer (dense or sparse) called ``name``."""
        self._ensure()
        return name in self._inits or name in self._sparse

    def initializer_proto(self, name: str) -> onnx.TensorProto | None:
        """The live TensorProto of dense initializer ``name`` of this graph, or None."""
        self._ensure()
        return self._inits.get(name)

    def initializer(self, name: str) -> np.ndarray:
        """An initializer's value as a read-only numpy array (no copy where possible)."""
        self._ensure()
        t = self._inits.get(name)
        if t is None:
            if name in self._sparse:
                return sparse_to_dense(self._sparse[name], self._base_dir())
            raise not_found("initializer", name, self._inits, self.describe())
        return tensors.to_numpy(t, self._base_dir())

    def _base_dir(self) -> str | None:
        return self.model.base_dir if self.model is not None else None

    def tensor(self, name: str) -> Value:
        """A view of tensor ``name``: producer, consumers, type, shape, value."""
        g = self.resolve(name)
        if g is None:
            raise not_found("tensor", name, self.visible_names(), self.describe())
        return Value(g, name)

    def value_info(self, name: str) -> onnx.ValueInfoProto | None:
        """The type record of ``name``: graph input/output, or a value_info entry."""
        fields = (self._proto.value_info,) if self.is_function else (
            self._proto.input, self._proto.output, self._proto.value_info)
        for field in fields:
            for vi in field:
                if vi.name == name:
                    return vi
        return None

    def known_type(self, name: str) -> onnx.ValueInfoProto | None:
        """A value_info for ``name``: recorded, from an initializer, or from onnx shape inference."""
        g = self.resolve(name) or self
        vi = g.value_info(name)
        if vi is not None and vi.HasField("type"):
            return vi
        t = g._inits.get(name)
        if t is not None:
            return helper.make_tensor_value_info(name, t.data_type, list(t.dims))
        if self.model is None or g.parent is not None:
            return None
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model.proto, strict_mode=False)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError):
            return None
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            if vi.name == name and vi.HasField("type"):
                return vi
        return None

    def _check_alive(self, node: Node) -> None:
        if node._rank is None:
            raise EditError(f"node {node.name!r} ({node.op_type}) was removed from its graph; it cannot be edited")
        if node._graph is not self:
            raise EditError(f"node {node.name!r} belongs to {node._graph.describe()}, not {self.describe()}")

    def _names_add(self, names: Iterable[str]) -> None:
        if self.model is not None:
            self.model.names.add(names)

    # =================================================================
    # edits: wiring
    # =================================================================
    def _require_visible(self, name: str, what: str) -> None:
        if name and self.resolve(name) is None:
            raise EditError(f"{what} reads {name!r}, which is not defined in {self.describe()} or an enclosing "
                            f"scope{_suggest(name, self.visible_names())}; add its producer, a graph input or "
                            "an initializer first")

    def _set_input(self, node: Node, index: int, name: str) -> None:
        self._check_alive(node)
        p = node.proto
        if index < 0 or index > len(p.input):
            raise EditError(f"node {node.name!r} has {len(p.input)} inputs; index {index} is out of range")
        if any(name == o for o in p.output if o):
            raise EditError(f"node {node.name!r} cannot read its own output {name!r}: that would be a cycle")
        self._require_visible(name, f"node {node.name!r}")
        edge = self._admit_read(node, name) if name else None
        self._replace_input(node, index, name, edge)

    def _replace_input(self, node: Node, index: int, name: str, edge) -> None:
        """Make input ``index`` of ``node`` read ``name``, once checked (``edge``: what
        :meth:`_admit_read` returned)."""
        p = node.proto
        if index < len(p.input) and p.input[index] == name:
            return
        old = ""
        if index == len(p.input):
            p.input.append(name)
        else:
            old = p.input[index]
            p.input[index] = name
            if old and old not in p.input:  # the node no longer reads it at any index
                drop_reader(self._uses, old, node)
        if name:
            add_reader(self._uses, name, node)
        self._invalidate_free((old, name))
        if edge is not None:
            edge[0]._order_edge(edge[1], edge[2])

    def rewire(self, old: str, new: str, *, outputs: bool = False) -> int:
        """Make every reader of tensor ``old`` read ``new`` instead, in this scope and its
        subgraphs; with ``outputs=True`` graph outputs named ``old`` follow too.

        The node producing ``new`` keeps reading ``old`` (so "insert a node after ``old``, then
        rewire" works). Returns the number of inputs changed. Refused, with nothing changed,
        when ``new`` is not visible at some reader or a reader would close a cycle.
        """
        made_by = self.producer(new)
        uses = [u for u in self.uses(old) if made_by is None or u.node.proto is not made_by.proto]
        edges = []
        for node, _ in uses:
            ng = node._graph
            ng._check_alive(node)
            if new and ng.resolve(new) is None:
                ng._require_visible(new, f"node {node.name!r}")
            if new in node.proto.output:
                raise EditError(f"rewiring {old!r} to {new!r} would make node {node.name!r} read its own output")
            edges.append(ng._admit_read(node, new) if new else None)
        refs = (self.resolve(old) or self).output_refs(old) if outputs else []
        for g, _ in refs:
            g._require_visible(new, f"output of {g.describe()}")
            if g.owner is not None and not g.defines(new):
                g._admit_read_from_outside(new, f"an output of {g.describe()}")
        for (node, idx), edge in zip(uses, edges, strict=True):
            node._graph._replace_input(node, idx, new, edge)
        for g, i in refs:
            g._set_output_name(i, new)
        return len(uses)

    def _set_output_name(self, index: int, name: str) -> None:
        if self.is_function:
            old = self._proto.output[index]
            self._proto.output[index] = name
        else:
            old = self._proto.output[index].name
            self._proto.output[index].name = name
        self._outputs = None
        self._invalidate_free((old, name))
        self._repair_outer([name])

    def _admit_read(self, reader: Node, name: str):
        """Refuse, with an EditError, to let ``reader`` (a node of this graph) read ``name`` when
        that closes a cycle — also through the If/Loop/Scan nodes enclosing this graph. Returns
        (scope, producer, reader's anchor) for the rank repair once the edge exists, or None."""
        scope = self.resolve(name)
        if scope is None:
            return None
        producer = scope._producer.get(name)
        if producer is None:
            return None
        anchor = scope.holder_of(reader)
        if anchor is producer or scope.depends_on(producer, anchor):
            via = "" if anchor is reader else f" (through node {anchor.name!r} of {scope.describe()})"
            raise EditError(f"node {reader.name!r} cannot read {name!r}: it is computed from node "
                            f"{reader.name!r}'s own results{via}, so this would make a cycle")
        return scope, producer, anchor

    # =================================================================
    # edits: nodes
    # =================================================================
    @property
    def op(self) -> _OpBuilder:
        """Build nodes by op type: ``y = graph.op.Relu(x)``; ``a, b = graph.op.Split(x, _outputs=2, axis=0)``.
        Returns output names."""
        return _OpBuilder(self)

    def _admit_read_from_outside(self, name: str, label: str) -> None:
        """A new node of this subgraph reads outer ``name``: the enclosing node must not feed it."""
        try:
            self.parent._admit_read(self.owner, name)
        except EditError:
            raise EditError(f"{label} cannot read {name!r}: it is computed from the results of node "
                            f"{self.owner.name!r}, which holds this subgraph, so this would make a cycle") from None

    def _repair_outer(self, names: Iterable[str]) -> None:
        """This subgraph now reads ``names``: the nodes enclosing it read them too (ranks)."""
        if self.owner is None:
            return
        for name in names:
            if self.defines(name):
                continue
            scope = self.parent.resolve(name)
            p = scope._producer.get(name) if scope is not None else None
            if p is not None:
                scope._order_edge(p, scope.holder_of(self.owner))

    def _latest_producer_rank(self, proto: onnx.NodeProto, holds: bool) -> tuple | None:
        best = None
        for name in proto.input:
            n = self._producer.get(name) if name else None
            if n is not None and (best is None or n._rank > best):
                best = n._rank
        if holds:
            for g in flatten(_graphs_of(self, proto)):
                for name in g.captured():
                    n = self._producer.get(name)
                    if n is not None and (best is None or n._rank > best):
                        best = n._rank
        return best

    def _check_new_subgraphs(self, proto, local_new: set[str] | Node) -> set[str]:
        """Refuse graph attributes that read names this scope cannot see. Returns the names the
        new subgraphs read from this scope or above."""
        existing = local_new if isinstance(local_new, Node) else None
        if existing is not None:
            owner, local_new = existing.name, set()
        else:
            owner = proto.name
        attrs = [proto] if isinstance(proto, onnx.AttributeProto) else proto.attribute
        reads: set[str] = set()
        for a in attrs:
            if a.type == onnx.AttributeProto.GRAPH:
                gs = [a.g]
            elif a.type == onnx.AttributeProto.GRAPHS:
                gs = list(a.graphs)
            else:
                continue
            for gp in gs:
                tmp = Graph(gp, None, parent=self)
                for name in tmp.captured():
                    if name in local_new:
                        continue
                    if self.resolve(name) is None:
                        raise EditError(f"subgraph {a.name!r} of node {owner!r} reads {name!r}, "
                                        f"which is not defined in {self.describe()} or an enclosing scope")
                    reads.add(name)
                    if isinstance(existing, Node):
                        self._admit_read(existing, name)
                    elif self.owner is not None and not self.defines(name):
                        self._admit_read_from_outside(name, f"subgraph {a.name!r} of new node {owner!r}")
        return reads

    def _settle_subgraphs(self, node: Node) -> None:
        """Write what is pending in the views of ``node``'s subgraphs (removed nodes, order) into
        their protos: a graph attribute of ``node`` is about to change, and the views of all its
        subgraphs are then made anew from the protos, so an edit only held in a view of a sibling
        subgraph would be lost (a removed node would come back)."""
        stack = list(flatten(node._subgraphs.values())) if node._subgraphs else []
        while stack:
            g = stack.pop()
            if g.built:
                g._sync()
                stack.extend(g.subgraphs())

    def _subgraphs_changed(self, node: Node) -> None:
        """A graph attribute of ``node`` was set or deleted: refresh what depends on it."""
        self._ensure()
        node._subgraphs = None
        key = id(node.proto)
        if node.has_subgraphs():
            self._sub_nodes[key] = node
            if self.model is not None:  # the new subgraphs' names join the model's
                for g in flatten(node.subgraphs().values()):
                    self.model.names.add(_all_defined(g._proto))
        else:
            self._sub_nodes.pop(key, None)
        self._captures = None
        self._below_reset()
        self._invalidate_free()
        reads = self.reads(node)
        if self._ranks_valid:
            for name in reads:
                p = self._producer.get(name)
                if p is not None and p is not node:
                    self._order_edge(p, node)
        self._repair_outer(reads)

    def _index_node(self, node: Node, holds: bool) -> None:
        p = node.proto
        self._nodes[id(p)] = node
        uses = self._uses
        for name in p.input:
            if name:
                add_reader(uses, name, node)
        for name in p.output:
            if name:
                self._producer[name] = node
        if holds:
            self._sub_nodes[id(p)] = node
            index = self._captures
            if index is not None:
                for name in self._holder_reads(node):
                    index.setdefault(name, {})[id(node)] = node
            self._holder_changed(node, True)

    def remove_node(self, node: Node) -> None:
        """Remove a node whose outputs nobody reads. Refused, naming the readers, otherwise;
        use :meth:`bypass` or :meth:`rewire` first."""
        self.remove_nodes([node])

    def remove_nodes(self, nodes: Iterable[Node]) -> None:
        """Remove several nodes at once; they may read each other's outputs."""
        self._detach(self._check_removable(nodes))

    def _check_removable(self, nodes: Iterable[Node], provided: Iterable[str] = ()) -> list[Node]:
        """Refuse, with an EditError naming who still needs them, unless every output of
        ``nodes`` is read only by those nodes (or inside their subgraphs) or is in ``provided``
        (it will be defined another way in the same step). Returns the nodes."""
        self._ensure()
        nodes = [check_is_node(n) for n in nodes]
        for n in nodes:
            self._check_alive(n)
        provided = set(provided)
        doomed = {id(n.proto) for n in nodes}
        for n in nodes:
            for out in n.proto.output:
                if not out or out in provided:
                    continue
                # readers that go too (themselves removed, or inside a removed node's subgraph) do not count
                readers = [c for c in self._reader_nodes(out) if id(self.holder_of(c).proto) not in doomed]
                if readers:
                    names = ", ".join(repr(c.name) for c in readers[:5])
                    raise EditError(f"cannot remove node {n.name!r}: its output {out!r} is read by {names}; "
                                    "rewire those readers first (graph.rewire or graph.bypass)")
                if out in self._output_set():
                    raise EditError(f"cannot remove node {n.name!r}: its output {out!r} is a graph output of "
                                    f"{self.describe()}; remove the output or rewire it first")
                refs = [g for g, _ in self.output_refs(out) if g is not self]
                if refs:
                    raise EditError(f"cannot remove node {n.name!r}: its output {out!r} is returned by "
                                    f"{refs[0].describe()}")
        return nodes

    def _detach(self, nodes: list[Node]) -> None:
        """Take ``nodes`` out of the index; the proto's list drops them when next read."""
        touched: list[str] = []  # names these nodes read or define
        undefined: list[str] = []  # names these nodes produced
        index = self._captures
        for n in nodes:
            p = n.proto
            ins, outs = list(p.input), list(p.output)
            touched += ins
            touched += outs
            for name in ins:
                drop_reader(self._uses, name, n)
            for out in outs:
                if self._producer.get(out) is n:
                    del self._producer[out]
                    undefined.append(out)
            self._nodes.pop(id(p), None)
            if self._sub_nodes.pop(id(p), None) is not None:
                self._holder_changed(n, False)
                reads = self._holder_reads(n)
                touched += reads
                if index is not None:
                    for name in reads:
                        entry = index.get(name)
                        if entry is not None:
                            entry.pop(id(n), None)
                            if not entry:
                                del index[name]
            self._dead[id(p)] = p
            self._note_removed(n)
            n._rank = None
        if undefined:
            self._definitions_changed(lost=[o for o in undefined if not self.defines(o)])
        self._mark_unsorted(removed_only=True)
        self._invalidate_free(touched)

    def detach_nodes(self, nodes: Iterable[Node]) -> None:
        """Remove ``nodes`` without checking their readers (for passes that rewire those readers
        in the same step). Prefer :meth:`remove_nodes`."""
        nodes = [check_is_node(n) for n in nodes]
        for n in nodes:
            self._check_alive(n)
        self._detach(nodes)

    def replace_node(self, node: Node, protos: Iterable[onnx.NodeProto],
                     initializers: Iterable[onnx.TensorProto] = ()) -> list[Node]:
        """Replace ``node`` by ``protos`` (and new ``initializers``), which must produce every
        output of ``node`` that is read. Names inside ``node``'s subgraphs may be reused."""
        return self.add_nodes(protos, initializers=initializers, _replacing=check_is_node(node))

    def _repr_html_(self) -> str:
        return hooks.render("graph", self)

    def neighbourhood(self, center: Node | str, hops: int = 2):
        """A picture of the nodes within ``hops`` of a node or tensor; displays inline in Jupyter."""
        return hooks.render("neighbourhood", self, center, hops)

    def __repr__(self) -> str:
        return f"<Graph {self.describe()}: {len(self)} nodes>"


class _OpBuilder:
    __slots__ = ("_graph",)

    def __init__(self, graph: Graph):
        self._graph = graph

    def __getattr__(self, op_type: str):
        def build(*inputs: str, _outputs: int | Sequence[str] = 1, _name: str | None = None, _domain: str = "",
                  **attrs: Any):
            node = self._graph.make_node(op_type, list(inputs), _outputs, name=_name, domain=_domain, **attrs)
            outs = node.outputs
            return outs[0] if len(outs) == 1 else outs
        return build


def _graphs_of(g: Graph, proto: onnx.NodeProto) -> list:
    return [Graph(x, None, parent=g) for x in subgraph_protos(proto)]


def _all_defined(gp: onnx.GraphProto) -> list[str]:
    """Every name a graph proto and its subgraphs define (for the name authority)."""
    names: list[str] = []
    stack = [gp]
    while stack:
        g = stack.pop()
        names += [vi.name for vi in g.input] + [t.name for t in g.initializer]
        for n in g.node:
            names += list(n.output)
            stack.extend(subgraph_protos(n))
    return names


def _rank_of(node: Node) -> tuple:
    return node._rank


def _matches(p: onnx.NodeProto, op_type: str | None, domain: str | None, name: str | None) -> bool:
    return ((op_type is None or p.op_type == op_type) and (domain is None or p.domain == domain)
            and (name is None or p.name == name))


def _suggest(name: str, candidates: Iterable[str]) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return ("; did you mean " + ", ".join(repr(c) for c in close) + "?") if close else ""


__all__ = ["Graph", "Value", "Use"]
