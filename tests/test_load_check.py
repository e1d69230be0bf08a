"""A pipeline never turns a model onnxruntime loads into one it refuses: the load check.

silero_vad with ``sr`` left an input is the real case: fixing the input to 512 samples makes
the 8 kHz branch (which cannot run on 512 samples) fail onnxruntime's type inference once its
optimizer folds shapes and inlines the branch, so the model no longer loads as deployed.
"""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import graphsurgery as gs
from graphsurgery import runner
from graphsurgery.cli import main
from graphsurgery.optimize import Optimizer
from graphsurgery.passes import Pipeline
from graphsurgery.verify import LoadFailure, LoadGuard, VerificationError
from conftest import DATA

SILERO = DATA / "silero_vad.onnx"
FIX_SHAPES = "set-shape(input=1x512,state=2x1x128)"


def branchy_model() -> onnx.ModelProto:
    """silero_vad's trouble in small: ``mode == 2`` takes a MatMul; any other mode pads ``x``
    (pads computed, so no shape is known statically), squeezes axis 1 where it is 1 and feeds
    a Gemm, which takes rank 2 only. With ``x`` fixed to 2x4 that branch cannot run, and once
    onnxruntime's optimizer folds the shapes it refuses to load the model."""
    def one(name, node, out):
        return h.make_graph([node], name, [], [h.make_tensor_value_info(out, T.FLOAT, None)])
    inner = h.make_node("If", ["c1"], ["y"], then_branch=one("sq", h.make_node("Squeeze", ["xp", "ax1"], ["sq"]), "sq"),
                        else_branch=one("id", h.make_node("Identity", ["xp"], ["id"]), "id"))
    odd = h.make_graph([
        h.make_node("ConstantOfShape", ["four"], ["pads"], value=nh.from_array(np.array([0], np.int64))),
        h.make_node("Pad", ["x", "pads"], ["xp"]),
        h.make_node("Shape", ["xp"], ["shp"]),
        h.make_node("Gather", ["shp", "one"], ["d1"], axis=0),
        h.make_node("Equal", ["d1", "one"], ["c1"]),
        inner,
        h.make_node("Unsqueeze", ["y", "zero"], ["z"]),
        h.make_node("Gemm", ["z", "w"], ["oa"], name="gemm"),
    ], "odd", [], [h.make_tensor_value_info("oa", T.FLOAT, None)])
    usual = h.make_graph([h.make_node("Identity", ["x"], ["xi"]), h.make_node("MatMul", ["xi", "w"], ["ob"])],
                         "usual", [],
                         [h.make_tensor_value_info("ob", T.FLOAT, None)])
    g = h.make_graph([h.make_node("Equal", ["mode", "k"], ["c0"]),
                      h.make_node("If", ["c0"], ["out"], name="by_mode", then_branch=usual, else_branch=odd)],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", "M"]),
                           h.make_tensor_value_info("mode", T.INT64, [])],
                     [h.make_tensor_value_info("out", T.FLOAT, [None, None])],
                     initializer=[nh.from_array(np.array(1, np.int64), "one"),
                                  nh.from_array(np.array([1], np.int64), "ax1"),
                                  nh.from_array(np.array([0], np.int64), "zero"),
                                  nh.from_array(np.array([4], np.int64), "four"),
                                  nh.from_array(np.array(2, np.int64), "k"),
                                  nh.from_array(np.ones((4, 3), np.float32), "w")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture
def branchy(tmp_path):
    path = tmp_path / "branchy.onnx"
    onnx.save(branchy_model(), str(path))
    return path


def test_the_load_check_runs_in_a_child_and_reports_why():
    good = branchy_model()
    assert runner.start_load(good).result() == runner.LoadVerdict(True, "")
    shaped = Pipeline.from_text("set-shape(x=2x4)")(good).SerializeToString()
    verdict = runner.start_load(shaped).result()
    assert verdict.loads is False and "rank 2 but has rank 3" in verdict.error and "\n" not in verdict.error
    assert runner.start_load(shaped, runner=runner.EXACT).result().loads is True  # optimizer off: it loads


def test_a_crash_or_a_hang_in_the_child_is_a_verdict(monkeypatch):
    data = branchy_model().SerializeToString()
    monkeypatch.setattr(runner, "_LOAD_CHILD", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    verdict = runner.start_load(data).result()
    assert verdict.loads is False and "SIGSEGV" in verdict.error
    monkeypatch.setattr(runner, "_LOAD_CHILD", "import time\ntime.sleep(60)\n")
    verdict = runner.start_load(data, time_limit=0.5).result()
    assert verdict.loads is None and "did not finish" in verdict.error
    monkeypatch.setattr(runner, "_LOAD_CHILD", "print('no verdict')\n")
    assert runner.start_load(data).result().loads is None


def test_pipeline_refuses_a_result_that_stops_loading_and_names_the_pass():
    model = gs.load(branchy_model())
    with pytest.raises(LoadFailure, match=r"loads before set-shape\(x=2x4\) and not after it") as exc:
        Pipeline.from_text("eliminate-noops,set-shape(x=2x4),cleanup", verify=True).run(model)
    assert exc.value.pass_index == 1 and isinstance(exc.value, VerificationError)
    assert "\n" not in str(exc.value)
    Pipeline.from_text("set-shape(x=2x4)").run(gs.load(branchy_model()))  # off unless asked for, or verifying
    with pytest.raises(LoadFailure):
        Pipeline.from_text("set-shape(x=2x4)", check_load=True).run(gs.load(branchy_model()))


def test_silero_with_sr_left_an_input_stops_loading_at_set_shape():
    """The real model: the 8 kHz branch cannot run on 512 samples."""
    with pytest.raises(LoadFailure, match=r"rank 3; it loads before set-shape\(input=1x512"):
        Pipeline.from_text(FIX_SHAPES, check_load=True).run(gs.load(str(SILERO)))


def test_a_model_that_did_not_load_before_is_never_blamed_on_a_pass():
    shaped = Pipeline.from_text("set-shape(x=2x4)")(branchy_model())
    out = Pipeline.from_text("rename-io(out=result)", verify=True).run(shaped)
    assert len(out.notes) == 1 and "the input model does not load" in out.notes[0]
    data = branchy_model().SerializeToString()
    assert LoadGuard(data).check(data) is None  # the same bytes: nothing to check, nothing to say


def test_the_readme_pipeline_still_passes():
    """Passing through a model that does not load (after set-shape, before remove-if) is fine:
    only the result counts."""
    model = gs.load(branchy_model())
    out = Pipeline.from_text("freeze-inputs(mode=2),set-shape(x=2x4),fold-constants,remove-if,cleanup",
                             verify=True).run(model)
    assert not out.notes and "If" not in model.op_histogram()


def test_cli_run_verify_refuses_with_one_line_and_writes_nothing(branchy, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    assert main(["run", str(branchy), "-o", str(out), "-p", "set-shape(x=2x4)", "--verify", "--json"]) == 3
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "does not load in onnxruntime" in err[0] and "set-shape" in err[0]
    assert json.loads(captured.out)["exit_code"] == 3 and not out.exists()
    assert main(["run", str(branchy), "-o", str(out), "-p", "set-shape(x=2x4)", "-q"]) == 0  # unchecked without --verify


def test_cli_optimize_refuses_a_setting_that_stops_the_model_loading(branchy, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(branchy), "-o", str(out), "--set-shape", "x=2x4", "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not load" in err[0] and "set-shape" in err[0] and not out.exists()


def test_a_pipeline_edits_what_it_is_given_in_place():
    """Documented (README, Pipeline): the object given is the object returned, edited; a copy
    keeps the original."""
    proto = branchy_model()
    keep = onnx.ModelProto()
    keep.CopyFrom(proto)
    out = Pipeline.from_text("freeze-inputs(mode=2),remove-if,cleanup")(proto)
    assert out is proto and not any(n.op_type == "If" for n in proto.graph.node)
    assert any(n.op_type == "If" for n in keep.graph.node)
    model = gs.load(branchy_model())
    assert Pipeline.from_text("freeze-inputs(mode=2),remove-if")(model) is model


def test_optimize_keeps_the_shape_operands_of_a_branch_that_cannot_run_for_the_shapes():
    """The model given (shapes fixed) loads only with onnxruntime's optimizer off, as
    silero_vad's does with sr left an input: folding the odd branch's shapes makes it fail to
    load at all, so optimize runs again, keeping that branch's shape operands (the computed
    pads) computed; the result loads, is verified, and the usual branch is optimised."""
    proto = Pipeline.from_text("set-shape(x=2x4)")(branchy_model())
    r = Optimizer().run(proto)
    assert r.verified and not r.left_out and "keeping the shape operands of by_mode.else_branch" in r.notes[0]
    assert r.model is proto and runner.EXACT.load_error(proto) is None
    odd = next(a.g for a in proto.graph.node[-1].attribute if a.name == "else_branch")
    assert [n.op_type for n in odd.node][:2] == ["ConstantOfShape", "Pad"]  # left as it was
    assert r.after.ops.get("Identity", 0) == r.before.ops["Identity"] - 1


def test_optimize_computes_nothing_in_the_branch_when_keeping_shape_operands_is_not_enough():
    """The odd branch's unknown shape comes from a Slice whose start is computed, not from a
    shape operand: keeping shape operands computed is not enough (the result does not load), so
    optimize computes nothing there."""
    m = branchy_model()
    odd = next(a.g for a in m.graph.node[-1].attribute if a.name == "else_branch")
    odd.node[0].input[:] = ["ax1"]  # starts: [0], computed
    odd.node[0].output[:] = ["start"]
    odd.node[1].CopyFrom(h.make_node("Slice", ["x", "start", "ten", "ax1"], ["xp"]))  # all of axis 1
    m.graph.initializer.append(nh.from_array(np.array([10], np.int64), "ten"))
    proto = Pipeline.from_text("set-shape(x=2x4)")(m)
    assert runner.EXACT.load_error(proto) is None
    r = Optimizer().run(proto)
    assert r.verified and "computing nothing in by_mode.else_branch" in r.notes[0]
    assert runner.EXACT.load_error(proto) is None


def test_silero_with_sr_left_an_input_is_optimised_in_its_8k_branch_too():
    """silero_vad, sr left an input, input fixed to 512 samples: the 8 kHz branch keeps its
    computed padding (so its shapes stay unknown and it type-checks), and the rest of it folds:
    at most the 116 nodes of onnxscript's optimizer, verified, and the branch still pads."""
    proto = Pipeline.from_text(FIX_SHAPES)(onnx.load(str(SILERO)))
    r = Optimizer().run(proto)
    assert r.verified and "keeping the shape operands of If_0.else_branch" in r.notes[0]
    assert r.after.nodes <= 116, r.after.nodes
    assert runner.EXACT.load_error(proto) is None
    odd = next(a.g for a in proto.graph.node[-1].attribute if a.name == "else_branch")
    ops = [n.op_type for n in odd.node]
    assert "ConstantOfShape" in ops and "Pad" in ops and "Transpose" in ops  # the padding, still computed


def test_several_models_that_all_fail_leave_no_folder_behind(tmp_path, capsys):
    good = tmp_path / "a.onnx"
    onnx.save(branchy_model(), str(good))
    other = tmp_path / "other"
    other.mkdir()
    onnx.save(branchy_model(), str(other / "b.onnx"))
    out = tmp_path / "out"
    # a rank-3 shape for an input of rank 2: each model fails on its own, and nothing is written
    assert main(["optimize", str(good), str(other / "b.onnx"), "-o", str(out), "--set-shape", "x=1x2x3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(x.startswith("graphsurgery: error: ") for x in err[:2]) and "0 of 2" in err[2]
    assert not out.exists()
