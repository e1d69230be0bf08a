"""transpose-to-reshape: a Transpose that only moves dims of size 1, as a Reshape."""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import shapes
from ..core.model import Model
from ..rewrite import Op, Rule, const_init
from .base import RulePass


def target_shape(dims: list, perm: list[int]) -> list[int] | str:
    """The Reshape target that gives what ``Transpose(perm)`` gives for an input of ``dims``
    (ints, or names/None when unknown), or why there is none.

    The elements keep their order when the dims that move are all 1: then the Transpose is a
    Reshape. A dim not known to be 1 counts as one that matters. In the target, a dim of the
    output that is an unknown dim of the input at the same place is copied (0); one unknown dim
    that moves is inferred (-1) when it is the only unknown dim."""
    if sorted(perm) != list(range(len(dims))):
        return "its perm is not a permutation of the input's dims"
    if any(d == 0 for d in dims):
        return "the input is empty along a dim"
    kept = [p for p in perm if dims[p] != 1]
    if kept != sorted(kept):
        return "it reorders dims larger than 1 (or of unknown size): the data moves"
    unknown = [i for i, p in enumerate(perm) if not isinstance(dims[p], int)]
    moved = [i for i in unknown if perm[i] != i]
    if moved and len(unknown) > 1:
        return "an input dim of unknown size moves, and it is not the only unknown one"
    return [int(dims[p]) if isinstance(dims[p], int) else (0 if perm[i] == i else -1) for i, p in enumerate(perm)]


def rule(model: Model) -> Rule:
    types: list = []  # inferred on the first Transpose next to a Reshape: most models have none

    def check(m, g):
        producer = g.producer(m["x"])
        if not (producer is not None and producer.op_type == "Reshape") and not any(
                r.op_type == "Reshape" for r in g.consumers(m.root.outputs[0])):
            return "no Reshape reads it or makes its input: as a Reshape it would merge with nothing"
        if not types:
            types.append(shapes.infer(model))
        dims = shapes.dims(types[0].get(g, m["x"]))
        if dims is None:
            return "the input's rank is unknown"
        perm = m.root.attrs.get("perm")
        perm = list(perm) if perm is not None else list(reversed(range(len(dims))))
        if perm == list(range(len(dims))):
            return "it changes nothing (eliminate-noops removes it)"
        target = target_shape(dims, perm)
        if isinstance(target, str):
            return target
        m.consts["target"] = np.asarray(target, np.int64)
        return True

    def build(m, g):
        root = m.root
        t = const_init(g, f"{root.name or 'transpose'}_shape", m.consts["target"])
        node = helper.make_node("Reshape", [m["x"], t.name], [root.outputs[0]],
                                name=root.name or g.unique_name("Reshape", kind="node"))
        return [node], [t]

    return Rule("transpose-unit-dims", Op("Transpose", ["x"]), build, check)


class TransposeToReshape(RulePass):
    """Replace a ``Transpose`` that only moves dims of size 1 (the others keep their order) by a
    ``Reshape``: the elements stay in the same order, so the two compute the same tensor, and a
    Reshape next to it then merges with it (merge-reshapes). Only where a Reshape reads the
    Transpose or makes its input. Needs the sizes of the dims that move; a dim of unknown size
    counts as larger than 1."""

    name = "transpose-to-reshape"

    near_misses = "if none applied"
    count_key = "rewritten"

    def rules(self, model: Model) -> list[Rule]:
        return [rule(model)]

    def change_line(self, site) -> str:
        return f"{site.node!r} only moved dims of size 1: now a Reshape"
