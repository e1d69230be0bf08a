"""rejoin-elements: a Concat of a vector's elements, taken one by one in order, is the vector."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..core.model import Model
from ..rewrite import ANY, Alias, Const, Op, Rule
from .base import RulePass

#: the longest vector rejoined (a shape of rank 8)
MAX_ELEMENTS = 8


def _axes(m, g, node) -> list[int] | str:
    """Unsqueeze's axes, from its input (opset 13 on) or its attribute."""
    if len(node.inputs) > 1 and node.inputs[1]:
        t = g.tensor(node.inputs[1])
        if not t.is_constant:
            return f"Unsqueeze {node.name!r} has computed axes"
        return [int(a) for a in np.asarray(t.numpy()).reshape(-1)]
    axes = node.attrs.get("axes")
    return [int(a) for a in axes] if axes is not None else f"Unsqueeze {node.name!r} has no axes"


def rule(n: int, types: shapes.Types | shapes.LazyTypes) -> Rule:
    def check(m, g):
        length = shapes.static_shape(types.get(g, m["v"]))
        if length is None or len(length) != 1:
            return f"the vector {m['v']!r} is not known to be 1-D with a fixed length"
        if length[0] != n:
            return f"the vector {m['v']!r} has {length[0]} elements, the Concat joins {n}"
        if int(m.root.attrs.get("axis", 0)) not in (0, -1):
            return "the Concat is not along axis 0"
        for k in range(n):
            index = m[f"i{k}"]
            if index.ndim != 0:
                return f"Gather {m[f'g{k}'].name!r} takes a {index.ndim}-D index, not a scalar"
            if int(index) % n != k:
                return f"element {k} of the Concat is element {int(index)} of the vector"
            axes = _axes(m, g, m[f"u{k}"])
            if isinstance(axes, str):
                return axes
            if axes not in ([0], [-1]):
                return f"Unsqueeze {m[f'u{k}'].name!r} adds axes {axes}, not a leading one"
        return True

    gather_axis0 = {"axis": lambda a: a is None or int(a) == 0}
    parts = [Op("Unsqueeze", [Op("Gather", ["v", Const(f"i{k}")], name=f"g{k}", attrs=gather_axis0, exclusive=False),
                              ANY], name=f"u{k}", min_inputs=1, exclusive=False) for k in range(n)]
    return Rule(f"rejoin-{n}", Op("Concat", parts), lambda m, g: Alias(m["v"]), check)


class RejoinElements(RulePass):
    """Replace ``Concat(Unsqueeze(Gather(v, 0)), Unsqueeze(Gather(v, 1)), ...)``, every element
    of a 1-D tensor ``v`` taken in order and joined back, by ``v`` itself (exporters rebuild a
    shape from its dims this way: ``Shape`` → one ``Gather`` per dim → ``Concat``). The length of
    ``v`` must be known and equal the number of pieces; indices may be negative. The Gathers
    stay for other readers."""

    name = "rejoin-elements"

    count_key = "rejoined"
    near_misses = "if none applied"

    def rules(self, model: Model) -> list[Rule]:
        types = shapes.LazyTypes(model)
        return [rule(n, types) for n in range(2, MAX_ELEMENTS + 1)]

    def change_line(self, site) -> str:
        return f"{site.node!r}: the Concat gives back the vector its pieces came from"
