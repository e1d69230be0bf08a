"""eliminate-neutral: arithmetic with its neutral element (``x + 0``, ``x * 1``...) removed."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..core.model import Model
from ..rewrite import ANY, Alias, Const, Op, Rule, optional_const
from .base import RulePass

# an end at least this large takes a whole axis whatever its size (exporters write 2**31 - 1, 2**63 - 1)
_UNBOUNDED = 2**31 - 1


def _all(value):
    return lambda v: v.size > 0 and v.dtype != object and bool(np.all(v == value))


def rules(types: shapes.Types | shapes.LazyTypes) -> list[Rule]:
    def keeps_shape(m, g):
        t = types.get(g, m["x"])
        dims = shapes.dims(t)
        if dims is None:
            return "the other operand's rank is unknown, so the result's shape may differ"
        elem = t.tensor_type.elem_type if t is not None and t.HasField("tensor_type") else 0
        c = m["c"]
        from onnx import helper

        if not elem or helper.tensor_dtype_to_np_dtype(elem) != c.dtype:
            return "the operands' element types differ or are unknown"
        if c.ndim > len(dims):
            return f"the constant has rank {c.ndim}, more than the other operand's {len(dims)}: the result grows"
        for axis, n in enumerate(c.shape):
            d = dims[len(dims) - c.ndim + axis]
            if n != 1 and n != d:
                return f"the constant's dim {axis} ({n}) may broadcast the other operand (dim {d})"
        return True

    def whole_slice(m, g):
        dims = shapes.dims(types.get(g, m["x"]))
        starts, ends = m["starts"].reshape(-1), m["ends"].reshape(-1)
        axes, steps = (optional_const(g, m.root, i) for i in (3, 4))
        if isinstance(axes, str) or isinstance(steps, str):
            return axes if isinstance(axes, str) else steps
        axes = np.arange(len(starts)) if axes is None else axes.reshape(-1)
        steps = np.ones(len(starts), np.int64) if steps is None else steps.reshape(-1)
        if len({len(starts), len(ends), len(axes), len(steps)}) != 1:
            return "its starts, ends, axes and steps differ in length"
        for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist(), strict=True):
            dim = None
            if dims is not None and -len(dims) <= axis < len(dims):
                dim = dims[axis]
            if step != 1 or start != 0:
                return f"it starts at {start} with step {step} on axis {axis}"
            if end < _UNBOUNDED and not (isinstance(dim, int) and end >= dim):
                return f"it ends at {end} on axis {axis}, whose size is {dim if dim is not None else 'unknown'}"
        return True

    alias = lambda m, g: Alias(m["x"])  # noqa: E731
    return [
        Rule("add-zero", Op("Add", ["x", Const("c", _all(0))], commutative=True), alias, keeps_shape),
        Rule("sub-zero", Op("Sub", ["x", Const("c", _all(0))]), alias, keeps_shape),
        Rule("mul-one", Op("Mul", ["x", Const("c", _all(1))], commutative=True), alias, keeps_shape),
        Rule("div-one", Op("Div", ["x", Const("c", _all(1))]), alias, keeps_shape),
        Rule("slice-whole", Op("Slice", ["x", Const("starts"), Const("ends"), ANY, ANY],
                               min_inputs=3), alias, whole_slice),
    ]


class EliminateNeutral(RulePass):
    """Remove ``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x`` and ``x / 1`` where the constant
    has the operand's element type and does not broadcast it to a larger shape (so the result is
    the operand, same type and shape; exported models with zero-initialised biases are full of
    them). Multiplying or dividing by one and subtracting zero give back the operand bit for
    bit; adding zero too, except that ``-0.0 + 0`` is ``+0.0``, which compares equal. Also a
    ``Slice`` that keeps every element (starts 0, steps 1, ends at or past each axis's size)."""

    name = "eliminate-neutral"

    count_key = "removed"

    def rules(self, model: Model) -> list[Rule]:
        return rules(shapes.LazyTypes(model))

    def change_line(self, site) -> str:
        return f"{site.rule}: removed {site.node!r}"
