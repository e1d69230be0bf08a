"""remove-single-piece: Concat of one input and Split into one output removed where they fire on
real models (outputs unchanged), and left where the whole axis is not certain."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import Pipeline, create
from conftest import DATA, run_ort

FIXTURES = DATA.parent / "fixtures"


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def ops(proto):
    return [n.op_type for n in proto.graph.node]


def test_splits_into_one_removed_on_the_faster_rcnn_rpn_filter():
    """Five Splits of one output each: three on axis 0 of [1, 450, ...], two on axis 1 of
    NonZero's transposed indices ([N, 1], N unknown): all removed, outputs identical."""
    proto = onnx.load(FIXTURES / "rpn_splits.onnx")
    rng = np.random.default_rng(0)
    feeds = {"/m/rpn/Gather_44_output_0": (rng.random((1, 450, 4)) * 320).astype(np.float32),
             "/m/rpn/Sigmoid_output_0": rng.random((1, 450)).astype(np.float32),
             "/m/rpn/Reshape_24_output_0": rng.integers(0, 5, (1, 450)).astype(np.int64)}
    expected = run_ort(proto, feeds)
    r = create("remove-single-piece").run(proto)
    assert r.changed and r.details["removed"] == 5
    assert "Split" not in ops(proto)
    onnx.checker.check_model(proto, full_check=True)
    got = run_ort(proto, feeds)
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])
    assert not create("remove-single-piece").run(proto).changed


def test_concat_of_one_removed_on_quantized_bert():
    proto = onnx.load(DATA / "tiny_bert_qdyn.onnx")
    assert sum(1 for n in proto.graph.node if n.op_type == "Concat" and len(n.input) == 1) == 1
    feeds = {"input_ids": np.random.default_rng(0).integers(0, 100, (1, 16)).astype(np.int64),
             "attention_mask": np.array([[1] * 12 + [0] * 4], np.int64)}
    expected = run_ort(proto, feeds)
    r = create("remove-single-piece").run(proto)
    assert r.changed and any("concat-of-one" in line for line in r.changes)
    assert not any(n.op_type == "Concat" and len(n.input) == 1 for n in proto.graph.node)
    got = run_ort(proto, feeds)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def split_model(split=None, attr=None, out_shape=(4, 3), in_shape=(4, 3), outputs=1, opset=17, axis=0):
    inits, ins = [], ["x"]
    if split is not None:
        inits.append(numpy_helper.from_array(np.array(split, np.int64), "s"))
        ins.append("s")
    kw = {"axis": axis}
    if attr is not None:
        kw["split"] = attr
    outs = [f"p{i}" for i in range(outputs)]
    nodes = [helper.make_node("Split", ins, outs, name="split", **kw)] + [
        helper.make_node("Relu", [o], [f"y{i}"], name=f"relu{i}") for i, o in enumerate(outs)]
    return model_of(nodes, [vi("x", in_shape)], [vi(f"y{i}", None) for i in range(outputs)], inits, opset=opset)


def test_split_into_one_forms_that_fire():
    for proto in (split_model(), split_model(split=[4]), split_model(split=[3], axis=-1),
                  split_model(attr=[4], opset=11)):
        x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
        expected = run_ort(proto, {"x": x})
        assert create("remove-single-piece").run(proto).changed
        assert ops(proto) == ["Relu"]
        np.testing.assert_array_equal(run_ort(proto, {"x": x})["y0"], expected["y0"])


def test_split_into_one_refused_when_the_size_may_not_be_the_whole_axis():
    computed = model_of([helper.make_node("Shape", ["x"], ["sh"], name="shape", start=0, end=1),
                         helper.make_node("Split", ["x", "sh"], ["p"], name="split", axis=0),
                         helper.make_node("Relu", ["p"], ["y"], name="relu")],
                        [vi("x", [4, 3])], [vi("y", None)])
    cases = {
        "unknown": (split_model(split=[4], in_shape=("n", 3)), "size along axis 0 is unknown"),
        "rank unknown": (split_model(split=[4], in_shape=None), "rank is unknown"),
        "computed": (computed, "computed, not a constant"),
    }
    for label, (proto, why) in cases.items():
        before = proto.SerializeToString()
        r = create("remove-single-piece").run(proto)
        assert not r.changed, label
        assert proto.SerializeToString() == before, label
        assert any(why in s for s in r.skipped), (label, r.skipped)


def test_split_into_two_and_concat_of_two_are_left():
    proto = split_model(outputs=2, split=[2, 2])
    proto.graph.node.append(helper.make_node("Concat", ["y0", "y1"], ["z"], name="cat", axis=0))
    proto.graph.output.append(vi("z", None))
    before = proto.SerializeToString()
    assert not create("remove-single-piece").run(proto).changed
    assert proto.SerializeToString() == before


def test_concat_of_one_that_is_a_graph_output_keeps_the_output_name():
    proto = model_of([helper.make_node("Relu", ["x"], ["h"], name="relu"),
                      helper.make_node("Concat", ["h"], ["y"], name="cat", axis=0)],
                     [vi("x", [2, 3])], [vi("y", [2, 3])])
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    create("remove-single-piece").run(proto)
    assert [o.name for o in proto.graph.output] == ["y"]
    onnx.checker.check_model(proto, full_check=True)
    np.testing.assert_array_equal(run_ort(proto, {"x": x})["y"], np.maximum(x, 0))


def test_concat_of_one_inside_a_branch_reading_an_outer_tensor():
    """The branch's output is the Concat of a tensor captured from outside: the branch must
    still produce its own output (the outer tensor is not the branch's to rename)."""
    then = helper.make_graph([helper.make_node("Concat", ["h"], ["t"], name="cat", axis=0)], "then", [],
                             [vi("t", [2, 3])])
    other = helper.make_graph([helper.make_node("Neg", ["h"], ["e"], name="neg")], "else", [], [vi("e", [2, 3])])
    proto = model_of([helper.make_node("Relu", ["x"], ["h"], name="relu"),
                      helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other)],
                     [vi("x", [2, 3]), vi("c", [], TensorProto.BOOL)], [vi("y", [2, 3])])
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    feeds = {"x": x, "c": np.array(True)}
    expected = run_ort(proto, feeds)
    Pipeline([create("remove-single-piece")])(proto)
    onnx.checker.check_model(proto, full_check=True)
    np.testing.assert_array_equal(run_ort(proto, feeds)["y"], expected["y"])
    assert gs.load(proto).graph.tensor("y") is not None
