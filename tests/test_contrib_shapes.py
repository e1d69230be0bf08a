"""Output shapes of contrib operators whose documented contract fixes them (shapes.CONTRIB_SHAPES):
checked against what onnxruntime computes, used by folding, and never written where they would
contradict the model."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import shapes
from graphsurgery.passes import create
from conftest import DATA, assert_close, run_ort

# the recurrent tail of ddddocr's common_old.onnx, weights made small (make_ddddocr_lstm_tail.py)
TAIL = DATA.parent / "fixtures" / "ddddocr_lstm_tail.onnx"
LSTM_OUTPUTS = ("361", "362", "363")


def tail(seq=None) -> gs.Model:
    m = gs.load(str(TAIL))
    if seq is not None:
        create("set-shape", **{"209": f"{seq}x1x16x1"})(m)
    return m


def test_dynamic_quantize_lstm_shapes_are_what_onnxruntime_computes():
    m = tail()
    types = shapes.infer(m)
    assert [shapes.dims(types.get(m.graph, n)) for n in LSTM_OUTPUTS] == [
        ["seq", 2, 1, 8], [2, 1, 8], [2, 1, 8]]
    m = tail(seq=7)
    types = shapes.infer(m)
    inferred = [shapes.static_shape(types.get(m.graph, n)) for n in LSTM_OUTPUTS]
    probe = onnx.load(str(TAIL))
    probe.graph.output.extend(helper.make_value_info(n, onnx.TypeProto()) for n in LSTM_OUTPUTS)
    feeds = {"209": np.random.default_rng(0).standard_normal((7, 1, 16, 1)).astype(np.float32)}
    got = run_ort(probe, feeds)
    assert inferred == [got[n].shape for n in LSTM_OUTPUTS] == [(7, 2, 1, 8), (2, 1, 8), (2, 1, 8)]


def test_the_shape_glue_after_the_lstm_folds_and_the_outputs_stay():
    feeds = {"209": np.random.default_rng(1).standard_normal((7, 1, 16, 1)).astype(np.float32)}
    expected = run_ort(onnx.load(str(TAIL)), feeds)
    for seq in (None, 7):
        m = tail(seq)
        before = m.op_histogram()
        out = gs.optimize(m.proto)
        ops = gs.load(out).op_histogram()
        assert before["Shape"] == 2 and before["Gather"] == 4
        assert "Shape" not in ops and "Gather" not in ops and "Concat" not in ops, ops
        assert_close(run_ort(out, feeds), expected)


def lstm_model(*, direction="bidirectional", hidden=8, declared=None, x_shape=(5, 1, 16)):
    """One DynamicQuantizeLSTM reading x; ``declared`` is a value_info type for Y."""
    nd = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(v, k) for k, v in {
        "w": rng.integers(-5, 5, (nd, 16, 4 * 8), dtype=np.int8),
        "r": rng.integers(-5, 5, (nd, 8, 4 * 8), dtype=np.int8),
        "ws": np.full(nd, 0.01, np.float32), "wz": np.zeros(nd, np.int8),
        "rs": np.full(nd, 0.01, np.float32), "rz": np.zeros(nd, np.int8)}.items()]
    attrs = {"direction": direction}
    if hidden is not None:
        attrs["hidden_size"] = hidden
    node = helper.make_node("DynamicQuantizeLSTM", ["x", "w", "r", "", "", "", "", "", "ws", "wz", "rs", "rz"],
                            ["y", "yh", "yc"], domain="com.microsoft", name="lstm", **attrs)
    g = helper.make_graph([node, helper.make_node("Shape", ["y"], ["s"], name="shape")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape) if x_shape else None)],
                          [helper.make_tensor_value_info("s", TensorProto.INT64, None)], inits)
    if declared is not None:
        g.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, declared))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=10)


def y_dims(proto):
    m = gs.load(proto)
    return shapes.dims(shapes.infer(m).get(m.graph, "y"))


def test_the_rule_reads_direction_hidden_size_and_r():
    assert y_dims(lstm_model()) == [5, 2, 1, 8]
    assert y_dims(lstm_model(direction="reverse")) == [5, 1, 1, 8]
    assert y_dims(lstm_model(hidden=None)) == [5, 2, 1, 8]  # from R: [num_directions, hidden, 4*hidden]
    proto = lstm_model()
    assert_close(run_ort(proto, {"x": np.ones((5, 1, 16), np.float32)}), {"s": np.array([5, 2, 1, 8])}, atol=0)


def test_no_shape_where_the_contract_does_not_fix_it():
    assert y_dims(lstm_model(direction="sideways")) is None  # not a direction the schema knows
    assert y_dims(lstm_model(x_shape=None)) is None  # X of unknown rank
    assert y_dims(lstm_model(x_shape=(5, 1, 16, 1))) is None  # X not [seq, batch, input]


def test_a_declared_shape_is_refined_never_contradicted():
    assert y_dims(lstm_model(declared=[None, 2, 1, 8])) == [5, 2, 1, 8]
    assert y_dims(lstm_model(declared=["t", 2, 1, 9])) == ["t", 2, 1, 9]  # the model says 9: left as declared
    assert y_dims(lstm_model(declared=[None, None, None])) == [None, None, None]  # another rank: left
    proto = lstm_model(declared=[None, 2, 1, 9])
    out = create("fold-constants")(proto)
    assert [n.op_type for n in out.graph.node] == ["DynamicQuantizeLSTM", "Shape"]  # nothing folded
