"""fold-constants, remove-if and fix-prelu-slope: values that are not tensors, fixed points,
file size, and PRelu slopes whose length matches both the channel and the last axis."""

import importlib
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.lint import lint
from graphsurgery.passes import PassError, create
from conftest import assert_close, run_ort

from test_sweep import sweep_module


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def vi(name, dtype=TensorProto.FLOAT, shape=(2,)):
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def copy(proto):
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def fold_twice(proto, pipeline="fold-constants"):
    """The model after one run, and whether a second run leaves its bytes alone."""
    from graphsurgery.passes import Pipeline
    once = copy(proto)
    Pipeline.from_text(pipeline).run(once)
    twice = copy(once)
    Pipeline.from_text(pipeline).run(twice)
    return once, once.SerializeToString() == twice.SerializeToString()


# ---- operator test models of onnx -----------------------------------------------------------------
# Exports of these operator modules cover sequences, optionals, nested graphs and shape glue;
# scripts/sweep.py runs all 1,884 of them.
_MODULES = ["if_", "loop", "sequence_map", "rotaryembedding", "affinegrid", "optionalgetelement",
            "optionalhaselement", "sequenceinsert", "splittosequence", "shape", "size", "reshape",
            "constantofshape", "rangeop", "layernormalization", "softmax_cross_entropy_loss", "scan", "stft",
            "linear_attention"]
# onnx's AffineGrid function body feeds Range 1-element 1-D tensors where the spec asks for
# scalars. onnxruntime's graph optimizer checks that once an If condition is a constant (it then
# knows which branch runs), so after any fold of that condition, by this library or another, it
# refuses test_affine_grid_2d_expanded and test_affine_grid_2d_align_corners_expanded ("should
# be scalars"). The sweep runs onnxruntime with its optimizer off, which runs them: they need no
# exception here, and their folded outputs are compared like any other.
_AFFINE_GRID_FOLDED = {"test_affine_grid_2d_expanded", "test_affine_grid_2d_align_corners_expanded"}


@pytest.fixture(scope="module")
def node_baselines():
    """The sweep's baseline (test inputs, checker, onnxruntime outputs) of each model of _MODULES."""
    import onnx.backend.test.case.node as registry
    registry._TargetOpType = None
    for mod in _MODULES:
        importlib.import_module(f"onnx.backend.test.case.node.{mod}")
    sweep = sweep_module()
    return {c.name: sweep.Baseline(f"node:{c.name}") for c in registry._NodeTestCases}


@pytest.mark.parametrize("pipeline", ["fold-constants", "remove-if"])
def test_operator_models_stay_valid_runnable_equal_and_fixed_points(node_baselines, pipeline):
    """No defect class of scripts/sweep.py (fold-constants: the file does not grow either), and
    no refusal: both passes leave alone what they cannot do."""
    assert {"test_if_seq", "test_if_opt", "test_sequence_map_add_2_sequences_expanded",
            "test_rotary_embedding_interleaved_expanded", "test_loop16_seq_none"} <= set(node_baselines)
    sweep = sweep_module()
    assert "fold-constants" in sweep.NO_GROWTH and "grew" in sweep.DEFECTS  # the file must not grow
    found, classes = {}, {}
    for name, base in node_baselines.items():
        rec = sweep.run_one(pipeline, base)
        classes[name] = rec["class"]
        if rec["class"] in sweep.DEFECTS or rec["class"].startswith("refused"):
            found[name] = f"{rec['class']}: {rec.get('error', '')}"
    assert not found, found
    if pipeline == "fold-constants":
        assert {classes[n] for n in _AFFINE_GRID_FOLDED} == {"changed"}
        assert all(node_baselines[n].runs for n in _AFFINE_GRID_FOLDED)


def test_sequences_are_not_folded_into_tensors():
    nodes = [helper.make_node("SequenceConstruct", ["a", "b"], ["seq"], name="construct"),
             helper.make_node("SequenceLength", ["seq"], ["n"], name="length"),
             helper.make_node("ConcatFromSequence", ["seq"], ["cat"], name="cat", axis=0)]
    proto = model_of(nodes, [vi("x")], [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2]),
                                        vi("n", TensorProto.INT64, ()), vi("cat", shape=(4,))],
                     [init("a", np.array([1, 2], np.float32)), init("b", np.array([3, 4], np.float32))])
    once, fixed = fold_twice(proto)
    onnx.checker.check_model(once, full_check=True)
    assert fixed
    assert [n.op_type for n in once.graph.node] == ["SequenceConstruct", "SequenceLength", "ConcatFromSequence"]
    assert {t.name for t in once.graph.initializer} == {"a", "b"}
    out = run_ort(once, {"x": np.zeros(2, np.float32)})
    assert out["n"] == 2 and out["cat"].tolist() == [1, 2, 3, 4]


def test_optionals_are_not_folded_and_do_not_crash():
    nodes = [helper.make_node("Optional", ["a"], ["opt"], name="wrap"),
             helper.make_node("Optional", [], ["none"], name="empty",
                              type=helper.make_tensor_type_proto(TensorProto.FLOAT, [2])),
             helper.make_node("OptionalHasElement", ["opt"], ["has"], name="has"),
             helper.make_node("OptionalHasElement", ["none"], ["has_none"], name="has_none"),
             helper.make_node("OptionalGetElement", ["opt"], ["got"], name="get")]
    proto = model_of(nodes, [vi("x")], [vi("has", TensorProto.BOOL, ()), vi("has_none", TensorProto.BOOL, ()),
                                        vi("got")], [init("a", np.array([1, 2], np.float32))], opset=18)
    for pipeline in ("fold-constants", "remove-if"):
        once, fixed = fold_twice(proto, pipeline)
        onnx.checker.check_model(once, full_check=True)
        assert fixed
        out = run_ort(once, {"x": np.zeros(2, np.float32)})
        assert out["has"] and not out["has_none"] and out["got"].tolist() == [1, 2]
    once, _ = fold_twice(proto)
    assert all(t.data_type != TensorProto.UNDEFINED for t in once.graph.initializer)
    assert {"Optional"} <= {n.op_type for n in once.graph.node}


def test_value_a_subgraph_returns_stays_a_node():
    """An If branch returning a folded outer constant: as an initializer of the branch onnx
    leaves it untyped and the checker rejects the model."""
    untyped = onnx.ValueInfoProto(name="t_out")
    then_g = helper.make_graph([helper.make_node("Identity", ["one"], ["t_out"], name="t_id")], "then", [], [untyped])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e_out"], name="e_id")], "else", [],
                               [onnx.ValueInfoProto(name="e_out")])
    nodes = [helper.make_node("Greater", ["x", "zero"], ["gt"], name="gt"),
             helper.make_node("ReduceMin", ["gt_f"], ["c"], name="min", keepdims=0),
             helper.make_node("Cast", ["gt"], ["gt_f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Cast", ["c"], ["cond"], name="cast_b", to=TensorProto.BOOL),
             helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    proto = model_of([nodes[0], nodes[2], nodes[1], nodes[3], nodes[4]], [vi("x", shape=(1,))], [vi("y", shape=(1,))],
                     [init("one", np.array([1.0], np.float32)), init("zero", np.array([0.0], np.float32))])
    onnx.checker.check_model(proto, full_check=True)
    once, fixed = fold_twice(proto)
    onnx.checker.check_model(once, full_check=True)
    assert fixed
    assert run_ort(once, {"x": np.array([2.0], np.float32)})["y"].tolist() == [1.0]


# ---- size -------------------------------------------------------------------------------------------
def tied_embeddings(vocab=2000, dim=64):
    """W used twice: Gather(W, ids) embeds tokens, MatMul(h, Transpose(W)) scores them."""
    w = np.random.default_rng(0).standard_normal((vocab, dim)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["W", "ids"], ["emb"], name="embed", axis=0),
             helper.make_node("Transpose", ["W"], ["WT"], name="transpose", perm=[1, 0]),
             helper.make_node("MatMul", ["emb", "WT"], ["logits"], name="lm_head")]
    return model_of(nodes, [vi("ids", TensorProto.INT64, (1, 3))], [vi("logits", shape=(1, 3, vocab))], [init("W", w)])


def test_fold_does_not_copy_a_weight_another_node_still_reads():
    proto = tied_embeddings()
    before = proto.SerializeToString()
    m = copy(proto)
    r = create("fold-constants").run(m)
    assert len(m.SerializeToString()) <= len(before)
    assert "Transpose" in [n.op_type for n in m.graph.node]
    assert any("'transpose'" in s and "grow the model" in s for s in r.skipped), r.skipped
    ids = np.array([[1, 5, 7]], np.int64)
    assert_close(run_ort(m, {"ids": ids}), run_ort(proto, {"ids": ids}))


def test_fold_still_folds_what_frees_its_inputs():
    """Transpose of a weight nothing else reads, and slices of a weight only slices read
    (an LSTM's gates): the model does not grow, so they fold."""
    w = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)
    nodes = [helper.make_node("Transpose", ["W"], ["WT"], name="transpose", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "WT"], ["y"], name="mm"),
             helper.make_node("Slice", ["V", "s0", "s1", "ax"], ["v0"], name="slice0"),
             helper.make_node("Slice", ["V", "s1", "s2", "ax"], ["v1"], name="slice1"),
             helper.make_node("MatMul", ["x2", "v0"], ["z0"], name="mm0"),
             helper.make_node("MatMul", ["x2", "v1"], ["z1"], name="mm1")]
    proto = model_of(nodes, [vi("x", shape=(1, 32)), vi("x2", shape=(1, 64))],
                     [vi("y", shape=(1, 64)), vi("z0", shape=(1, 16)), vi("z1", shape=(1, 16))],
                     [init("W", w), init("V", w), init("s0", np.array([0])), init("s1", np.array([16])),
                      init("s2", np.array([32])), init("ax", np.array([1]))])
    m = copy(proto)
    create("fold-constants").run(m)
    create("cleanup").run(m)
    assert [n.op_type for n in m.graph.node] == ["MatMul"] * 3
    assert len(m.SerializeToString()) <= len(proto.SerializeToString())
    feeds = {"x": np.ones((1, 32), np.float32), "x2": np.ones((1, 64), np.float32)}
    assert_close(run_ort(m, feeds), run_ort(proto, feeds))


def test_fold_keeps_small_constants_small():
    """Expand of a scalar to a [256, 256] tensor that a runtime input reads: left in place."""
    nodes = [helper.make_node("Expand", ["half", "shape"], ["halves"], name="expand"),
             helper.make_node("Mul", ["x", "halves"], ["y"], name="mul")]
    proto = model_of(nodes, [vi("x", shape=(256, 256))], [vi("y", shape=(256, 256))],
                     [init("half", np.array(0.5, np.float32)), init("shape", np.array([256, 256]))])
    m = copy(proto)
    r = create("fold-constants").run(m)
    assert [n.op_type for n in m.graph.node] == ["Expand", "Mul"] and not r.changed
    assert len(m.SerializeToString()) <= len(proto.SerializeToString())


@pytest.mark.parametrize("name,pipeline", [
    ("silero_vad.onnx", "fold-constants"),
    ("silero_vad.onnx", "freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,cleanup"),
    ("silero_vad_16k_op15.onnx", "set-shape(input=1x512,state=2x1x128),fold-constants,cleanup"),
])
def test_real_models_do_not_grow(name, pipeline):
    from graphsurgery.passes import Pipeline
    path = pathlib.Path(__file__).parent / "data" / name
    data = path.read_bytes()
    m = onnx.ModelProto.FromString(data)
    Pipeline.from_text(pipeline).run(m)
    assert len(m.SerializeToString()) <= len(data)


# ---- fix-prelu-slope: C == W ---------------------------------------------------------------------------
def _prelu_cnn(slopes):
    """Conv(4->4) on 8x8, PRelu p1 ([4] vs W=8: per channel by shape), MaxPool to 4x4, Add, PRelu p2
    (after Add: C == W == 4), Conv, Relu, PRelu p3 (after Conv through Relu: C == W == 4)."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["c1", "s1"], ["p1"], name="p1"),
             helper.make_node("MaxPool", ["p1"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Add", ["mp", "bias"], ["a"], name="add"),
             helper.make_node("PRelu", ["a", "s2"], ["p2"], name="p2"),
             helper.make_node("Conv", ["p2", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("PRelu", ["r2", "s3"], ["y"], name="p3")]
    inits = [init("w1", rng.standard_normal((4, 4, 3, 3)).astype(np.float32)),
             init("w2", rng.standard_normal((4, 4, 3, 3)).astype(np.float32)),
             init("bias", rng.standard_normal((1, 4, 1, 1)).astype(np.float32) - 1)]
    inits += [init(f"s{i + 1}", s) for i, s in enumerate(slopes)]
    return model_of(nodes, [vi("x", shape=(1, 4, 8, 8))], [vi("y", shape=(1, 4, 4, 4))], inits)


def test_fix_prelu_slope_uses_the_graph_when_c_equals_w():
    slopes = [np.array([0.1, -0.5, 0.9, 2.0], np.float32) * (i + 1) for i in range(3)]
    flat = _prelu_cnn(slopes)
    intended = _prelu_cnn([s.reshape(4, 1, 1) for s in slopes])
    x = {"x": np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)}
    want = run_ort(intended, x)
    m = gs.load(copy(flat))
    r = create("fix-prelu-slope").run(m)
    assert all(m.graph.initializer(f"s{i}").shape == (4, 1, 1) for i in (1, 2, 3)), r.changes
    assert_close(run_ort(m.proto, x), want)
    assert not create("fix-prelu-slope").run(m).changed
    assert not [f for f in lint(gs.load(m.proto)) if f.code.startswith("prelu-slope")]


def test_fix_prelu_slope_refuses_what_stays_ambiguous():
    slope = init("slope", np.array([0.1, 0.2, 0.3], np.float32))
    proto = model_of([helper.make_node("Neg", ["x"], ["n"], name="neg"),
                      helper.make_node("PRelu", ["n", "slope"], ["y"], name="p")],
                     [vi("x", shape=(1, 3, 4, 3))], [vi("y", shape=(1, 3, 4, 3))], [slope])
    before = proto.SerializeToString()
    with pytest.raises(PassError, match=r"'p'.*axis=1"):
        create("fix-prelu-slope").run(proto)
    assert proto.SerializeToString() == before
    found = [f for f in lint(gs.load(proto)) if f.code == "prelu-slope-ambiguous"]
    assert len(found) == 1 and "'p'" in found[0].where and found[0].fix == "fix-prelu-slope(axis=1)"
    per_channel = copy(proto)
    create("fix-prelu-slope", axis="1").run(per_channel)
    assert numpy_helper.to_array(per_channel.graph.initializer[0]).shape == (3, 1, 1)
    as_written = copy(proto)
    r = create("fix-prelu-slope", axis="-1").run(as_written)
    assert as_written.SerializeToString() == before and not r.changed
    with pytest.raises(PassError, match="axis=2"):
        create("fix-prelu-slope", axis="2").run(copy(proto))


def test_fix_prelu_slope_leaves_last_axis_slopes_after_matmul():
    slope = init("slope", np.array([0.1, 0.2, 0.3], np.float32))
    proto = model_of([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                      helper.make_node("PRelu", ["h", "slope"], ["y"], name="p")],
                     [vi("x", shape=(1, 3, 4, 3))], [vi("y", shape=(1, 3, 4, 3))],
                     [slope, init("w", np.eye(3, dtype=np.float32))])
    before = proto.SerializeToString()
    r = create("fix-prelu-slope").run(proto)
    assert proto.SerializeToString() == before and not r.changed and "MatMul" in r.skipped[0]


def test_fix_prelu_slope_other_slopes_settle_a_shared_question():
    """One slope the shapes settle as per channel, another that only the first one explains."""
    slopes = [init("s1", np.array([0.1, 0.2, 0.3], np.float32)), init("s2", np.array([0.4, 0.5, 0.6], np.float32))]
    proto = model_of([helper.make_node("PRelu", ["x", "s1"], ["a"], name="p1"),
                      helper.make_node("Slice", ["a", "st", "en", "ax"], ["b"], name="crop"),
                      helper.make_node("PRelu", ["b", "s2"], ["y"], name="p2")],
                     [vi("x", shape=(1, 3, 4, 5))], [vi("y", shape=(1, 3, 4, 3))],
                     slopes + [init("st", np.array([0])), init("en", np.array([3])), init("ax", np.array([3]))])
    m = gs.load(proto)
    r = create("fix-prelu-slope").run(m)
    assert m.graph.initializer("s2").shape == (3, 1, 1) and "other" in " ".join(r.changes)


def test_fix_prelu_slope_on_a_pytorch_cnn_where_c_equals_w():
    """The PyTorch-exported PReLU CNN at 32x32, up to its last PRelu: blocks 1 and 2 have 16
    channels 16 pixels wide. With its slopes stored as [C], all four must become per channel."""
    from conftest import DATA
    path = DATA.parent / "fixtures" / "arcface_prelu.onnx"
    intended = gs.load(path)
    create("cut", outputs=intended.find_nodes("PRelu")[-1].outputs[0]).run(intended)
    create("cleanup").run(intended)
    create("set-shape", x="2x3x32x32").run(intended)
    x = {"x": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    want = run_ort(intended.proto, x)
    m = gs.load(intended.to_bytes())
    for node in m.find_nodes("PRelu"):
        m.graph.set_initializer(node.inputs[1], np.ascontiguousarray(m.graph.initializer(node.inputs[1]).reshape(-1)))
    r = create("fix-prelu-slope").run(m)
    assert len(r.changes) == 4 and sum("comes from Conv" in c for c in r.changes) == 2, r
    assert_close(run_ort(m.proto, x), want)


def test_remove_if_keeps_an_optional_an_optional():
    """A constant If whose taken branch returns Optional(a): inlined, the value stays an
    optional (made by the Optional node), not a tensor initializer."""
    opt_t = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    then_g = helper.make_graph([helper.make_node("Optional", ["a"], ["t_out"], name="t_opt")], "then", [],
                               [helper.make_value_info("t_out", opt_t)])
    else_g = helper.make_graph([helper.make_node("Optional", [], ["e_out"], name="e_opt",
                                                 type=helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))],
                               "else", [], [helper.make_value_info("e_out", opt_t)])
    nodes = [helper.make_node("Equal", ["k", "k2"], ["cond"], name="eq"),
             helper.make_node("If", ["cond"], ["o"], name="if", then_branch=then_g, else_branch=else_g),
             helper.make_node("OptionalHasElement", ["o"], ["has"], name="has"),
             helper.make_node("Add", ["x", "x"], ["y"], name="add")]
    proto = model_of(nodes, [vi("x")], [vi("has", TensorProto.BOOL, ()), vi("y")],
                     [init("k", np.array(1)), init("k2", np.array(1)), init("a", np.array([1, 2], np.float32))], opset=18)
    once, fixed = fold_twice(proto, "remove-if")
    onnx.checker.check_model(once, full_check=True)
    assert fixed and "If" not in [n.op_type for n in once.graph.node]
    assert [n.output[0] for n in once.graph.node if n.op_type == "Optional"] == ["o"]
    assert run_ort(once, {"x": np.ones(2, np.float32)})["has"]


def _unread_initializers(proto):
    read = {i for n in proto.graph.node for i in n.input}
    return [t.name for t in proto.graph.initializer if t.name not in read]


def test_constants_only_folded_nodes_read_go_with_them():
    # the size rule counts them as gone; without cleanup after it the file must not grow either
    nodes = [helper.make_node("Reshape", ["b", "shape"], ["b4"], name="bias_reshape"),
             helper.make_node("Add", ["x", "b4"], ["y"], name="add")]
    proto = model_of(nodes, [vi("x", shape=(1, 16, 2, 2))], [vi("y", shape=(1, 16, 2, 2))],
                     [init("b", np.arange(16, dtype=np.float32)), init("shape", np.array([1, 16, 1, 1], np.int64))])
    before = len(proto.SerializeToString())
    once, fixed = fold_twice(proto)
    assert fixed and [n.op_type for n in once.graph.node] == ["Add"]
    assert not _unread_initializers(once) and len(once.SerializeToString()) <= before
    x = np.ones((1, 16, 2, 2), np.float32)
    assert_close(run_ort(once, {"x": x}), run_ort(proto, {"x": x}))


def test_reshape_glue_made_constant_leaves_no_dead_glue():
    # Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [12])) -> Reshape(x, [0, 12]): the glue goes
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsqueeze"),
             helper.make_node("Concat", ["n1", "twelve"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape")]
    proto = model_of(nodes, [vi("x", shape=("N", 3, 4))], [vi("y", shape=("N", 12))],
                     [init("zero", np.array(0, np.int64)), init("axes", np.array([0], np.int64)),
                      init("twelve", np.array([12], np.int64))])
    before = len(proto.SerializeToString())
    once, fixed = fold_twice(proto)
    assert fixed and [n.op_type for n in once.graph.node] == ["Reshape"]
    assert not _unread_initializers(once) and len(once.SerializeToString()) <= before
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert_close(run_ort(once, {"x": x}), run_ort(proto, {"x": x}))


def test_keep_shape_operands_in_a_branch_keeps_the_pads_and_what_computes_them():
    """In the branch named, Pad's computed pads and everything they come from stay computed
    (so the branch's shapes stay unknown); the rest of the branch still folds, and other
    graphs fold as usual."""
    def branch(name):
        return helper.make_graph([
            helper.make_node("ConstantOfShape", ["four"], [f"{name}_z"],
                             value=numpy_helper.from_array(np.array([0], np.int64))),
            helper.make_node("Identity", [f"{name}_z"], [f"{name}_pads"]),
            helper.make_node("Pad", ["x", f"{name}_pads"], [f"{name}_p"]),
            helper.make_node("Neg", ["four"], [f"{name}_n"]),
            helper.make_node("Cast", [f"{name}_n"], [f"{name}_nf"], to=TensorProto.FLOAT),
            helper.make_node("Add", [f"{name}_p", f"{name}_nf"], [f"{name}_out"]),
        ], name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)])
    g = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], name="sel", then_branch=branch("a"), else_branch=branch("b"))], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([4], np.int64), "four")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model = gs.load(m)
    create("fold-constants", keep_shape_operands_in="sel.else_branch").run(model)
    subs = {a.name: [n.op_type for n in a.g.node] for a in model.proto.graph.node[0].attribute}
    assert subs["else_branch"] == ["ConstantOfShape", "Identity", "Pad", "Add"]  # Neg, Cast folded
    assert subs["then_branch"] == ["Pad", "Add"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for c in (True, False):
        feeds = {"x": x, "c": np.array(c)}
        assert_close(run_ort(model.proto, feeds), run_ort(m, feeds))
