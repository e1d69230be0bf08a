"""remove-single-piece: a Concat of one input, or a Split into one output, is its input."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..core.model import Model
from ..rewrite import ANY, Alias, Op, Rule
from .base import RulePass


def rules(types: shapes.Types | shapes.LazyTypes) -> list[Rule]:
    def split_whole(m, g):
        root = m.root
        if len(root.outputs) != 1:
            return f"it has {len(root.outputs)} outputs"
        if not root.outputs[0]:
            return "its output is omitted"
        sizes = root.attrs.get("split")
        if len(root.inputs) > 1 and root.inputs[1]:
            t = g.tensor(root.inputs[1])
            if not t.is_constant:
                return f"its split sizes ({root.inputs[1]!r}) are computed, not a constant"
            sizes = np.asarray(t.numpy()).reshape(-1)
        if sizes is None:
            return True  # one output and no sizes: the whole axis, by definition
        sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(sizes) != 1:
            return f"it lists {len(sizes)} split sizes for one output"
        dims = shapes.dims(types.get(g, m["x"]))
        if dims is None:
            return "the input's rank is unknown"
        axis = int(root.attrs.get("axis", 0))
        if not -len(dims) <= axis < len(dims):
            return f"axis {axis} is outside the input's rank {len(dims)}"
        dim = dims[axis]
        if not isinstance(dim, int):
            return f"the input's size along axis {axis} is unknown, so the split size {sizes[0]} may not be all of it"
        return sizes[0] == dim or f"the split size {sizes[0]} is not the whole axis ({dim})"

    alias_x = lambda m, g: Alias(m["x"])  # noqa: E731
    return [
        Rule("concat-of-one", Op("Concat", ["x"]), alias_x),
        Rule("split-into-one", Op("Split", ["x", ANY], min_inputs=1), alias_x, split_whole),
    ]


class RemoveSinglePiece(RulePass):
    """Remove a Concat with one input and a Split with one output: either leaves its input as it
    is (exporters write them for lists that happen to hold one tensor). A Split with one output
    and a size given keeps the whole axis only when the size is the axis' length, so the input's
    shape must show that; with no size the one output is the whole axis by definition."""

    name = "remove-single-piece"

    count_key = "removed"

    def rules(self, model: Model) -> list[Rule]:
        return rules(shapes.LazyTypes(model))

    def change_line(self, site) -> str:
        return f"{site.rule}: removed {site.node!r}"
