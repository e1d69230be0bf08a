"""Bridges to networkx (analysis) and onnx-graphsurgeon (existing scripts). Both import lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from .errors import GraphSurgeryError

if TYPE_CHECKING:
    from .core.graph import Graph
    from .core.model import Model


def to_networkx(graph: Graph, *, recursive: bool = False):
    """A ``networkx.MultiDiGraph`` of ``graph``: one vertex per node (keyed by the Node), one edge per
    tensor hop from producer to reader (``tensor`` and ``index`` edge attributes). Graph inputs,
    initializers and outputs are vertices ``("input", name)``, ``("initializer", name)``, ``("output", name)``.
    With ``recursive``, a subgraph node that reads an outer tensor is linked from its producer too.
    """
    try:
        import networkx as nx
    except ImportError as exc:  # pragma: no cover - networkx is a dependency
        raise GraphSurgeryError("to_networkx needs networkx: pip install networkx") from exc
    g = nx.MultiDiGraph()
    inits = set(graph.initializers)
    for name in graph.input_names:
        g.add_node(("input", name), kind="input")
    for name in inits:
        if name not in graph.input_names:
            g.add_node(("initializer", name), kind="initializer")
    nodes = list(graph.walk()) if recursive else graph.nodes
    for n in nodes:
        g.add_node(n, kind="node", op_type=n.op_type, name=n.name)
    for n in nodes:
        for idx, name in enumerate(n.inputs):
            if not name:
                continue
            src = n.graph.producer(name)
            if src is not None:
                if src in g:
                    g.add_edge(src, n, tensor=name, index=idx)
            elif name in graph.input_names:
                g.add_edge(("input", name), n, tensor=name, index=idx)
            elif name in inits:
                g.add_edge(("initializer", name), n, tensor=name, index=idx)
    for i, name in enumerate(graph.output_names):
        g.add_node(("output", name), kind="output")
        src = graph.producer(name)
        if src is not None:
            g.add_edge(src, ("output", name), tensor=name, index=i)
    return g


def to_graphsurgeon(model: Model):
    """Convert to an ``onnx_graphsurgeon.Graph`` (a copy: edits there do not reach ``model``)."""
    gs = _import_gs()
    return gs.import_onnx(model.proto)


def from_graphsurgeon(gs_graph) -> Model:
    """Build a :class:`Model` from an ``onnx_graphsurgeon.Graph``."""
    from .core.model import Model

    gs = _import_gs()
    proto = gs.export_onnx(gs_graph)
    if not isinstance(proto, onnx.ModelProto):  # pragma: no cover - defensive
        raise GraphSurgeryError("onnx_graphsurgeon.export_onnx did not return a ModelProto")
    return Model(proto)


def _import_gs():
    try:
        import onnx_graphsurgeon as gs
    except ImportError as exc:
        raise GraphSurgeryError(
            "onnx-graphsurgeon is not installed; install it with: pip install 'graphsurgery[graphsurgeon]'"
        ) from exc
    return gs
