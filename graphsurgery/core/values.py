"""A view of one tensor name in the scope that defines it: producer, readers, type, value."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .. import tensors
from ..errors import EditError
from ..ops import is_default_domain


class Value:
    """A view of one tensor name in the scope that defines it."""

    __slots__ = ("graph", "name")

    def __init__(self, graph: Graph, name: str):  # noqa: F821 (a type of the scope above, named only)
        self.graph = graph
        self.name = name

    @property
    def producer(self) -> Node | None:  # noqa: F821 (a type of the scope above, named only)
        return self.graph._producer.get(self.name)

    @property
    def consumers(self) -> list[Node]:  # noqa: F821 (a type of the scope above, named only)
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
        return p is not None and p.op_type == "Constant" and is_default_domain(p.domain)

    def numpy(self) -> np.ndarray:
        """The value of an initializer or a Constant node's output."""
        if self.is_initializer:
            return self.graph.initializer(self.name)
        p = self.producer
        if p is not None and p.op_type == "Constant" and is_default_domain(p.domain):
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


def sparse_to_dense(sparse: onnx.SparseTensorProto, base_dir: str | None) -> np.ndarray:
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


__all__ = ["Value", "sparse_to_dense"]
