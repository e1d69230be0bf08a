"""rejoin-elements: a Concat of a vector's elements taken in order is the vector: where it fires
on a real model (outputs unchanged) and where it must not."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphsurgery.passes import Pipeline, create
from conftest import DATA, run_ort

FIXTURES = DATA.parent / "fixtures"


def test_rejoins_the_box_shape_in_faster_rcnn_box_clipping():
    """torchvision's clip_boxes_to_image reshapes the clipped boxes to ``boxes.shape`` rebuilt
    from its three dims: the Concat, its three Unsqueezes and three Gathers go."""
    proto = onnx.load(FIXTURES / "box_clip.onnx")
    rng = np.random.default_rng(0)
    feeds = {"/m/roi_heads/Reshape_1_output_0": (rng.random((7, 91, 4)) * 400 - 40).astype(np.float32),
             "/m/roi_heads/Unsqueeze_10_output_0": np.array([4], np.int64)}
    expected = run_ort(proto, feeds)
    r = Pipeline.from_text("rejoin-elements,cleanup").run(proto)
    assert r.results[0].details["rejoined"] == 1
    kinds = [n.op_type for n in proto.graph.node]
    assert len(kinds) == 12 and kinds.count("Concat") == 1 and "Gather" not in kinds
    reshape = next(n for n in proto.graph.node if n.op_type == "Reshape")
    shape = next(n for n in proto.graph.node if n.op_type == "Shape")
    assert reshape.input[1] == shape.output[0]
    onnx.checker.check_model(proto, full_check=True)
    got = run_ort(proto, feeds)
    np.testing.assert_array_equal(got["/m/roi_heads/Reshape_2_output_0"], expected["/m/roi_heads/Reshape_2_output_0"])
    assert not create("rejoin-elements").run(proto).changed


def shape_model(indices, *, x_shape=("n", 3, 4), gather_axis=0, output=False, unsq_axes=(0,), opset=17):
    """Reshape(y, Concat(Unsqueeze(Gather(Shape(x), i)) for i in indices))."""
    inits = [numpy_helper.from_array(np.array(i, np.int64), f"i{k}") for k, i in enumerate(indices)]
    inits.append(numpy_helper.from_array(np.array(unsq_axes, np.int64), "ax"))
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape")]
    for k in range(len(indices)):
        nodes.append(helper.make_node("Gather", ["s", f"i{k}"], [f"g{k}"], name=f"gather{k}", axis=gather_axis))
        nodes.append(helper.make_node("Unsqueeze", [f"g{k}", "ax"], [f"u{k}"], name=f"unsq{k}"))
    nodes.append(helper.make_node("Concat", [f"u{k}" for k in range(len(indices))], ["c"], name="cat", axis=0))
    outputs = [helper.make_tensor_value_info("c", TensorProto.INT64, [len(indices)])]
    if not output:
        nodes.append(helper.make_node("Reshape", ["y", "c"], ["z"], name="reshape"))
        outputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None if x_shape is None else list(x_shape)),
                                       helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def test_fires_with_negative_indices():
    proto = shape_model([-3, 1, -1])
    x = np.zeros((2, 3, 4), np.float32)
    y = np.arange(24, dtype=np.float32)
    assert create("rejoin-elements").run(proto).changed
    assert next(n for n in proto.graph.node if n.op_type == "Reshape").input[1] == "s"
    assert run_ort(proto, {"x": x, "y": y})["z"].shape == (2, 3, 4)


def test_left_where_the_pieces_are_not_the_vector_in_order():
    cases = {
        "swapped": (shape_model([1, 0, 2]), "element 0 of the Concat is element 1 of the vector"),
        "fewer": (shape_model([0, 1], x_shape=("n", 3, 4)), "has 3 elements, the Concat joins 2"),
        "unknown length": (shape_model([0, 1, 2], x_shape=None), "not known to be 1-D"),
        "index of one": (shape_model([[0], [1], [2]]), "takes a 1-D index, not a scalar"),
    }
    for label, (proto, why) in cases.items():
        before = proto.SerializeToString()
        r = create("rejoin-elements").run(proto)
        assert not r.changed, label
        assert proto.SerializeToString() == before, label
        assert any(why in s for s in r.skipped), (label, r.skipped)


def test_gather_on_another_axis_does_not_match():
    proto = shape_model([0, 1, 2], gather_axis=-1)
    before = proto.SerializeToString()
    assert not create("rejoin-elements").run(proto).changed
    assert proto.SerializeToString() == before


def test_concat_that_is_a_graph_output_of_a_shared_vector_is_left_valid():
    """The Concat's output is a graph output and the Shape's output is read by the Gathers:
    the output cannot take the vector's name, so nothing changes (not even partly)."""
    proto = shape_model([0, 1, 2], output=True)
    before = proto.SerializeToString()
    r = create("rejoin-elements").run(proto)
    assert not r.changed
    assert proto.SerializeToString() == before
