"""set-shape: dims are read strictly, and the declared shapes follow the new input shapes."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import graphsurgery as gs
from graphsurgery.passes import PassError, Pipeline, create
from conftest import DATA, run_ort


def transpose_model(in_dims, out_dims):
    g = helper.make_graph([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[3, 2, 1, 0]),
                           helper.make_node("Relu", ["y"], ["r"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, out_dims)],
                          value_info=[helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_symbolic_dims_and_names_with_x():
    m = gs.load(transpose_model(["batch", 3, 4, 5], [5, 4, 3, "batch"]))
    create("set-shape", x="Nx3x4x5").run(m)
    assert m.graph.tensor("x").shape == ["N", 3, 4, 5]
    create("set-shape", x="max_batch;3;4;5").run(m)
    assert m.graph.tensor("x").shape == ["max_batch", 3, 4, 5]
    assert m.graph.tensor("r").shape == [5, 4, 3, "max_batch"]


def test_outputs_and_value_info_are_re_inferred():
    """The declared output [batch,4,3,2] would contradict the new input [2,3,4,5]."""
    m = gs.load(transpose_model(["batch", 3, 4, 2], [2, 4, 3, "batch"]))
    with pytest.raises(PassError, match="rank 4"):
        create("set-shape", x="2x3x4").run(m)
    m = gs.load(transpose_model([1, 3, 4, 2], [2, 4, 3, 1]))
    r = create("set-shape", x="2x3x4x5").run(m)
    assert m.graph.tensor("r").shape == [5, 4, 3, 2]
    assert m.graph.tensor("y").shape == [5, 4, 3, 2]
    assert any("output 'r'" in c for c in r.changes)
    m.check()
    out = run_ort(m.proto, {"x": np.zeros((2, 3, 4, 5), np.float32)})["r"]
    assert out.shape == (5, 4, 3, 2)


def test_declared_dims_inference_cannot_reach_stay():
    """silero_vad's outputs come out of an If on a runtime rate: inference cannot see them, so
    the declared dims (output [?, 1]) stay as they are."""
    m = gs.load(str(DATA / "silero_vad.onnx"))
    Pipeline.from_text("set-shape(input=1x512,state=2x1x128)").run(m)
    assert m.graph.tensor("output").shape[1] == 1


@pytest.mark.parametrize("text,match", [
    ("1x3x4xabc!", "'abc!' is not a dim"),
    ("1x3x4x-1", "'-1' is not a dim"),
    ("1x3x4x\u00b2", "'\u00b2' is not a dim"),
    ("1x3x4x99999999999999999999", "dim 99999999999999999999 is out of range"),
    ("0x3x4x4", "dim 0 is out of range"),
    ("1x3xx4", "cannot read dims"),
    ("1x3x4x4;y=1x2", "one NAME=DIMS per input, separated by ','"),
    ("Nx3x4x4", "dim 0 of input 'x' is fixed at 1; set-shape cannot make it symbolic"),
    ("1x3x4xabc", "dim 3 of input 'x' is fixed at 2; set-shape cannot make it symbolic"),
])
def test_garbage_is_one_line_error_and_changes_nothing(text, match):
    m = gs.load(transpose_model([1, 3, 4, 2], [2, 4, 3, 1]))
    before = m.to_bytes()
    with pytest.raises(PassError, match=match) as info:
        create("set-shape", x=text).run(m)
    assert isinstance(info.value, gs.GraphSurgeryError) and "\n" not in str(info.value)
    assert m.to_bytes() == before


def test_semicolon_between_inputs_is_refused_not_misread():
    m = gs.load(str(DATA / "silero_vad.onnx"))
    with pytest.raises(PassError, match="separated by ','"):
        Pipeline.from_text("set-shape(input=1x512;state=2x1x128)").run(m)
    assert m.graph.tensor("input").shape == [None, None]
