"""debug-outputs: results the full checker accepts, that still run, and a second run that
changes nothing."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import create
from conftest import if_model, run_ort


def vi(name, dtype=TensorProto.FLOAT, shape=(2,)):
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def twice_is_once(m):
    once = m.proto.SerializeToString()
    r = create("debug-outputs").run(m)
    assert not r.changed and m.proto.SerializeToString() == once
    return r


def test_debug_outputs_of_unknown_rank_are_carried_in_optionals_so_the_full_checker_passes():
    def reshape_model(opset):
        return model_of([helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
                         helper.make_node("Relu", ["r"], ["rr"], name="relu"),
                         helper.make_node("Size", ["rr"], ["n"], name="size")],
                        [vi("x", shape=(6,)), vi("s", TensorProto.INT64, (None,))], [vi("n", TensorProto.INT64, ())],
                        opset=opset)
    proto = reshape_model(17)
    onnx.checker.check_model(proto, full_check=True)
    m = gs.load(proto)
    r = create("debug-outputs").run(m)
    onnx.checker.check_model(m.proto, full_check=True)
    out = run_ort(m.proto, {"x": np.arange(6, dtype=np.float32) - 3, "s": np.array([2, 3], np.int64)})
    assert out[r.details["outputs"]["r"]].tolist() == [[-3, -2, -1], [0, 1, 2]]
    assert out[r.details["outputs"]["rr"]].tolist() == [[0, 0, 0], [0, 1, 2]]
    assert twice_is_once(m).details["outputs"] == r.details["outputs"]
    # no Optional before opset 15; onnxruntime cannot run the Optional of opset 28: skipped, and said so
    for opset in (14, 28):
        old = gs.load(reshape_model(opset))
        r = create("debug-outputs").run(old)
        assert any("'r'" in s and "rank is unknown" in s for s in r.skipped)
        onnx.checker.check_model(old.proto, full_check=True)
        if opset == 28:
            run_ort(old.proto, {"x": np.arange(6, dtype=np.float32), "s": np.array([2, 3], np.int64)})


def test_debug_outputs_twice_on_if_changes_nothing():
    m = gs.load(if_model())
    r = create("debug-outputs").run(m)
    assert r.changed and len(m.graph.output_names) == 3
    onnx.checker.check_model(m.proto, full_check=True)
    again = twice_is_once(m)
    assert again.details["outputs"] == r.details["outputs"]  # still says where each tensor is
    x = np.array([1, 2], np.float32)
    for flag in (True, False):
        out = run_ort(m.proto, {"x": x, "cond": np.array(flag)})
        assert out[r.details["outputs"]["t_out"]].tolist() == ((x * 2).tolist() if flag else [])
        assert out[r.details["outputs"]["e_out"]].tolist() == ([] if flag else (x + [1, 3]).tolist())


def test_debug_outputs_scalar_in_nested_if_is_empty_when_its_branch_did_not_run():
    inner_then = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0)],
                                   "inner_then", [], [vi("s", shape=())])
    inner_else = helper.make_graph([helper.make_node("ReduceMax", ["x"], ["mx"], name="max", keepdims=0)],
                                   "inner_else", [], [vi("mx", shape=())])
    outer_then = helper.make_graph([helper.make_node("If", ["c2"], ["inner"], name="inner_if",
                                                     then_branch=inner_then, else_branch=inner_else)],
                                   "outer_then", [], [vi("inner", shape=())])
    outer_else = helper.make_graph([helper.make_node("ReduceMin", ["x"], ["mn"], name="min", keepdims=0)],
                                   "outer_else", [], [vi("mn", shape=())])
    proto = model_of([helper.make_node("If", ["c1"], ["y"], name="outer_if", then_branch=outer_then,
                                       else_branch=outer_else)],
                     [vi("x"), vi("c1", TensorProto.BOOL, ()), vi("c2", TensorProto.BOOL, ())], [vi("y", shape=())])
    m = gs.load(proto)
    r = create("debug-outputs").run(m)
    onnx.checker.check_model(m.proto, full_check=True)
    carried = r.details["outputs"]
    assert {"s", "mx", "mn", "inner"} <= set(carried)
    x = np.array([1, 5], np.float32)
    for c1 in (True, False):
        for c2 in (True, False):
            out = run_ort(m.proto, {"x": x, "c1": np.array(c1), "c2": np.array(c2)})
            ran_s, ran_mx = c1 and c2, c1 and not c2
            assert out[carried["s"]].tolist() == (6.0 if ran_s else [])  # empty, never a made-up 0
            assert out[carried["mx"]].tolist() == (5.0 if ran_mx else [])
            assert out[carried["mn"]].tolist() == ([] if c1 else 1.0)
    twice_is_once(m)


def test_debug_outputs_in_loops_skips_tensors_whose_shape_may_change():
    # the body grows acc by one element per iteration (no scan output can hold it) and computes
    # d = x * 2 (same shape every iteration)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="cond"),
         helper.make_node("Concat", ["acc_in", "one"], ["acc_out"], name="grow", axis=0),
         helper.make_node("Mul", ["x", "two"], ["d"], name="double"),
         helper.make_node("Add", ["d", "x"], ["e"], name="add")], "body",
        [vi("i", TensorProto.INT64, ()), vi("cond_in", TensorProto.BOOL, ()), vi("acc_in", shape=(None,))],
        [vi("cond_out", TensorProto.BOOL, ()), vi("acc_out", shape=(None,)), vi("e")])
    inits = [numpy_helper.from_array(np.array(3, np.int64), "n"),
             numpy_helper.from_array(np.ones(1, np.float32), "one"),
             numpy_helper.from_array(np.zeros(1, np.float32), "start"),
             numpy_helper.from_array(np.full(2, 2, np.float32), "two")]
    proto = model_of([helper.make_node("Loop", ["n", "", "start"], ["acc", "es"], name="loop", body=body)],
                     [vi("x")], [vi("acc", shape=(None,))], inits)
    m = gs.load(proto)
    r = create("debug-outputs").run(m)
    onnx.checker.check_model(m.proto, full_check=True)
    assert any("'acc_out'" in s and "same in every iteration" in s for s in r.skipped)
    x = np.array([1, 2], np.float32)
    out = run_ort(m.proto, {"x": x})
    assert out["acc"].tolist() == [0, 1, 1, 1]
    assert out[r.details["outputs"]["d"]].tolist() == [(x * 2).tolist()] * 3
    assert out[r.details["outputs"]["e"]].tolist() == [(x * 3).tolist()] * 3
    twice_is_once(m)


def test_debug_outputs_scan8_carriers_have_the_batch_axis():
    body = helper.make_graph([helper.make_node("Add", ["sum_in", "next"], ["sum_out"], name="add"),
                              helper.make_node("Identity", ["sum_out"], ["scan_out"], name="id")], "body",
                             [vi("sum_in"), vi("next")], [vi("sum_out"), vi("scan_out")])
    node = helper.make_node("Scan", ["", "initial", "x"], ["y", "z"], name="scan", body=body, num_scan_inputs=1)
    proto = model_of([node], [vi("initial", shape=(1, 2)), vi("x", shape=(1, 3, 2))],
                     [vi("y", shape=(1, 2)), vi("z", shape=(1, 3, 2))], opset=8)
    proto.ir_version = 3
    m = gs.load(proto)
    r = create("debug-outputs").run(m)
    onnx.checker.check_model(m.proto, full_check=True)
    x = np.arange(6, dtype=np.float32).reshape(1, 3, 2)
    out = run_ort(m.proto, {"initial": np.zeros((1, 2), np.float32), "x": x})
    assert out[r.details["outputs"]["sum_out"]].tolist() == np.cumsum(x, axis=1).tolist()
    assert r.details["outputs"]["scan_out"] == "z"  # already a scan output of the model
    twice_is_once(m)
