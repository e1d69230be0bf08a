"""convert-opset: the full checker on the result, external data, sequence and optional inputs."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphsurgery as gs
from graphsurgery.passes import PassError, create
from conftest import run_ort, tiny_chain


def test_convert_opset_refuses_a_result_whose_output_shapes_are_stale():
    # MaxPool with ceil_mode: opset 22 gives [1,1,1,1] here, older opsets [1,1,2,2], and the
    # converter leaves the declared output shape as it was
    g = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[1, 1],
                                            strides=[2, 2], ceil_mode=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 22)], ir_version=10))
    before = m.proto.SerializeToString()
    with pytest.raises(PassError, match="opset 22 to 21 is invalid.*MaxPool"):
        create("convert-opset", version=21).run(m)
    assert m.proto.SerializeToString() == before


def test_convert_opset_keeps_external_data_in_its_file(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0, location="w.bin")
    m = gs.load(str(tmp_path / "m.onnx"))
    assert create("convert-opset", version=16).run(m).changed
    assert m.opset("") == 16
    for t in m.proto.graph.initializer:
        assert t.data_location == TensorProto.EXTERNAL
        assert {e.key: e.value for e in t.external_data}["location"] == "w.bin"
    m.check()
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    ref = run_ort(tiny_chain(), {"x": x})["y"]
    m.save(tmp_path / "m16.onnx")
    got = run_ort(onnx.load(str(tmp_path / "m16.onnx")), {"x": x})["y"]
    assert np.allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_convert_opset_on_sequence_and_optional_inputs():
    g = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"], name="len"),
                           helper.make_node("OptionalHasElement", ["o"], ["h"], name="has")], "g",
                          [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [2]),
                           helper.make_value_info("o", helper.make_optional_type_proto(
                               helper.make_tensor_type_proto(TensorProto.FLOAT, [2])))],
                          [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                           helper.make_tensor_value_info("h", TensorProto.BOOL, [])])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10))
    r = create("convert-opset", version=19).run(m)
    assert r.changed and m.opset("") == 19
    onnx.checker.check_model(m.proto, full_check=True)
    assert not create("convert-opset", version=19).run(m).changed
