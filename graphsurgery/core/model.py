"""The :class:`Model`: a live ``onnx.ModelProto`` plus indexes and verbs, and :func:`load`."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from typing import Any

import onnx

from .. import checks, serialization
from ..errors import GraphSurgeryError, InvalidModelError, ModelLoadError
from ..ops import DEFAULT_DOMAINS, is_default_domain
from . import hooks
from .graph import Graph
from .names import NameAuthority
from .node import Node


def load(source: Any, *, base_dir: str | None = None) -> Model:
    """Open a model from a path, bytes, an ``onnx.ModelProto`` (wrapped, not copied) or a Model.

    External tensor data is not read: it is checked lazily and memory-mapped on first use.
    Refuses files that are empty, truncated or not ONNX, and models whose names are ambiguous
    (duplicate opsets, initializers or producers), with an error naming the culprit.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        serialization.validate_header(source, "the model")
        serialization.validate_text(source, "the model")
        model = Model(source, base_dir=base_dir)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        model = Model(serialization.parse(bytes(source), "the given bytes"), base_dir=base_dir)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        proto = serialization.parse(serialization.read_file(path), f"model file {path}")
        model = Model(proto, base_dir=base_dir or os.path.dirname(os.path.abspath(path)), source_path=path)
    else:
        raise ModelLoadError(f"cannot load a model from {type(source).__name__}; give a path, bytes or a ModelProto")
    model._validate()
    return model


class Model:
    """An ONNX model being edited. ``proto`` is the live ModelProto; everything else is a view."""

    def __init__(self, proto: onnx.ModelProto, *, base_dir: str | None = None, source_path: str | None = None):
        self._proto = proto
        self._unsorted = False
        self._lagging: dict[int, Graph] = {}  # graphs whose proto lags their index, by id
        self.base_dir = base_dir
        self.source_path = os.path.abspath(source_path) if source_path else None
        self.graph = Graph(proto.graph, self)
        self._functions: dict | None = None
        self.names = NameAuthority(self._collect_names)
        """The name authority: which names the model uses, and fresh ones."""
        self._verified: checks.Verified | None = None  # the last state the full check passed

    @property
    def proto(self) -> onnx.ModelProto:
        """The live ModelProto. Reading it restores topological order first, if an edit may have
        broken it, so whatever you hand it to (onnx, onnxruntime, other tools) sees a valid model."""
        if self._unsorted:
            self._unsorted = False
            lagging, self._lagging = self._lagging, {}
            for g in lagging.values():
                g._sync()
        return self._proto

    def _validate(self) -> None:
        """Refuse, at load, what makes the main graph's names ambiguous and is cheap to see:
        initializers defined twice. Node-level problems (duplicate producers, dangling inputs,
        cycles) surface when the index is first built, in :meth:`check`, and at save.

        The same walk records which nodes of the main graph hold subgraphs, so that
        :meth:`graphs` and :meth:`find_nodes` need not look at every attribute again."""
        main = self._proto.graph
        stack = [(main, "the main graph", False)]
        stack += [(f, f"function {f.domain}::{f.name}", True) for f in self._proto.functions]
        while stack:  # attribute references belong in function bodies only, and never stand for a graph
            g, where, in_function = stack.pop()
            holders: list[tuple[int, onnx.NodeProto]] = []
            for i, n in enumerate(g.node):
                attrs = n.attribute
                k = len(attrs)
                if k == 1:  # the usual case, and indexing is cheaper than iterating
                    a = attrs[0]
                    if (a.ref_attr_name or a.type in _GRAPH_TYPES) and _check_attribute(n, a, where, in_function,
                                                                                         stack):
                        holders.append((i, n))
                elif k and any([_check_attribute(n, a, where, in_function, stack)
                                for a in attrs if a.ref_attr_name or a.type in _GRAPH_TYPES]):
                    holders.append((i, n))
            if g is main:
                self.graph._seed_holders(holders)
        names = [t.name for t in main.initializer]
        if len(set(names)) == len(names):
            return
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise InvalidModelError(f"initializer {name!r} appears twice; tools disagree on which copy wins, "
                                        "so remove one of them", [f"duplicate initializer {name!r}"])
            seen.add(name)

    # ---- views -----------------------------------------------------------
    @property
    def ir_version(self) -> int:
        return self.proto.ir_version

    @property
    def opsets(self) -> dict[str, int]:
        """Imported opset version by domain ("" is the default ONNX domain)."""
        return {op.domain: op.version for op in self.proto.opset_import}

    def opset(self, domain: str = "") -> int | None:
        """The imported version of ``domain``; the default domain under either spelling."""
        if is_default_domain(domain):
            found = [self.opsets[d] for d in DEFAULT_DOMAINS if d in self.opsets]
            return found[0] if found else None
        return self.opsets.get(domain)

    @property
    def functions(self) -> dict[tuple[str, str], Graph]:
        """Model-local functions by (domain, name), as graphs you can look into and edit."""
        if self._functions is None:
            self._functions = {(f.domain, f.name): Graph(f, self) for f in self.proto.functions}
        return self._functions

    @property
    def metadata(self) -> dict[str, str]:
        """``metadata_props`` as a dict (a snapshot; change with :meth:`set_metadata`)."""
        return {p.key: p.value for p in self.proto.metadata_props}

    def set_metadata(self, key: str, value: str | None) -> None:
        props = self.proto.metadata_props
        for i, p in enumerate(props):
            if p.key == key:
                if value is None:
                    del props[i]
                else:
                    p.value = value
                return
        if value is not None:
            entry = props.add()
            entry.key, entry.value = key, value

    def graphs(self) -> Iterator[Graph]:
        """The main graph, every subgraph and every function body, depth-first."""
        stack = [self.graph, *self.functions.values()]
        while stack:
            g = stack.pop(0)
            yield g
            stack[0:0] = g.subgraphs()

    def find_nodes(self, op_type: str | None = None, domain: str | None = None, *, name: str | None = None
                   ) -> list[Node]:
        """Matching nodes in every graph: main graph, subgraphs and function bodies."""
        return [n for g in self.graphs() for n in g.find_nodes(op_type, domain, name=name)]

    def node(self, name: str) -> Node:
        """The node called ``name`` anywhere in the model."""
        for g in self.graphs():
            for n in g.nodes:
                if n.proto.name == name:
                    return n
        from ..errors import not_found
        raise not_found("node", name, (n.proto.name for g in self.graphs() for n in g.nodes), "the model")

    def op_histogram(self) -> dict[str, int]:
        """How many nodes of each op type (``domain::Op`` outside the default domain), subgraphs included."""
        counts = collections.Counter(
            (f"{n.proto.domain}::{n.proto.op_type}" if not is_default_domain(n.proto.domain) else n.proto.op_type)
            for g in self.graphs() for n in g.nodes)
        return dict(counts.most_common())

    # ---- names -----------------------------------------------------------
    def _collect_names(self) -> tuple[set[str], set[str]]:
        names: set[str] = set()
        node_names: set[str] = set()
        for g in self.graphs():
            names |= g.defined_names()
            names.update(g.output_names)
            node_names.update(n.proto.name for n in g.nodes_in_file_order())
        return names, node_names

    # ---- whole-model operations -----------------------------------------------
    def toposort(self) -> None:
        """Put the nodes of every graph in a valid order, keeping the current one where it is valid."""
        for g in self.graphs():
            g.toposort()

    def remove_unused(self) -> dict[str, int]:
        """Remove dead nodes, unused initializers and stale value_info in every graph."""
        return self.graph.remove_unused()

    def problems(self, *, onnx_checker: bool = True, full: bool = True) -> list[str]:
        """Every problem :meth:`check` would raise for, one line each."""
        found, verified = checks.review(self.proto, self.base_dir, self._index_problems, known=self._verified,
                                        onnx_checker=onnx_checker, full=full)
        if verified is not None:
            self._verified = verified
        return found

    def check(self, *, onnx_checker: bool = True, full: bool = True) -> None:
        """Raise :class:`InvalidModelError` listing every problem: onnx's checker (with shape
        inference when ``full``) plus single producers, no dangling inputs, no cycles,
        unique initializers, outputs with producers, opsets present."""
        found = self.problems(onnx_checker=onnx_checker, full=full)
        if found:
            head = found[0] if len(found) == 1 else f"{len(found)} problems, first: {found[0]}"
            raise InvalidModelError(head, found)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, external_data: bool | None = None,
             location: str | None = None, size_threshold: int = 1024, check: bool = True,
             durable: bool = False, progress=None) -> None:
        """Write the model atomically (temporary file, then rename).

        - ``external_data``: None (default) keeps weights external if they were, and switches to
          external data when the model reaches 2 GiB; True/False force it. External data goes to
          one file, ``location`` (default ``<file name>.data``), beside ``path``; initializers of
          ``size_threshold`` bytes or more move there. Afterwards the model reads its weights
          from that new file.
        - Refuses to overwrite the file the model was loaded from unless ``overwrite=True``, to
          write a model :meth:`check` rejects unless ``check=False``, and to write
          subgraphs nested deeper than protobuf readers accept.
        - ``progress(done, total, label)`` is called as external tensors are written.
        - The write is atomic against anything that can happen to this process (a reader sees
          the old file or the new one). ``durable=True`` also flushes to the device before
          returning, so the new files survive a power loss.
        """
        from ..errors import SaveError

        self._restore_order()
        data = self._proto.SerializeToString()
        options = dict(base_dir=self.base_dir, source_path=self.source_path, overwrite=overwrite,
                       external=external_data, location=location, size_threshold=size_threshold, durable=durable,
                       progress=progress)
        pending: list[serialization.PendingSave] = []

        def write(scanned: checks.ScanResult, checked: bytes) -> None:
            # while onnx's checker runs in its child: the very bytes it checks, under a temporary name
            # (asked again when the scan there finds other facts than assumed: what was written goes)
            while pending:
                pending.pop().discard()
            pending.append(serialization.prepare(self._proto, os.fspath(path), depth=scanned.depth,
                                                 has_external=scanned.has_external, data=checked, **options))

        verified = None
        try:
            if check:
                # everything check() looks at: a saved model is one check() accepts. A state that
                # passed already (same bytes, same folder) is not checked again, but for its external files.
                found, verified = checks.review(self._proto, self.base_dir, self._index_problems,
                                                known=self._verified, data=data, ordered=True, meanwhile=write)
                if found:
                    raise SaveError(f"refusing to save a broken model ({len(found)} problem(s)): {found[0]}. "
                                    "Fix it, or pass check=False to save anyway")
            else:
                write(checks.scan(self._proto), data)  # one ordered pass: nesting depth, external data
            saved = pending.pop().commit()
        finally:
            for p in pending:
                p.discard()
        if saved.base_dir is not None:
            self.base_dir = saved.base_dir
        if verified is not None:
            # what was written is what passed, its weights perhaps moved in or out of the file
            self._verified = verified if saved.data is data else checks.Verified(
                checks.fingerprint(saved.data), self.base_dir, verified.depth, saved.external)

    def _index_problems(self) -> list[str]:
        """What the scope index finds wrong in every graph, one line each (the checks ask)."""
        found: list[str] = []
        for g in [self.graph, *self.functions.values()]:
            try:
                _graph_problems(g, found)
            except GraphSurgeryError as exc:
                found.append(str(exc))
        return found

    def _restore_order(self) -> None:
        """Bring the node lists of graphs edited since the last read up to date (only those:
        the rest are as loaded); a graph with a cycle keeps its order, for check() to report."""
        self._unsorted = False
        self._lagging = {}
        stack = [self.graph, *(self._functions or {}).values()]
        while stack:
            g = stack.pop()
            if not g.built:
                continue  # never indexed, so never edited structurally
            g._sync()
            stack.extend(g.subgraphs())

    def to_bytes(self) -> bytes:
        """The serialized model (external tensors stay references)."""
        self._restore_order()
        return self.proto.SerializeToString()

    def copy(self) -> Model:
        """An independent deep copy (external data is shared, read-only)."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        return Model(proto, base_dir=self.base_dir)

    # ---- interop (graphsurgery.interop, a layer above the core, plugs in through hooks) ----------
    def to_networkx(self, *, recursive: bool = False):
        """A ``networkx.MultiDiGraph``: see :func:`graphsurgery.interop.to_networkx`."""
        return hooks.render("networkx", self.graph, recursive)

    def to_graphsurgeon(self):
        """An ``onnx_graphsurgeon.Graph`` for existing graphsurgeon scripts."""
        return hooks.render("graphsurgeon", self)

    @classmethod
    def from_graphsurgeon(cls, gs_graph) -> Model:
        return hooks.render("from-graphsurgeon", gs_graph)

    def _repr_html_(self) -> str:
        return hooks.render("model", self)

    def __repr__(self) -> str:
        ops = ", ".join(f"{d or 'ai.onnx'}:{v}" for d, v in self.opsets.items())
        return (f"<Model {self.proto.graph.name!r}: {len(self.proto.graph.node)} nodes, "
                f"inputs {self.graph.input_names}, outputs {self.graph.output_names}, opsets {ops}>")


_GRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _check_attribute(n: onnx.NodeProto, a: onnx.AttributeProto, where: str, in_function: bool,
                     stack: list) -> bool:
    """Refuse an attribute reference :meth:`Model._validate` cannot accept; push the graphs of
    a graph attribute on ``stack``. True when ``a`` holds a graph."""
    if a.ref_attr_name and in_function and a.type in _GRAPH_TYPES:
        raise InvalidModelError(
            f"attribute {a.name!r} of node {n.name!r} in {where} takes its graph from the function "
            f"attribute {a.ref_attr_name!r}; graphsurgery cannot look into such a body",
            [f"graph attribute reference: {n.name!r}.{a.name}"])
    if a.ref_attr_name and not in_function:
        raise InvalidModelError(
            f"attribute {a.name!r} of node {n.name!r} in {where} refers to a function attribute "
            f"({a.ref_attr_name!r}), which only nodes inside a function body may do",
            [f"attribute reference outside a function: {n.name!r}.{a.name}"])
    if a.type == onnx.AttributeProto.GRAPH:
        stack.append((a.g, f"{where} › {n.name!r}.{a.name}", in_function))
        return True
    if a.type == onnx.AttributeProto.GRAPHS:
        stack.extend((sub, f"{where} › {n.name!r}.{a.name}", in_function) for sub in a.graphs)
        return True
    return False


def _graph_problems(g: Graph, found: list[str]) -> None:
    try:
        nodes = g.nodes_in_file_order()
    except InvalidModelError as exc:
        found.append(str(exc))
        return
    where = g.describe()
    for n in nodes:
        for name in n.proto.input:
            if name and g.resolve(name) is None:
                found.append(f"node {n.name!r} ({n.op_type}) in {where} reads {name!r}, which nothing defines "
                             "(dangling input)")
        for name in n.proto.output:
            if name and g.parent is not None and g.parent.resolve(name) is not None:
                found.append(f"node {n.name!r} in {where} redefines {name!r} from an enclosing scope")
    for name in g.output_names:
        if name and g.resolve(name) is None:
            found.append(f"output {name!r} of {where} has no producer")
    for name in g.input_names:
        if g.producer(name) is not None:
            found.append(f"{name!r} is both an input of {where} and the output of node {g.producer(name).name!r}")
    for name in g.initializers:
        if g.producer(name) is not None:
            found.append(f"{name!r} is both an initializer of {where} and the output of node "
                         f"{g.producer(name).name!r}")
    try:
        g.toposort()
    except InvalidModelError as exc:
        found.append(str(exc))
    for sub in g.subgraphs():
        _graph_problems(sub, found)


__all__ = ["Model", "load"]
