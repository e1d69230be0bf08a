"""Finding the first layer that goes wrong: against PyTorch, another backend, another model,
saved arrays; pipeline bisection; reproducers; reports."""

import json
import pathlib

import numpy as np
import onnx
import pytest

import graphsurgery as gs
from graphsurgery.cli import main
from graphsurgery.debug import bisect_pipeline, compare, extract_reproducer
from graphsurgery.debug.torch_map import map_activations
from graphsurgery.passes import Pass, create
from conftest import DATA, run_ort

FIX = pathlib.Path(__file__).parent / "fixtures"
X = dict(np.load(FIX / "arcface_prelu.npz"))["x"]
ARC_ACTS = dict(np.load(FIX / "arcface_prelu_activations.npz"))


def silero_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {"input": rng.uniform(-1, 1, (1, 512)).astype(np.float32),
            "state": rng.uniform(-1, 1, (2, 1, 128)).astype(np.float32), "sr": np.array(16000, np.int64)}


# ---- against PyTorch --------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["arcface_prelu", "arcface_prelu_dynamo"])
def test_pytorch_reference_clean_model_has_no_culprit(fixture):
    m = gs.load(str(FIX / f"{fixture}.onnx"))
    ref = map_activations(m, ARC_ACTS)
    assert len(ref) >= 10  # every module boundary, BatchNorm folded into Conv or not
    r = compare(m, ref, {"x": X})
    assert r.culprit is None and not r.bad and all(o.ok for o in r.outputs)


@pytest.mark.parametrize("fixture", ["arcface_prelu", "arcface_prelu_dynamo"])
def test_perturbed_weight_is_named_first(fixture):
    m = gs.load(str(FIX / f"{fixture}.onnx"))
    ref = map_activations(m, ARC_ACTS)
    conv = m.find_nodes("Conv")[2]
    w = conv.inputs[1]
    m.graph.set_initializer(w, np.array(m.graph.initializer(w)) * 1.01)
    r = compare(m, ref, {"x": X})
    assert r.culprit == conv.name
    assert r.first_bad == conv.outputs[0] and not r.outputs[0].ok


def test_prelu_slope_in_the_wrong_channel_order_is_named():
    m = gs.load(str(FIX / "arcface_prelu.onnx"))
    ref = map_activations(m, ARC_ACTS)
    prelu = m.find_nodes("PRelu")[1]
    slope = prelu.inputs[1]
    m.graph.set_initializer(slope, np.ascontiguousarray(np.array(m.graph.initializer(slope))[::-1]))
    r = compare(m, ref, {"x": X})
    assert r.culprit == prelu.name


def test_changed_instancenorm_epsilon_is_named():
    path = str(FIX / "fast_style.onnx")
    m = gs.load(path)
    image = dict(np.load(FIX / "fast_style.npz"))["image"]
    ref = map_activations(m, dict(np.load(FIX / "fast_style_activations.npz")))
    assert compare(m, ref, {"image": image}).culprit is None
    target = m.find_nodes("InstanceNormalization")[2]
    target.attrs["epsilon"] = 0.05
    r = compare(m, ref, {"image": image})
    assert r.culprit == target.name


# ---- against another backend ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["ort-noopt", "reference"])
def test_silero_backends_agree_without_false_culprit(backend):
    m = gs.load(str(DATA / "silero_vad.onnx"))
    for seed in (0, 1):
        r = compare(m, backend, silero_inputs(seed))
        assert r.culprit is None and not r.bad, str(r)
        compared = [row for row in r.rows if row.skipped is None]
        assert len(compared) >= 200
        assert any(row.graph != "main graph" for row in compared)  # tensors inside If branches
        assert any(row.skipped and "did not run" in row.skipped for row in r.rows)  # the branch not taken


# ---- against another model, saved arrays; chunking ---------------------------------------------------
def test_against_another_model_and_saved_arrays_and_chunks(tmp_path):
    good = gs.load(str(FIX / "arcface_prelu.onnx"))
    bad = good.copy()
    conv = bad.find_nodes("Conv")[3]
    bad.graph.set_initializer(conv.inputs[1], np.array(bad.graph.initializer(conv.inputs[1])) + 0.01)
    r_all = compare(bad, good, {"x": X})
    r_chunked = compare(bad, good, {"x": X}, chunk=3)
    assert r_all.culprit == r_chunked.culprit == conv.name
    assert [(r.tensor, r.max_abs) for r in r_all.rows] == [(r.tensor, r.max_abs) for r in r_chunked.rows]
    from graphsurgery.debug.capture import capture
    arrays = next(capture(good, {"x": X}))
    np.savez(tmp_path / "ref.npz", **arrays)
    r_npz = compare(bad, str(tmp_path / "ref.npz"), {"x": X})
    assert r_npz.culprit == conv.name


# ---- bisect -----------------------------------------------------------------------------------
class BreakAdd(Pass):
    """Test-only: makes one node compute something else."""

    name = "break-add"

    def apply(self, model, result):
        node = model.find_nodes("Add")[0]
        node.op_type = "Sub"
        result.note(f"broke {node.name!r}")


def test_bisect_names_the_pass_and_the_node():
    m = gs.load(str(DATA / "silero_vad.onnx"))
    inputs = silero_inputs(0)
    passes = [create("freeze-inputs", sr="16000"), create("set-shape", input="1x512", state="2x1x128"),
              create("fold-constants"), create("remove-if"), BreakAdd(), create("cleanup")]
    res = bisect_pipeline(m, passes, inputs)
    assert res.pass_name == "break-add" and res.pass_index == 4
    broken = res.report.culprit
    assert broken is not None
    # the node it names is the node the pass broke
    after = gs.load(str(DATA / "silero_vad.onnx"))
    for p in passes[:5]:
        p.run(after)
    assert after.node(broken).op_type == "Sub"
    assert "break-add" in str(res) and json.dumps(res.to_dict())


def test_bisect_clean_pipeline():
    m = gs.load(str(DATA / "silero_vad.onnx"))
    res = bisect_pipeline(m, "freeze-inputs(sr=16000),fold-constants,remove-if,cleanup", silero_inputs(1))
    assert res.pass_name is None


# ---- reproducer -----------------------------------------------------------------------------------
def test_reproducer_runs_alone_with_recorded_inputs(tmp_path):
    good = gs.load(str(FIX / "arcface_prelu.onnx"))
    bad = good.copy()
    conv = bad.find_nodes("Conv")[1]
    bad.graph.set_initializer(conv.inputs[1], np.array(bad.graph.initializer(conv.inputs[1])) * 1.1)
    r = compare(bad, good, {"x": X})
    from graphsurgery.debug.capture import capture
    ref_values = next(capture(good, {"x": X}))
    rep = extract_reproducer(bad, r.culprit, {"x": X}, str(tmp_path / "repro"), reference=ref_values)
    small = onnx.load(rep.model_path)
    assert [n.op_type for n in small.graph.node] == ["Conv"]
    onnx.checker.check_model(small)
    feeds = dict(np.load(rep.inputs_path))
    out = run_ort(small, feeds)
    full = next(capture(bad, {"x": X}, tensors=[conv.outputs[0]]))[conv.outputs[0]]
    assert np.array_equal(out[conv.outputs[0]], full)
    expected = dict(np.load(rep.expected_path))[conv.outputs[0]]
    assert not np.allclose(out[conv.outputs[0]], expected, rtol=1e-4, atol=1e-5)  # it reproduces the bug


# ---- report and CLI -----------------------------------------------------------------------------------
def test_report_renders_three_ways():
    m = gs.load(str(FIX / "arcface_prelu.onnx"))
    ref = map_activations(m, ARC_ACTS)
    conv = m.find_nodes("Conv")[0]
    m.graph.set_initializer(conv.inputs[1], np.array(m.graph.initializer(conv.inputs[1])) * 2)
    r = compare(m, ref, {"x": X})
    text = str(r)
    assert "culprit: node '/blocks/blocks.0/conv/Conv'" in text and "BAD" in text
    assert "<table>" in r._repr_html_() and "blocks.0" in r._repr_html_()
    d = json.loads(r.to_json())
    assert d["culprit"] == conv.name and len(d["rows"]) == 10


def test_cli_debug_json(tmp_path, capsys):
    good = gs.load(str(FIX / "arcface_prelu.onnx"))
    bad = good.copy()
    conv = bad.find_nodes("Conv")[2]
    bad.graph.set_initializer(conv.inputs[1], np.array(bad.graph.initializer(conv.inputs[1])) * 1.05)
    bad.save(tmp_path / "bad.onnx")
    np.savez(tmp_path / "x.npz", x=X)
    code = main(["debug", str(tmp_path / "bad.onnx"), "--against", str(FIX / "arcface_prelu.onnx"), "--inputs",
                 str(tmp_path / "x.npz"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["culprit"] == conv.name and out["rows"]
    code = main(["debug", str(FIX / "arcface_prelu.onnx"), "--backend", "ort-noopt", "--inputs",
                 str(tmp_path / "x.npz"), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["culprit"] is None


def test_before_and_after_a_pipeline_matched_through_reported_renames():
    """Compare silero after remove-if with the original: the tensors that moved out of branches
    (and were renamed on the way) are matched through what the passes reported."""
    from graphsurgery.passes import Pipeline

    original = gs.load(str(DATA / "silero_vad.onnx"))
    after = original.copy()
    res = Pipeline.from_text("freeze-inputs(sr=16000),fold-constants(shapes=false,constant_nodes=false),"
                             "remove-if(fold=false)").run(after)
    renamed = res.renamed()
    assert renamed  # branch outputs took the If's names, clashing names were renamed
    inputs = silero_inputs(2)
    r = compare(after, original, inputs, name_map={v: k for k, v in renamed.items()}, backend="ort-noopt")
    compared = [row for row in r.rows if row.skipped is None]
    assert len(compared) >= 100 and r.culprit is None and not r.bad


def test_bisect_never_replaces_given_inputs_that_do_not_fit():
    # a float64 chunk for silero's float32 input: a clear error naming it, not generated inputs
    from graphsurgery.verify import InputMismatch

    m = gs.load(str(DATA / "silero_vad.onnx"))
    inputs = silero_inputs(1)
    inputs["input"] = inputs["input"].astype(np.float64)
    with pytest.raises(InputMismatch, match="array 'input' has dtype float64"):
        bisect_pipeline(m, "freeze-inputs(sr=16000),fold-constants,remove-if,cleanup", inputs)
