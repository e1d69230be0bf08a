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


def test_cut_keeps_exactly_the_part_between_tensors(tmp_path):
    import pathlib

    from graphsurgery.debug.capture import capture
    from graphsurgery.passes import PassError, create
    from conftest import run_ort

    fix = pathlib.Path(__file__).parent / "fixtures"
    x = dict(np.load(fix / "arcface_prelu.npz"))["x"]
    full = gs.load(str(fix / "arcface_prelu.onnx"))
    a, b = "/blocks/blocks.1/prelu/PRelu_output_0", "/blocks/blocks.3/prelu/PRelu_output_0"
    values = next(capture(full, {"x": x}, tensors=[a, b]))
    part = full.copy()
    create("cut", inputs=a, outputs=b).run(part)
    assert part.graph.input_names == [a] and part.graph.output_names == [b]
    assert [n.op_type for n in part.graph.nodes] == ["Conv", "PRelu", "Conv", "PRelu"]
    part.check()
    assert np.allclose(run_ort(part.proto, {a: values[a]})[b], values[b], rtol=1e-5, atol=1e-6)
    # a residual block: cutting inside one path while the skip path still needs the ancestors
    style = gs.load(str(fix / "fast_style.onnx"))
    inside_residual = style.find_nodes("Conv")[2].outputs[0]  # the skip connection goes around it
    before = style.to_bytes()
    with pytest.raises(PassError, match="do not separate the outputs from graph input 'image'.*skip connection"):
        create("cut", inputs=inside_residual).run(style)
    assert style.to_bytes() == before
    with pytest.raises(gs.NotFoundError, match="did you mean"):
        create("cut", outputs="/blocks/blocks.1/conv/Conv_outpt_0").run(full.copy())
    # the CLI spelling
    assert main(["extract", str(fix / "arcface_prelu.onnx"), "-o", str(tmp_path / "head.onnx"), "--outputs",
                 "/Flatten_output_0", "-q"]) == 0
    assert gs.load(str(tmp_path / "head.onnx")).graph.output_names == ["/Flatten_output_0"]


def test_show_serves_on_loopback_or_says_how_to_install(capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["show", example_path(), "--no-browser", "--no-wait", "--port", str(port)]) == 0
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out


def test_progress_bar_only_on_a_terminal():
    import io

    from graphsurgery.progress import Bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        with Bar("saving", stream) as bar:
            bar.update(2, 2, "tensors written")
    assert "saving [" in tty.getvalue() and tty.getvalue().endswith("\r") and pipe.getvalue() == ""
