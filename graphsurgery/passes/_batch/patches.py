"""The edits set-batch makes where a constant hard-codes the old batch."""

from __future__ import annotations

import numpy as np
import onnx

from ...core.graph import Graph
from ...core.model import Model


class _Patch:
    def apply(self, model: Model) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class _ReshapeTarget(_Patch):
    """Reshape(x, [old, ...]) with x's axis 0 the batch: the leading entry becomes 0 (copy)."""

    def __init__(self, node_name: str, target_name: str, value: np.ndarray):
        self.node_name, self.target_name, self.value = node_name, target_name, value

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        new = self.value.copy()
        new[0] = 0
        readers = g.consumers(self.target_name)
        if g.tensor(self.target_name).is_initializer and len(readers) == 1:
            g.set_initializer(self.target_name, new)
        else:
            name = g.unique_name(f"{self.target_name}_batch")
            g.set_initializer(name, new)
            node.set_input(1, name)

    def describe(self) -> str:
        new = self.value.copy()
        new[0] = 0
        return (f"Reshape {self.node_name!r}: target {self.value.tolist()} -> {new.tolist()} "
                "(0 copies the batch from the input)")


def _batch_then(g: Graph, node_name: str, const_name: str, value: np.ndarray, source: str, axis: int) -> str:
    """A shape vector computed at run time: dim ``axis`` of ``source`` (the batch), then
    ``value[1:]``; the name of the tensor holding it."""
    batch = g.op.Shape(source, _name=g.unique_name(f"{node_name}/batch_shape", kind="node"), start=axis,
                       end=axis + 1)
    rest = g.unique_name(f"{const_name}_rest")
    g.set_initializer(rest, np.ascontiguousarray(value[1:]).astype(np.int64))
    return g.op.Concat(batch, rest, axis=0, _name=g.unique_name(f"{node_name}/batch_concat", kind="node"))


class _ReshapeTargetFromInput(_Patch):
    """Reshape(x, [old, ...], allowzero=1), x's axis 0 the batch: 0 would mean a zero dim, so
    the leading entry is read from x at run time."""

    def __init__(self, node_name: str, target_name: str, value: np.ndarray):
        self.node_name, self.target_name, self.value = node_name, target_name, value

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        node.set_input(1, _batch_then(g, self.node_name, self.target_name, self.value, node.inputs[0], 0))

    def describe(self) -> str:
        return (f"Reshape {self.node_name!r}: target {self.value.tolist()} takes its batch from its input at "
                "run time")


class _ReshapeTargetFree(_Patch):
    """Reshape(x, [.., old x f, ..]) where entry k holds the batch (times f): it becomes -1."""

    def __init__(self, node_name: str, target_name: str, value: np.ndarray, k: int):
        self.node_name, self.target_name, self.value, self.k = node_name, target_name, value, k

    def new(self) -> np.ndarray:
        new = np.array(self.value, copy=True)
        new[self.k] = -1
        return new

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        name = g.unique_name(f"{self.target_name}_batch")
        g.set_initializer(name, self.new())
        node.set_input(1, name)

    def describe(self) -> str:
        return (f"Reshape {self.node_name!r}: target {self.value.tolist()} -> {self.new().tolist()} "
                "(-1 takes the batch at run time)")


class _ConstantOfShapeBatch(_Patch):
    """ConstantOfShape([old, ...]): the leading entry is read from a batch input at run time."""

    def __init__(self, node_name: str, shape_name: str, value: np.ndarray, source: tuple[str, int] | None):
        self.node_name, self.shape_name, self.value, self.source = node_name, shape_name, value, source

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        node.set_input(0, _batch_then(g, self.node_name, self.shape_name, self.value, *self.source))

    def describe(self) -> str:
        return (f"ConstantOfShape {self.node_name!r}: shape {self.value.tolist()} takes its batch from input "
                f"{self.source[0]!r} at run time")


class _GatherNDRow(_Patch):
    """GatherND(data, indices) with constant indices ``[1, ..., 2]`` whose row entries all pick row
    0 of a batch of 1 ``[[[0, j], ...]]``: each sample reads its own row, so it becomes
    ``Gather(data, j, axis=1)`` (``j = indices[0, ..., 1]``), one result per sample."""

    def __init__(self, node_name: str, indices_name: str, value: np.ndarray):
        self.node_name, self.indices_name, self.value = node_name, indices_name, value

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        cols = g.unique_name(f"{self.indices_name}_columns")
        g.set_initializer(cols, np.ascontiguousarray(self.value[0, ..., 1]).astype(self.value.dtype))
        gather = onnx.helper.make_node("Gather", [node.inputs[0], cols], list(node.outputs), name=node.name, axis=1)
        g.replace_node(node, [gather])

    def describe(self) -> str:
        return (f"GatherND {self.node_name!r}: indices {list(self.value.shape)} that pick row 0 of a batch of 1 -> "
                "Gather along axis 1 (each sample reads its own row)")
