"""Build graphsurgery/data/example.onnx, the small model the README's first command inspects.

It carries, on purpose, the problems deployment engineers meet in exported models:
a PReLU whose slope is stored as [C] (does not broadcast against NCHW), an
InstanceNormalization with a tiny epsilon, an If whose condition is a constant, and a
Reshape that hard-codes the batch size. Run: python scripts/make_example_model.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
C = 4


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


then_g = helper.make_graph(
    [helper.make_node("Relu", ["norm"], ["branch_out"], name="then_relu")], "then_branch", [],
    [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [1, C, 8, 8])])
else_g = helper.make_graph(
    [helper.make_node("Sigmoid", ["norm"], ["branch_out_e"], name="else_sigmoid")], "else_branch", [],
    [helper.make_tensor_value_info("branch_out_e", TensorProto.FLOAT, [1, C, 8, 8])])

nodes = [
    helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
    helper.make_node("PRelu", ["conv", "slope"], ["prelu"], name="prelu"),
    helper.make_node("InstanceNormalization", ["prelu", "in_scale", "in_bias"], ["norm"], name="instnorm",
                     epsilon=1e-9),
    helper.make_node("Constant", [], ["use_relu"], name="flag", value=helper.make_tensor("v", TensorProto.BOOL, [], [True])),
    helper.make_node("If", ["use_relu"], ["act"], name="branch", then_branch=then_g, else_branch=else_g),
    helper.make_node("Reshape", ["act", "flat_shape"], ["logits"], name="flatten"),
]
graph = helper.make_graph(
    nodes, "example",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, C * 64])],
    [
        init("conv_w", rng.standard_normal((C, 3, 3, 3)).astype(np.float32) * 0.3),
        init("conv_b", rng.standard_normal(C).astype(np.float32) * 0.1),
        init("slope", np.full(C, 0.25, np.float32)),  # [C]: MXNet-style, does not broadcast against NCHW
        init("in_scale", np.ones(C, np.float32)),
        init("in_bias", np.zeros(C, np.float32)),
        init("flat_shape", np.array([1, -1], np.int64)),  # hard-codes batch 1
    ],
    doc_string="Example model for graphsurgery: several classic export problems in six nodes.",
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="graphsurgery-example",
                          ir_version=8)
model.metadata_props.add(key="source", value="scripts/make_example_model.py")
onnx.checker.check_model(model)
out = os.path.join(os.path.dirname(__file__), "..", "graphsurgery", "data", "example.onnx")
onnx.save(model, out)
print("wrote", os.path.normpath(out))
