"""graphsurgery.optimize and the optimize command: the chain to a fixed point, verified, the
before/after facts, settings, and several models at once."""

import json

import numpy as np
import onnx
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.optimize import CHAIN, Optimizer
from graphsurgery.passes import Pipeline
from graphsurgery.verify import VerificationError
from conftest import DATA, assert_close, run_ort

FIXTURES = DATA.parent / "fixtures"
CLS = DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
BERT = FIXTURES / "bert_torchscript.onnx"


def test_same_kind_out_as_in_and_outputs_kept():
    proto = onnx.load(str(CLS))
    feeds = {"x": np.random.default_rng(0).uniform(0, 1, (1, 3, 48, 192)).astype(np.float32)}
    want = run_ort(proto, feeds)
    out = gs.optimize(proto)
    assert isinstance(out, onnx.ModelProto) and out is proto
    assert len(out.graph.node) == 179  # onnxslim's count; 566 before
    assert_close(run_ort(out, feeds), want, rtol=1e-5, atol=1e-6)
    model = gs.load(str(CLS))
    assert isinstance(gs.optimize(model, verify=False), gs.Model)


def test_result_facts_and_verification():
    r = Optimizer().run(gs.load(str(CLS)))
    assert (r.before.nodes, r.after.nodes) == (566, 179)
    assert r.before.ops["BatchNormalization"] == 35 and "BatchNormalization" not in r.after.ops
    assert r.after.ops["Add"] == 25 and r.after.bytes < r.before.bytes
    assert r.verified and r.verification and all(d.ok for _, rep in r.verification for d in rep)
    assert r.rounds >= 2  # the last round changed nothing
    table = r.table()
    assert "BatchNormalization" in table and "566" in table and "179" in table
    assert any(res.name == "fold-conv-affine" and res.changed for res in r.results)


def test_one_run_of_the_chain_is_not_a_fixed_point_optimize_is():
    """Rewrites feed each other: merge-reshapes turns Reshape(Reshape(x, [6]), [2, 3]) into
    Reshape(x, [2, 3]), a no-op that eliminate-noops, which ran earlier in the round, removes
    only in the next one. optimize repeats until a round changes nothing."""
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "flat"], ["h"], name="r1"),
         helper.make_node("Reshape", ["h", "back"], ["r"], name="r2"),
         helper.make_node("Relu", ["r"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array([6], np.int64), "flat"),
         numpy_helper.from_array(np.array([2, 3], np.int64), "back")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    once = onnx.ModelProto()
    once.CopyFrom(proto)
    Pipeline.from_text(",".join(CHAIN))(once)
    assert [n.op_type for n in once.graph.node] == ["Reshape", "Relu"]
    r = Optimizer().run(proto)
    assert [n.op_type for n in proto.graph.node] == ["Relu"] and r.rounds == 3 and r.verified
    again = Optimizer(verify=False).run(proto)
    assert again.rounds == 1 and not again.changed
    model = gs.load(str(BERT))  # a real model: a second optimize changes nothing
    Optimizer(verify=False).run(model)
    assert not Optimizer(verify=False).run(model).changed


def test_settings_unlock_more():
    model = gs.load(str(DATA / "silero_vad.onnx"))
    r = Optimizer(freeze={"sr": 16000}, set_shape="input=1x512,state=2x1x128").run(model)
    assert r.verified and "If" not in r.after.ops and r.after.nodes <= 37
    assert model.graph.input_names == ["input", "state"]
    with pytest.raises(gs.GraphSurgeryError, match="set-shape"):
        Optimizer(set_shape={"input": "1xq!"}).run(gs.load(str(DATA / "silero_vad.onnx")))
    with pytest.raises(gs.GraphSurgeryError, match="no pass named"):
        Optimizer(passes=["fold-constant"])


def test_a_pass_that_breaks_the_model_is_caught(monkeypatch):
    """Verification compares the result with the input model: a rewrite gone wrong raises,
    it is never returned as if it were right."""
    from graphsurgery.passes import fold_conv_affine

    real = fold_conv_affine.FoldConvAffine.apply

    def broken(self, model, result):
        real(self, model, result)
        name = next(n for n in model.graph.initializers if n.endswith("_bias"))
        model.graph.set_initializer(name, np.asarray(model.graph.initializer(name)) + 1)

    monkeypatch.setattr(fold_conv_affine.FoldConvAffine, "apply", broken)
    with pytest.raises(VerificationError, match="optimize-chain changed the outputs"):
        Optimizer(careful=False).run(gs.load(str(CLS)))
    model = gs.load(str(CLS))  # by default the chain is then checked pass by pass, the culprit left out
    r = Optimizer().run(model)
    assert r.verified and r.model is model and all(x.startswith("fold-conv-affine") for x in r.left_out)
    assert "failed verification" in r.notes[0] and len(model.proto.graph.node) == r.after.nodes < 566
    assert model.graph.node(model.proto.graph.node[0].name).op_type == model.proto.graph.node[0].op_type


# ---- command line ------------------------------------------------------------------------
def test_cli_optimize_prints_the_table_and_writes(tmp_path, capsys):
    out = tmp_path / "cls.onnx"
    assert main(["optimize", str(CLS), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nodes" in text and "566" in text and "179" in text and "verified" in text
    assert len(onnx.load(str(out)).graph.node) == 179
    assert main(["optimize", str(CLS), "-o", str(tmp_path / "j.onnx"), "--json", "--no-verify"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["before"]["nodes"] == 566 and report["after"]["nodes"] == 179 and not report["verified"]


def test_cli_optimize_settings(tmp_path, capsys):
    out = tmp_path / "vad.onnx"
    assert main(["optimize", str(DATA / "silero_vad.onnx"), "-o", str(out), "--freeze", "sr=16000",
                 "--set-shape", "input=1x512", "--set-shape", "state=2x1x128", "-q"]) == 0
    m = gs.load(str(out))
    assert "If" not in m.op_histogram() and m.graph.input_names == ["input", "state"]
    assert main(["optimize", str(DATA / "silero_vad.onnx"), "-o", str(tmp_path / "x.onnx"),
                 "--set-shape", "input"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set-shape" in err[0] and "NAME=VALUE" in err[0]
    assert not (tmp_path / "x.onnx").exists()
    out = tmp_path / "b4.onnx"  # a hard-coded batch of 1, patched to 4 (set-batch), verified per sample
    assert main(["optimize", str(FIXTURES / "view_batch.onnx"), "-o", str(out), "--batch", "4", "-q"]) == 0
    dims = gs.load(str(out)).proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 3, 4, 4]


def _break_conv_affine(monkeypatch):
    from graphsurgery.passes import fold_conv_affine

    real = fold_conv_affine.FoldConvAffine.apply

    def broken(self, model, result):
        real(self, model, result)
        names = [n for n in model.graph.initializers if n.endswith("_bias")]
        if names:
            model.graph.set_initializer(names[0], np.asarray(model.graph.initializer(names[0])) * 3)

    monkeypatch.setattr(fold_conv_affine.FoldConvAffine, "apply", broken)


def test_careful_leaves_out_the_pass_that_changes_outputs(monkeypatch):
    _break_conv_affine(monkeypatch)
    proto = onnx.load(str(CLS))
    feeds = {"x": np.random.default_rng(0).uniform(0, 1, (1, 3, 48, 192)).astype(np.float32)}
    want = run_ort(proto, feeds)
    r = Optimizer(careful=True).run(proto)
    assert r.verified and r.left_out and all(x.startswith("fold-conv-affine") for x in r.left_out)
    assert r.after.nodes < r.before.nodes and "BatchNormalization" not in r.after.ops
    assert_close(run_ort(proto, feeds), want, rtol=1e-5, atol=1e-6)
    model = gs.load(str(CLS))  # a Model given is left as it was; the result is a new one
    r = Optimizer(careful=True).run(model)
    assert r.model is not model and len(model.proto.graph.node) == 566


def test_cli_optimize_retries_pass_by_pass(tmp_path, capsys, monkeypatch):
    """The whole chain fails verification: the command checks each pass on its own, leaves
    out the one at fault, says so, and writes the verified rest."""
    _break_conv_affine(monkeypatch)
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(CLS), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "each pass was then checked on its own" in captured.err
    assert "left out fold-conv-affine" in captured.err and "verified" in captured.out
    assert len(onnx.load(str(out)).graph.node) < 566


def test_cli_optimize_verification_failure_is_exit_3(tmp_path, capsys, monkeypatch):
    """A setting that changes the outputs cannot be left out: exit 3, nothing written."""
    from graphsurgery.passes import set_shape

    real = set_shape.SetShape.apply

    def broken(self, model, result):
        real(self, model, result)
        next(n for n in model.graph.nodes if n.op_type == "Relu").proto.op_type = "Sigmoid"

    monkeypatch.setattr(set_shape.SetShape, "apply", broken)
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(CLS), "-o", str(out), "--set-shape", "x=1x3x48x192"]) == 3
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and "changed the outputs" in err[0] and not out.exists()


def test_cli_many_models_one_failure_does_not_stop_the_others(tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    folder = tmp_path / "out"
    models = [str(FIXTURES / "conv_bn.onnx"), str(bad), str(FIXTURES / "view_one.onnx")]
    assert main(["optimize", *models, "-o", str(folder)]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert sorted(p.name for p in folder.iterdir()) == ["conv_bn.onnx", "view_one.onnx"]
    assert "2 of 3 model(s) written" in captured.err
    # all well: exit 0; the same in worker processes
    folder2 = tmp_path / "out2"
    assert main(["optimize", models[0], models[2], "-o", str(folder2), "--jobs", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["ok"] for r in report] == [True, True] and report[0]["report"]["after"]["nodes"] >= 1
    assert sorted(p.name for p in folder2.iterdir()) == ["conv_bn.onnx", "view_one.onnx"]


def test_cli_run_takes_several_models(tmp_path, capsys):
    folder = tmp_path / "out"
    models = [str(FIXTURES / "conv_bn.onnx"), str(FIXTURES / "view_one.onnx")]
    assert main(["run", *models, "-o", str(folder), "-p", "fuse-conv-bn,cleanup", "-q"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["conv_bn.onnx", "view_one.onnx"]
    assert "BatchNormalization" not in gs.load(str(folder / "conv_bn.onnx")).op_histogram()


@pytest.mark.parametrize("argv,message", [
    (["optimize", "A", "B", "-o", "FILE"], "is a file"),
    (["optimize", "A", "A", "-o", "DIR"], "given twice"),
    (["optimize", "A", "B"], "-o FOLDER"),
    (["run", "A", "B", "-o", "DIR", "-p", "nope"], "no pass named"),
    (["optimize", "A", "B", "-o", "DIR", "--inputs", "x.npz"], "single MODEL"),
])
def test_cli_many_models_refused_before_any_work(tmp_path, capsys, argv, message):
    a, b = FIXTURES / "conv_bn.onnx", FIXTURES / "view_one.onnx"
    (tmp_path / "FILE").write_bytes(b"")
    names = {"A": str(a), "B": str(b), "FILE": str(tmp_path / "FILE"), "DIR": str(tmp_path / "DIR")}
    assert main([names.get(x, x) for x in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "DIR").exists() or not any((tmp_path / "DIR").iterdir())


def test_repeated_nodes_merged_random_ones_never():
    """Two Splits of one input (their split sizes in two initializers of equal value) are one
    Split; two RandomNormalLike of one input are two draws and stay two."""
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Split", ["x", "s1"], ["a", "b"], name="sp1", axis=1),
             helper.make_node("Split", ["x", "s2"], ["c", "d"], name="sp2", axis=1),
             helper.make_node("Add", ["a", "c"], ["y"], name="add"),
             helper.make_node("Mul", ["b", "d"], ["z"], name="mul"),
             helper.make_node("RandomNormalLike", ["x"], ["r1"], name="rn1"),
             helper.make_node("RandomNormalLike", ["x"], ["r2"], name="rn2"),
             helper.make_node("Sub", ["r1", "r2"], ["w"], name="sub")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in "yzw"],
                          [numpy_helper.from_array(np.array([2, 2], np.int64), "s1"),
                           numpy_helper.from_array(np.array([2, 2], np.int64), "s2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    Optimizer(verify=False).run(proto)
    assert [n.op_type for n in proto.graph.node] == ["Split", "Add", "Mul", "RandomNormalLike", "RandomNormalLike",
                                                    "Sub"]
