"""Backend lint (``inspect --for``) and ``fix --for``: the support data, findings on hand-built
graphs, and fixes on real models checked against the original in onnxruntime."""

import importlib.util
import json
import os
import pathlib

import numpy as np
import onnx
import pytest
from conftest import DATA
from onnx import TensorProto, defs, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import cli, verify
from graphsurgery.backends import BackendError, lint_for, support_data
from graphsurgery.fix import FixRefused, fix

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SILERO = {"set_shape": {"input": "1x512", "state": "2x1x128"}, "freeze": {"sr": "16000"}}


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10))


def vi(name, shape=(2, 3), elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(shape))


def codes(found, severity=None):
    return [f.code for f in found if severity is None or f.severity == severity]


def script():
    spec = importlib.util.spec_from_file_location("make_backend_data", ROOT / "scripts" / "make_backend_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- the support data -------------------------------------------------------------------------
def test_tensorrt_data_records_its_source_and_covers_every_onnx_op_up_to_opset_20():
    d = support_data("tensorrt")
    s = d["source"]
    assert s["repository"] == "onnx/onnx-tensorrt" and len(s["commit"]) == 40 and s["commit"] in s["url"]
    assert d["tensorrt_version"] == "10.15" and s["release_date"] == "2026-02-02" and d["opset_range"] == [9, 24]
    names = {x.name for x in defs.get_all_schemas_with_history()
             if x.domain == "" and x.since_version <= 20 and not x.deprecated}
    absent = set(d["absent_from_matrix"]["ops"])
    assert not absent & set(d["ops"])
    assert names <= set(d["ops"]) | absent, sorted(names - set(d["ops"]) - absent)
    for op, row in d["ops"].items():
        assert row["row"].startswith(op)
        for r in row.get("restrictions", []):  # each restriction cites its row
            assert r["text"].replace("<br />", "") in row["row"].replace("<br />", ""), (op, r)
    assert not d["ops"]["Unique"]["supported"] and d["ops"]["MatMul"]["types"] == ["FP32", "FP16", "BF16"]


def test_tensorrt_data_is_what_the_script_makes_of_the_matrix():
    """The rows kept in the data, put back into a table, parse to the same data: script and data agree."""
    d = support_data("tensorrt")
    lo, hi = d["opset_range"]
    lines = [f"TensorRT {d['tensorrt_version']} supports operators in the inclusive range of opset {lo} to opset {hi}.",
             "", "| Operator | Supported | Supported Types | Restrictions |", "|---|---|---|---|"]
    lines += [f"| {row['row']} |" for row in d["ops"].values()]
    parsed = script().parse("\n".join(lines))
    assert parsed["ops"] == d["ops"]


def test_openvino_data_lists_unsupported_ops_from_its_table():
    d = support_data("openvino")
    assert d["source"]["repository"] == "openvinotoolkit/openvino" and len(d["source"]["commit"]) == 40
    assert not d["ops"]["Det"]["supported"] and d["ops"]["Conv"]["supported"]
    assert d["ops"]["SequenceAt"]["limitation"] == "Supported only in certain patterns"


# ---- lint against TensorRT's matrix --------------------------------------------------------------
def test_unsupported_unlisted_and_custom_ops():
    m = model_of([helper.make_node("Unique", ["x"], ["y"], name="uniq"),
                  helper.make_node("Foo", ["x"], ["z"], name="custom", domain="my.ops")],
                 [vi("x", [4])], [vi("y", [None]), vi("z", [4])])
    m.proto.opset_import.append(helper.make_opsetid("my.ops", 1))
    found = lint_for(m, "tensorrt")
    err = [f for f in found if f.code == "trt-unsupported-op"]
    assert len(err) == 1 and err[0].severity == "error" and err[0].fix is None and "'uniq'" in err[0].where
    assert "Unique | N" in err[0].source
    assert [f.severity for f in found if f.code == "trt-custom-op"] == ["warning"]
    assert "no pass fixes this" in str(err[0])


def test_dtypes_int64_matmul_is_an_error_double_a_warning():
    m = model_of([helper.make_node("MatMul", ["a", "b"], ["c"], name="mm"),
                  helper.make_node("Add", ["d", "d"], ["e"], name="add"),
                  helper.make_node("Gather", ["f", "i"], ["g"], name="gather")],
                 [vi("a", [2, 2], TensorProto.INT64), vi("b", [2, 2], TensorProto.INT64),
                  vi("d", [2], TensorProto.DOUBLE), vi("f", [3]), vi("i", [2], TensorProto.INT64)],
                 [vi("c", [2, 2], TensorProto.INT64), vi("e", [2], TensorProto.DOUBLE), vi("g", [2])])
    found = {f.where.split("'")[1]: f for f in lint_for(m, "tensorrt") if f.code == "trt-dtype"}
    assert set(found) == {"mm", "add"}  # Gather's INT64 indices are not its data type
    assert found["mm"].severity == "error" and "INT64" in found["mm"].message
    assert found["add"].severity == "warning" and "casts DOUBLE down" in found["add"].message


def test_dtypes_the_row_describes_the_output_when_the_first_input_cannot_have_them():
    """A window's first input is its integer size: the row's FP32, FP16 are its output's types.
    UINT8 constants of DequantizeLinear: the row lists INT8, the changelog says they import."""
    w = numpy_helper.from_array(np.array([8, 9], np.uint8), "w")
    zp = numpy_helper.from_array(np.array(0, np.uint8), "zp")
    sc = numpy_helper.from_array(np.array(0.5, np.float32), "sc")
    m = model_of([helper.make_node("HannWindow", ["n"], ["win"], name="hann"),
                  helper.make_node("DequantizeLinear", ["w", "sc", "zp"], ["wf"], name="dq"),
                  helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["qf"], name="dq_act")],
                 [vi("n", [], TensorProto.INT32), vi("q", [2], TensorProto.UINT8)],
                 [vi("win", [None]), vi("wf", [2]), vi("qf", [2])], [w, zp, sc], opset=17)
    found = {f.where.split("'")[1]: f.severity for f in lint_for(m, "tensorrt") if f.code == "trt-dtype"}
    assert found == {"dq": "warning", "dq_act": "error"}


def test_restrictions_attributes_outputs_and_constant_inputs():
    k = numpy_helper.from_array(np.array([2], np.int64), "k")
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "ix"], name="topk", sorted=0),
             helper.make_node("MaxPool", ["img"], ["p", "pi"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("Resize", ["img", "", "sc"], ["r"], name="resize", mode="cubic"),
             helper.make_node("Constant", [], ["ax0"], name="axc", value=numpy_helper.from_array(np.array([1], np.int64))),
             helper.make_node("Identity", ["ax0"], ["ax"], name="axid"),
             helper.make_node("ReduceSum", ["x", "ax"], ["s"], name="rsum")]
    sc = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")
    m = model_of(nodes, [vi("x", [2, 8]), vi("img", [1, 1, 4, 4])],
                 [vi("v", [2, 2]), vi("ix", [2, 2], TensorProto.INT64), vi("p", [1, 1, 3, 3]),
                  vi("pi", [1, 1, 3, 3], TensorProto.INT64), vi("r", [1, 1, 8, 8]), vi("s", [2, 1])], [k, sc])
    found = [f for f in lint_for(m, "tensorrt") if f.code == "trt-restriction"]
    by = {(f.where.split("'")[1], f.message.split(";")[0]) for f in found}
    assert ("topk", "sorted = 0") in by
    assert ("pool", "output Indices ('pi') is produced") in by
    assert ("resize", "mode = 'cubic'") in by
    rsum = [f for f in found if "'rsum'" in f.where]
    assert len(rsum) == 1 and rsum[0].fix == "fold-constants" and rsum[0].auto  # computed from constants
    assert all(f.source for f in found) and len(found) == 4
    _, report = fix(m, "tensorrt", partial=True)  # fold-constants clears the ReduceSum finding only
    assert not [f for f in report.after if "'rsum'" in f.where] and len(report.remaining) == 3


def test_detection_postprocessing_topk_k_from_shapes_folds_once_shapes_are_given():
    """NonMaxSuppression on constant settings, then TopK whose K is the number of boxes (a Shape
    chain): its K < 3840 restriction cannot be checked until set-shape and fold-constants run."""
    def c(name, v):
        return numpy_helper.from_array(np.array(v), name)

    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "maxn", "iou", "thr"], ["sel"], name="nms"),
             helper.make_node("ReduceMax", ["scores"], ["best"], name="best", axes=[1], keepdims=0),
             helper.make_node("Shape", ["boxes"], ["bshape"], name="shape"),
             helper.make_node("Gather", ["bshape", "one"], ["n"], name="count", axis=0),
             helper.make_node("Unsqueeze", ["n", "zero"], ["k"], name="k"),
             helper.make_node("TopK", ["best", "k"], ["top", "idx"], name="topk", axis=1)]
    m = model_of(nodes, [vi("boxes", [1, "n", 4]), vi("scores", [1, 1, "n"])],
                 [vi("sel", [None, 3], TensorProto.INT64), vi("top", [1, None]), vi("idx", [1, None], TensorProto.INT64)],
                 [c("maxn", np.array([5], np.int64)), c("iou", np.array([0.5], np.float32)),
                  c("thr", np.array([0.1], np.float32)), c("one", np.array(1, np.int64)),
                  c("zero", np.array([0], np.int64))], opset=13)
    topk = [f for f in lint_for(m, "tensorrt") if "'topk'" in f.where]
    assert [(f.severity, f.fix) for f in topk] == [("warning", "set-shape(...),fold-constants")]
    assert not [f for f in lint_for(m, "tensorrt") if "'nms'" in f.where]  # NonMaxSuppression | Y
    fixed, report = fix(m, "tensorrt", set_shape={"boxes": "1x6x4", "scores": "1x1x6"})
    assert report.ok and not [f for f in report.after if "'topk'" in f.where]
    assert fixed.graph.tensor(fixed.node("topk").inputs[1]).is_constant
    rng = np.random.default_rng(0)
    xy = rng.random((1, 6, 2), dtype=np.float32)
    feeds = {"boxes": np.concatenate([xy, xy + 0.3], axis=2), "scores": rng.random((1, 1, 6), dtype=np.float32)}
    want, got = verify.run(m.proto, feeds), verify.run(fixed.proto, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_opset_outside_the_range_is_converted():
    m = model_of([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x")], [vi("y")], opset=8)
    found = lint_for(m, "tensorrt")
    assert [(f.code, f.fix, f.auto) for f in found] == [("trt-opset", "convert-opset(version=9)", True)]
    fixed, report = fix(m, "tensorrt")
    assert fixed.opset("") == 9 and report.ok and not report.after


def test_legacy_int64_outside_int32_and_epsilon_below_the_clamp():
    big = numpy_helper.from_array(np.array([2**40], np.int64), "big")
    ends = numpy_helper.from_array(np.array([2**62], np.int64), "ends")
    starts = numpy_helper.from_array(np.array([0], np.int64), "starts")
    m = model_of([helper.make_node("Add", ["i", "big"], ["o"], name="add"),
                  helper.make_node("Slice", ["x", "starts", "ends"], ["y"], name="slice")],
                 [vi("i", [1], TensorProto.INT64), vi("x", [4])], [vi("o", [1], TensorProto.INT64), vi("y", [4])],
                 [big, ends, starts])
    assert "trt-int64" not in codes(lint_for(m, "tensorrt"))
    legacy = [f for f in lint_for(m, "tensorrt", legacy=True) if f.code == "trt-int64"]
    assert len(legacy) == 1 and "'big'" in legacy[0].where  # Slice ends clamp harmlessly


def test_instancenorm_epsilon_set_to_the_clamp_clears_the_finding():
    """The epsilon is stored as float32: 1e-4 written by the fix reads back as 9.99999975e-05,
    which must count as at the clamp, not below it."""
    proto = onnx.load(str(FIXTURES / "fast_style.onnx"))
    m = gs.load(proto)
    assert "instancenorm-epsilon" in codes(gs.lint.lint(m))
    from graphsurgery.passes import create

    create("instancenorm-epsilon", epsilon=1e-4)(m)
    assert "instancenorm-epsilon" not in codes(gs.lint.lint(m))


def test_unknown_backend():
    m = gs.load(cli.example_path())
    with pytest.raises(BackendError, match="did you mean 'tensorrt'"):
        lint_for(m, "tensorrtt")


# ---- fix on the example and on real models ----------------------------------------------------------
def _claims_kept(report):
    """Findings fix claims to fix (automatic, error or warning) that are still there after it."""
    left = {(f.code, f.where) for f in report.after}
    return [f for f in report.before if f.auto and f.severity != "info" and (f.code, f.where) in left]


def test_fix_example_for_tensorrt_runs_and_equals_the_prelu_repair():
    m = gs.load(cli.example_path())
    before = m.to_bytes()
    fixed, report = fix(m, "tensorrt")
    assert m.to_bytes() == before  # the given model is untouched
    assert report.ok and not _claims_kept(report)
    assert {"prelu-slope", "constant-if"} <= {f.code for f in report.fixed}
    assert not fixed.find_nodes("If")
    assert [f.code for f in report.after] == ["instancenorm-epsilon"]  # TensorRT 10 computes it as written
    ref = gs.passes.create("fix-prelu-slope")(gs.load(cli.example_path()))
    feeds = verify.make_inputs(fixed.proto)
    np.testing.assert_array_equal(verify.run(fixed.proto, feeds)["logits"], verify.run(ref.proto, feeds)["logits"])
    # --legacy: the epsilon is raised to the clamp, on purpose (its drift reported, not failed)
    fixed2, report2 = fix(gs.load(cli.example_path()), "tensorrt", legacy=True)
    assert report2.ok and not report2.after
    assert fixed2.node("instnorm").attrs["epsilon"] == pytest.approx(1e-4)


def test_fix_silero_for_tensorrt_with_values_and_refusal_without():
    src = onnx.load(str(DATA / "silero_vad.onnx"))
    with pytest.raises(FixRefused, match=r"error\(s\) remain, \d+ need a value only you can give") as exc:
        fix(src, "tensorrt")
    assert all(f.code == "trt-restriction" and "remove-if" in f.fix for f in exc.value.report.remaining)
    fixed, report = fix(src, "tensorrt", **SILERO)
    assert isinstance(fixed, onnx.ModelProto) and report.ok and not _claims_kept(report)
    assert not [n for n in fixed.graph.node if n.op_type == "If"]
    rng = np.random.default_rng(0)
    x, state = rng.standard_normal((1, 512)).astype(np.float32), np.zeros((2, 1, 128), np.float32)
    want = verify.run(src, {"input": x, "state": state, "sr": np.array(16000, np.int64)}, optimize=False, prepack=False)
    got = verify.run(fixed, {"input": x, "state": state}, optimize=False, prepack=False)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", [DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx", FIXTURES / "torch_cond.onnx",
                                  FIXTURES / "tiny_yolo.onnx"])
def test_fix_real_models_for_tensorrt_equal_outputs(path):
    src = gs.load(str(path))
    fixed, report = fix(src, "tensorrt")
    assert report.ok and not _claims_kept(report)
    feeds = verify.fit_inputs(fixed.proto, None)
    want, got = verify.run(src.proto, feeds), verify.run(fixed.proto, feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_fix_for_onnxruntime_converts_an_opset_it_does_not_load():
    from graphsurgery.backends.onnxruntime import max_opset

    top = max_opset()
    assert top >= 17
    m = model_of([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x")], [vi("y")], opset=top + 1)
    found = lint_for(m, "onnxruntime")
    assert [(f.code, f.fix) for f in found] == [("ort-opset", f"convert-opset(version={top})")]


def test_fix_for_openvino_refuses_what_its_table_does_not_support():
    m = model_of([helper.make_node("Det", ["x"], ["y"], name="det")], [vi("x", [2, 2])], [vi("y", [])])
    with pytest.raises(FixRefused, match="no pass fixes them"):
        fix(m, "openvino")


# ---- the command line -------------------------------------------------------------------------------
def test_cli_inspect_for_tensorrt(capsys):
    assert cli.main(["inspect", "--example", "--for", "tensorrt"]) == 1  # an error: the PReLU slope
    out = capsys.readouterr().out
    assert "TensorRT 10.15 ONNX parser" in out and "error: [prelu-slope]" in out and "-> fix-prelu-slope" in out
    assert cli.main(["inspect", "--example", "--for", "tensorrt", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["backend"]["name"] == "tensorrt" and "lint" not in data
    assert {"severity", "auto", "source", "fix"} <= set(data["backend"]["findings"][0])
    assert cli.main(["inspect", "--example", "--legacy"]) == 2
    assert "--legacy goes with --for tensorrt" in capsys.readouterr().err


def test_cli_fix_refuses_writes_nothing_then_partial(tmp_path, capsys):
    out = tmp_path / "vad.onnx"
    rc = cli.main(["fix", str(DATA / "silero_vad_16k_op15.onnx"), "--for", "tensorrt", "-o", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and not out.exists()
    assert err[0].startswith("graphsurgery: error: cannot make the model fit tensorrt:")
    assert len(err) > 1 and all(line.startswith("  error: [") for line in err[1:])
    rc = cli.main(["fix", str(DATA / "silero_vad_16k_op15.onnx"), "--for", "tensorrt", "-o", str(out), "--partial",
                   "-q"])
    assert rc == 1 and out.exists()
    gs.load(str(out)).check()


def test_cli_fix_example(tmp_path, capsys):
    out = tmp_path / "ex.onnx"
    assert cli.main(["fix", "--example", "--for", "tensorrt", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verified after remove-if" in text and f"wrote {out}" in text
    assert "error" not in {f.severity for f in lint_for(gs.load(str(out)), "tensorrt")}
    assert cli.main(["fix", "--example", "--for", "tensorrt", "-o", str(tmp_path / "x.onnx"), "--set-shape", "oops"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.onnx")
