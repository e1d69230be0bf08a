"""fold-conv-affine and matmul-add-to-gemm: where they fire on real models (outputs unchanged),
and where they must not."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import Pipeline, create
from conftest import DATA, assert_close, run_ort

FIXTURES = DATA.parent / "fixtures"
CLS = DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def init(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def conv_then(op, const, *, conv="Conv", w_shape=(4, 3, 3, 3), group=1, bias=True, const_first=False,
              extra_reader=False):
    rng = np.random.default_rng(0)
    cout = w_shape[1] * group if conv == "ConvTranspose" else w_shape[0]
    inits = [init("w", rng.standard_normal(w_shape).astype(np.float32)), init("c", const)]
    ins = ["x", "w"]
    if bias:
        inits.append(init("b", rng.standard_normal(cout).astype(np.float32)))
        ins.append("b")
    nodes = [helper.make_node(conv, ins, ["h"], name="conv", group=group),
             helper.make_node(op, ["c", "h"] if const_first else ["h", "c"], ["y"], name="after")]
    outputs = [vi("y", None)]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["h"], ["z"], name="other"))
        outputs.append(vi("z", None))
    cin = w_shape[0] if conv == "ConvTranspose" else w_shape[1] * group
    return model_of(nodes, [vi("x", [1, cin, 6, 6])], outputs, inits)


def assert_rel(actual, expected, rtol=1e-5):
    """Equal within ``rtol`` of each output's largest magnitude: folding a scale into the weights
    rounds the sums differently, by a few float32 steps of the largest term."""
    for k, e in expected.items():
        scale = float(np.abs(e).max()) if e.size else 0.0
        assert_close({k: actual[k]}, {k: e}, rtol=0, atol=rtol * max(scale, 1e-30))


def feeds_for(proto):
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    return {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}


def fused(proto, pass_name="fold-conv-affine"):
    before = run_ort(proto, feeds_for(proto))
    res = create(pass_name).run(proto)
    return res, before, run_ort(proto, feeds_for(proto))


@pytest.mark.parametrize("op,const", [
    ("Add", np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1)),
    ("Add", np.arange(4, dtype=np.float32).reshape(4, 1, 1)),
    ("Sub", np.float32(0.5)),
    ("Mul", np.linspace(-2, 2, 4, dtype=np.float32).reshape(4, 1, 1)),
    ("Div", np.linspace(1, 2, 4, dtype=np.float32).reshape(1, 4, 1, 1)),
    ("Mul", np.ones((1, 1, 1, 1), np.float32) * 3),
])
def test_conv_affine_folds_per_channel_constants(op, const):
    proto = conv_then(op, const)
    res, before, after = fused(proto)
    assert res.changed and [n.op_type for n in proto.graph.node] == ["Conv"]
    assert_rel(after, before)


def test_conv_affine_without_bias_and_conv_transpose_groups():
    proto = conv_then("Mul", np.linspace(0.5, 2, 4, dtype=np.float32).reshape(1, 4, 1, 1), bias=False)
    res, before, after = fused(proto)
    assert res.changed and len(proto.graph.node[0].input) == 2
    assert_rel(after, before)
    proto = conv_then("Add", np.linspace(0.5, 2, 4, dtype=np.float32).reshape(1, 4, 1, 1), bias=False)
    res, before, after = fused(proto)
    assert res.changed and len(proto.graph.node[0].input) == 3
    assert_rel(after, before)
    # ConvTranspose, 2 groups: weights [Cin, Cout/group, k, k], channel o = group * (Cout/group) + j
    proto = conv_then("Mul", np.array([1, 2, 3, 4], np.float32).reshape(1, 4, 1, 1), conv="ConvTranspose",
                      w_shape=(4, 2, 3, 3), group=2)
    res, before, after = fused(proto)
    assert res.changed and [n.op_type for n in proto.graph.node] == ["ConvTranspose"]
    assert_rel(after, before)


@pytest.mark.parametrize("op,const,kw,why", [
    ("Add", np.ones((1, 4, 6, 6), np.float32), {}, "varies along axis 2"),
    ("Add", np.ones((2, 1, 4, 1, 1), np.float32), {}, "rank 5"),
    ("Mul", np.ones((1, 3, 1, 1), np.float32), {}, "3 values on the channel axis"),
    ("Div", np.array([1, 0, 1, 1], np.float32).reshape(4, 1, 1), {}, "zero divisor"),
    ("Sub", np.ones((4, 1, 1), np.float32), {"const_first": True}, "not computed by a Conv"),
    ("Mul", np.array([1, np.inf, 1, 1], np.float32).reshape(4, 1, 1), {}, "inf or NaN"),
    ("Add", np.ones((4, 1, 1), np.float64), {}, "float64"),
])
def test_conv_affine_refuses_what_it_cannot_fold(op, const, kw, why):
    proto = conv_then(op, const, **kw)
    before = proto.SerializeToString()
    res = create("fold-conv-affine").run(proto)
    assert not res.changed and proto.SerializeToString() == before
    assert any(why in s for s in res.skipped), res.skipped


def test_conv_affine_leaves_a_conv_output_read_elsewhere():
    proto = conv_then("Add", np.ones((4, 1, 1), np.float32), extra_reader=True)
    assert not create("fold-conv-affine").run(proto).changed


def test_conv_affine_on_a_real_model():
    """PaddleOCR's classifier adds a per-channel constant after Convs that have no
    BatchNormalization: after fuse-conv-bn, 18 Adds go into the Conv biases (25 left, as many as
    onnxslim leaves)."""
    proto = onnx.load(str(CLS))
    feeds = {"x": np.random.default_rng(0).uniform(0, 1, (1, 3, 48, 192)).astype(np.float32)}
    want = run_ort(proto, feeds)
    Pipeline.from_text("fold-constants,fuse-conv-bn,cleanup")(proto)
    adds = sum(n.op_type == "Add" for n in proto.graph.node)
    res = create("fold-conv-affine").run(proto)
    assert res.details["folded"] == 18
    assert sum(n.op_type == "Add" for n in proto.graph.node) == adds - 18 == 26  # Gemm takes one more
    assert_close(run_ort(proto, feeds), want)
    assert not create("fold-conv-affine").run(proto).changed  # a second run changes nothing


# ---- matmul-add-to-gemm ------------------------------------------------------------------
def matmul_add(a_shape, c, b_shape=(3, 5), const_first=False):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["a", "b"], ["p"], name="mm"),
             helper.make_node("Add", ["c", "p"] if const_first else ["p", "c"], ["y"], name="add")]
    return model_of(nodes, [vi("a", a_shape)], [vi("y", None)],
                    [init("b", rng.standard_normal(b_shape).astype(np.float32)), init("c", c)])


@pytest.mark.parametrize("c,const_first", [
    (np.arange(5, dtype=np.float32), False), (np.arange(5, dtype=np.float32).reshape(1, 5), True),
    (np.arange(10, dtype=np.float32).reshape(2, 5), False), (np.float32(2), False),
    (np.arange(2, dtype=np.float32).reshape(2, 1), False)])
def test_matmul_add_becomes_gemm(c, const_first):
    proto = matmul_add([2, 3], c, const_first=const_first)
    feeds = {"a": np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)}
    want = run_ort(proto, feeds)
    assert create("matmul-add-to-gemm").run(proto).changed
    assert [n.op_type for n in proto.graph.node] == ["Gemm"]
    assert_close(run_ort(proto, feeds), want)


@pytest.mark.parametrize("a_shape,c,why", [
    ([4, 2, 3], np.arange(5, dtype=np.float32), "ranks [3, 2]"),
    (["n", 3], np.arange(10, dtype=np.float32).reshape(2, 5), "not known to equal"),
    ([2, 3], np.ones((3, 2, 5), np.float32), "rank 3"),
    ([2, 3], np.ones((1, 4), np.float32), "dim 1 (4)"),
    (None, np.arange(5, dtype=np.float32), "ranks [None, 2]"),
])
def test_matmul_add_left_where_gemm_would_differ(a_shape, c, why):
    proto = matmul_add(a_shape, c)
    before = proto.SerializeToString()
    res = create("matmul-add-to-gemm").run(proto)
    assert not res.changed and proto.SerializeToString() == before
    assert any(why in s for s in res.skipped), res.skipped


def test_matmul_add_to_gemm_on_real_models():
    proto = onnx.load(str(CLS))  # the classifier's head: a 2-D MatMul and its bias
    Pipeline.from_text("set-shape(x=1x3x48x192),fold-constants,eliminate-noops,cleanup")(proto)
    feeds = {"x": np.random.default_rng(0).uniform(0, 1, (1, 3, 48, 192)).astype(np.float32)}
    want = run_ort(proto, feeds)
    res = create("matmul-add-to-gemm").run(proto)
    assert res.details["fused"] == 1
    assert_close(run_ort(proto, feeds), want)
    bert = gs.load(str(FIXTURES / "bert_torchscript.onnx"))  # 3-D MatMuls: nothing to fuse
    res = create("matmul-add-to-gemm").run(bert)
    assert not res.changed and res.skipped and "Gemm" not in bert.op_histogram()


# ---- eliminate-neutral -------------------------------------------------------------------
def binary(op, const, x_shape=(2, 3), const_first=False, dtype=TensorProto.FLOAT):
    nodes = [helper.make_node(op, ["c", "x"] if const_first else ["x", "c"], ["h"], name="op"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    return model_of(nodes, [vi("x", x_shape, dtype)], [vi("y", None, dtype)], [init("c", const)])


@pytest.mark.parametrize("op,const,const_first", [
    ("Add", np.zeros(3, np.float32), False), ("Add", np.float32(0), True), ("Sub", np.zeros((1, 3), np.float32), False),
    ("Mul", np.ones(3, np.float32), True), ("Div", np.float32(1), False), ("Mul", np.ones((2, 3), np.float32), False)])
def test_neutral_arithmetic_removed(op, const, const_first):
    proto = binary(op, const, const_first=const_first)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}
    want = run_ort(proto, feeds)
    assert create("eliminate-neutral").run(proto).changed
    assert [n.op_type for n in proto.graph.node] == ["Relu"]
    assert_close(run_ort(proto, feeds), want, rtol=0, atol=0)


@pytest.mark.parametrize("op,const,kw,why", [
    ("Add", np.zeros((4, 2, 3), np.float32), {}, "rank 3"),                 # broadcasts x to [4, 2, 3]
    ("Mul", np.ones((2, 1), np.float32), {"x_shape": (1, 3)}, "may broadcast"),
    ("Sub", np.zeros(3, np.float32), {"const_first": True}, "not a constant"),  # 0 - x is -x
    ("Div", np.ones(3, np.float32), {"const_first": True}, "not a constant"),   # 1 / x
    ("Add", np.full(3, 1e-12, np.float32), {}, "does not fit"),
    ("Add", np.zeros(3, np.float32), {"x_shape": None}, "rank is unknown"),
])
def test_neutral_arithmetic_kept_where_it_does_something(op, const, kw, why):
    proto = binary(op, const, **kw)
    before = proto.SerializeToString()
    res = create("eliminate-neutral").run(proto)
    assert not res.changed and proto.SerializeToString() == before
    assert any(why in s for s in res.skipped), res.skipped


def slice_model(chain, x_shape=(2, 3, 4, 5)):
    """chain: (starts, ends, axes or None, steps or None) per Slice, applied in turn."""
    nodes, inits, cur = [], [], "x"
    for i, (starts, ends, axes, steps) in enumerate(chain):
        names = [f"s{i}", f"e{i}"] + ([f"a{i}"] if axes is not None else []) + ([f"st{i}"] if steps is not None else [])
        values = [starts, ends] + ([axes] if axes is not None else []) + ([steps] if steps is not None else [])
        inits += [init(n, np.asarray(v, np.int64)) for n, v in zip(names, values, strict=True)]
        nodes.append(helper.make_node("Slice", [cur] + names, [f"h{i}"], name=f"slice{i}"))
        cur = f"h{i}"
    nodes.append(helper.make_node("Relu", [cur], ["y"], name="relu"))
    return model_of(nodes, [vi("x", x_shape)], [vi("y", None)], inits)


def test_whole_slice_removed_and_partial_kept():
    proto = slice_model([([0, 0], [2**63 - 1, 5], [1, 3], None)])
    assert create("eliminate-neutral").run(proto).changed and len(proto.graph.node) == 1
    for chain in ([([0], [4], [3], None)], [([1], [2**31 - 1], [1], None)], [([0], [2**31 - 1], [1], [2])],
                  [([0], [5], [-1], [-1])]):
        proto = slice_model(chain)
        assert not create("eliminate-neutral").run(proto).changed


def test_whole_slice_on_a_real_model():
    """magika (tf2onnx) slices a [1, 512, 508, 1] tensor to [..., :1]: the whole tensor."""
    model = gs.load(str(DATA / "magika_standard_v3_3.onnx"))
    Pipeline.from_text("set-shape(bytes=1x2048),fold-constants,cleanup")(model)
    feeds = {"bytes": np.random.default_rng(0).integers(0, 256, (1, 2048)).astype(np.int32)}
    want = run_ort(model.proto, feeds)
    res = create("eliminate-neutral").run(model)
    assert any("slice-whole" in c for c in res.changes)
    assert_close(run_ort(model.proto, feeds), want, rtol=0, atol=0)


# ---- merge-slices ------------------------------------------------------------------------
def test_slices_on_other_axes_merged():
    proto = slice_model([([0], [2**63 - 1], [2], [2]), ([1], [4], [-1], None)])
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)}
    want = run_ort(proto, feeds)
    assert create("merge-slices").run(proto).changed
    assert [n.op_type for n in proto.graph.node] == ["Slice", "Relu"]
    assert_close(run_ort(proto, feeds), want, rtol=0, atol=0)


def test_slices_on_the_same_axis_kept():
    proto = slice_model([([0], [4], [1], None), ([1], [3], [1], None)])
    res = create("merge-slices").run(proto)
    assert not res.changed and any("same axis" in s for s in res.skipped)
    proto = slice_model([([0], [4], [-1], None), ([1], [3], [3], None)], x_shape=None)  # rank unknown
    res = create("merge-slices").run(proto)
    assert not res.changed and any("negative axes" in s for s in res.skipped)


def test_merge_slices_on_a_real_model():
    """silero's STFT takes the real and imaginary halves of a Conv output, each then sliced on
    another axis: two Slices where one does."""
    model = gs.load(str(DATA / "silero_vad_16k_op15.onnx"))
    Pipeline.from_text("set-shape(input=1x512,state=2x1x128),fold-constants,remove-if,cleanup")(model)
    feeds = {"input": np.random.default_rng(0).uniform(-1, 1, (1, 512)).astype(np.float32),
             "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
    feeds = {k: v for k, v in feeds.items() if k in model.graph.input_names}
    want = run_ort(model.proto, feeds)
    slices = model.op_histogram().get("Slice", 0)
    res = create("merge-slices").run(model)
    assert res.details["merged"] >= 1
    create("cleanup").run(model)
    assert model.op_histogram().get("Slice", 0) <= slices - 2
    assert_close(run_ort(model.proto, feeds), want, rtol=0, atol=0)


# ---- merge-reshapes ----------------------------------------------------------------------
def reshape_model(first, second, x_shape=(2, 3, 4), shared=False):
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["h"], name="r1"),
             helper.make_node("Reshape", ["h", "s2"], ["y"], name="r2")]
    outputs = [vi("y", None)]
    if shared:
        nodes.append(helper.make_node("Relu", ["h"], ["z"], name="other"))
        outputs.append(vi("z", None))
    return model_of(nodes, [vi("x", x_shape)], outputs,
                    [init("s1", np.asarray(first, np.int64)), init("s2", np.asarray(second, np.int64))])


@pytest.mark.parametrize("first,second,shared", [([6, 4], [4, -1], False), ([2, 12], [0, 3, 4], False),
                                                 ([6, 4], [24], True)])
def test_reshape_of_reshape_merged(first, second, shared):
    proto = reshape_model(first, second, shared=shared)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}
    want = run_ort(proto, feeds)
    assert create("merge-reshapes").run(proto).changed
    assert proto.graph.node[-1 if not shared else 1].input[0] == "x" or any(
        n.name == "r2" and n.input[0] == "x" for n in proto.graph.node)
    assert_close(run_ort(proto, feeds), want, rtol=0, atol=0)


def test_reshape_copying_an_unknown_dim_kept():
    proto = reshape_model([-1, 4], [0, 2, 2], x_shape=("n", 3, 4))
    res = create("merge-reshapes").run(proto)
    assert not res.changed and any("unknown" in s for s in res.skipped)


# ---- cancel-reshapes ---------------------------------------------------------------------
def gelu_between_reshapes(back=(6, 4), const_shape=(), extra=None):
    """x [6, 4] -> Reshape [2, 3, 4] -> x*0.5 * (1 + tanh(x)) -> Reshape back -> Relu."""
    nodes = [helper.make_node("Reshape", ["x", "to3"], ["r"], name="r1"),
             helper.make_node("Mul", ["r", "half"], ["m"], name="mul"),
             helper.make_node("Tanh", ["r"], ["t"], name="tanh"),
             helper.make_node("Add", ["t", "one"], ["a"], name="add"),
             helper.make_node("Mul", ["m", "a"], ["g"], name="gelu"),
             helper.make_node("Reshape", ["g", "to2"], ["b"], name="r2"),
             helper.make_node("Relu", ["b"], ["y"], name="relu")]
    inits = [init("to3", np.array([2, 3, 4], np.int64)), init("to2", np.array(back, np.int64)),
             init("half", np.full(const_shape, 0.5, np.float32)), init("one", np.float32(1))]
    inputs = [vi("x", [6, 4])]
    if extra:
        nodes[3] = helper.make_node("Add", ["t", "other"], ["a"], name="add")
        inputs.append(vi("other", [2, 3, 4]))
    return model_of(nodes, inputs, [vi("y", [6, 4])], inits)


def test_reshape_pair_around_elementwise_work_cancelled():
    proto = gelu_between_reshapes()
    feeds = {"x": np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)}
    want = run_ort(proto, feeds)
    res = create("cancel-reshapes").run(proto)
    assert res.changed and "Reshape" not in [n.op_type for n in proto.graph.node]
    onnx.checker.check_model(proto, full_check=True)
    assert_close(run_ort(proto, feeds), want, rtol=0, atol=0)


@pytest.mark.parametrize("kw,why", [
    ({"back": (4, 6)}, "does not give back the shape"),
    ({"const_shape": (2, 3, 4)}, "not a scalar"),
    ({"extra": True}, "computed outside the region"),
])
def test_reshape_pair_kept_where_the_shape_matters(kw, why):
    proto = gelu_between_reshapes(**kw)
    before = proto.SerializeToString()
    res = create("cancel-reshapes").run(proto)
    assert not res.changed and proto.SerializeToString() == before
    assert any(why in s for s in res.skipped), res.skipped


def test_cancel_reshapes_on_a_real_model():
    """GPT-2 (dynamo export): Gemm, reshape to [1, 8, 128], GELU, reshape to [8, 128], Gemm."""
    model = gs.load(str(FIXTURES / "gpt2_dynamo.onnx"))
    feeds = {"input_ids": np.random.default_rng(0).integers(0, 100, (1, 8)).astype(np.int64)}
    want = run_ort(model.proto, feeds)
    Pipeline.from_text("fold-constants,eliminate-noops,matmul-add-to-gemm,cleanup")(model)
    reshapes = model.op_histogram()["Reshape"]
    res = create("cancel-reshapes").run(model)
    assert res.details["cancelled"] == 1 and model.op_histogram()["Reshape"] == reshapes - 2
    onnx.checker.check_model(model.proto, full_check=True)
    assert_close(run_ort(model.proto, feeds), want, rtol=1e-5, atol=1e-6)
    assert not create("cancel-reshapes").run(model).changed


def test_fold_constants_folds_gather_elements_on_one_row():
    """onnx's reference GatherElements fails on [1, N] data ("cannot reshape array of size 1"):
    BERT's token-type ids (a [1, 512] buffer sliced to the sequence) stayed computed."""
    data = np.zeros((1, 64), np.int64)
    data[0, 3] = 1
    index = np.array([[0, 1, 2, 3, -1]], np.int64)
    proto = model_of([helper.make_node("GatherElements", ["d", "i"], ["g"], name="ge", axis=1),
                      helper.make_node("Add", ["g", "x"], ["y"], name="add")],
                     [vi("x", [1, 5], TensorProto.INT64)], [vi("y", [1, 5], TensorProto.INT64)],
                     [init("d", data), init("i", index)])
    feeds = {"x": np.arange(5, dtype=np.int64).reshape(1, 5)}
    want = run_ort(proto, feeds)
    res = create("fold-constants").run(proto)
    assert res.changed and [n.op_type for n in proto.graph.node] == ["Add"], res.skipped
    assert_close(run_ort(proto, feeds), want, rtol=0, atol=0)
