"""Shape facts about a model, from onnx's shape inference, without touching the model."""

from __future__ import annotations

import logging

import onnx

log = logging.getLogger("graphsurgery")


class Types:
    """Inferred tensor types, per scope: sibling subgraphs may reuse a name for different
    tensors, so a name is looked up in its own graph, then in the enclosing ones."""

    def __init__(self, by_graph: dict):
        self._by_graph = by_graph

    def get(self, graph, name: str) -> onnx.TypeProto | None:
        g = graph
        while g is not None:
            t = self._by_graph.get(g, {}).get(name)
            if t is not None:
                return t
            g = g.parent
        return None


def infer(model) -> Types:
    """Types of every tensor onnx can infer, in every graph of ``model`` (a graphsurgery Model).

    Runs on a serialized copy (the model is not modified) with data propagation, so shapes
    computed by ``Shape``/``Gather``/``Concat`` chains are known too. Inference errors (custom
    ops, inconsistent value_info) degrade to what is recorded in the model.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model.proto, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        log.debug("shape inference failed: %s", exc)
        inferred = model.proto
    by_graph: dict = {}
    _pair(model.graph, inferred.graph, by_graph)
    return Types(by_graph)


def _pair(g, proto: onnx.GraphProto, by_graph: dict) -> None:
    """Record ``proto``'s types for our graph ``g``, and recurse into subgraphs in step (shape
    inference keeps node order, so the i-th node of one is the i-th node of the other)."""
    types: dict[str, onnx.TypeProto] = {}
    for field in (proto.input, proto.output, proto.value_info):
        for vi in field:
            if vi.HasField("type") and vi.name not in types:
                types[vi.name] = vi.type
    for t in proto.initializer:
        types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    by_graph[g] = types
    if len(proto.node) != len(g.proto.node):
        return
    for node, inferred_node in zip(g.nodes_in_file_order(), proto.node, strict=True):
        if not node.has_subgraphs():
            continue
        subs = node.subgraphs()
        for a in inferred_node.attribute:
            if a.type == onnx.AttributeProto.GRAPH and a.name in subs:
                _pair(subs[a.name], a.g, by_graph)
            elif a.type == onnx.AttributeProto.GRAPHS and a.name in subs:
                for sub, ga in zip(subs[a.name], a.graphs, strict=False):
                    _pair(sub, ga, by_graph)


def static_shape(t: onnx.TypeProto | None) -> tuple[int, ...] | None:
    """The shape when every dim is a known number, else None."""
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in t.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(d.dim_value)
    return tuple(dims)


def rank(t: onnx.TypeProto | None) -> int | None:
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return len(t.tensor_type.shape.dim)


def dims(t: onnx.TypeProto | None) -> list[int | str | None] | None:
    """Dims as ints, symbolic names, or None for unknown; None when the rank is unknown."""
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim]
