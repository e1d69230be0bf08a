"""merge-reshapes: a Reshape of a Reshape, as one Reshape."""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import shapes
from ..core.model import Model
from ..rewrite import Const, Op, Rule, const_init
from .base import RulePass


def rule(types: shapes.Types | shapes.LazyTypes) -> Rule:
    def check(m, g):
        target = [int(v) for v in m["shape"].reshape(-1)]
        if m.root.attrs.get("allowzero", 0) or 0 not in target:
            m.consts["target"] = np.asarray(target, np.int64)
            return True
        # a 0 copies the dim of the inner Reshape's output: it must be known
        dims = shapes.dims(types.get(g, m.nodes["inner"].outputs[0]))
        for i, v in enumerate(target):
            if v == 0:
                if dims is None or i >= len(dims) or not isinstance(dims[i], int):
                    return f"its shape copies dim {i} of the inner Reshape's output (a 0), whose size is unknown"
                target[i] = dims[i]
        m.consts["target"] = np.asarray(target, np.int64)
        return True

    def build(m, g):
        root = m.root
        shape = m.consts["target"]
        if np.array_equal(shape, m["shape"].reshape(-1)):
            name, inits = m.tensors["shape"], []
        else:
            t = const_init(g, f"{root.name or 'reshape'}_shape", shape)
            name, inits = t.name, [t]
        node = helper.make_node("Reshape", [m["x"], name], [root.outputs[0]],
                                name=root.name or g.unique_name("Reshape", kind="node"))
        node.attribute.extend(root.proto.attribute)
        return [node], inits

    inner = Op("Reshape", ["x", "_"], name="inner", exclusive=False)
    return Rule("reshape-reshape", Op("Reshape", [inner, Const("shape")]), build, check)


class MergeReshapes(RulePass):
    """Replace ``Reshape(Reshape(x, a), b)`` by ``Reshape(x, b)``: a reshape keeps the elements
    in order, so only the last shape matters. A ``0`` in ``b`` (copy a dim) is replaced by the
    dim it copies, which must then be known. When the inner Reshape is also read elsewhere it
    stays for those readers."""

    name = "merge-reshapes"

    count_key = "merged"

    def rules(self, model: Model) -> list[Rule]:
        return [rule(shapes.LazyTypes(model))]

    def change_line(self, site) -> str:
        return f"{site.node!r} now reshapes the input of the Reshape before it"
