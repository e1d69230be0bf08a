"""cancel-reshapes: a Reshape, element-wise work, and a Reshape back: the two Reshapes dropped."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..core.graph import Graph
from ..core.model import Model
from ..errors import EditError
from ..ops import is_default_domain
from .base import Pass, PassResult

# element-wise operators whose output has the shape of their (equal-shaped or scalar) inputs and
# whose value at a position depends only on the inputs at that position
_UNARY = frozenset({"Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Ceil", "Cos", "Cosh", "Elu", "Erf",
                    "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "IsInf", "IsNaN", "LeakyRelu", "Log", "Mish",
                    "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus",
                    "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Identity", "Cast"})
_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "And", "Or", "Xor", "Equal", "Greater",
                     "Less", "GreaterOrEqual", "LessOrEqual", "BitShift", "Where", "PRelu"})


def _region(g: Graph, r1, types, rank_x: int):
    """The element-wise nodes fed by Reshape ``r1`` and the Reshapes that end them, or the
    reason there is no such closed region."""
    x_shape = shapes.static_shape(types.get(g, r1.inputs[0]))
    inside: dict[int, object] = {}
    exits: dict[int, object] = {}
    waiting: dict[int, tuple] = {}  # nodes that also read a tensor not yet known to be in the region
    tensors = [r1.outputs[0]]
    known = {r1.outputs[0]}

    def accept(c) -> None:
        inside[id(c.proto)] = c
        for o in c.outputs:
            if o and o not in known:
                known.add(o)
                tensors.append(o)

    while tensors or waiting:
        if not tensors:  # everything reachable seen: a node still waiting reads from outside
            ready = [c for c, need in waiting.values() if all(i in known for i in need)]
            if not ready:
                c, need = next(iter(waiting.values()))
                missing = next(i for i in need if i not in known)
                return f"node {c.name!r} also reads {missing!r}, computed outside the region"
            for c in ready:
                del waiting[id(c.proto)]
                accept(c)
            continue
        t = tensors.pop()
        if t in g.output_names:
            return f"tensor {t!r} between the Reshapes is a graph output"
        for c in g.consumers(t):
            if c.graph is not g:
                return f"tensor {t!r} is read inside a subgraph"
            key = id(c.proto)
            if key in inside or key in exits or key in waiting:
                continue
            if not is_default_domain(c.domain):
                return f"node {c.name!r} is a custom operator"
            if c.op_type == "Reshape" and c.inputs[0] == t:
                if shapes.static_shape(types.get(g, c.outputs[0])) != x_shape:
                    return f"Reshape {c.name!r} does not give back the shape {list(x_shape)}"
                exits[key] = c
                continue
            if c.op_type not in _UNARY and c.op_type not in _BINARY:
                return f"node {c.name!r} ({c.op_type}) is not element-wise"
            need = []
            for i in c.inputs:
                if not i or i in known:
                    continue
                v = g.tensor(i)
                if not v.is_constant:
                    need.append(i)
                    continue
                value = np.asarray(v.numpy())
                if value.size != 1 or value.ndim > rank_x:
                    return f"node {c.name!r} reads constant {i!r} of shape {list(value.shape)}, not a scalar"
            if need:
                waiting[key] = (c, need)
            else:
                accept(c)
    if not exits:
        return "no Reshape gives the shape back"
    return list(inside.values()), list(exits.values()), known


class CancelReshapes(Pass):
    """Drop a ``Reshape`` whose result goes only through element-wise operators (``Mul``,
    ``Tanh``, ``Add``..., with constants that are scalars) into ``Reshape``s that give back the
    original shape: element-wise work does not care about the shape, so it runs on the
    original tensor and both Reshapes go (transformers: ``Gemm``, reshape to 3-D, GELU,
    reshape to 2-D, ``Gemm``). The original shape must be known and static; the type records
    of the tensors in between are dropped (their shape changed)."""

    name = "cancel-reshapes"

    def apply(self, model: Model, result: PassResult) -> None:
        types = shapes.LazyTypes(model)  # inferred when a Reshape is met, not before
        done = 0
        for g in list(model.graphs()):
            if g.is_function:
                continue
            for r1 in list(g.nodes):
                if not r1.alive or r1.op_type != "Reshape" or not is_default_domain(r1.domain):
                    continue
                x_shape = shapes.static_shape(types.get(g, r1.inputs[0]))
                out_shape = shapes.static_shape(types.get(g, r1.outputs[0]))
                if x_shape is None or out_shape is None:
                    continue
                region = _region(g, r1, types, min(len(x_shape), len(out_shape)))
                if isinstance(region, str):
                    result.skip(f"Reshape {r1.name!r}: {region}")
                    continue
                nodes, exits, tensors = region
                if any(e.outputs[0] in g.output_names and len(g.consumers(e.inputs[0])) != 1 for e in exits):
                    result.skip(f"Reshape {r1.name!r}: a Reshape back gives a graph output from a tensor read "
                                "elsewhere")
                    continue
                try:
                    for e in exits:
                        g.bypass(e)
                    g.bypass(r1)
                except EditError as exc:  # checked above; a refusal here changes nothing more
                    result.skip(f"Reshape {r1.name!r}: {exc}")
                    continue
                vis = g.proto.value_info
                for i in range(len(vis) - 1, -1, -1):
                    if vis[i].name in tensors:
                        del vis[i]
                done += 1
                result.note(f"Reshape {r1.name!r} and {len(exits)} Reshape(s) back around {len(nodes)} element-wise "
                            "node(s) removed")
        result.details["cancelled"] = done
