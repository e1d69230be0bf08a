"""prelu-to-relu: PRelu(x, slope) as Relu(x) - slope * Relu(-x), for backends that reject PRelu."""

from __future__ import annotations

from onnx import TensorProto, helper

from .. import shapes
from ..core.model import Model
from ..rewrite import Op, Rule
from .base import RulePass

UNSIGNED = frozenset({TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64})


def prelu_rule(types: shapes.Types) -> Rule:
    """``PRelu(x, slope)`` → ``Relu(x) - slope * Relu(-x)``; not for an unsigned ``x``."""

    def signed(m, g):
        t = types.get(g, m["x"])
        if t is not None and t.HasField("tensor_type") and t.tensor_type.elem_type in UNSIGNED:
            # Relu and Neg have no unsigned versions (and PRelu of an unsigned x is x itself)
            return "its input is unsigned, which Relu and Neg do not take"
        return True

    def build(m, g):
        node = m.root
        x, slope, y = m["x"], m["slope"], node.outputs[0]
        base = node.name or "prelu"
        pos, neg_x, neg, scaled = (g.unique_name(f"{base}/{s}") for s in ("pos", "neg_x", "neg", "scaled"))
        return [
            helper.make_node("Relu", [x], [pos], name=g.unique_name(f"{base}/relu", kind="node")),
            helper.make_node("Neg", [x], [neg_x], name=g.unique_name(f"{base}/neg_input", kind="node")),
            helper.make_node("Relu", [neg_x], [neg], name=g.unique_name(f"{base}/relu_neg", kind="node")),
            helper.make_node("Mul", [slope, neg], [scaled], name=g.unique_name(f"{base}/scale", kind="node")),
            helper.make_node("Sub", [pos, scaled], [y], name=g.unique_name(f"{base}/sub", kind="node")),
        ]

    return Rule("prelu-to-relu", Op("PRelu", ["x", "slope"]), build, signed)


class PReluToRelu(RulePass):
    """Rewrite every ``PRelu(x, slope)`` as ``Relu(x) - slope * Relu(-x)``: the same values for
    any slope shape PRelu accepts (scalar, per-channel, full), whether the slope is an
    initializer or computed. The output keeps its name, so readers and graph outputs stay
    connected. Fix a slope that cannot broadcast (``fix-prelu-slope``) first."""

    name = "prelu-to-relu"
    count_key = "rewritten"

    def rules(self, model: Model) -> list[Rule]:
        return [prelu_rule(shapes.infer(model))]

    def change_line(self, site) -> str:
        return f"PRelu {site.node!r} in {site.graph} -> Relu(x) - slope*Relu(-x)"
