"""A graph (main graph, subgraph or function body) over a live ``GraphProto``/``FunctionProto``.

The proto stays the single source of truth. A :class:`Graph` adds indexes — which
node produces a tensor, which nodes read it, what each scope defines — built on
first use and kept current by every editing verb here, so callers never need a
"cleanup" step to repair them. Edits are checked before anything changes: a refused
edit leaves the graph exactly as it was.

Node order: new nodes are appended to the proto; when an edit may have broken the
topological order (a node inserted ``before``/``after`` another, an input rewired to a
later node), the graph re-sorts itself, stably, before nodes are listed or saved.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper

from . import tensors
from .attributes import _encode
from .errors import EditError, InvalidModelError, not_found
from .node import Node, check_is_node

if TYPE_CHECKING:
    from .model import Model

_GRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_INSERT = itertools.count(1)


def _dtype_code(dtype: Any) -> int:
    if isinstance(dtype, int):
        return dtype
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class Graph:
    """A scope of nodes and tensors. Subgraphs see the names of their ancestors."""

    def __init__(self, proto, model: Model | None, parent: Graph | None = None, owner: Node | None = None,
                 attr_name: str = ""):
        self.proto = proto
        self.model = model
        self.parent = parent
        self.owner = owner
        self.attr_name = attr_name
        self.is_function = isinstance(proto, onnx.FunctionProto)
        self._built = False
        self._order_dirty = False
        # True when node ranks are known to number the nodes in a topological order
        # (then "p before q" is a rank comparison); None until first needed.
        self._ranks_valid: bool | None = None
        self._free: set[str] | None = None
        # Node wrappers made before the full index exists (by find_nodes/node), by proto id;
        # holding them keeps upb's Python objects, and so their ids, alive.
        self._wrapped: dict[int, Node] = {}

    # =================================================================
    # index
    # =================================================================
    def _ensure(self) -> None:
        if not self._built:
            self._build()

    def _build(self) -> None:
        proto = self.proto
        nodes = []
        producer: dict[str, Node] = {}
        uses: dict[str, list] = {}
        with_subgraphs: list[Node] = []
        wrapped = self._wrapped
        for i, p in enumerate(proto.node):
            node = wrapped.get(id(p))
            if node is None:
                node = Node(p, self, (float(i), 0))
            else:
                node._rank = (float(i), 0)
            nodes.append(node)
            for j, name in enumerate(p.input):
                if name:
                    lst = uses.get(name)
                    if lst is None:
                        uses[name] = [(node, j)]
                    else:
                        lst.append((node, j))
            for name in p.output:
                if name:
                    if name in producer:
                        raise InvalidModelError(
                            f"tensor {name!r} is produced by two nodes, {producer[name].name!r} and {p.name!r}"
                            f"{self._where()}; rename one output",
                            [f"duplicate producer of {name!r}"],
                        )
                    producer[name] = node
            for a in p.attribute:
                if a.type in _GRAPH_TYPES:
                    with_subgraphs.append(node)
                    break
        self._nodes = nodes
        self._producer = producer
        self._uses = uses
        self._sub_nodes = with_subgraphs
        if self.is_function:
            self._inputs = list(proto.input)
            self._inits = {}
            self._sparse = {}
        else:
            self._inputs = [vi.name for vi in proto.input]
            inits: dict[str, onnx.TensorProto] = {}
            for t in proto.initializer:
                if t.name in inits:
                    raise InvalidModelError(
                        f"initializer {t.name!r} appears twice{self._where()}; tools disagree on which copy wins, "
                        "so remove one of them", [f"duplicate initializer {t.name!r}"])
                inits[t.name] = t
            self._inits = inits
            self._sparse = {}
            for s in proto.sparse_initializer:
                if s.values.name in inits or s.values.name in self._sparse:
                    raise InvalidModelError(
                        f"initializer {s.values.name!r} appears twice{self._where()}; remove one of them",
                        [f"duplicate initializer {s.values.name!r}"])
                self._sparse[s.values.name] = s
        self._input_set = set(self._inputs)
        self._wrapped = {}
        self._built = True

    def _where(self) -> str:
        if self.parent is None and not self.is_function:
            return ""
        return f" (in {self.describe()})"

    def describe(self) -> str:
        """Where this graph sits, e.g. ``main graph › node 'If_3'.then_branch``."""
        if self.is_function:
            return f"function {self.proto.domain}::{self.proto.name}"
        if self.parent is None:
            return "main graph"
        return f"{self.parent.describe()} › node {self.owner.name!r}.{self.attr_name}"

    def _mark_unsorted(self) -> None:
        """An edit may have broken the topological order: re-sort before anyone reads the proto."""
        self._order_dirty = True
        if self.model is not None:
            self.model._unsorted = True

    def _invalidate_free(self) -> None:
        g: Graph | None = self
        while g is not None:
            g._free = None
            g = g.parent

    def _check_alive(self, node: Node) -> None:
        if node._rank is None:
            raise EditError(f"node {node.name!r} ({node.op_type}) was removed from its graph; it cannot be edited")
        if node._graph is not self:
            raise EditError(f"node {node.name!r} belongs to {node._graph.describe()}, not {self.describe()}")

    # =================================================================
    # lookups
    # =================================================================
    @property
    def name(self) -> str:
        return self.proto.name

    @property
    def nodes(self) -> list[Node]:
        """The nodes in topological order (a snapshot: safe to edit while iterating)."""
        self._ensure()
        if self._order_dirty:
            self.toposort()
        return list(self._nodes)

    def nodes_in_file_order(self) -> list[Node]:
        """The nodes in the proto's current order (no re-sort), for pairing with a copy."""
        self._ensure()
        return list(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.proto.node)

    def node(self, name: str) -> Node:
        """The node called ``name`` (the first, if names repeat)."""
        if self._built:
            for n in self.nodes:
                if n.proto.name == name:
                    return n
        else:
            for i, p in enumerate(self.proto.node):
                if p.name == name:
                    return self._wrap(p, i)
        raise not_found("node", name, (p.name for p in self.proto.node), self.describe())

    def _wrap(self, proto: onnx.NodeProto, position: int) -> Node:
        """The one Node for ``proto``, made without building the full index."""
        node = self._wrapped.get(id(proto))
        if node is None:
            node = self._wrapped[id(proto)] = Node(proto, self, (float(position), 0))
        return node

    def find_nodes(self, op_type: str | None = None, domain: str | None = None, *, name: str | None = None,
                   recursive: bool = False) -> list[Node]:
        """Nodes of this op type / domain / name; ``recursive`` also searches subgraphs."""
        if self._built:
            out = [n for n in self.nodes if _matches(n.proto, op_type, domain, name)]
        else:  # a scan of the proto: no index needed to find nodes
            out = [self._wrap(p, i) for i, p in enumerate(self.proto.node) if _matches(p, op_type, domain, name)]
        if recursive:
            self._ensure()
            for n in self._sub_nodes:
                for g in _flatten(n.subgraphs().values()):
                    out.extend(g.find_nodes(op_type, domain, name=name, recursive=True))
        return out

    def walk(self) -> Iterator[Node]:
        """Every node of this graph and, depth-first, of its subgraphs."""
        for n in self.nodes:
            yield n
            if n.has_subgraphs():
                for g in _flatten(n.subgraphs().values()):
                    yield from g.walk()

    def subgraphs(self) -> list[Graph]:
        """Direct subgraphs (If branches, Loop/Scan bodies) of this graph's nodes."""
        self._ensure()
        return [g for n in self._sub_nodes for g in _flatten(n.subgraphs().values())]

    def _subgraph_for(self, node: Node, key: str, gproto: onnx.GraphProto) -> Graph:
        cache = node._subgraphs
        if cache is None:
            cache = node._subgraphs = {}
        g = cache.get(key)
        if g is None or g.proto is not gproto:
            g = Graph(gproto, self.model, parent=self, owner=node, attr_name=key)
            cache[key] = g
        return g

    @property
    def input_names(self) -> list[str]:
        self._ensure()
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self.proto.output) if self.is_function else [vi.name for vi in self.proto.output]

    @property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        """Initializer protos by name (a snapshot). Read values with :meth:`initializer`."""
        self._ensure()
        return dict(self._inits)

    def initializer(self, name: str) -> np.ndarray:
        """An initializer's value as a read-only numpy array (no copy where possible)."""
        self._ensure()
        t = self._inits.get(name)
        if t is None:
            if name in self._sparse:
                return _sparse_to_dense(self._sparse[name], self._base_dir())
            raise not_found("initializer", name, self._inits, self.describe())
        return tensors.to_numpy(t, self._base_dir())

    def _base_dir(self) -> str | None:
        return self.model.base_dir if self.model is not None else None

    def defines(self, name: str) -> bool:
        """True when ``name`` is a graph input, initializer or node output of this scope."""
        self._ensure()
        return name in self._producer or name in self._input_set or name in self._inits or name in self._sparse

    def _resolve(self, name: str) -> Graph | None:
        g: Graph | None = self
        while g is not None:
            if g.defines(name):
                return g
            g = g.parent
        return None

    def producer(self, name: str) -> Node | None:
        """The node producing ``name`` in this scope or an enclosing one (None for inputs/initializers)."""
        g = self._resolve(name)
        return g._producer.get(name) if g is not None else None

    def _free_names(self) -> set[str]:
        """Names read in this graph or its subgraphs but defined outside it."""
        if self._free is None:
            self._ensure()
            free: set[str] = set()
            for name in self._uses:
                if not self.defines(name):
                    free.add(name)
            for name in self.output_names:
                if name and not self.defines(name):
                    free.add(name)
            for n in self._sub_nodes:
                for g in _flatten(n.subgraphs().values()):
                    for name in g._free_names():
                        if not self.defines(name):
                            free.add(name)
            self._free = free
        return self._free

    def uses(self, name: str) -> list[tuple[Node, int]]:
        """Every (node, input index) reading ``name``, including nodes inside subgraphs that
        read it from the enclosing scope. A snapshot: safe to edit while iterating."""
        g = self._resolve(name) or self
        return g._uses_here(name)

    def _uses_here(self, name: str) -> list[tuple[Node, int]]:
        self._ensure()
        out = list(self._uses.get(name, ()))
        for n in self._sub_nodes:
            for g in _flatten(n.subgraphs().values()):
                if name in g._free_names():
                    out.extend(g._uses_here(name))
        return out

    def consumers(self, name: str) -> list[Node]:
        """Nodes reading ``name`` (each once), subgraph nodes included."""
        seen: dict[int, Node] = {}
        for node, _ in self.uses(name):
            seen.setdefault(id(node.proto), node)
        return list(seen.values())

    def _output_refs(self, name: str) -> list[tuple[Graph, int]]:
        """(graph, output index) for this scope's and its subgraphs' outputs naming ``name``."""
        out = [(self, i) for i, o in enumerate(self.output_names) if o == name]
        for n in self._sub_nodes:
            for g in _flatten(n.subgraphs().values()):
                if name in g._free_names():
                    out.extend(g._output_refs(name))
        return out

    def is_used(self, name: str) -> bool:
        """True when a node, a graph output, or a subgraph reads ``name``."""
        g = self._resolve(name) or self
        g._ensure()
        if name in g._uses or name in g.output_names:
            return True
        return any(name in s._free_names() for n in g._sub_nodes for s in _flatten(n.subgraphs().values()))

    def tensor(self, name: str) -> Value:
        """A view of tensor ``name``: producer, consumers, type, shape, value."""
        g = self._resolve(name)
        if g is None:
            raise not_found("tensor", name, self._visible_names(), self.describe())
        return Value(g, name)

    def _defined_names(self) -> set[str]:
        """Names this scope defines: node outputs, graph inputs, initializers."""
        self._ensure()
        return set().union(self._producer, self._input_set, self._inits, self._sparse)

    def _visible_names(self) -> set[str]:
        """Names defined here or in an enclosing scope."""
        names: set[str] = set()
        g: Graph | None = self
        while g is not None:
            names |= g._defined_names()
            g = g.parent
        return names

    def value_info(self, name: str) -> onnx.ValueInfoProto | None:
        """The type record of ``name``: graph input/output, or a value_info entry."""
        if self.is_function:
            for vi in self.proto.value_info:
                if vi.name == name:
                    return vi
            return None
        for field in (self.proto.input, self.proto.output, self.proto.value_info):
            for vi in field:
                if vi.name == name:
                    return vi
        return None

    def _known_type(self, name: str) -> onnx.ValueInfoProto | None:
        """A value_info for ``name``: recorded, from an initializer, or from onnx shape inference."""
        g = self._resolve(name) or self
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

    # =================================================================
    # edits: wiring
    # =================================================================
    def _require_visible(self, name: str, what: str) -> None:
        if name and self._resolve(name) is None:
            raise EditError(f"{what} reads {name!r}, which is not defined in {self.describe()} or an enclosing "
                            f"scope{_suggest(name, self._visible_names())}; add its producer, a graph input or "
                            "an initializer first")

    def _set_input(self, node: Node, index: int, name: str) -> None:
        self._check_alive(node)
        p = node.proto
        if index < 0 or index > len(p.input):
            raise EditError(f"node {node.name!r} has {len(p.input)} inputs; index {index} is out of range")
        if any(name == o for o in p.output if o):
            raise EditError(f"node {node.name!r} cannot read its own output {name!r}: that would be a cycle")
        self._require_visible(name, f"node {node.name!r}")
        if name:
            self._admit_read(node, name)
        if index == len(p.input):
            p.input.append(name)
        else:
            old = p.input[index]
            if old == name:
                return
            if old:
                lst = self._uses.get(old)
                if lst is not None:
                    lst[:] = [u for u in lst if not (u[0] is node and u[1] == index)]
                    if not lst:
                        del self._uses[old]
            p.input[index] = name
        if name:
            self._uses.setdefault(name, []).append((node, index))
        self._invalidate_free()

    def rewire(self, old: str, new: str, *, outputs: bool = False) -> int:
        """Make every reader of tensor ``old`` read ``new`` instead, in this scope and its
        subgraphs; with ``outputs=True`` graph outputs named ``old`` follow too.

        The node producing ``new`` keeps reading ``old`` (so "insert a node after ``old``, then
        rewire" works). Returns the number of inputs changed. Refused, with nothing changed,
        when ``new`` is not visible at some reader.
        """
        made_by = self.producer(new)
        uses = [u for u in self.uses(old) if made_by is None or u[0].proto is not made_by.proto]
        for node, _ in uses:
            node._graph._require_visible(new, f"node {node.name!r}")
            if new in node.proto.output:
                raise EditError(f"rewiring {old!r} to {new!r} would make node {node.name!r} read its own output")
        refs = (self._resolve(old) or self)._output_refs(old) if outputs else []
        for g, _ in refs:
            g._require_visible(new, f"output of {g.describe()}")
        for node, idx in uses:
            node._graph._set_input(node, idx, new)
        for g, i in refs:
            g._set_output_name(i, new)
        return len(uses)

    def _set_output_name(self, index: int, name: str) -> None:
        if self.is_function:
            self.proto.output[index] = name
        else:
            self.proto.output[index].name = name
        self._invalidate_free()

    def _admit_read(self, reader: Node, name: str) -> None:
        """Refuse, with an EditError, to let ``reader`` (a node of this graph) read ``name`` when
        that closes a cycle — also through the If/Loop/Scan nodes enclosing this graph. Marks
        the defining graph for re-sorting when the new edge goes against its current order."""
        scope = self._resolve(name)
        if scope is None:
            return
        producer = scope._producer.get(name)
        if producer is None:
            return
        anchor = scope._holder(reader)
        if anchor is producer or scope._depends_on(producer, anchor):
            via = "" if anchor is reader else f" (through node {anchor.name!r} of {scope.describe()})"
            raise EditError(f"node {reader.name!r} cannot read {name!r}: it is computed from node "
                            f"{reader.name!r}'s own results{via}, so this would make a cycle")
        if not (scope._ranks_valid and producer._rank < anchor._rank):
            scope._mark_unsorted()
            scope._ranks_valid = False

    def _holder(self, node: Node) -> Node:
        """The node of this graph that is ``node`` or holds it in a (nested) subgraph."""
        while node._graph is not self:
            node = node._graph.owner
        return node

    def _depends_on(self, node: Node, anchor: Node) -> bool:
        """True when ``node`` is computed, directly or not, from ``anchor`` (both in this graph)."""
        if self._ranks_valid is None:
            try:
                self.toposort()
            except InvalidModelError:
                self._ranks_valid = False
        prune = anchor._rank if self._ranks_valid else None
        if prune is not None and node._rank < prune:
            return False
        stack, seen = [node], {id(node.proto)}
        while stack:
            n = stack.pop()
            for name in self._reads(n):
                p = self._producer.get(name)
                if p is None or id(p.proto) in seen:
                    continue
                if p is anchor:
                    return True
                if prune is None or p._rank > prune:
                    seen.add(id(p.proto))
                    stack.append(p)
        return False

    def _reads(self, node: Node) -> set[str]:
        """Names a node reads: its inputs and what its subgraphs take from outside."""
        names = {x for x in node.proto.input if x}
        if node.has_subgraphs():
            for g in _flatten(node.subgraphs().values()):
                names |= g._free_names()
        return names

    # =================================================================
    # edits: nodes
    # =================================================================
    def make_node(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, *,
                  name: str | None = None, domain: str = "", before: Node | None = None,
                  after: Node | None = None, **attrs: Any) -> Node:
        """Create a node and add it. ``outputs`` is a count (fresh names are made) or a list
        of names. Attributes are plain Python values or numpy arrays."""
        base = name or op_type
        if isinstance(outputs, int):
            outputs = [self.unique_name(f"{base}_out{i}" if i else f"{base}_out") for i in range(outputs)]
        proto = onnx.NodeProto()
        proto.op_type = op_type
        proto.domain = domain
        proto.name = name if name is not None else self.unique_name(op_type, kind="node")
        proto.input.extend(inputs)
        proto.output.extend(outputs)
        for key, value in attrs.items():
            if value is not None:
                proto.attribute.append(_encode(key, value, None))
        return self.add_node(proto, before=before, after=after)

    @property
    def op(self) -> _OpBuilder:
        """Build nodes by op type: ``y = graph.op.Relu(x)``; ``a, b = graph.op.Split(x, _outputs=2, axis=0)``.
        Returns output names."""
        return _OpBuilder(self)

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
        freed = set(o for o in _replacing.proto.output if o) if _replacing is not None else set()
        # names inside a replaced node's subgraphs go away with it
        taken = self._visible_names() | self._names_below(exclude=_replacing)
        if inits and self.is_function:
            raise EditError("functions have no initializers; use Constant nodes")
        produced: set[str] = set()
        for t in inits:
            if t.name in taken or t.name in produced:
                raise EditError(f"initializer {t.name!r} is already defined in {self.describe()}")
            produced.add(t.name)
        for p in protos:
            if not isinstance(p, onnx.NodeProto):
                raise EditError(f"expected onnx.NodeProto, got {type(p).__name__}")
            label = f"new node {p.name!r} ({p.op_type})"
            for name in p.input:
                if not name or name in produced:
                    continue
                if name in freed:
                    raise EditError(f"{label} reads {name!r}, an output of the node it replaces")
                self._require_visible(name, label)
                if self.owner is not None and not self.defines(name):
                    self._admit_read_from_outside(name, label)
            for name in p.output:
                if not name:
                    continue
                if name in produced or (name in taken and name not in freed):
                    raise EditError(f"{label} would produce {name!r}, which is already defined in "
                                    f"{self.describe()}; pick a new name (graph.unique_name helps)")
                produced.add(name)
            self._check_new_subgraphs(p, produced | freed)
        if _replacing is not None:
            missing = [o for o in freed if o not in produced and self.is_used(o)]
            if missing:
                raise EditError(f"replacement for node {_replacing.name!r} does not produce {missing}, "
                                "which other nodes or graph outputs read")
            self._detach([_replacing])
        # all checks passed: change the proto
        for t in inits:
            self.proto.initializer.append(t)
            self._inits[t.name] = self.proto.initializer[len(self.proto.initializer) - 1]
        base = anchor._rank if anchor is not None else None
        added = []
        for p in protos:
            self.proto.node.add().CopyFrom(p)
            ref = self.proto.node[len(self.proto.node) - 1]
            if base is None:
                rank = self._rank_after_inputs(ref)
            elif before is not None:
                rank = (base[0] - 0.5, next(_INSERT))
            elif after is not None:
                rank = (base[0] + 0.5, next(_INSERT))
            else:  # replacing: take the replaced node's place
                rank = (base[0], next(_INSERT))
            node = Node(ref, self, rank)
            latest = self._latest_producer_rank(ref)
            if latest is not None and rank <= latest:  # placed before one of its producers
                self._ranks_valid = False
                self._mark_unsorted()
            if self._nodes and rank < self._nodes[-1]._rank:  # appended to the proto, ranked earlier
                self._mark_unsorted()
            self._index_node(node)
            added.append(node)
        if anchor is not None:
            self._mark_unsorted()
        self._invalidate_free()
        if self.model is not None:
            self.model._names_add([o for p in protos for o in p.output] + [t.name for t in inits])
        return added

    def _admit_read_from_outside(self, name: str, label: str) -> None:
        """A new node of this subgraph reads outer ``name``: the enclosing node must not feed it."""
        try:
            self.parent._admit_read(self.owner, name)
        except EditError:
            raise EditError(f"{label} cannot read {name!r}: it is computed from the results of node "
                            f"{self.owner.name!r}, which holds this subgraph, so this would make a cycle") from None

    def _latest_producer_rank(self, proto: onnx.NodeProto) -> tuple | None:
        best = None
        for name in proto.input:
            n = self._producer.get(name) if name else None
            if n is not None and (best is None or n._rank > best):
                best = n._rank
        return best

    def _rank_after_inputs(self, proto: onnx.NodeProto) -> tuple:
        """A rank just after the node's latest producer (or first, when it reads no node)."""
        best = self._latest_producer_rank(proto)
        if best is None:
            return (-1.0, next(_INSERT))
        return (best[0] + 0.5, next(_INSERT))

    def _check_new_subgraphs(self, proto: onnx.NodeProto | onnx.AttributeProto, local_new: set[str] | Node) -> None:
        """Refuse graph attributes that read names this scope cannot see."""
        existing = local_new if isinstance(local_new, Node) else None
        if existing is not None:
            owner, local_new = existing.name, set()
        else:
            owner = proto.name
        attrs = [proto] if isinstance(proto, onnx.AttributeProto) else proto.attribute
        for a in attrs:
            if a.type == onnx.AttributeProto.GRAPH:
                gs = [a.g]
            elif a.type == onnx.AttributeProto.GRAPHS:
                gs = list(a.graphs)
            else:
                continue
            for gp in gs:
                tmp = Graph(gp, None, parent=self)
                for name in tmp._free_names():
                    if name in local_new:
                        continue
                    if self._resolve(name) is None:
                        raise EditError(f"subgraph {a.name!r} of node {owner!r} reads {name!r}, "
                                        f"which is not defined in {self.describe()} or an enclosing scope")
                    if isinstance(existing, Node):
                        self._admit_read(existing, name)
                    elif self.owner is not None and not self.defines(name):
                        self._admit_read_from_outside(name, f"subgraph {a.name!r} of new node {owner!r}")

    def _subgraphs_changed(self, node: Node) -> None:
        """A graph attribute of ``node`` was set or deleted: refresh what depends on it."""
        self._ensure()
        node._subgraphs = None
        has = node.has_subgraphs()
        listed = any(n is node for n in self._sub_nodes)
        if has and not listed:
            self._sub_nodes.append(node)
        elif listed and not has:
            self._sub_nodes = [n for n in self._sub_nodes if n is not node]
        self._mark_unsorted()
        self._invalidate_free()
        if self.model is not None:
            self.model._names = None

    def _index_node(self, node: Node) -> None:
        self._nodes.append(node)
        p = node.proto
        for j, name in enumerate(p.input):
            if name:
                self._uses.setdefault(name, []).append((node, j))
        for name in p.output:
            if name:
                self._producer[name] = node
        if node.has_subgraphs():
            self._sub_nodes.append(node)

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
                readers = [c for c, _ in self._uses_here(out) if id(self._holder(c).proto) not in doomed]
                if readers:
                    names = ", ".join(repr(c.name) for c in readers[:5])
                    raise EditError(f"cannot remove node {n.name!r}: its output {out!r} is read by {names}; "
                                    "rewire those readers first (graph.rewire or graph.bypass)")
                if out in self.output_names:
                    raise EditError(f"cannot remove node {n.name!r}: its output {out!r} is a graph output of "
                                    f"{self.describe()}; remove the output or rewire it first")
                refs = [g for g, _ in self._output_refs(out) if g is not self]
                if refs:
                    raise EditError(f"cannot remove node {n.name!r}: its output {out!r} is returned by "
                                    f"{refs[0].describe()}")
        return nodes

    def _detach(self, nodes: list[Node]) -> None:
        doomed = {id(n.proto) for n in nodes}
        for n in nodes:
            for name in n.proto.input:
                lst = self._uses.get(name)
                if lst is not None:
                    lst[:] = [u for u in lst if u[0] is not n]
                    if not lst:
                        del self._uses[name]
            for out in n.proto.output:
                if self._producer.get(out) is n:
                    del self._producer[out]
        # stable sort moves the doomed nodes to the end (upb keeps element identity), then cut them off
        rep = self.proto.node
        keep = len(rep) - len(doomed)
        rep.sort(key=lambda p: id(p) in doomed)
        del rep[keep:]
        self._nodes = [n for n in self._nodes if id(n.proto) not in doomed]
        self._sub_nodes = [n for n in self._sub_nodes if id(n.proto) not in doomed]
        for n in nodes:
            n._rank = None
        self._invalidate_free()

    def bypass(self, node: Node, input_index: int = 0, output_index: int = 0) -> None:
        """Remove a pass-through node (Identity, Dropout, ...): its readers read its input instead.

        When the output is a graph output, the input tensor takes the output's name instead,
        so the model's interface does not change.
        """
        self._check_alive(node)
        src = node.proto.input[input_index]
        out = node.proto.output[output_index]
        if out in self.output_names:
            renamable = (src in self._producer and src not in self.output_names
                         and [c.proto for c in self.consumers(src)] == [node.proto])
            if not renamable:
                raise EditError(f"cannot bypass node {node.name!r}: its output {out!r} is a graph output and its "
                                f"input {src!r} is not a node output read only by this node; keep the node")
            self._detach([node])
            vis = self.proto.value_info
            for i in range(len(vis) - 1, -1, -1):
                if vis[i].name == src:
                    del vis[i]
            self.rename(src, out)
            return
        self.rewire(out, src)
        others = [o for i, o in enumerate(node.proto.output) if i != output_index and o and self.is_used(o)]
        if others:
            raise EditError(f"node {node.name!r} has other outputs still read: {others}")
        self._detach([node])

    def replace_node(self, node: Node, protos: Iterable[onnx.NodeProto],
                     initializers: Iterable[onnx.TensorProto] = ()) -> list[Node]:
        """Replace ``node`` by ``protos`` (and new ``initializers``), which must produce every
        output of ``node`` that is read. Names inside ``node``'s subgraphs may be reused."""
        return self.add_nodes(protos, initializers=initializers, _replacing=check_is_node(node))

    def _names_below(self, exclude: Node | None = None) -> set[str]:
        """Names defined in the subgraphs of this graph's nodes (except ``exclude``'s), at any depth."""
        self._ensure()
        names: set[str] = set()
        stack = [g for n in self._sub_nodes if n is not exclude for g in _flatten(n.subgraphs().values())]
        while stack:
            h = stack.pop()
            names |= h._defined_names()
            stack.extend(h.subgraphs())
        return names

    def add_node_output(self, node: Node, name: str | None = None) -> str:
        """Give ``node`` one more output (for ops with variadic outputs: If, Loop, Scan, Split);
        returns its name. Refused when ``name`` is already defined."""
        self._check_alive(node)
        name = name or self.unique_name(f"{node.name or node.op_type}_out")
        if name in self._names_in_scope_and_below():
            raise EditError(f"cannot add output {name!r} to node {node.name!r}: the name is already defined")
        node.proto.output.append(name)
        self._producer[name] = node
        if self.model is not None:
            self.model._names_add([name])
        return name

    def replace_with_constants(self, values: dict[str, Any], nodes: Iterable[Node] = ()) -> None:
        """Turn tensors into initializers: ``values`` maps tensor names to their values.

        ``nodes`` are removed in the same step (they may produce some of those tensors); a graph
        input named in ``values`` stops being an input. Refused, with nothing changed, when a
        removed node's output is still read and has no value here.
        """
        self._ensure()
        if self.is_function:
            raise EditError("functions have no initializers; use Constant nodes")
        nodes = self._check_removable(nodes, provided=values)
        produced_here = {o for n in nodes for o in n.proto.output if o}
        for name in values:
            if name not in produced_here and name not in self._input_set and name not in self._inits:
                raise EditError(f"{name!r} is neither produced by a removed node nor an input or initializer "
                                f"of {self.describe()}")
        protos = {name: tensors.from_numpy(v, name) if not isinstance(v, onnx.TensorProto) else v
                  for name, v in values.items()}
        # all checks passed
        self._detach(nodes)
        for name, t in protos.items():
            if name in self._input_set:
                field = self.proto.input
                for i in range(len(field) - 1, -1, -1):
                    if field[i].name == name:
                        del field[i]
                self._inputs = [x for x in self._inputs if x != name]
                self._input_set.discard(name)
            if name in self._inits:
                self._inits[name].CopyFrom(t)
            else:
                self.proto.initializer.append(t)
                self._inits[name] = self.proto.initializer[len(self.proto.initializer) - 1]
        self._invalidate_free()

    # =================================================================
    # edits: names, inputs, outputs, initializers
    # =================================================================
    def unique_name(self, base: str, kind: str = "tensor") -> str:
        """A name not used anywhere in the model, derived from ``base``."""
        if self.model is not None:
            return self.model._unique(base, kind)
        taken = self._names_in_scope_and_below() if kind == "tensor" else {n.name for n in self.nodes}
        if base not in taken:
            return base
        for i in itertools.count(1):
            if f"{base}_{i}" not in taken:
                return f"{base}_{i}"
        raise AssertionError("unreachable")

    def _names_in_scope_and_below(self) -> set[str]:
        """Names a new definition here must avoid: visible ones and those of nested subgraphs."""
        return self._visible_names() | self._names_below()

    def rename(self, old: str, new: str) -> None:
        """Rename tensor ``old`` to ``new`` everywhere: its definition, every reader (subgraphs
        included), graph inputs/outputs, value_info and quantization annotations."""
        g = self._resolve(old)
        if g is None:
            raise not_found("tensor", old, self._visible_names(), self.describe())
        if old == new:
            return
        if not new:
            raise EditError("a tensor name cannot be empty")
        if new in g._names_in_scope_and_below():
            raise EditError(f"cannot rename {old!r} to {new!r}: {new!r} is already defined in {g.describe()} "
                            "or a graph it encloses")
        uses = g.uses(old)
        refs = g._output_refs(old)
        # definition
        prod = g._producer.pop(old, None)
        if prod is not None:
            outs = prod.proto.output
            for i, o in enumerate(outs):
                if o == old:
                    outs[i] = new
            g._producer[new] = prod
        if old in g._input_set:
            g._input_set.discard(old)
            g._input_set.add(new)
            g._inputs = [new if x == old else x for x in g._inputs]
            if g.is_function:
                for i, x in enumerate(g.proto.input):
                    if x == old:
                        g.proto.input[i] = new
            else:
                for vi in g.proto.input:
                    if vi.name == old:
                        vi.name = new
        if old in g._inits:
            t = g._inits.pop(old)
            t.name = new
            g._inits[new] = t
        if old in g._sparse:
            s = g._sparse.pop(old)
            s.values.name = new
            g._sparse[new] = s
        # readers
        for node, idx in uses:
            ng = node._graph
            lst = ng._uses.get(old)
            if lst is not None:
                lst[:] = [u for u in lst if not (u[0] is node and u[1] == idx)]
                if not lst:
                    del ng._uses[old]
            node.proto.input[idx] = new
            ng._uses.setdefault(new, []).append((node, idx))
        for og, i in refs:
            og._set_output_name(i, new)
        # annotations in every graph that can see it
        stack = [g]
        while stack:
            h = stack.pop()
            for vi in h.proto.value_info:
                if vi.name == old:
                    vi.name = new
            if not h.is_function:
                for qa in h.proto.quantization_annotation:
                    if qa.tensor_name == old:
                        qa.tensor_name = new
            stack.extend(h.subgraphs())
        g._invalidate_free()
        for sub in g.subgraphs():
            _invalidate_tree(sub)
        if self.model is not None:
            self.model._names_add([new])

    def add_input(self, name: str, dtype: Any = np.float32, shape: Sequence[int | str | None] | None = None,
                  *, index: int | None = None) -> None:
        """Add a graph input (dtype as numpy dtype or ONNX element type; dims as int, name or None)."""
        self._ensure()
        if name in self._names_in_scope_and_below():
            raise EditError(f"cannot add input {name!r}: the name is already defined in {self.describe()}")
        if self.is_function:
            self.proto.input.insert(len(self.proto.input) if index is None else index, name)
        else:
            vi = helper.make_tensor_value_info(name, _dtype_code(dtype), shape)
            self.proto.input.insert(len(self.proto.input) if index is None else index, vi)
        self._inputs = list(self.proto.input) if self.is_function else [v.name for v in self.proto.input]
        self._input_set.add(name)
        self._invalidate_free()
        if self.model is not None:
            self.model._names_add([name])

    def remove_input(self, name: str) -> None:
        """Remove a graph input nobody reads (an input that is also an initializer stays an initializer)."""
        self._ensure()
        if name not in self._input_set:
            raise not_found("graph input", name, self._inputs, self.describe())
        if name not in self._inits and self.is_used(name):
            readers = ", ".join(repr(n.name) for n in self.consumers(name)[:5]) or "a graph output"
            raise EditError(f"cannot remove input {name!r}: it is read by {readers}; rewire or freeze it first")
        field = self.proto.input
        for i in range(len(field) - 1, -1, -1):
            if (field[i] if self.is_function else field[i].name) == name:
                del field[i]
        self._inputs = [x for x in self._inputs if x != name]
        self._input_set.discard(name)
        self._invalidate_free()

    def add_output(self, name: str, dtype: Any = None, shape: Sequence[int | str | None] | None = None) -> None:
        """Expose tensor ``name`` as a graph output; its type comes from value_info when not given."""
        self._require_visible(name, f"new output of {self.describe()}")
        if name in self.output_names:
            raise EditError(f"{name!r} is already an output of {self.describe()}")
        if self.is_function:
            self.proto.output.append(name)
        else:
            if dtype is not None:
                vi = helper.make_tensor_value_info(name, _dtype_code(dtype), shape)
            else:
                known = self._known_type(name)
                if known is None:
                    raise EditError(f"the type of {name!r} is unknown (no value_info, and shape inference could "
                                    "not tell); pass dtype= (and shape=) to add_output")
                vi = onnx.ValueInfoProto()
                vi.CopyFrom(known)
            self.proto.output.append(vi)
        self._invalidate_free()

    def remove_output(self, name: str) -> None:
        """Stop exposing ``name`` as a graph output (its producer stays)."""
        names = self.output_names
        if name not in names:
            raise not_found("graph output", name, names, self.describe())
        field = self.proto.output
        for i in range(len(field) - 1, -1, -1):
            if (field[i] if self.is_function else field[i].name) == name:
                del field[i]
        self._invalidate_free()

    def set_initializer(self, name: str, value: Any) -> None:
        """Add initializer ``name``, or replace its value (numpy array, scalar, list or TensorProto)."""
        self._ensure()
        if self.is_function:
            raise EditError("functions have no initializers; use a Constant node")
        old = self._inits.get(name)
        if old is None and name in self._names_in_scope_and_below() and name not in self._input_set:
            raise EditError(f"cannot add initializer {name!r}: the name is already defined in {self.describe()}")
        if isinstance(value, onnx.TensorProto):
            t = onnx.TensorProto()
            t.CopyFrom(value)
            t.name = name
        else:
            t = tensors.from_numpy(value, name, old)
        if old is not None:
            old.CopyFrom(t)
        else:
            self.proto.initializer.append(t)
            self._inits[name] = self.proto.initializer[len(self.proto.initializer) - 1]
            self._invalidate_free()
            if self.model is not None:
                self.model._names_add([name])

    def remove_initializer(self, name: str) -> None:
        """Remove an initializer nobody reads (or that is also a graph input, which stays)."""
        self._ensure()
        t = self._inits.get(name)
        if t is None:
            raise not_found("initializer", name, self._inits, self.describe())
        if name not in self._input_set and self.is_used(name):
            readers = ", ".join(repr(n.name) for n in self.consumers(name)[:5]) or "a graph output"
            raise EditError(f"cannot remove initializer {name!r}: it is read by {readers}")
        rep = self.proto.initializer
        for i in range(len(rep)):
            if rep[i].name == name:
                del rep[i]
                break
        del self._inits[name]
        self._invalidate_free()

    # =================================================================
    # order, cleanup
    # =================================================================
    def toposort(self) -> None:
        """Sort nodes topologically, keeping the current order wherever it is already valid.

        Raises :class:`InvalidModelError` naming the nodes of a cycle.
        """
        self._ensure()
        nodes = self._nodes
        index_of = {id(n.proto): i for i, n in enumerate(nodes)}
        deps: list[set[int]] = []
        for n in nodes:
            names = set(x for x in n.proto.input if x)
            if n.has_subgraphs():
                for g in _flatten(n.subgraphs().values()):
                    names |= g._free_names()
            d = set()
            for name in names:
                p = self._producer.get(name)
                if p is not None and p is not n:
                    d.add(index_of[id(p.proto)])
            deps.append(d)
        indeg = [len(d) for d in deps]
        users: list[list[int]] = [[] for _ in nodes]
        for i, d in enumerate(deps):
            for j in d:
                users[j].append(i)
        heap = [(nodes[i]._rank, i) for i in range(len(nodes)) if indeg[i] == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            _, i = heapq.heappop(heap)
            order.append(i)
            for u in users[i]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(heap, (nodes[u]._rank, u))
        if len(order) != len(nodes):
            cycle = _find_cycle([i for i in range(len(nodes)) if indeg[i] > 0], deps)
            names = " -> ".join(repr(nodes[i].name or nodes[i].op_type) for i in cycle)
            raise InvalidModelError(f"the graph has a cycle{self._where()}: {names}", [f"cycle: {names}"])
        if order != list(range(len(nodes))):
            pos = {id(nodes[i].proto): k for k, i in enumerate(order)}
            self.proto.node.sort(key=lambda p: pos[id(p)])
            self._nodes = [nodes[i] for i in order]
            self._sub_nodes.sort(key=lambda n: pos[id(n.proto)])
        for k, n in enumerate(self._nodes):
            n._rank = (float(k), 0)
        self._order_dirty = False
        self._ranks_valid = True

    def remove_unused(self, *, nodes: bool = True, initializers: bool = True, value_info: bool = True,
                      recursive: bool = True) -> dict[str, int]:
        """Remove nodes that feed no output, initializers nobody reads, and value_info of
        tensors that no longer exist. Returns counts of what was removed.

        Refused for a graph without outputs, where it would delete everything.
        """
        self._ensure()
        counts = {"nodes": 0, "initializers": 0, "value_info": 0}
        if nodes and not self.output_names:
            raise EditError(f"{self.describe()} has no outputs; removing unused nodes would delete every node. "
                            "Add the outputs you want to keep first")
        if nodes:
            live: set[int] = set()
            needed = [o for o in self.output_names if o]
            seen: set[str] = set()
            while needed:
                name = needed.pop()
                if name in seen:
                    continue
                seen.add(name)
                p = self._producer.get(name)
                if p is None or id(p.proto) in live:
                    continue
                live.add(id(p.proto))
                needed.extend(x for x in p.proto.input if x)
                if p.has_subgraphs():
                    for g in _flatten(p.subgraphs().values()):
                        needed.extend(g._free_names())
            dead = [n for n in self._nodes if id(n.proto) not in live]
            if dead:
                self._detach(dead)
            counts["nodes"] = len(dead)
        if recursive:
            for g in self.subgraphs():
                sub = g.remove_unused(nodes=nodes, initializers=initializers, value_info=value_info, recursive=True)
                for k, v in sub.items():
                    counts[k] += v
        if initializers and not self.is_function:
            unused = [name for name in self._inits if name not in self._input_set and not self.is_used(name)]
            for name in unused:
                self.remove_initializer(name)
            counts["initializers"] += len(unused)
        if value_info:
            keep = self._names_in_scope_and_below()
            vis = self.proto.value_info
            stale = [i for i in range(len(vis)) if vis[i].name not in keep]
            for i in reversed(stale):
                del vis[i]
            counts["value_info"] += len(stale)
        return counts

    def neighbourhood(self, center: Node | str, hops: int = 2):
        """A picture of the nodes within ``hops`` of a node or tensor; displays inline in Jupyter."""
        from .display import Picture, neighbourhood_svg
        return Picture(neighbourhood_svg(self, center, hops))

    def _repr_html_(self) -> str:
        import html
        ops = {}
        for n in self.nodes:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        return (f"<div><b>{html.escape(self.describe())}</b>: {len(self.proto.node)} nodes; inputs "
                f"{html.escape(', '.join(self.input_names))}; outputs {html.escape(', '.join(self.output_names))}; "
                f"ops {html.escape(', '.join(f'{k} {v}' for k, v in ops.items()))}</div>")

    def __repr__(self) -> str:
        return f"<Graph {self.describe()}: {len(self.proto.node)} nodes>"


class Value:
    """A view of one tensor name in the scope that defines it."""

    __slots__ = ("graph", "name")

    def __init__(self, graph: Graph, name: str):
        self.graph = graph
        self.name = name

    @property
    def producer(self) -> Node | None:
        return self.graph._producer.get(self.name)

    @property
    def consumers(self) -> list[Node]:
        return self.graph.consumers(self.name)

    @property
    def is_graph_input(self) -> bool:
        return self.name in self.graph._input_set

    @property
    def is_graph_output(self) -> bool:
        return self.name in self.graph.output_names

    @property
    def is_initializer(self) -> bool:
        return self.name in self.graph._inits or self.name in self.graph._sparse

    @property
    def is_constant(self) -> bool:
        """True for an initializer that is not also a graph input, and a Constant node's output."""
        if self.is_initializer:
            return not self.is_graph_input
        p = self.producer
        return p is not None and p.op_type == "Constant" and p.domain in ("", "ai.onnx")

    def numpy(self) -> np.ndarray:
        """The value of an initializer or a Constant node's output."""
        if self.is_initializer:
            return self.graph.initializer(self.name)
        p = self.producer
        if p is not None and p.op_type == "Constant" and p.domain in ("", "ai.onnx"):
            for a in p.proto.attribute:
                if a.name == "value":
                    return p.attrs["value"]
                if a.name.startswith("value_"):
                    return np.asarray(helper.get_attribute_value(a))
        raise EditError(f"tensor {self.name!r} is not a constant; its value is only known at run time")

    @property
    def type(self) -> onnx.TypeProto | None:
        vi = self.graph.value_info(self.name)
        if vi is not None and vi.HasField("type"):
            return vi.type
        t = self.graph._inits.get(self.name)
        if t is not None:
            return helper.make_tensor_type_proto(t.data_type, list(t.dims))
        return None

    @property
    def dtype(self) -> np.dtype | None:
        t = self.type
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.elem_type:
            return None
        try:
            return helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type)
        except (KeyError, ValueError):
            return None

    @property
    def shape(self) -> list[int | str | None] | None:
        """Dims as ints (static), strings (symbolic) or None (unknown); None when the rank is unknown."""
        t = self.type
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                for d in t.tensor_type.shape.dim]

    def __repr__(self) -> str:
        return f"<Value {self.name!r} in {self.graph.describe()}>"


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


def _matches(p: onnx.NodeProto, op_type: str | None, domain: str | None, name: str | None) -> bool:
    return ((op_type is None or p.op_type == op_type) and (domain is None or p.domain == domain)
            and (name is None or p.name == name))


def _flatten(values: Iterable) -> Iterator[Graph]:
    for v in values:
        if isinstance(v, list):
            yield from v
        else:
            yield v


def _invalidate_tree(g: Graph) -> None:
    g._free = None
    for s in g.subgraphs():
        _invalidate_tree(s)


def _suggest(name: str, candidates: Iterable[str]) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return ("; did you mean " + ", ".join(repr(c) for c in close) + "?") if close else ""


def _find_cycle(candidates: list[int], deps: list[set[int]]) -> list[int]:
    """One cycle among ``candidates`` (nodes left over by Kahn's algorithm), as indices."""
    cand = set(candidates)
    start = candidates[0]
    path: list[int] = []
    on_path: dict[int, int] = {}
    cur = start
    while cur not in on_path:
        on_path[cur] = len(path)
        path.append(cur)
        nxt = next(d for d in sorted(deps[cur]) if d in cand)
        cur = nxt
    cyc = path[on_path[cur]:]
    cyc.reverse()  # producers first
    return cyc + [cyc[0]]


def _sparse_to_dense(sparse: onnx.SparseTensorProto, base_dir: str | None) -> np.ndarray:
    values = tensors.to_numpy(sparse.values, base_dir)
    indices = tensors.to_numpy(sparse.indices, base_dir)
    shape = tuple(sparse.dims)
    dense = np.zeros(shape, dtype=values.dtype)
    flat = dense.reshape(-1)
    if indices.ndim == 1:
        flat[indices] = values
    else:
        flat[np.ravel_multi_index(tuple(indices.T), shape)] = values
    dense.flags.writeable = False
    return dense
