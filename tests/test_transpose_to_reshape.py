"""transpose-to-reshape: where it fires on a real model (outputs unchanged) and where it must not.

The real model is ``fixtures/ddddocr_lstm_tail.onnx``, the recurrent tail of ddddocr's captcha
model (made by ``fixtures/make_ddddocr_lstm_tail.py``): the LSTM's output ``[seq, 2, 1, hidden]``
is transposed to ``[seq, 1, 2, hidden]`` before a Reshape, which only moves the batch of 1."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import create
from graphsurgery.passes.transpose_to_reshape import target_shape
from conftest import DATA, assert_close, run_ort

TAIL = DATA.parent / "fixtures" / "ddddocr_lstm_tail.onnx"


@pytest.mark.parametrize("dims, perm, target", [
    ([20, 2, 1, 512], [0, 2, 1, 3], [20, 1, 2, 512]),  # the LSTM output's batch of 1 moves
    (["seq", 2, 1, 8], [0, 2, 1, 3], [0, 1, 2, 8]),  # an unknown dim in place is copied
    ([1, "n", 4], [1, 0, 2], [-1, 1, 4]),  # one unknown dim moves: inferred
    ([1, 3, 1, 5], [2, 1, 3, 0], [1, 3, 5, 1]),
])
def test_target_shape_keeps_the_element_order(dims, perm, target):
    assert target_shape(dims, perm) == target
    concrete = [7 if isinstance(d, str) else d for d in dims]
    x = np.arange(int(np.prod(concrete))).reshape(concrete)
    shape = [concrete[i] if t == 0 else t for i, t in enumerate(target)]
    assert np.array_equal(np.transpose(x, perm), x.reshape(shape))


@pytest.mark.parametrize("dims, perm", [
    ([2, 3], [1, 0]),  # the data moves
    ([20, 2, "b", 512], [0, 2, 1, 3]),  # b may be larger than 1
    ([1, "n", "m"], [1, 0, 2]),  # an unknown dim moves and another is unknown
    ([0, 1, 4], [1, 0, 2]),  # empty
])
def test_target_shape_refuses(dims, perm):
    assert isinstance(target_shape(dims, perm), str)


def test_the_lstm_output_transpose_merges_into_the_reshape_after_it():
    feeds = {"209": np.random.default_rng(2).standard_normal((6, 1, 16, 1)).astype(np.float32)}
    expected = run_ort(onnx.load(str(TAIL)), feeds)
    m = gs.load(str(TAIL))
    create("set-shape", **{"209": "6x1x16x1"})(m)
    create("fold-constants")(m)
    before = m.op_histogram()
    result = create("transpose-to-reshape").run(m)
    assert result.details["rewritten"] == 1 and "Transpose_203" in result.changes[0]
    create("merge-reshapes")(m)
    after = m.op_histogram()
    assert before["Transpose"] == 1 and "Transpose" not in after
    assert after["Reshape"] == before["Reshape"] - 1
    assert_close(run_ort(m.proto, feeds), expected)


def transpose_model(shape, perm, *, reshape_after=True):
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="tr", perm=perm)]
    out = "t"
    inits = []
    if reshape_after:
        nodes.append(helper.make_node("Reshape", ["t", "flat"], ["y"], name="rs"))
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
        out = "y"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_transpose_to_reshape_fires_and_computes_the_same():
    proto = transpose_model([1, 3, 1, 5], [2, 1, 3, 0])
    x = np.random.default_rng(0).standard_normal((1, 3, 1, 5)).astype(np.float32)
    expected = run_ort(proto, {"x": x})
    out = create("transpose-to-reshape")(proto)
    assert [n.op_type for n in out.graph.node] == ["Reshape", "Reshape"]
    assert_close(run_ort(out, {"x": x}), expected, rtol=0, atol=0)


@pytest.mark.parametrize("shape, perm, reshape_after, why", [
    ([2, 3, 1], [1, 0, 2], True, "reorders dims"),
    (["b", 3, 1], [2, 1, 0], True, "reorders dims"),  # b may be larger than 1
    (None, [1, 0], True, "rank is unknown"),
    ([1, 3, 1, 5], [2, 1, 3, 0], False, "no Reshape"),  # nothing to merge with
])
def test_transpose_to_reshape_must_not_fire(shape, perm, reshape_after, why):
    proto = transpose_model(shape, perm, reshape_after=reshape_after)
    result = create("transpose-to-reshape").run(proto)
    assert not result.changed
    assert any(why in line for line in result.skipped), result.skipped
    assert [n.op_type for n in proto.graph.node][0] == "Transpose"
