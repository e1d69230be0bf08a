"""The scope index: who defines a name, who reads it, what a subgraph captures from outside,
which node holds a subgraph, and a topological rank for every node.

Every graph (main graph, subgraph, function body) is a :class:`Scope`; :class:`~.graph.Graph`
adds the editing verbs on top. The index is built on first use from the live proto and kept
current by every edit, so the questions here cost time proportional to their answer:

- ``defines(name)``, ``resolve(name)`` (the defining scope, walking the scope chain),
  ``producer(name)``, ``uses(name)`` (``Use(node, index)`` tuples, subgraph readers included),
  ``is_used(name)``;
- ``captured()`` (names a subgraph reads from enclosing scopes), ``holder()`` (the node whose
  attribute holds this subgraph), ``holder_of(node)`` (the node of this scope that is ``node``
  or encloses it);
- ranks: every node has one, and while ``ranks_valid`` they number the nodes in a topological
  order in which a subgraph's captured reads count as reads of its holder. A new edge that
  goes against the order is checked for a cycle by searching only between the two ranks, and
  the order is then repaired locally (Pearce and Kelly's dynamic topological order).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import onnx

from ..errors import InvalidModelError
from .node import Node
from .ranks import Ranks

GRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_TICK = itertools.count(1)  # second component of ranks given to new nodes
_NO_HOLDERS: dict = {}  # an empty capture index (never written)


class Use(NamedTuple):
    """One reader of a tensor: ``node`` reads it as input ``index``."""

    node: Node
    index: int


# The reader table of a scope maps a tensor name to the nodes of the scope reading it: the node
# itself when there is one (most tensors), a dict {id(node): node} when there are several. One
# object per name keeps the index small for the garbage collector, which walks it again and again.
def add_reader(table: dict, name: str, node: Node) -> None:
    cur = table.get(name)
    if cur is None:
        table[name] = node
    elif type(cur) is dict:
        cur[id(node)] = node
    elif cur is not node:
        table[name] = {id(cur): cur, id(node): node}


def drop_reader(table: dict, name: str, node: Node) -> None:
    cur = table.get(name)
    if cur is node:
        del table[name]
    elif type(cur) is dict:
        cur.pop(id(node), None)
        if len(cur) == 1:
            table[name] = next(iter(cur.values()))
        elif not cur:
            del table[name]


def readers_in(table: dict, name: str) -> list[Node]:
    cur = table.get(name)
    if cur is None:
        return []
    if type(cur) is dict:
        return list(cur.values())
    return [cur]


def tick() -> int:
    """A number larger than every earlier one (ties ranks in order of creation)."""
    return next(_TICK)


def flatten(values: Iterable) -> Iterator:
    """Graphs of a ``Node.subgraphs()`` mapping, one by one (GRAPHS attributes are lists)."""
    for v in values:
        if isinstance(v, list):
            yield from v
        else:
            yield v


def has_graph_attribute(p: onnx.NodeProto) -> bool:
    attrs = p.attribute
    k = len(attrs)
    if k == 1:  # most nodes with attributes: indexing is cheaper than iterating
        return attrs[0].type in GRAPH_TYPES
    return k > 0 and any(a.type in GRAPH_TYPES for a in attrs)


def holder_definitions(node: Node) -> Counter:
    """Names defined in ``node``'s subgraphs at any depth: how many of those scopes define each."""
    count: Counter = Counter()
    stack = list(flatten(node.subgraphs().values()))
    while stack:
        g = stack.pop()
        count.update(g.defined_names())
        stack.extend(g.subgraphs())
    return count


class Scope(Ranks):
    """A scope of nodes and tensors and its index. Subscopes see the names of their ancestors."""

    def __init__(self, proto, model, parent: Scope | None = None, owner: Node | None = None, attr_name: str = ""):
        self._proto = proto
        self.model = model
        self.parent = parent
        self.owner = owner
        self.attr_name = attr_name
        self.is_function = isinstance(proto, onnx.FunctionProto)
        self._built = False
        # the proto's node list lags the index: removed nodes not yet cut out, order not yet restored
        self._order_dirty = False
        self._dead: dict[int, onnx.NodeProto] = {}
        # where nodes sit in the proto's list (see Ranks._places_exact): set by the build
        self._place: dict[int, int] | None = None
        self._holes: list[int] = []
        self._next_place = 0
        self._dead_places: list[int] = []
        # initializers removed from the index, cut out of the proto's list when it is next read
        self._dead_inits: dict[int, onnx.TensorProto] = {}
        # True: ranks number the nodes in a topological order; None: not known yet
        self._ranks_valid: bool | None = None
        self._free: set[str] | None = None  # what captured() returns, kept by the edits
        self._free_view: frozenset[str] | None = None  # its snapshot, handed out
        self._captures: dict[str, dict[int, Node]] | None = None
        # how many scopes under this one's nodes (at any depth) define each name: computed when
        # first asked, then kept by the edits (see _below_changed)
        self._below: Counter | None = None
        # holders found by a scan, before the index exists, and the length of the node list then
        self._sub_list: list[Node] | None = None
        self._sub_count = -1
        self._inputs_ordered = False  # the build saw every direct input read after its producer
        # Node wrappers made before the full index exists (by find_nodes/node), by proto id;
        # holding them keeps upb's Python objects, and so their ids, alive.
        self._wrapped: dict[int, Node] = {}

    # =================================================================
    # building
    # =================================================================
    def _ensure(self) -> None:
        if not self._built:
            self._build()

    def _build(self) -> None:
        if self.parent is not None:
            # enclosing scopes first: whatever walks the built graphs from the top (to bring their
            # protos up to date before a save) then reaches this one
            self.parent._ensure()
        proto = self._proto
        nodes: dict[int, Node] = {}
        producer: dict[str, Node] = {}
        uses: dict[str, Node | dict[int, Node]] = {}  # see add_reader
        subs: dict[int, Node] = {}
        wrapped = self._wrapped
        early: list[str] = []  # names read before (or without) being produced: checked for order at the end
        for i, p in enumerate(proto.node):
            node = wrapped.get(id(p))
            if node is None:
                node = Node(p, self, (float(i), 0))
            else:
                node._rank = (float(i), 0)
            nodes[id(p)] = node
            for name in p.input:
                if name:
                    # add_reader, written out: this line runs once per input of every node
                    cur = uses.get(name)
                    if cur is None:
                        uses[name] = node
                    elif type(cur) is dict:
                        cur[id(node)] = node
                    elif cur is not node:
                        uses[name] = {id(cur): cur, id(node): node}
                    if name not in producer:
                        early.append(name)
            for name in p.output:
                if name:
                    if name in producer:
                        raise InvalidModelError(
                            f"tensor {name!r} is produced by two nodes, {producer[name].name!r} and {p.name!r}"
                            f"{self._where()}; rename one output",
                            [f"duplicate producer of {name!r}"],
                        )
                    producer[name] = node
            if has_graph_attribute(p):
                subs[id(p)] = node
        self._nodes = nodes
        self._producer = producer
        self._uses = uses
        self._sub_nodes = subs
        self._outputs = None
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
        self._places_exact(len(proto.node))
        self._sub_list = None
        self._built = True
        # Every direct input read after its producer (a name read before being produced, or with
        # no producer here, is an input, initializer or outer name only if nothing here produces
        # it): the file order is topological as far as direct inputs go. Holders' captured reads
        # are left to _establish_ranks, which then checks only them.
        self._inputs_ordered = not any(name in producer for name in early)
        if self._inputs_ordered and not subs:
            self._ranks_valid = True

    def _where(self) -> str:
        if self.parent is None and not self.is_function:
            return ""
        return f" (in {self.describe()})"

    def describe(self) -> str:
        """Where this graph sits, e.g. ``main graph › node 'If_3'.then_branch``."""
        if self.is_function:
            return f"function {self._proto.domain}::{self._proto.name}"
        if self.parent is None:
            return "main graph"
        return f"{self.parent.describe()} › node {self.owner.name!r}.{self.attr_name}"

    @property
    def built(self) -> bool:
        """True once the index exists (a graph never indexed was never edited structurally)."""
        return self._built

    # =================================================================
    # subgraphs
    # =================================================================
    def _holders(self) -> list[Node]:
        """Nodes of this scope that hold subgraphs, in node order; without building the index.
        Found once (or given by the load's walk, :meth:`_seed_holders`) and kept until the index
        is built; a node list that changed length since is scanned again."""
        if self._built:
            return list(self._sub_nodes.values())
        nodes = self._proto.node
        if self._sub_list is None or self._sub_count != len(nodes):
            self._seed_holders([(i, p) for i, p in enumerate(nodes) if has_graph_attribute(p)])
        return self._sub_list

    def _seed_holders(self, found: list[tuple[int, onnx.NodeProto]]) -> None:
        """Record the holders of this scope, (position, NodeProto) pairs, as a walk over the
        proto just found them (before the index exists)."""
        self._sub_list = [self._wrap(p, i) for i, p in found]
        self._sub_count = len(self._proto.node)

    def subgraphs(self) -> list:
        """Direct subgraphs (If branches, Loop/Scan bodies) of this graph's nodes."""
        return [g for n in self._holders() for g in flatten(n.subgraphs().values())]

    def holder(self) -> Node | None:
        """The node whose graph attribute holds this subgraph (None for a main graph or function)."""
        return self.owner

    def holder_of(self, node: Node) -> Node:
        """The node of this scope that is ``node`` or holds it in a (nested) subgraph."""
        while node._graph is not self:
            node = node._graph.owner
        return node

    def _wrap(self, proto: onnx.NodeProto, position: int) -> Node:
        """The one Node for ``proto``, made without building the full index."""
        node = self._wrapped.get(id(proto))
        if node is None:
            node = self._wrapped[id(proto)] = Node(proto, self, (float(position), 0))
        return node

    # =================================================================
    # names
    # =================================================================
    def defines(self, name: str) -> bool:
        """True when ``name`` is a graph input, initializer or node output of this scope."""
        self._ensure()
        return name in self._producer or name in self._input_set or name in self._inits or name in self._sparse

    def resolve(self, name: str) -> Scope | None:
        """The scope that defines ``name``: this one or the nearest enclosing one; None if none does."""
        g: Scope | None = self
        while g is not None:
            if g.defines(name):
                return g
            g = g.parent
        return None

    def producer(self, name: str) -> Node | None:
        """The node producing ``name`` in this scope or an enclosing one (None for inputs/initializers)."""
        g = self.resolve(name)
        return g._producer.get(name) if g is not None else None

    def defined_names(self) -> set[str]:
        """Names this scope defines: node outputs, graph inputs, initializers (read from the
        proto when the index does not exist yet: asking does not build it)."""
        if self._built:
            return set().union(self._producer, self._input_set, self._inits, self._sparse)
        proto = self._proto
        names = {o for p in proto.node for o in p.output if o}
        if self.is_function:
            names.update(proto.input)
        else:
            names.update(vi.name for vi in proto.input)
            names.update(t.name for t in proto.initializer)
            names.update(s.values.name for s in proto.sparse_initializer)
        return names

    def visible_names(self) -> set[str]:
        """Names defined here or in an enclosing scope (a full set: for messages and analysis)."""
        names: set[str] = set()
        g: Scope | None = self
        while g is not None:
            names |= g.defined_names()
            g = g.parent
        return names

    def names_below(self, exclude: Node | None = None) -> set[str]:
        """Names defined in the subgraphs of this scope's nodes (except ``exclude``'s), at any depth."""
        names: set[str] = set()
        stack = [g for n in self._holders() if n is not exclude for g in flatten(n.subgraphs().values())]
        while stack:
            h = stack.pop()
            names |= h.defined_names()
            stack.extend(h.subgraphs())
        return names

    def is_taken(self, name: str, exclude: Node | None = None) -> bool:
        """True when a new definition of ``name`` here would clash: it is visible here, or defined
        in a subgraph below (other than ``exclude``'s)."""
        return self.taken_check(exclude)(name)

    def taken_check(self, exclude: Node | None = None):
        """:meth:`is_taken` as a function of the name, for asking about many names: what
        ``exclude``'s subgraphs define is counted once, not per name."""
        authority = getattr(self.model, "names", None)
        gone: list[Counter] = []  # what exclude's subgraphs define, counted when first needed

        def taken(name: str) -> bool:
            if authority is not None and not authority.may_exist(name):
                return False
            if self.resolve(name) is not None:
                return True
            count = self._below_counts().get(name, 0)
            if count <= 0 or exclude is None:
                return count > 0
            if not gone:
                gone.append(holder_definitions(exclude))
            return count > gone[0].get(name, 0)
        return taken

    # the count of names defined below: kept by the edits, so is_taken costs what the name costs
    def _below_counts(self) -> Counter:
        """How many scopes under this one's nodes (at any depth) define each name."""
        if self._below is None:
            count: Counter = Counter()
            for n in self._holders():
                count.update(holder_definitions(n))
            self._below = count
        return self._below

    def _live_parent(self) -> Scope | None:
        """The enclosing scope, when this scope is still what its holder there shows."""
        parent, holder = self.parent, self.owner
        if parent is None or holder is None or holder._rank is None or holder._subgraphs is None:
            return None
        if not any(g is self for g in flatten(holder._subgraphs.values())):
            return None
        return parent

    def _below_watched(self, here: bool) -> bool:
        """True when this scope (``here``) or one enclosing it keeps a count of the names below."""
        g = self if here else self._live_parent()
        while g is not None:
            if g._below is not None:
                return True
            g = g._live_parent()
        return False

    def _below_changed(self, gained: Iterable[str], lost: Iterable[str], here: bool) -> None:
        """Names defined under this scope's nodes changed (``here``: a holder of this scope came
        or went), or names this scope defines changed (not ``here``: they are below its
        enclosing scopes). Brings the counts of those that keep one up to date."""
        g = self if here else self._live_parent()
        while g is not None:
            below = g._below
            if below is not None:
                below.update(gained)
                below.subtract(lost)
            g = g._live_parent()

    def _definitions_changed(self, gained: Iterable[str] = (), lost: Iterable[str] = ()) -> None:
        """Names this scope defines were added (``gained``) or are defined here no more (``lost``)."""
        if self.parent is not None and self._below_watched(False):
            self._below_changed([n for n in gained if n], [n for n in lost if n], False)

    def _holder_changed(self, node: Node, added: bool) -> None:
        """A node holding subgraphs joined this scope (``added``) or left it."""
        if self._below_watched(True):
            defs = holder_definitions(node)
            self._below_changed(defs, (), True) if added else self._below_changed((), defs, True)

    def _below_reset(self) -> None:
        """What some subgraph under this scope holds was replaced: count again when asked, here
        and above."""
        g: Scope | None = self
        while g is not None:
            g._below = None
            g = g.parent

    @property
    def output_names(self) -> list[str]:
        return list(self._proto.output) if self.is_function else [vi.name for vi in self._proto.output]

    def _output_set(self) -> set[str]:
        """Output names as a set, kept while the proto's output list keeps its length (the
        verbs here reset it; a caller appending to the proto directly changes the length)."""
        self._ensure()
        if self._outputs is None or self._outputs[0] != len(self._proto.output):
            self._outputs = (len(self._proto.output), set(self.output_names))
        return self._outputs[1]

    # =================================================================
    # readers
    # =================================================================
    def captured(self) -> frozenset[str]:
        """Names read in this graph or its subgraphs (or returned as outputs) but defined outside it."""
        view = self._free_view
        if view is None:
            view = self._free_view = frozenset(self._free_set())
        return view

    def _free_set(self) -> set[str]:
        """The live set behind :meth:`captured` (computed once, then kept by the edits)."""
        if self._free is None:
            self._ensure()
            free = {name for name in self._uses if not self.defines(name)}
            free.update(name for name in self._output_set() if name and not self.defines(name))
            for n in self._sub_nodes.values():
                for g in flatten(n.subgraphs().values()):
                    free.update(name for name in g._free_set() if not self.defines(name))
            self._free = free
        return self._free

    def _capture_index(self) -> dict[str, dict[int, Node]]:
        """Holders of this scope by the names their subgraphs capture ({id(node): node} each)."""
        if self._captures is None:
            self._ensure()
            index: dict[str, dict[int, Node]] = {}
            for n in self._sub_nodes.values():
                for name in self._holder_reads(n):
                    index.setdefault(name, {})[id(n)] = n
            self._captures = index
        return self._captures

    def _capturing(self, name: str) -> list[Node]:
        """Holders of this scope whose subgraphs read ``name`` from here or above."""
        entry = self._capture_index().get(name)
        return list(entry.values()) if entry else []

    @staticmethod
    def _holder_reads(node: Node) -> set[str]:
        """Names the subgraphs of ``node`` read from outside them."""
        names: set[str] = set()
        for g in flatten(node.subgraphs().values()):
            names |= g._free_set()
        return names

    def _invalidate_free(self, names: Iterable[str] | None = None) -> None:
        """What this scope reads or defines changed. With ``names`` (every name whose reading or
        definition here changed), :meth:`captured` is brought up to date for those names, here
        and in the enclosing scopes; without, it is recomputed when next asked, here and above."""
        self._inputs_ordered = False
        if names is not None and self._free is not None:
            self._refresh_free(names)
            return
        self._free = None
        self._free_view = None
        g = self.parent
        while g is not None:
            g._free = None
            g._free_view = None
            g._captures = None
            g = g.parent

    def _refresh_free(self, names: Iterable[str]) -> None:
        free = self._free
        outputs = self._output_set()
        captures = self._capture_index() if self._sub_nodes else _NO_HOLDERS
        gained, lost = [], []
        for n in names:
            if not n:
                continue
            now = (n in self._uses or n in outputs or n in captures) and not self.defines(n)
            if now != (n in free):
                if now:
                    free.add(n)
                    gained.append(n)
                else:
                    free.discard(n)
                    lost.append(n)
        if not gained and not lost:
            return
        self._free_view = None
        parent, holder = self.parent, self.owner
        if parent is None:
            return
        current = holder is not None and holder._rank is not None and holder._subgraphs is not None and any(
            g is self for g in flatten(holder._subgraphs.values()))
        if not current:  # a graph its holder no longer shows (or holds no longer): recompute above
            g = parent
            while g is not None:
                g._free = None
                g._free_view = None
                g._captures = None
                g = g.parent
            return
        index = parent._captures
        if index is not None:
            for n in gained:
                index.setdefault(n, {})[id(holder)] = holder
            for n in lost:
                entry = index.get(n)
                if entry is not None and not any(n in g._free_set() for g in flatten(holder._subgraphs.values())):
                    entry.pop(id(holder), None)
                    if not entry:
                        del index[n]
        if parent._free is not None:
            parent._refresh_free(gained + lost)

    def uses(self, name: str) -> list[Use]:
        """Every ``Use(node, index)`` reading ``name``, including nodes inside subgraphs that read
        it from the enclosing scope. A snapshot: safe to edit while iterating."""
        g = self.resolve(name) or self
        return g._uses_here(name)

    def _uses_here(self, name: str) -> list[Use]:
        out = self._direct_uses(name)
        for g in self._subgraphs_reading(name):
            out.extend(g._uses_here(name))
        return out

    def _reader_nodes(self, name: str) -> list[Node]:
        """The nodes of :meth:`_uses_here`, without their input indices (no proto is read)."""
        self._ensure()
        out = readers_in(self._uses, name)
        for g in self._subgraphs_reading(name):
            out.extend(g._reader_nodes(name))
        return out

    def _subgraphs_reading(self, name: str):
        """The subgraphs of this scope's nodes that read ``name`` from outside themselves."""
        for n in self._capturing(name):
            for g in flatten(n.subgraphs().values()):
                if name in g._free_set():
                    yield g

    def _direct_uses(self, name: str) -> list[Use]:
        """``Use``s of ``name`` by the nodes of this scope itself (not of its subgraphs)."""
        self._ensure()
        return [Use(n, j) for n in readers_in(self._uses, name) for j, x in enumerate(n.proto.input) if x == name]

    def consumers(self, name: str) -> list[Node]:
        """Nodes reading ``name`` (each once), subgraph nodes included."""
        seen: dict[int, Node] = {}
        for node, _ in self.uses(name):
            seen.setdefault(id(node.proto), node)
        return list(seen.values())

    def output_refs(self, name: str) -> list[tuple[Scope, int]]:
        """(graph, output index) for this scope's and its subgraphs' outputs naming ``name``."""
        self._ensure()
        out = [(self, i) for i, o in enumerate(self.output_names) if o == name] if name in self._output_set() else []
        for n in self._capturing(name):
            for g in flatten(n.subgraphs().values()):
                if name in g._free_set():
                    out.extend(g.output_refs(name))
        return out

    def is_used(self, name: str) -> bool:
        """True when a node, a graph output, or a subgraph reads ``name``."""
        g = self.resolve(name) or self
        g._ensure()
        return name in g._uses or name in g._output_set() or name in g._capture_index()

    def reads(self, node: Node) -> set[str]:
        """Names a node of this scope reads: its inputs and what its subgraphs capture."""
        self._ensure()
        names = {x for x in node.proto.input if x}
        if id(node.proto) in self._sub_nodes:
            names |= self._holder_reads(node)
        return names

    def _readers(self, node: Node) -> Iterator[Node]:
        """Nodes of this scope reading an output of ``node``, directly or from a subgraph."""
        captures = self._capture_index()
        for out in node.proto.output:
            if out:
                yield from readers_in(self._uses, out)
                entry = captures.get(out)
                if entry:
                    yield from entry.values()


__all__ = ["Scope", "Use", "flatten", "GRAPH_TYPES", "add_reader", "drop_reader", "readers_in"]
