"""merge-slices: a Slice of a Slice on other axes, as one Slice."""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import shapes
from ..core.model import Model
from ..rewrite import ANY, Const, Op, Rule, const_init, optional_const
from .base import RulePass


def _parts(m, g, suffix: str, rank: int | None):
    node = m.nodes["inner"] if suffix == "1" else m.root
    starts, ends = m[f"s{suffix}"].reshape(-1), m[f"e{suffix}"].reshape(-1)
    axes, steps = optional_const(g, node, 3), optional_const(g, node, 4)
    for v in (axes, steps):
        if isinstance(v, str):
            return v
    axes = np.arange(len(starts)) if axes is None else axes.reshape(-1)
    steps = np.ones(len(starts), np.int64) if steps is None else steps.reshape(-1)
    if len({len(starts), len(ends), len(axes), len(steps)}) != 1:
        return "its starts, ends, axes and steps differ in length"
    if np.any(axes < 0):
        if rank is None:
            return "it has negative axes and the input's rank is unknown"
        axes = np.where(axes < 0, axes + rank, axes)
    return [np.asarray(v, np.int64) for v in (starts, ends, axes, steps)]


def rule(types: shapes.Types | shapes.LazyTypes) -> Rule:
    def check(m, g):
        rank = shapes.rank(types.get(g, m["x"]))
        inner, outer = _parts(m, g, "1", rank), _parts(m, g, "2", rank)
        for part, which in ((inner, "the inner Slice"), (outer, "the outer Slice")):
            if isinstance(part, str):
                return f"{which}: {part}"
        if set(inner[2].tolist()) & set(outer[2].tolist()) or len(set(inner[2].tolist())) != len(inner[2]) \
                or len(set(outer[2].tolist())) != len(outer[2]):
            return "the two Slices cut the same axis"
        m.consts["merged"] = [np.concatenate([a, b]) for a, b in zip(inner, outer, strict=True)]
        return True

    def build(m, g):
        root = m.root
        starts, ends, axes, steps = m.consts["merged"]
        inits = [const_init(g, f"{root.name or 'slice'}_{what}", v)
                 for what, v in (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))]
        node = helper.make_node("Slice", [m["x"]] + [t.name for t in inits], [root.outputs[0]],
                                name=root.name or g.unique_name("Slice", kind="node"))
        return [node], inits

    inner = Op("Slice", ["x", Const("s1"), Const("e1"), ANY, ANY], name="inner", min_inputs=3, exclusive=False)
    return Rule("slice-slice", Op("Slice", [inner, Const("s2"), Const("e2"), ANY, ANY],
                                  min_inputs=3), build, check)


class MergeSlices(RulePass):
    """Merge ``Slice(Slice(x))`` into one ``Slice`` when the two cut different axes (slices on
    different axes do not interact, so the result is the same, element for element). When the
    inner Slice is also read elsewhere it stays for those readers. Constant starts, ends, axes
    and steps only (opset 10 and later); negative axes need the input's rank."""

    name = "merge-slices"

    count_key = "merged"

    def rules(self, model: Model) -> list[Rule]:
        return [rule(shapes.LazyTypes(model))]

    def change_line(self, site) -> str:
        return f"{site.node!r} merged with the Slice before it"
