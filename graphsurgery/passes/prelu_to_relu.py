"""prelu-to-relu: PRelu(x, slope) as Relu(x) - slope * Relu(-x), for backends that reject PRelu."""

from __future__ import annotations

from onnx import TensorProto, helper

from .. import shapes
from ..model import Model
from .base import Pass, PassResult

UNSIGNED = frozenset({TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64})


class PReluToRelu(Pass):
    """Rewrite every ``PRelu(x, slope)`` as ``Relu(x) - slope * Relu(-x)``: the same values for
    any slope shape PRelu accepts (scalar, per-channel, full), whether the slope is an
    initializer or computed. The output keeps its name, so readers and graph outputs stay
    connected. Fix a slope that cannot broadcast (``fix-prelu-slope``) first."""

    name = "prelu-to-relu"

    def apply(self, model: Model, result: PassResult) -> None:
        count = 0
        types = shapes.infer(model)
        for g in list(model.graphs()):
            for node in g.find_nodes("PRelu"):
                if node.domain not in ("", "ai.onnx"):
                    continue
                x, slope = node.inputs[0], node.inputs[1]
                t = types.get(g, x)
                if t is not None and t.HasField("tensor_type") and t.tensor_type.elem_type in UNSIGNED:
                    # Relu and Neg have no unsigned versions (and PRelu of an unsigned x is x itself)
                    result.skip(f"PRelu {node.name!r} in {g.describe()}: its input is unsigned, which Relu and Neg "
                                "do not take")
                    continue
                y = node.outputs[0]
                base = node.name or "prelu"
                pos, neg_x, neg, scaled = (g.unique_name(f"{base}/{s}") for s in ("pos", "neg_x", "neg", "scaled"))
                g.replace_node(node, [
                    helper.make_node("Relu", [x], [pos], name=g.unique_name(f"{base}/relu", kind="node")),
                    helper.make_node("Neg", [x], [neg_x], name=g.unique_name(f"{base}/neg_input", kind="node")),
                    helper.make_node("Relu", [neg_x], [neg], name=g.unique_name(f"{base}/relu_neg", kind="node")),
                    helper.make_node("Mul", [slope, neg], [scaled], name=g.unique_name(f"{base}/scale", kind="node")),
                    helper.make_node("Sub", [pos, scaled], [y], name=g.unique_name(f"{base}/sub", kind="node")),
                ])
                count += 1
                result.note(f"PRelu {node.name!r} in {g.describe()} -> Relu(x) - slope*Relu(-x)")
        result.details["rewritten"] = count
