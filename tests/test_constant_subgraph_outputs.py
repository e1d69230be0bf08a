"""constant-subgraph-outputs: where it fires on a real model (outputs unchanged) and where it
must not.

The real model is ``fixtures/scripted_cond.onnx``, the TorchScript ``If``/``Loop`` model of the
corpus, copied from what ``scripts/build_corpus.py`` exports (``exported/scripted_cond.onnx``,
torch 2.13 TorchScript exporter, sha256 2d121896…5aed): its Loop body returns its condition as
``Identity`` of the outer constant ``true``."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import create
from conftest import DATA, assert_close, run_ort

COND = DATA.parent / "fixtures" / "scripted_cond.onnx"


def ops(proto):
    return gs.load(proto).op_histogram()


def test_the_loop_condition_of_a_torchscript_for_loop_becomes_a_constant():
    feeds = {"x": np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32), "n": np.array(5)}
    proto = onnx.load(str(COND))
    expected = run_ort(proto, feeds)
    result = create("constant-subgraph-outputs").run(proto)
    assert result.details["replaced"] == 1 and "'/Identity'" in result.changes[0]
    body = next(n for n in proto.graph.node if n.op_type == "Loop").attribute[0].g
    assert "Identity" not in [n.op_type for n in body.node]
    assert body.output[0].name in {t.name for t in body.initializer}
    onnx.checker.check_model(proto, full_check=True)
    assert_close(run_ort(proto, feeds), expected, rtol=0, atol=0)
    assert not create("constant-subgraph-outputs").run(proto).changed  # a second run changes nothing
    optimized = gs.optimize(onnx.load(str(COND)))
    assert sum(ops(optimized).values()) == 8


def branch_model(*, out_type=TensorProto.BOOL, out_shape=(), value=np.array(True), extra_reader=False,
                 producer="Identity", input="k"):
    """y = If(c) with then returning Identity(k) of an outer constant k; else returns c."""
    then_g = helper.make_graph([helper.make_node(producer, [input], ["t"], name="id")], "then", [],
                               [helper.make_tensor_value_info("t", out_type, out_shape)])
    else_g = helper.make_graph([helper.make_node("Identity", ["c"], ["e"], name="id2")], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.BOOL, [])])
    nodes = [helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.BOOL, [])]
    if extra_reader:
        nodes.append(helper.make_node("Not", ["k"], ["z"], name="other"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.BOOL, list(np.shape(value))))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])], outputs,
                          [numpy_helper.from_array(np.asarray(value), "k")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_an_if_branch_returning_an_outer_constant():
    proto = branch_model(extra_reader=True)
    assert create("constant-subgraph-outputs").run(proto).changed
    onnx.checker.check_model(proto, full_check=True)
    for c in (True, False):
        assert_close(run_ort(proto, {"c": np.array(c)}), {"y": np.array(True if c else False), "z": np.array(False)})


@pytest.mark.parametrize("kw, why", [
    ({"out_type": TensorProto.FLOAT}, "declared as FLOAT"),
    ({"out_shape": (2,)}, "declared with shape"),
    ({"value": np.ones(64, bool), "out_shape": (64,), "extra_reader": True}, "would grow the model"),
    ({"producer": "Not"}, None),  # not an Identity: not a candidate at all
    ({"input": "c"}, None),  # Identity of the outer input, not of a constant
])
def test_constant_subgraph_outputs_refuses(kw, why):
    proto = branch_model(**kw)
    before = proto.SerializeToString()
    result = create("constant-subgraph-outputs").run(proto)
    assert not result.changed and proto.SerializeToString() == before
    if why:
        assert any(why in line and "'id'" in line for line in result.skipped), result.skipped
    else:
        assert not result.skipped
