"""focus-to-conv: YOLOv5's Focus stem (four strided slices and a concat) as SpaceToDepth."""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import shapes
from ..core.model import Model
from ..rewrite import ANY, Const, Op, Rule, const_init
from .base import PassResult, RulePass

BIG = 2**31 - 1


def _slice(i: int) -> Op:
    # exporters share the first-axis slice between two phases: the inner slice may be read twice
    inner = Op("Slice", ["x", Const(f"s{i}"), Const(f"e{i}"), Const(f"a{i}"), Const(f"t{i}")], name=f"inner{i}",
               exclusive=False)
    return Op("Slice", [inner, Const(f"S{i}"), Const(f"E{i}"), Const(f"A{i}"), Const(f"T{i}")], name=f"outer{i}")


def _offsets(m, i: int) -> tuple[int, int] | None:
    """(dy, dx) of the i-th strided slice, or None when it is not a stride-2 slice of H and W."""
    got = {}
    for starts, ends, axes, steps in ((f"s{i}", f"e{i}", f"a{i}", f"t{i}"), (f"S{i}", f"E{i}", f"A{i}", f"T{i}")):
        s, e, a, t = (np.asarray(m.consts[k]).reshape(-1) for k in (starts, ends, axes, steps))
        if len(a) != 1 or int(t[0]) != 2 or int(s[0]) not in (0, 1) or int(e[0]) < BIG // 2:
            return None
        axis = int(a[0]) % 4
        if axis not in (2, 3) or axis in got:
            return None
        got[axis] = int(s[0])
    return got[2], got[3]


def _focus_rules(types: shapes.Types) -> list[Rule]:
    def condition(m, g):
        offsets = [_offsets(m, i) for i in range(4)]
        if None in offsets or len(set(offsets)) != 4:
            return "the four slices are not the four stride-2 phases of H and W"
        shape = shapes.static_shape(types.get(g, m["x"]))
        if shape is None or len(shape) != 4:
            return "the input's shape is not known"
        if shape[2] % 2 or shape[3] % 2:
            return "H or W is odd: SpaceToDepth would drop the last row or column differently"
        m.offsets, m.channels = offsets, shape[1]
        return True

    def build(m, g):
        c = m.channels
        # Focus block k holds phase (dy, dx); SpaceToDepth puts that phase at block dy*2 + dx
        index = np.array([(dy * 2 + dx) * c + ch for dy, dx in m.offsets for ch in range(c)], np.int64)
        s2d = g.unique_name(f"{m.root.name or 'focus'}/space_to_depth")
        idx = const_init(g, f"{m.root.name or 'focus'}/focus_order", index)
        return ([helper.make_node("SpaceToDepth", [m["x"]], [s2d], name=g.unique_name("SpaceToDepth", kind="node"),
                                  blocksize=2),
                 helper.make_node("Gather", [s2d, idx.name], [m.root.outputs[0]],
                                  name=g.unique_name("focus_order", kind="node"), axis=1)], [idx])

    return [Rule("focus", Op("Concat", [_slice(i) for i in range(4)], attrs={"axis": lambda a: a in (1, -3)}),
                 build, condition)]


def _permutation_into_conv() -> Rule:
    def condition(m, g):
        idx = np.asarray(m["idx"]).reshape(-1)
        conv = m.root
        if conv.attrs.get("group", 1) != 1:
            return "the Conv is grouped"
        if sorted(idx.tolist()) != list(range(m["w"].shape[1])):
            return "the Gather is not a permutation of the Conv's input channels"
        return True

    def build(m, g):
        idx = np.asarray(m["idx"]).reshape(-1)
        w = m["w"]
        w2 = np.empty_like(w)
        w2[:, idx] = w  # channel j of the permuted input is channel idx[j] of the original
        wi = const_init(g, f"{m.root.inputs[1]}_permuted", w2)
        node = helper.make_node("Conv", [m["x"], wi.name] + list(m.root.inputs[2:]), list(m.root.outputs),
                                name=m.root.name or g.unique_name("Conv", kind="node"))
        node.attribute.extend(m.root.proto.attribute)
        return [node], [wi]

    return Rule("channel-permutation-into-conv",
                Op("Conv", [Op("Gather", ["x", Const("idx")], name="gather", attrs={"axis": lambda a: a in (1, -3)}),
                            Const("w"), ANY], min_inputs=2), build, condition)


class FocusToConv(RulePass):
    """Replace YOLOv5's Focus stem — ``cat(x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2],
    x[..., 1::2, 1::2])`` exported as eight Slice nodes and a Concat — by ``SpaceToDepth(2)``,
    which backends run as one fast op. The channel order differs between the two, so the
    permutation is folded into the following Conv's weights (or kept as a Gather when no Conv
    follows). Exact. Needs static, even H and W."""

    name = "focus-to-conv"

    near_misses = "if none applied"

    def rules(self, model: Model) -> list[Rule]:
        return _focus_rules(shapes.infer(model))

    def change_line(self, site) -> str:
        return f"Focus stem at {site.node!r} -> SpaceToDepth"

    def after(self, model: Model, result: PassResult, rewritten) -> None:
        if not rewritten.applied:
            return
        result.details["replaced"] = len(rewritten.applied)
        # the channel order SpaceToDepth leaves, into the next Conv's weights (a stem without a
        # Conv after it keeps its Gather: not worth a near miss)
        self.rewrite(model, result, [_permutation_into_conv()], near_misses="never",
                     change_line=lambda site: f"channel order folded into Conv {site.node!r}")
