"""TensorRT's checks of a named input or output act on what the node gives: an optional one
left out, or given as "", is not there; one given is checked (one helper finds them all)."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.backends import lint_for


def _model(node, inputs, outputs, inits=(), opset=21):
    g = helper.make_graph([node], "g", inputs, outputs, list(inits))
    return gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10))


def _restrictions(model) -> list[str]:
    return [f.message.split(";")[0] for f in lint_for(model, "tensorrt") if f.code == "trt-restriction"]


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def test_an_optional_output_is_checked_only_when_produced():
    x, y, i = _vi("x", [1, 1, 4, 4]), _vi("y", [1, 1, 3, 3]), _vi("i", [1, 1, 3, 3], TensorProto.INT64)
    for outputs, want in ((["y"], []), (["y", ""], []), (["y", "i"], ["output Indices ('i') is produced"])):
        node = helper.make_node("MaxPool", ["x"], outputs, name="pool", kernel_shape=[2, 2])
        assert _restrictions(_model(node, [x], [y, i][:len([o for o in outputs if o])])) == want, outputs


def test_an_optional_input_is_checked_only_when_given():
    x, y = _vi("x", [4], TensorProto.INT8), _vi("y", [4])
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "s")
    zero = numpy_helper.from_array(np.array(3, np.int8), "zp")
    for inputs, want in ((["x", "s"], []), (["x", "s", ""], []),
                         (["x", "s", "zp"], ["input x_zero_point ('zp') is not all zeros"])):
        node = helper.make_node("DequantizeLinear", inputs, ["y"], name="dq")
        assert _restrictions(_model(node, [x], [y], [scale, zero])) == want, inputs


def test_a_given_input_is_checked_for_shape_and_rank():
    node = helper.make_node("EyeLike", ["x"], ["y"], name="eye")
    found = _restrictions(_model(node, [_vi("x", ["n", 3])], [_vi("y", ["n", 3])]))
    assert found == ["input input has shape ['n', 3]"]
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs")
    found = _restrictions(_model(node, [_vi("x", [1, 2, 3, 4, 5]), _vi("grid", [1, 3, 4, 5, 3])],
                                 [_vi("y", [1, 2, 3, 4, 5])]))
    assert "input X has rank 5" in found
