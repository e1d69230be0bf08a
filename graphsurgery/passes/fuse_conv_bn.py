"""fuse-conv-bn: fold an inference BatchNormalization into the Conv before it."""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..core.model import Model
from ..rewrite import ANY, Const, Op, Rule, const_init
from .base import RulePass


def _conv_bn(m, g):
    bn = m.root
    if len(bn.outputs) > 1 and any(g.is_used(o) for o in bn.outputs[1:] if o):
        return "it also outputs running statistics (training mode)"
    if bn.attrs.get("training_mode", 0):
        return "it is in training mode"
    conv = m.nodes["conv"]
    cout = m["w"].shape[0] if m["w"].ndim else 0
    for key in ("scale", "bias", "mean", "var"):
        if m[key].shape != (cout,):  # e.g. spatial=0 in opsets before 9: statistics per element
            return (f"its {key} has shape {list(m[key].shape)}, not one value per output channel of the Conv "
                    f"({cout})")
    if len(conv.inputs) > 2 and conv.inputs[2] and not g.tensor(conv.inputs[2]).is_constant:
        return "the Conv bias is computed, not a constant"
    return True


def _build(m, g):
    conv, bn = m.nodes["conv"], m.root
    w = m["w"].astype(np.float64)
    cout = w.shape[0]
    b = np.asarray(g.tensor(conv.inputs[2]).numpy(), np.float64) if len(conv.inputs) > 2 and conv.inputs[2] \
        else np.zeros(cout)
    eps = bn.attrs.get("epsilon", 1e-5)
    factor = m["scale"].astype(np.float64) / np.sqrt(m["var"].astype(np.float64) + eps)
    w2 = (w * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(m["w"].dtype)
    b2 = ((b - m["mean"]) * factor + m["bias"]).astype(m["w"].dtype)
    wi, bi = const_init(g, f"{conv.inputs[1]}_fused_bn", w2), const_init(g, f"{conv.name or 'conv'}_fused_bias", b2)
    node = helper.make_node("Conv", [conv.inputs[0], wi.name, bi.name], [bn.outputs[0]],
                            name=conv.name or g.unique_name("Conv", kind="node"))
    node.attribute.extend(conv.proto.attribute)
    return [node], [wi, bi]


RULE = Rule("conv-bn", Op("BatchNormalization", [Op("Conv", ["x", Const("w"), ANY], name="conv", min_inputs=2),
                                                 Const("scale"), Const("bias"), Const("mean"), Const("var")]),
            _build, _conv_bn, doc="Conv then inference BatchNormalization -> one Conv")


class FuseConvBn(RulePass):
    """Fold each inference ``BatchNormalization`` that directly follows a ``Conv`` (whose output
    nothing else reads) into the Conv's weights and bias: ``W' = W * s``, ``b' = (b - mean) * s +
    beta`` with ``s = gamma / sqrt(var + eps)``, computed in float64. Exact up to rounding."""

    name = "fuse-conv-bn"

    count_key = "fused"

    def rules(self, model: Model) -> list[Rule]:
        return [RULE]

    def change_line(self, site) -> str:
        return f"BatchNormalization {site.node!r} folded into the Conv before it"
