"""Shape facts about a model, from onnx's shape inference, without touching the model."""

from __future__ import annotations

import logging

import onnx

log = logging.getLogger("graphsurgery")


def infer(model_proto: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Types of every tensor onnx can infer, main graph and subgraphs, by name.

    Runs on a serialized copy (the model is not modified) with data propagation, so shapes
    computed by ``Shape``/``Gather``/``Concat`` chains are known too. Inference errors (custom
    ops, inconsistent value_info) degrade to what could be inferred before them.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model_proto, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        log.debug("shape inference failed: %s", exc)
        inferred = model_proto
    types: dict[str, onnx.TypeProto] = {}
    stack = [inferred.graph]
    while stack:
        g = stack.pop()
        for field in (g.input, g.output, g.value_info):
            for vi in field:
                if vi.HasField("type") and vi.name not in types:
                    types[vi.name] = vi.type
        for t in g.initializer:
            types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return types


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
