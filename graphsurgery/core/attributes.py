"""Node attributes as plain Python values.

``node.attrs["epsilon"]`` reads a float, ``node.attrs["pads"] = [0, 0, 1, 1]`` writes
a list of ints. Writing to an existing attribute keeps its declared type (an int
written to a FLOAT attribute is stored as a float); a new attribute takes its type
from the value. Tensors read as numpy arrays, graphs as :class:`graphsurgery.Graph`.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .. import tensors
from ..errors import EditError, not_found

A = onnx.AttributeProto
_GRAPH_TYPES = (A.GRAPH, A.GRAPHS)


class Attributes(MutableMapping):
    """A live mapping view over a node's attributes."""

    __slots__ = ("_node",)

    def __init__(self, node: Node):  # noqa: F821 (a type of the scope above, named only)
        self._node = node

    def _find(self, key: str) -> onnx.AttributeProto | None:
        for attr in self._node.proto.attribute:
            if attr.name == key:
                return attr
        return None

    def proto(self, key: str) -> onnx.AttributeProto:
        """The AttributeProto itself, for what plain values cannot express."""
        attr = self._find(key)
        if attr is None:
            raise not_found("attribute", key, self, f"node {self._node.name!r} ({self._node.op_type})")
        return attr

    def __getitem__(self, key: str) -> Any:
        return self._decode(self.proto(key))

    def get(self, key: str, default: Any = None) -> Any:
        attr = self._find(key)
        return default if attr is None else self._decode(attr)

    def __setitem__(self, key: str, value: Any) -> None:
        node = self._node
        old = self._find(key)
        if old is not None and not old.ref_attr_name:  # fast path: an existing scalar keeps its type
            t = old.type
            if t == A.FLOAT and (type(value) is float or isinstance(value, (int, np.integer, np.floating))
                                 and not isinstance(value, bool)):
                node._graph._check_alive(node)
                old.f = float(value)
                return
            if t == A.INT and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                node._graph._check_alive(node)
                old.i = int(value)
                return
        new = encode(key, value, old)
        node._graph._check_alive(node)
        touches_graphs = new.type in _GRAPH_TYPES or (old is not None and old.type in _GRAPH_TYPES)
        if touches_graphs:
            node._graph._check_new_subgraphs(new, node)
            node._graph._settle_subgraphs(node)
        if old is not None:
            if old.doc_string and not new.doc_string:
                new.doc_string = old.doc_string
            old.CopyFrom(new)
        else:
            node.proto.attribute.append(new)
        if touches_graphs:
            node._graph._subgraphs_changed(node)

    def __delitem__(self, key: str) -> None:
        attrs = self._node.proto.attribute
        for i, attr in enumerate(attrs):
            if attr.name == key:
                is_graph = attr.type in _GRAPH_TYPES
                if is_graph:
                    self._node._graph._settle_subgraphs(self._node)
                del attrs[i]
                if is_graph:
                    self._node._graph._subgraphs_changed(self._node)
                return
        raise not_found("attribute", key, self, f"node {self._node.name!r} ({self._node.op_type})")

    def __iter__(self) -> Iterator[str]:
        return iter([a.name for a in self._node.proto.attribute])

    def __len__(self) -> int:
        return len(self._node.proto.attribute)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) is not None

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {_short(self[k])}" for k in self) + "}"

    def _decode(self, attr: onnx.AttributeProto) -> Any:
        graph = self._node._graph
        t = attr.type
        if attr.ref_attr_name:
            return AttributeRef(attr.ref_attr_name)
        if t == A.FLOAT:
            return attr.f
        if t == A.INT:
            return attr.i
        if t == A.STRING:
            try:
                return attr.s.decode("utf-8")
            except UnicodeDecodeError:
                return attr.s
        if t == A.TENSOR:
            return tensors.to_numpy(attr.t, graph.model.base_dir if graph.model else None)
        if t == A.GRAPH:
            return graph._subgraph_for(self._node, attr.name, attr.g)
        if t == A.FLOATS:
            return list(attr.floats)
        if t == A.INTS:
            return list(attr.ints)
        if t == A.STRINGS:
            return [_maybe_str(s) for s in attr.strings]
        if t == A.TENSORS:
            base = graph.model.base_dir if graph.model else None
            return [tensors.to_numpy(x, base) for x in attr.tensors]
        if t == A.GRAPHS:
            return [graph._subgraph_for(self._node, f"{attr.name}[{i}]", g) for i, g in enumerate(attr.graphs)]
        # SPARSE_TENSOR(S), TYPE_PROTO(S): hand back the proto objects themselves.
        return helper.get_attribute_value(attr)


class AttributeRef(str):
    """The value of an attribute that refers to an attribute of the enclosing function."""

    def __repr__(self) -> str:
        return f"AttributeRef({str(self)!r})"


def _maybe_str(b: bytes) -> str | bytes:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"<tensor {v.dtype} {list(v.shape)}>"
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


_SCALAR_TYPES = {A.FLOAT: float, A.INT: int}


def _graph_proto(value: Any) -> onnx.GraphProto | None:
    """The GraphProto of a graphsurgery Graph (anything whose ``proto`` is one), else None."""
    p = getattr(value, "proto", None)
    return p if isinstance(p, onnx.GraphProto) and not isinstance(value, onnx.GraphProto) else None


def encode(key: str, value: Any, old: onnx.AttributeProto | None) -> onnx.AttributeProto:
    """Build an AttributeProto for ``value``, keeping ``old``'s type when there is one."""
    if _graph_proto(value) is not None:
        value = _graph_proto(value)
    elif (isinstance(value, (list, tuple)) and value
          and all(_graph_proto(v) is not None for v in value)):
        value = [_graph_proto(v) for v in value]
    if isinstance(value, onnx.AttributeProto):
        attr = onnx.AttributeProto()
        attr.CopyFrom(value)
        attr.name = key
        return attr
    if old is None or old.ref_attr_name:
        if isinstance(value, np.ndarray):
            return helper.make_attribute(key, tensors.from_numpy(value))
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
            return helper.make_attribute(key, [tensors.from_numpy(v) for v in value])
        if isinstance(value, (np.integer, np.floating)):
            value = value.item()
        try:
            return helper.make_attribute(key, value)
        except (TypeError, ValueError) as exc:
            raise EditError(f"attribute {key!r}: cannot store {type(value).__name__} value {value!r}: {exc}") from None
    t = old.type
    try:
        if t in _SCALAR_TYPES:
            return helper.make_attribute(key, _SCALAR_TYPES[t](value), attr_type=t)
        if t == A.STRING:
            return helper.make_attribute(key, value if isinstance(value, bytes) else str(value), attr_type=t)
        if t == A.FLOATS:
            return helper.make_attribute(key, [float(v) for v in value], attr_type=t)
        if t == A.INTS:
            return helper.make_attribute(key, [int(v) for v in value], attr_type=t)
        if t == A.STRINGS:
            return helper.make_attribute(key, list(value), attr_type=t)
        if t == A.TENSOR:
            like = old.t
            tp = value if isinstance(value, onnx.TensorProto) else tensors.from_numpy(value, like.name, like)
            return helper.make_attribute(key, tp, attr_type=t)
        if t == A.TENSORS:
            return helper.make_attribute(
                key, [v if isinstance(v, onnx.TensorProto) else tensors.from_numpy(v) for v in value], attr_type=t
            )
        return helper.make_attribute(key, value, attr_type=t)
    except (TypeError, ValueError) as exc:
        raise EditError(
            f"attribute {key!r} is {A.AttributeType.Name(t)}; cannot store {type(value).__name__} value {value!r} "
            f"in it ({exc}); delete the attribute first to change its type"
        ) from None
