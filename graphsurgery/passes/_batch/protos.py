"""Proto-level helpers of set-batch: declared dims, probe copies; what a subgraph reads from outside
(from the core's scope index)."""

from __future__ import annotations

from ...core.graph import Graph, Node
from ...core.model import Model
from ...core.scope import flatten
from ...ops import is_default_domain
from ..base import PassError
from .common import _PARAMETER_OPS, B1, B2


def _dim(vi, axis):
    d = vi.type.tensor_type.shape.dim[axis]
    return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)


def _set_one(dim, value) -> None:
    if isinstance(value, int):
        dim.ClearField("dim_param")
        dim.dim_value = value
    else:
        dim.ClearField("dim_value")
        dim.dim_param = value


def _set_dims(g: Graph, targets, value) -> None:
    for name, axis in targets:
        dims = g.value_info(name).type.tensor_type.shape.dim
        if axis >= len(dims):
            raise PassError(f"set-batch: input {name!r} has rank {len(dims)}; it has no axis {axis}")
        _set_one(dims[axis], value)


def _probe_copy(model: Model, targets, value: int) -> Model:
    """A copy with the batch set to ``value`` and nothing that would pin the old shapes:
    declared output dims and value_info are cleared, so inference derives every shape."""
    probe = model.copy()
    _set_dims(probe.graph, targets, value)
    for vi in probe.proto.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del probe.proto.graph.value_info[:]
    return probe


def _batch_axes(d1, d2) -> list[int]:
    if d1 is None or d2 is None or len(d1) != len(d2):
        return []
    return [i for i, (a, b) in enumerate(zip(d1, d2, strict=True)) if a == B1 and b == B2]




def captured(node: Node) -> set[str]:
    """The names the subgraphs of ``node`` read from outside them (at any depth): what the
    node takes in besides its inputs, as the core's scope index knows it."""
    return set().union(*(g.captured() for g in flatten(node.subgraphs().values())))


def _only_a_parameter(g: Graph, name: str) -> bool:
    readers = [n for n in g.consumers(name) if n.graph is g]
    return bool(readers) and all(n.op_type in _PARAMETER_OPS and is_default_domain(n.domain)
                                 and list(n.inputs).index(name) >= 1 and name not in n.inputs[:1]
                                 for n in readers) and not any(
        name in captured(n) for n in g.nodes if n.has_subgraphs())
