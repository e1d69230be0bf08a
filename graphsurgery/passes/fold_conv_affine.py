"""fold-conv-affine: a per-channel constant added to, or multiplying, a Conv's output, folded
into the Conv's bias and weights."""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..core.model import Model
from ..rewrite import ANY, Const, Op, Rule, const_init
from .base import RulePass

# float16/bfloat16 would round the folded weights once more than the model did: left alone
_FLOATS = (np.float32, np.float64)


def _cout(conv, w: np.ndarray) -> int:
    if conv.op_type == "ConvTranspose":
        return int(w.shape[1]) * int(conv.attrs.get("group", 1) or 1)
    return int(w.shape[0])


def per_channel(c: np.ndarray, rank: int, cout: int) -> np.ndarray | str:
    """``c`` as one value per output channel of a Conv whose output has ``rank`` dims and
    ``cout`` channels, when broadcasting ``c`` against that output gives a value that depends on
    the channel only and leaves the output's shape as it is; else why not."""
    if c.ndim > rank:
        return f"the constant has rank {c.ndim}, more than the Conv output's {rank}: the result would grow"
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    for axis, n in enumerate(shape):
        if axis == 1:
            if n not in (1, cout):
                return f"the constant has {n} values on the channel axis; the Conv has {cout} channels"
        elif n != 1:
            return f"the constant varies along axis {axis} (size {n}), not only along the channels"
    return np.broadcast_to(c.reshape(shape).reshape(-1) if shape[1] == cout else c.reshape(-1)[:1], (cout,))


def _check(m, g):
    conv = m.nodes["conv"]
    w, c = m["w"], m["c"]
    if w.dtype not in _FLOATS:
        return f"the Conv weights are {w.dtype}; only float32 and float64 are folded exactly enough"
    if c.dtype != w.dtype:
        return f"the constant is {c.dtype}, the Conv {w.dtype}"
    if w.ndim < 3:
        return "the Conv weights have fewer than 3 dims"
    if len(conv.inputs) > 2 and conv.inputs[2] and not g.tensor(conv.inputs[2]).is_constant:
        return "the Conv bias is computed, not a constant"
    if not np.all(np.isfinite(c)):
        return "the constant holds inf or NaN"
    op = m.root.op_type
    if op == "Div" and np.any(c == 0):
        return "the constant holds a zero divisor"
    values = per_channel(c, w.ndim, _cout(conv, w))
    if isinstance(values, str):
        return values
    m.consts["per_channel"] = values
    return True


def _build(m, g):
    conv, root = m.nodes["conv"], m.root
    w = m["w"]
    cout = _cout(conv, w)
    s = np.asarray(m.consts["per_channel"], np.float64)
    has_bias = len(conv.inputs) > 2 and bool(conv.inputs[2])
    b = np.asarray(g.tensor(conv.inputs[2]).numpy(), np.float64) if has_bias else np.zeros(cout)
    w64 = w.astype(np.float64)
    op = root.op_type
    if op == "Add":
        b2, w2 = b + s, None
    elif op == "Sub":
        b2, w2 = b - s, None
    else:
        if conv.op_type == "ConvTranspose":  # weights [Cin, Cout/group, ...]: channel o = group * (Cout/group) + j
            group = int(conv.attrs.get("group", 1) or 1)
            per = w.shape[1]
            factor = s.reshape(group, 1, per)
            shaped = w64.reshape((group, w.shape[0] // group, per) + w.shape[2:])
            factor = factor.reshape((group, 1, per) + (1,) * (w.ndim - 2))
            w2 = (shaped * factor if op == "Mul" else shaped / factor).reshape(w.shape)
        else:
            factor = s.reshape((-1,) + (1,) * (w.ndim - 1))
            w2 = w64 * factor if op == "Mul" else w64 / factor
        b2 = b * s if op == "Mul" else b / s
    dtype = w.dtype
    inits = []
    weight = conv.inputs[1]
    if w2 is not None:
        wi = const_init(g, f"{weight}_scaled", w2.astype(dtype))
        inits.append(wi)
        weight = wi.name
    bias = None
    if op in ("Add", "Sub") or has_bias:
        bi = const_init(g, f"{conv.name or 'conv'}_bias", b2.astype(dtype))
        inits.append(bi)
        bias = bi.name
    ins = [conv.inputs[0], weight] + ([bias] if bias else [])
    node = helper.make_node(conv.op_type, ins, [root.outputs[0]],
                            name=conv.name or g.unique_name(conv.op_type, kind="node"))
    node.attribute.extend(conv.proto.attribute)
    return [node], inits


def _rules() -> list[Rule]:
    rules = []
    for conv_op in ("Conv", "ConvTranspose"):
        conv = Op(conv_op, ["x", Const("w"), ANY], name="conv", min_inputs=2)
        for op in ("Add", "Mul"):
            rules.append(Rule(f"{conv_op.lower()}-{op.lower()}", Op(op, [conv, Const("c")], commutative=True),
                              _build, _check))
        for op in ("Sub", "Div"):
            rules.append(Rule(f"{conv_op.lower()}-{op.lower()}", Op(op, [conv, Const("c")]),
                              _build, _check))
    return rules


RULES = _rules()


class FoldConvAffine(RulePass):
    """Fold a constant that is added to, subtracted from, multiplied with or divides the output
    of a ``Conv`` or ``ConvTranspose`` (whose output nothing else reads) into its bias and
    weights, when the constant holds one value per output channel (shape ``[C,1,1]``,
    ``[1,C,1,1]``, a scalar...): ``Conv(x, W, b) + c`` becomes ``Conv(x, W, b + c)`` and
    ``Conv(x, W, b) * s`` becomes ``Conv(x, W * s, b * s)``, computed in float64. Float32 and
    float64 only; a constant that would broadcast the output to a larger shape, holds inf or
    NaN, or divides by zero is left, and the reason reported."""

    name = "fold-conv-affine"

    count_key = "folded"

    def rules(self, model: Model) -> list[Rule]:
        return RULES

    def change_line(self, site) -> str:
        return f"{site.rule}: {site.node!r} folded into the Conv before it"
