"""fix-prelu-slope: reshape a [C] PRelu slope to [C, 1, ..., 1] when shapes prove C is the channel axis."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..model import Model
from .base import Pass, PassResult


class FixPReluSlope(Pass):
    """Exporters such as MXNet store a per-channel PRelu slope as ``[C]``. ONNX broadcasts it
    against the *last* axis of an NCHW input, so runtimes fail ("Attempting to broadcast an
    axis by a dimension other than 1") or, when W == C, silently scale the wrong axis.

    For each PRelu whose slope is a 1-D constant of length C, whose input has rank ≥ 3 with
    axis 1 equal to C, and whose last axis is not C (so the current form cannot be what was
    meant), the slope becomes ``[C, 1, ..., 1]``. When the last axis also equals C the intent
    is ambiguous and the node is left alone and reported; so is a node whose input shape is
    unknown (fix the input shapes first, e.g. with ``set-shape``).
    """

    name = "fix-prelu-slope"

    def apply(self, model: Model, result: PassResult) -> None:
        types = None
        for g in list(model.graphs()):
            if g.is_function:
                continue
            for node in g.find_nodes("PRelu"):
                x, slope_name = node.inputs[0], node.inputs[1]
                t = g.tensor(slope_name)
                if not t.is_constant:
                    result.skip(f"PRelu {node.name!r}: slope {slope_name!r} is computed, not a constant")
                    continue
                slope = t.numpy()
                if slope.ndim != 1 or slope.size == 1:
                    continue  # scalar-like or already shaped: broadcasts as written
                if types is None:
                    types = shapes.infer(model)
                dims = shapes.dims(types.get(g, x))
                C = slope.shape[0]
                if dims is None or len(dims) < 3 or not isinstance(dims[1], int):
                    result.skip(f"PRelu {node.name!r}: the shape of input {x!r} is unknown, so the channel axis "
                                "cannot be proven; fix the input shapes (set-shape) first")
                    continue
                if dims[1] != C:
                    result.skip(f"PRelu {node.name!r}: slope length {C} is not the channel count {dims[1]}")
                    continue
                if dims[-1] == C:
                    result.skip(f"PRelu {node.name!r}: slope [{C}] also matches the last axis ({dims}); "
                                "it runs as written, and which axis was meant cannot be proven")
                    continue
                shaped = slope.reshape((C,) + (1,) * (len(dims) - 2))
                readers = g.consumers(slope_name)
                if t.is_initializer and all(r.op_type == "PRelu" for r in readers):
                    g.set_initializer(slope_name, np.ascontiguousarray(shaped))
                    result.note(f"slope {slope_name!r} reshaped [{C}] -> {list(shaped.shape)} "
                                f"(read by {len(readers)} PRelu node(s))")
                else:
                    new = g.unique_name(f"{slope_name}_per_channel")
                    g.set_initializer(new, np.ascontiguousarray(shaped))
                    node.set_input(1, new)
                    result.note(f"PRelu {node.name!r}: slope {slope_name!r} [{C}] -> new initializer {new!r} "
                                f"{list(shaped.shape)}")
