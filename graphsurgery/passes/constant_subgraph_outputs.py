"""constant-subgraph-outputs: a subgraph that returns a constant through an Identity returns
the constant itself."""

from __future__ import annotations

import numpy as np
import onnx

from .. import shapes, tensors
from ..core.model import Model
from ..errors import EditError
from ..ops import DEFAULT_DOMAINS
from .base import Option, Pass, PassResult


class ConstantSubgraphOutputs(Pass):
    """Replace ``Identity(c)``, where ``c`` is a constant (an initializer or Constant node of the
    subgraph or of a graph around it) and the Identity's output is an output of an ``If``
    branch, a ``Loop`` body or a ``Scan`` body, by an initializer of that subgraph holding the
    value, under the output's name. A TorchScript ``for`` loop returns its condition so: the
    body's ``cond`` output is ``Identity`` of the outer ``true``.

    The value is the same tensor, so what the enclosing node computes and what shape inference
    knows of it do not change. Refused, naming the node, when the output's declared type
    disagrees with the constant (element type, rank or a dim), and when the copy would grow the
    file: the constant stays for its other readers and is larger than the Identity it replaces,
    give or take ``grow_bytes``. A subgraph output without a type gets the constant's, since
    onnx types an initializer that a subgraph returns only from what is declared."""

    name = "constant-subgraph-outputs"
    options = {
        "grow_bytes": Option(int, 0, "copies up to this many bytes larger than the Identity are made"),
    }

    def apply(self, model: Model, result: PassResult) -> None:
        done = 0
        for g in list(model.graphs()):
            if g.is_function or g.parent is None or g.owner is None or g.owner.domain not in DEFAULT_DOMAINS \
                    or g.owner.op_type not in ("If", "Loop", "Scan"):
                continue
            for i, out in enumerate(g.output_names):
                node = g.producer(out)
                if node is None or node.op_type != "Identity" or node.domain not in DEFAULT_DOMAINS \
                        or node.graph is not g or not node.inputs or not node.inputs[0] \
                        or not g.tensor(node.inputs[0]).is_constant:
                    continue
                why = self._refusal(g, i, node)
                if why:
                    result.skip(f"Identity {node.name!r} in {g.describe()}: {why}")
                    continue
                value = np.asarray(g.tensor(node.inputs[0]).numpy())
                _type_output(g, i, value)
                g.replace_with_constants({out: value}, [node])
                result.note(f"Identity {node.name!r} in {g.describe()}: output {out!r} is now the constant itself")
                done += 1
        result.details["replaced"] = done

    def _refusal(self, g, index: int, node) -> str:
        out = node.outputs[0]
        src = g.tensor(node.inputs[0])
        if g.output_names.count(out) > 1:
            return "the subgraph returns its output more than once"
        try:
            value = np.asarray(src.numpy())
        except EditError as exc:
            return f"the constant cannot be read ({exc})"
        declared = g.proto.output[index].type
        if declared.HasField("tensor_type"):
            elem = declared.tensor_type.elem_type
            if elem and elem != _elem_type(value):
                name = onnx.TensorProto.DataType.Name(elem)
                return f"the output is declared as {name}, the constant is {value.dtype}"
            dims = shapes.dims(declared)
            if dims is not None and (len(dims) != value.ndim or any(
                    isinstance(d, int) and d != s for d, s in zip(dims, value.shape, strict=True))):
                return f"the output is declared with shape {dims}, the constant has {list(value.shape)}"
        elif declared.WhichOneof("value") is not None:
            return "the output is declared as something other than a tensor"
        owner = g.resolve(node.inputs[0])
        others = [r for r in owner.consumers(node.inputs[0]) if r is not node]
        if others or owner.output_refs(node.inputs[0]):
            grow = _stored_bytes(tensors.from_numpy(value, out)) - _stored_bytes(node.proto)
            if grow > self.opts["grow_bytes"]:
                return (f"the constant {node.inputs[0]!r} is read elsewhere: a copy would grow the model by "
                        f"{grow:,} bytes (grow_bytes={self.opts['grow_bytes']:,})")
        return ""


def _type_output(g, index: int, value: np.ndarray) -> None:
    """Give subgraph output ``index`` the constant's type where it declares none."""
    declared = g.proto.output[index].type
    if declared.HasField("tensor_type") and declared.tensor_type.elem_type:
        return
    declared.CopyFrom(onnx.helper.make_tensor_type_proto(_elem_type(value), list(value.shape)))


def _elem_type(value: np.ndarray) -> int:
    """The element type the value has as an initializer (as the project writes it)."""
    return tensors.from_numpy(value, "x").data_type


def _stored_bytes(proto) -> int:
    """What a node or initializer takes in the file: the message and its field header."""
    size = proto.ByteSize()
    return size + 1 + (size.bit_length() + 6) // 7
