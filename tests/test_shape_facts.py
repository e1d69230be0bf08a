"""Shape facts (graphsurgery.shapes.infer): a declared value_info with unknown dims must not hide
what inference can now compute, and must still stand where inference cannot tell."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import shapes
from graphsurgery.passes import Pipeline
from conftest import DATA, run_ort


def test_stale_unknown_dims_do_not_pin_the_attention_mask_of_quantized_bert():
    """tiny_bert_qdyn declares its mask tensors with unknown dims (exported with dynamic axes).
    Once the inputs are fixed and the mask's index arithmetic folded, onnx's inference could
    compute [1, 1, 16, 16] but keeps the declared unknowns; the mask's Expand to [1, 1, 16, 16]
    then looked like it grew the tensor and stayed."""
    proto = onnx.load(DATA / "tiny_bert_qdyn.onnx")
    Pipeline.from_text("set-shape(input_ids=1x16,attention_mask=1x16),fold-constants")(proto)
    m = gs.load(proto)
    expand = next(n for n in m.graph.nodes if n.op_type == "Expand")
    assert shapes.static_shape(shapes.infer(m).get(m.graph, expand.inputs[0])) == (1, 1, 16, 16)
    feeds = {"input_ids": np.random.default_rng(0).integers(0, 100, (1, 16)).astype(np.int64),
             "attention_mask": np.array([[1] * 12 + [0] * 4], np.int64)}
    expected = run_ort(proto, feeds)
    r = Pipeline.from_text("eliminate-noops")(proto)
    assert "Expand" not in [n.op_type for n in r.graph.node]
    got = run_ort(proto, feeds)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def test_declared_type_stands_where_inference_cannot_tell():
    """A custom op's output: inference knows nothing of it, the value_info does. With another
    value_info entry holding an unknown dim (which sends inference down the path that leaves
    value_info out), the declared type of the custom output is still what is reported, and a
    declared dim stays where the inferred one is unknown."""
    nodes = [helper.make_node("Mystery", ["x"], ["c"], name="custom", domain="example.custom"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([3, 4], np.int64), "shape")],
                          value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, "w"]),
                                      helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)])
    before = proto.SerializeToString()
    m = gs.load(proto)
    types = shapes.infer(m)
    assert shapes.dims(types.get(m.graph, "c")) == [2, "w"]
    assert shapes.dims(types.get(m.graph, "r")) == [2, "w"]
    assert shapes.static_shape(types.get(m.graph, "y")) == (3, 4)
    assert m.proto.SerializeToString() == before  # the model itself is not touched
