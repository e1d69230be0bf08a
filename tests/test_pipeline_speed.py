"""The pipeline's passes cost time in proportion to the graph: no shape inference or weight
decoding that no fold, rule or merge asks for, no weights copied into shape inference, and the
results the same as when all of that was done."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import shapes
from graphsurgery.core.graph import Graph
from graphsurgery.passes import create


def cnn(blocks=4, weights=(4, 4, 3, 3), shared_norm=False):
    """Conv → Relu blocks; every block has its own weight and (unless ``shared_norm``) its own
    scale and bias of the same value: duplicates for eliminate-noops to merge."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        inits += [numpy_helper.from_array(rng.standard_normal(weights).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.ones((weights[0], 1, 1), np.float32), f"s{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Mul", [f"c{i}", f"s{i}"], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        x = f"r{i}"
    c = weights[0]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8, 8])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.fixture
def infer_calls(monkeypatch):
    """How often each pass ran shape inference, and on how many bytes."""
    calls = []
    real = onnx.shape_inference.infer_shapes

    def counting(model, *args, **kwargs):
        calls.append(model.ByteSize())
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", counting)
    return calls


def test_fold_constants_infers_no_shapes_when_nothing_can_fold(infer_calls):
    m = gs.load(cnn())
    r = create("fold-constants").run(m)
    assert not r.changed
    assert infer_calls == []


def test_fold_constants_decodes_no_weight_that_no_fold_reads(monkeypatch):
    decoded = []
    real = Graph.initializer

    def counting(self, name):
        decoded.append(name)
        return real(self, name)

    monkeypatch.setattr(Graph, "initializer", counting)
    proto = cnn()
    # one fold: Neg of a small constant; the weights stay unread
    proto.graph.initializer.append(numpy_helper.from_array(np.array([2.0], np.float32), "k"))
    proto.graph.node.append(helper.make_node("Neg", ["k"], ["nk"]))
    proto.graph.node.append(helper.make_node("Add", ["r3", "nk"], ["y"]))
    proto.graph.output[0].name = "y"
    m = gs.load(proto)
    r = create("fold-constants", grow_bytes=1000).run(m)
    assert r.details["folded"] == 1
    assert decoded == ["k"]
    assert np.array_equal(m.graph.initializer("nk"), [-2.0])


def test_fold_constants_still_infers_when_a_shape_can_fold(infer_calls):
    proto = cnn()
    proto.graph.node.append(helper.make_node("Shape", ["r3"], ["shape"]))
    proto.graph.output.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [4]))
    m = gs.load(proto)
    r = create("fold-constants", grow_bytes=1000).run(m)
    assert r.changed and len(infer_calls) >= 1
    assert m.graph.producer("shape") is None


def test_fold_constants_folds_a_subgraph_from_its_parents_constants():
    """Constants of the enclosing graph are seen, not copied, by its subgraphs: a fold there
    still reads them."""
    then = helper.make_graph([helper.make_node("Neg", ["k"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    inner = helper.make_node("Add", ["t", "k"], ["u"])
    then.node.append(inner)
    then.output[0].name = "u"
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
                          [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([3.0], np.float32), "k")])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    r = create("fold-constants", grow_bytes=1000).run(m)
    assert r.details["folded"] == 1  # Neg folds; the Add returns the branch's value and stays
    branch = m.graph.nodes[0].subgraphs()["then_branch"]
    assert [n.op_type for n in branch.nodes] == ["Add"]
    assert np.array_equal(branch.initializer("t"), [-3.0])


def test_eliminate_noops_infers_no_shapes_without_cast_reshape_or_expand(infer_calls):
    m = gs.load(cnn())
    r = create("eliminate-noops").run(m)
    assert infer_calls == []
    assert r.details["merged"] == 3  # s1, s2, s3 duplicate s0


def test_eliminate_noops_infers_shapes_for_its_shape_rules(infer_calls):
    proto = cnn()
    proto.graph.node.append(helper.make_node("Cast", ["r3"], ["y"], to=TensorProto.FLOAT))
    proto.graph.output[0].name = "y"
    m = gs.load(proto)
    r = create("eliminate-noops").run(m)
    assert len(infer_calls) == 1
    assert "Cast" not in m.op_histogram() and r.changed


def test_eliminate_noops_serializes_only_initializers_that_could_be_duplicates(monkeypatch):
    from graphsurgery.passes import eliminate_noops

    seen = []
    real = getattr(eliminate_noops, "_without_name")  # noqa: B009 (a private helper, counted)

    def counting(t):
        seen.append(t.name)
        return real(t)

    monkeypatch.setattr(eliminate_noops, "_without_name", counting)
    proto = cnn(blocks=3)
    proto.graph.initializer.append(numpy_helper.from_array(np.zeros((5, 7), np.float32), "lonely"))
    proto.graph.node.append(helper.make_node("Shape", ["lonely"], ["shape"]))
    proto.graph.output.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [2]))
    create("eliminate-noops").run(gs.load(proto))
    assert "lonely" not in seen


def test_shape_inference_gets_the_weights_as_stubs(infer_calls):
    proto = cnn(blocks=2, weights=(64, 64, 3, 3))
    proto.graph.node.append(helper.make_node("Shape", ["r1"], ["shape"]))
    proto.graph.output.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [4]))
    m = gs.load(proto)
    types = shapes.infer(m)
    assert infer_calls and infer_calls[0] < proto.ByteSize() // 20  # 300 KB of weights stay behind
    assert shapes.static_shape(types.get(m.graph, "c1")) == (1, 64, 8, 8)
    assert shapes.static_shape(types.get(m.graph, "w1")) == (64, 64, 3, 3)
    assert m.proto.graph.initializer[0].HasField("raw_data")  # the model keeps its weights


def test_shape_inference_reads_the_values_of_shape_like_initializers():
    """A shape input stays whole (Reshape's target), so inference still computes from it."""
    target = numpy_helper.from_array(np.array([1, -1], np.int64), "target")
    big = numpy_helper.from_array(np.zeros((64, 64), np.float32), "big")
    g = helper.make_graph([helper.make_node("Add", ["x", "big"], ["a"]),
                           helper.make_node("Reshape", ["a", "target"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [target, big])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    assert shapes.static_shape(shapes.infer(m).get(m.graph, "y")) == (1, 4096)


def nested_ifs(n):
    """``n`` constant-condition Ifs in a chain; each then-branch holds another constant If whose
    two branches both define ``same`` (legal in sibling subgraphs, a clash once inlined)."""
    nodes, x = [], "x"

    def branch(name, op, out, vi=()):
        return helper.make_graph([helper.make_node(op, [x], ["same"]), helper.make_node("Abs", ["same"], [out])],
                                 name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                                 value_info=list(vi))

    for i in range(n):
        same = helper.make_tensor_value_info("same", TensorProto.FLOAT, [1, 8])
        inner = helper.make_node("If", [f"ic{i}"], [f"t{i}"], then_branch=branch("it", "Relu", f"it{i}", [same]),
                                 else_branch=branch("ie", "Neg", f"ie{i}"))
        then = helper.make_graph([helper.make_node("Constant", [], [f"ic{i}"], value=helper.make_tensor(
            "c", TensorProto.BOOL, [], [i % 2 == 0])), inner], f"then{i}", [],
            [helper.make_tensor_value_info(f"t{i}", TensorProto.FLOAT, None)])
        other = helper.make_graph([helper.make_node("Neg", [x], [f"e{i}"])], f"else{i}", [],
                                  [helper.make_tensor_value_info(f"e{i}", TensorProto.FLOAT, None)])
        nodes += [helper.make_node("Constant", [], [f"c{i}"], value=helper.make_tensor("c", TensorProto.BOOL, [],
                                                                                       [i % 3 != 0])),
                  helper.make_node("If", [f"c{i}"], [f"y{i}"], then_branch=then, else_branch=other),
                  helper.make_node("Sigmoid", [f"y{i}"], [f"s{i}"])]
        x = f"s{i}"
    g = helper.make_graph(nodes, "ifs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_remove_if_checks_clashes_without_collecting_every_name(monkeypatch):
    """Each inline built the set of every name visible in the graph and under it: quadratic in
    the Ifs. Now each branch name is looked up (the names under the graph are counted once)."""
    from graphsurgery.core.scope import Scope

    def refuse(*args, **kwargs):
        raise AssertionError("visible_names collects every name of the scope chain")

    monkeypatch.setattr(Scope, "visible_names", refuse)
    m = gs.load(nested_ifs(3))
    r = create("remove-if").run(m)
    assert len(r.details["branches"]) == 5 and "If" not in m.op_histogram()  # 3 outer, 2 inner


def test_remove_if_renames_names_sibling_branches_share():
    from conftest import assert_close, run_ort

    proto = nested_ifs(6)
    feeds = {"x": np.linspace(-2, 2, 8, dtype=np.float32).reshape(1, 8)}
    expected = run_ort(proto, feeds)
    m = gs.load(proto)
    r = create("remove-if").run(m)
    assert "If" not in m.op_histogram()
    assert any(v.startswith("same") and v != "same" for v in r.details["renamed"].values())
    m.check()
    assert_close(run_ort(m.proto, feeds), expected)
    assert [vi.name for vi in m.proto.graph.value_info].count("same") <= 1


def test_pipeline_reports_each_pass_time():
    out = gs.passes.Pipeline.from_text("fold-constants,cleanup").run(gs.load(cnn()))
    timings = out.seconds()
    assert [name for name, _ in timings] == ["fold-constants", "cleanup"]
    assert all(s > 0 for _, s in timings)


def test_set_batch_follows_the_batch_into_the_branch_an_if_takes():
    """The branch reads the batched tensor from outside (what the scope index reports as
    captured); the trace follows it there and the batch reaches the output."""
    from conftest import assert_close, run_ort

    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    g = helper.make_graph([helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
                               "c", TensorProto.BOOL, [], [True])),
                           helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    r = create("set-batch", size="3").run(m)
    assert r.details["inputs"] == [["x", 0]] or r.details["inputs"] == [("x", 0)]
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    assert_close(run_ort(m.proto, {"x": x}), {"y": np.maximum(x, 0)})
