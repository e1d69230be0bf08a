"""What the batch trace speaks of: probe sizes, markers, operator families, node helpers."""

from __future__ import annotations

import numpy as np
import onnx

# Two probe batch sizes: an axis carries the batch when it reads B1 in one probe and B2 in the
# other, which no constant dimension can do by accident.
B1, B2 = 11, 13

# ---- following the batch through the graph ---------------------------------------------------
#
# The trace walks the graph in order and records, for every tensor that depends on the batch,
# the one axis that carries it (``_Trace.axis``), and for small integer tensors (shapes and the
# glue computed from them) their elements (``_Trace.vals``): a number, a dim name, None (not
# known, but not the batch), ``BATCH`` (exactly the batch size) or ``MIXED`` (computed from the
# batch size some other way). Each operator has a rule saying where the batch goes; where
# samples would be mixed (a reduction, a softmax or a concat over the batch axis, ...) the
# trace stops with _Lost, where it cannot tell with _Unknown. Operators without a rule fall
# back on shape inference run at two probe batch sizes: the axis that reads B1 in one and B2
# in the other.

BATCH = "<batch>"
MIXED = "<mixed>"
_INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
              onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
# small constants the trace reads: integer glue, and float scales (Resize)
_SMALL_TYPES = _INT_TYPES | {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL}
_BIG = 10**9  # a Slice end at or past this keeps any batch (tf2onnx writes 1e9, PyTorch 2**63 - 1)

_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Mean", "Sum", "Where", "Equal", "Less",
    "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "BitwiseAnd", "BitwiseOr",
    "BitwiseXor", "PRelu", "Clip", "CastLike", "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Neg",
    "Abs", "Cast", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Softplus",
    "Softsign", "Sign", "Floor", "Ceil", "Round", "Reciprocal", "IsNaN", "IsInf", "Not", "Identity", "Sin",
    "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Mish",
    "ThresholdedRelu", "Shrink", "BitwiseNot", "Dropout", "QuantizeLinear", "DequantizeLinear",
}
# the batch must be axis 0 of the first input; the output keeps it there
_BATCH_FIRST = {
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "InstanceNormalization", "LRN", "DepthToSpace",
    "SpaceToDepth", "GroupNormalization", "MaxRoiPool",
}
# ops whose rule keeps the batch axis row by row: a batch merged with other dims passes as is
# (their rules refuse wherever they act along the batch axis)
_MERGE_SAFE = _ELEMENTWISE | {
    "Gemm", "MatMul", "Transpose", "Softmax", "LogSoftmax", "LayerNormalization", "Split", "Slice", "Gather",
    "Squeeze", "Unsqueeze", "Concat", "Reshape", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
}
_REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
# the number of elements of the output depends on the data of every sample
_DATA_SIZED = {"NonZero", "NonMaxSuppression", "Compress", "Unique", "StringSplit", "RegexFullMatch"}

# ops whose inputs after the first are parameters, never broadcast against the batch
_PARAMETER_OPS = {"Conv", "ConvTranspose", "ConvInteger", "BatchNormalization", "InstanceNormalization",
                  "LayerNormalization", "GroupNormalization"}



class _Lost(Exception):
    """The node mixes samples or drops the batch."""


class _Unknown(Exception):
    """The trace cannot tell where the batch goes through the node."""



def _constant_value(node: onnx.NodeProto):
    for a in node.attribute:
        if a.name == "value" and a.t.data_type in _SMALL_TYPES and np.prod(a.t.dims) <= 64:
            return onnx.numpy_helper.to_array(a.t)
        if a.name == "value_int":
            return np.array(a.i, np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), np.int64)
    return None



def _label(node: onnx.NodeProto) -> str:
    """``'name' (Op)``; a node without a name is named by its first output."""
    if node.name:
        return f"{node.name!r} ({node.op_type})"
    out = next((o for o in node.output if o), None)
    return f"({node.op_type}) making {out!r}" if out else f"({node.op_type}) without name or outputs"


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default



def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _norm_clamp(axis: int, rank: int) -> int:
    axis = axis + rank if axis < 0 else axis
    return min(max(axis, 0), rank)



def _show(v) -> str:
    return "?" if v is None else str(v)


def _show_dims(d) -> str:
    return "[" + ", ".join(_show(x) for x in d) + "]"
