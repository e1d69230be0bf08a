"""The user's surface: deployment lint, structural diff, notebook displays, sessions with undo."""

import json

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery.cli import example_path, main
from graphsurgery.diff import diff
from graphsurgery.lint import lint
from conftest import DATA, tiny_chain

REPAIR = "fix-prelu-slope,prelu-to-relu,instancenorm-epsilon(epsilon=0.001),remove-if,cleanup,set-batch(size=4)"


def test_lint_names_each_problem_and_its_fix():
    codes = {f.code: f for f in lint(gs.load(example_path()))}
    assert set(codes) >= {"prelu-slope", "prelu", "instancenorm-epsilon", "constant-if", "constant-nodes"}
    assert codes["prelu-slope"].fix == "fix-prelu-slope" and "broadcast" in codes["prelu-slope"].message
    silero = {f.code for f in lint(gs.load(str(DATA / "silero_vad.onnx")))}
    assert {"input-if", "shape-if", "batch-dim"} <= silero
    magika = [f for f in lint(gs.load(str(DATA / "magika_standard_v3_3.onnx"))) if f.code == "batch-dim"]
    assert "unk__214" in magika[0].message and magika[0].fix == "set-batch(size=N)"
    repaired = gs.load(example_path())
    from graphsurgery.passes import Pipeline
    Pipeline.from_text(REPAIR).run(repaired)
    assert not {f.code for f in lint(repaired)} & {"prelu-slope", "prelu", "instancenorm-epsilon", "constant-if"}


def test_diff_reports_signature_nodes_attributes_initializers(tmp_path):
    before = gs.load(example_path())
    after = before.copy()
    from graphsurgery.passes import Pipeline
    Pipeline.from_text(REPAIR).run(after)
    d = diff(before, after)
    assert d.inputs["changed"] == ["image: float[1,3,8,8] -> float[4,3,8,8]"]
    assert any("epsilon: 1e-09 -> 0.001" in c for c in d.nodes_changed)
    assert any(c.startswith("Sub 'prelu/sub'") and "op PRelu -> Sub" in c for c in d.nodes_changed)
    assert d.ops["If"] == (1, 0) and d.ops["Relu"] == (1, 3)
    assert any(i.startswith("slope: float[4] -> float[4, 1, 1]") for i in d.initializers["changed"])
    assert diff(before, before.copy()).empty
    after.save(tmp_path / "after.onnx")
    assert main(["diff", example_path(), str(tmp_path / "after.onnx"), "--json"]) == 1


def test_notebook_displays():
    m = gs.load(example_path())
    page = m._repr_html_()
    assert "<table>" in page and "prelu-slope" in page and "image" in page
    node = m.graph.node("prelu")
    assert "<svg" in node._repr_html_() and "PRelu" in node._repr_html_()
    svg = m.graph.neighbourhood(node, hops=1)._repr_svg_()
    assert svg.startswith("<svg") and svg.count("<rect") == 3  # conv -> prelu -> instnorm
    # from the tensor, two hops: the If that reads 'norm' inside its branch is shown as itself
    svg = m.graph.neighbourhood("prelu", hops=2)._repr_svg_()
    assert svg.count("<rect") == 6 and ">If<" in svg and ">Reshape<" in svg
    import xml.dom.minidom
    xml.dom.minidom.parseString(svg)  # well-formed
    from graphsurgery.passes import create
    r = create("remove-if").run(m)
    assert "kept then_branch" in r._repr_html_()


def test_session_apply_edit_undo():
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    s = gs.Session(gs.load(tiny_chain()), inputs={"x": x})
    model = s.model
    original = model.to_bytes()
    change = s.apply("debug-outputs")
    assert model.graph.output_names == ["y", "c", "r"] and "debug-outputs" in str(change)
    assert all(d.ok for d in change.drift) and "<div>" in change._repr_html_()
    with s.edit("swap relu"):
        model.graph.node("relu").op_type = "Sigmoid"
    assert s.last_change.diff.nodes_changed and not all(d.ok for d in s.last_change.drift if d.name == "y")
    assert s.history == ["debug-outputs", "swap relu"]
    assert s.undo() == "swap relu"
    assert model.graph.node("relu").op_type == "Relu"  # the same Model object, restored
    s.undo()
    assert model.to_bytes() == original and s.history == []
    with pytest.raises(gs.GraphSurgeryError, match="nothing to undo"):
        s.undo()
    with pytest.raises(gs.EditError):
        with s.edit("bad"):
            model.graph.node("relu").set_input(0, "missing")
    assert model.to_bytes() == original and s.history == []


def test_inspect_json_has_lint(capsys):
    assert main(["inspect", "--example", "--json"]) == 0
    assert {f["code"] for f in json.loads(capsys.readouterr().out)["lint"]} >= {"prelu-slope", "constant-if"}
