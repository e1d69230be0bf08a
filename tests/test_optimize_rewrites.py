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
