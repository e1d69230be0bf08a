"""matmul-add-to-gemm: a 2-D ``MatMul`` followed by the addition of a constant, as one ``Gemm``."""

from __future__ import annotations

from onnx import helper

from .. import shapes
from ..core.model import Model
from ..rewrite import Const, Op, Rule
from .base import RulePass

# Gemm is defined for more types, but its float16 kernels accumulate differently from MatMul's;
# the integer ones need opset 11: only these are fused
_FLOAT_TYPES = (1, 11)  # FLOAT, DOUBLE


def rule(types: shapes.Types | shapes.LazyTypes, opset: int) -> Rule:
    def check(m, g):
        if opset < 7:
            return f"the model imports opset {opset}; Gemm broadcasts its bias from opset 7"
        ranks = [shapes.rank(types.get(g, m[k])) for k in ("a", "b")]
        if ranks != [2, 2]:
            return f"MatMul operands have ranks {ranks}; Gemm takes 2-D operands only"
        t = types.get(g, m["a"])
        elem = t.tensor_type.elem_type if t is not None and t.HasField("tensor_type") else 0
        if elem not in _FLOAT_TYPES:
            return "the operands are not float32 or float64"
        c = m["c"]
        if c.dtype != helper.tensor_dtype_to_np_dtype(elem):
            return f"the constant is {c.dtype}, the MatMul {helper.tensor_dtype_to_np_dtype(elem)}"
        out = shapes.dims(types.get(g, m.nodes["matmul"].outputs[0])) or [None, None]
        if c.ndim > 2:
            return f"the constant has rank {c.ndim}: the sum is not 2-D"
        want = list(c.shape) if c.ndim == 2 else [1] + list(c.shape) if c.ndim == 1 else [1, 1]
        for axis, (n, d) in enumerate(zip(want, out, strict=False)):
            if n != 1 and n != d:
                return (f"the constant's dim {axis} ({n}) is not 1 and not known to equal the product's "
                        f"({d if d is not None else 'unknown'})")
        return True

    def build(m, g):
        root, mm = m.root, m.nodes["matmul"]
        node = helper.make_node("Gemm", [m["a"], m["b"], m.tensors["c"]], [root.outputs[0]],
                                name=mm.name or g.unique_name("Gemm", kind="node"))
        return [node]

    pattern = Op("Add", [Op("MatMul", ["a", "b"], name="matmul"), Const("c")], commutative=True)
    return Rule("matmul-add", pattern, build, check, doc="2-D MatMul + constant -> Gemm")


class MatMulAddToGemm(RulePass):
    """Fuse ``Add(MatMul(A, B), C)`` into ``Gemm(A, B, C)`` where that is the same computation:
    both MatMul operands known to be 2-D, float32 or float64, ``C`` a constant that broadcasts
    to the product's shape without growing it (``[N]``, ``[1, N]``, ``[M, N]``, ``[M, 1]``, a
    scalar), and the product read by nothing else. MatMul on higher ranks (batched, as in
    transformers) is left as it is."""

    name = "matmul-add-to-gemm"

    count_key = "fused"

    def rules(self, model: Model) -> list[Rule]:
        opset = model.opset("") or 0
        return [rule(shapes.LazyTypes(model), opset)]

    def change_line(self, site) -> str:
        return f"{site.node!r} and the MatMul before it are now one Gemm"
