"""--verify works on the first try on the documented pipelines and blames a pass only for what
it changed: inputs derived from what the pipeline knows, given inputs checked, purposeful
drift reported, the reference's own noise measured, external data contained."""

import os
import re
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import verify
from graphsurgery.cli import example_path, main
from graphsurgery.errors import ExternalDataError
from graphsurgery.passes import Pipeline
from graphsurgery.passes.registry import create
from graphsurgery.runner import Runner
from conftest import DATA, tiny_chain

FIX = pathlib.Path(__file__).parent / "fixtures"
SILERO = str(DATA / "silero_vad.onnx")
README = "freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,remove-if,cleanup"


def cli(capsys, *args):
    rc = main(["run", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("model,pipeline", [
    (SILERO, README),
    (SILERO, README + ",eliminate-noops,set-batch(size=4,inputs=input;state:1)"),
    (str(DATA / "silero_vad_16k_op15.onnx"), README),
])
def test_readme_pipelines_verify_as_printed(tmp_path, capsys, model, pipeline):
    rc, out, err = cli(capsys, model, "-o", str(tmp_path / "out.onnx"), "--verify", "-p", pipeline)
    assert rc == 0, err
    lines = [x for x in out.splitlines() if x.startswith("verified after")]
    changed = [x for x in out.splitlines() if re.match(r"[\w-]+: \d+ change\(s\)", x)]
    assert len(lines) == len(changed) >= 5  # every pass that changed something is checked
    assert not any("not verified" in x for x in lines), out  # inputs come from the pipeline: all checked
    assert lines[0].startswith("verified after freeze-inputs(sr=16000): output: max abs 0")


def test_example_getting_started_pipeline_verifies_from_the_first_model_that_runs(tmp_path, capsys):
    pipeline = "fix-prelu-slope,prelu-to-relu,instancenorm-epsilon(epsilon=0.001),remove-if,cleanup"
    rc, out, err = cli(capsys, "--example", "-o", str(tmp_path / "fixed.onnx"), "--verify", "-p", pipeline)
    assert rc == 0, err
    assert "verified after fix-prelu-slope: (not verified)" in out
    assert "verification starts from the model after this pass" in out and "broadcast" in out
    assert "verified after prelu-to-relu: logits: max abs 0, max rel 0" in out
    drift = next(x for x in out.splitlines() if x.startswith("verified after instancenorm-epsilon"))
    assert "changed on purpose: reported, not checked" in drift and "max abs 0," not in drift
    assert "verified after cleanup: logits: max abs 0, max rel 0" in out
    rc, out, err = cli(capsys, "--example", "-o", str(tmp_path / "fixed.onnx"), "--verify", "-q", "-p", pipeline)
    assert rc == 0 and out == "" and err.startswith("graphsurgery: note: fix-prelu-slope not verified: the model ")


def test_set_batch_is_not_blamed_for_the_original_models_batch_noise(tmp_path, capsys):
    """magika's batched kernels round differently from four single runs, in the original as
    much as after set-batch: that noise is measured, reported and added to the tolerance."""
    rc, out, err = cli(capsys, str(DATA / "magika_standard_v3_3.onnx"), "-o", str(tmp_path / "m.onnx"),
                       "--verify", "-p", "set-batch(size=4)")
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith("verified after set-batch(size=4)"))
    assert "reference noise" in line and "(not verified)" not in line


def test_noise_does_not_hide_a_real_change():
    expected = {"y": np.array([1.0, 2.0], np.float32)}
    [d] = verify.compare(expected, {"y": np.array([1.0, 2.1], np.float32)}, noise={"y": 1e-5})
    assert not d.ok and d.noise == 1e-5 and "reference noise" in str(d)
    [d] = verify.compare(expected, {"y": np.array([1.0, 2.00002], np.float32)}, noise={"y": 3e-5})
    assert d.ok


def test_split_preprocessing_is_verified_as_its_two_models(tmp_path, capsys):
    rc, out, err = cli(capsys, str(FIX / "normalized_conv.onnx"), "-o", str(tmp_path / "n.onnx"), "--verify",
                       "-p", "split-preprocessing,cleanup")
    assert rc == 0, err
    assert "verified after split-preprocessing: y: max abs 0, max rel 0" in out


def test_instancenorm_epsilon_verifies_with_its_drift_reported(tmp_path, capsys):
    rc, out, err = cli(capsys, str(FIX / "fast_style.onnx"), "-o", str(tmp_path / "s.onnx"), "--verify",
                       "-p", "instancenorm-epsilon(epsilon=0.001),cleanup")
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith("verified after instancenorm-epsilon"))
    assert "changed on purpose" in line and "max abs 0," not in line


def _instancenorm_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])
    nodes = [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["n"], name="in", epsilon=1e-9),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    inits = [numpy_helper.from_array(np.ones(2, np.float32), "s"), numpy_helper.from_array(np.zeros(2, np.float32), "b")]
    g = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


class _BreakRelu(gs.passes.Pass):
    name = "break-relu"

    def apply(self, model, result):
        for n in model.find_nodes("Relu"):
            n.op_type = "Sigmoid"
            result.note(f"broke {n.name!r}")


def test_a_pass_that_changes_outputs_on_purpose_is_reported_and_the_others_still_checked():
    m = gs.load(_instancenorm_model())
    res = Pipeline.from_text("instancenorm-epsilon(epsilon=1.0),cleanup", verify=True).run(m)
    [d] = res.verification[0][1]
    assert d.ok and d.on_purpose and d.max_abs > 0.01
    with pytest.raises(verify.VerificationError, match="pass break-relu changed the outputs"):
        Pipeline([gs.passes.create("instancenorm-epsilon", epsilon=1.0), _BreakRelu()], verify=True).run(
            gs.load(_instancenorm_model()))


def test_mismatched_inputs_are_a_clear_error(tmp_path, capsys):
    npz = tmp_path / "in.npz"
    out = str(tmp_path / "o.onnx")
    x = np.zeros((1, 512), np.float32)
    st = np.zeros((2, 1, 128), np.float32)
    np.savez(npz, input=x.astype(np.float64), state=st)
    rc, _, err = cli(capsys, SILERO, "-o", out, "--verify", "--inputs", str(npz), "-p", README)
    assert rc == 2 and "'input'" in err and "dtype float64" in err and "float32 [1, 512]" in err, err
    assert len(err.strip().splitlines()) == 1
    np.savez(npz, inputs=x, state=st)
    rc, _, err = cli(capsys, SILERO, "-o", out, "--verify", "--inputs", str(npz), "-p", README)
    assert rc == 2 and "'inputs' is not an input" in err and "input, state, sr" in err, err
    np.savez(npz, input=x[0], state=st)
    rc, _, err = cli(capsys, SILERO, "-o", out, "--verify", "--inputs", str(npz), "-p", README)
    assert rc == 2 and "rank 1" in err and "'input'" in err, err
    np.savez(npz, input=x, state=st, sr=np.array(8000, np.int64))
    rc, _, err = cli(capsys, SILERO, "-o", out, "--verify", "--inputs", str(npz), "-p", README)
    assert rc == 2 and "fixed input 'sr' to 16000" in err, err
    assert not os.path.exists(out)


def test_given_inputs_are_used_even_with_set_batch(monkeypatch):
    """A sample given for the model before set-batch is the first sample of the batch checked,
    and what the passes before set-batch are checked on."""
    x = np.random.default_rng(5).uniform(-1, 1, (1, 512)).astype(np.float32)
    inputs = {"input": x, "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
    seen = []
    real_run = Runner.run

    def spy(self, model, feeds, **kw):
        if "input" in feeds:
            seen.append(feeds["input"])
        return real_run(self, model, feeds, **kw)

    monkeypatch.setattr(Runner, "run", spy)
    res = Pipeline.from_text(README + ",set-batch(size=2,inputs=input;state:1)", verify=True,
                             inputs=inputs).run(gs.load(SILERO))
    assert all(d.ok for _, rep in res.verification for d in rep)
    assert any(f.shape == (2, 512) and np.array_equal(f[:1], x) for f in seen)  # the batch checked
    assert any(f.shape == (1, 512) and np.array_equal(f, x) for f in seen)  # the passes before it


def test_negative_and_symbolic_dims_do_not_crash_and_max_rel_is_on_the_outputs_scale(tmp_path, capsys):
    model = str(DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx")  # input x: [-1, 3, ?, ?]
    feeds = verify.make_inputs(onnx.load(model))
    assert feeds["x"].ndim == 4 and feeds["x"].shape[1] == 3 and min(feeds["x"].shape) >= 1
    rc, out, err = cli(capsys, model, "-o", str(tmp_path / "c.onnx"), "--verify", "-p", "fold-constants,cleanup")
    assert rc == 0, err
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).uniform(0, 1, (1, 3, 48, 192)).astype(np.float32))
    rc, out, err = cli(capsys, model, "-o", str(tmp_path / "c.onnx"), "--verify", "--inputs", str(tmp_path / "x.npz"),
                       "-p", "fold-constants,cleanup")
    assert rc == 0, err


def test_max_rel_is_relative_to_the_outputs_scale():
    expected = {"p": np.array([1.0, 1e-30, 0.0], np.float32)}
    [d] = verify.compare(expected, {"p": np.array([1.0, 2e-7, 0.0], np.float32)})
    assert d.ok and d.max_rel == pytest.approx(2e-7, rel=1e-3)
    [d] = verify.compare({"z": np.zeros(3, np.float32)}, {"z": np.zeros(3, np.float32)})
    assert d.ok and d.max_rel == 0


def test_integer_inputs_take_values_the_graph_compares_them_with():
    feeds = verify.make_inputs(onnx.load(SILERO, load_external_data=False))
    assert int(feeds["sr"]) in (8000, 16000)


def test_nothing_runs_says_how_to_give_inputs():
    m = gs.load(example_path())  # its PReLU slope does not broadcast in onnxruntime, and remove-if does not fix that
    with pytest.raises(verify.VerificationError, match=r"nor does any model after it; give real inputs with "
                                                       r"--inputs X.npz .*image float32 \[1, 3, 8, 8\]"):
        Pipeline.from_text("remove-if", verify=True).run(m)


def test_unnamed_dims_are_guessed_consistently():
    """silero declares input [?, ?] and state [2, ?, 128]: the batch is each input's first
    unknown dim, so the original runs without set-shape or --inputs."""
    res = Pipeline.from_text("freeze-inputs(sr=16000),fold-constants,remove-if,cleanup", verify=True).run(gs.load(SILERO))
    assert all(rep[0].name != "(not verified)" and all(d.ok for d in rep) for _, rep in res.verification)


def _external_model(folder):
    w = numpy_helper.from_array(np.arange(1024, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024])], [w])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(proto, str(folder / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    return folder / "m.onnx"


def test_external_data_is_contained_and_no_file_is_written(tmp_path):
    path = _external_model(tmp_path)
    before = sorted(os.listdir(tmp_path))
    data = path.read_bytes()
    out = verify.run(data, {"x": np.zeros(1024, np.float32)}, base_dir=str(tmp_path))
    assert out["y"][5] == 5 and sorted(os.listdir(tmp_path)) == before  # nothing written beside the model
    res = Pipeline.from_text("cleanup,rename-io(y=out)", verify=True).run(gs.load(str(path)))
    assert res.verification[-1][1][0].max_abs == 0 and sorted(os.listdir(tmp_path)) == before
    os.link(tmp_path / "w.bin", tmp_path / "elsewhere.bin")  # a second name: may be a file outside the folder
    with pytest.raises(ExternalDataError, match="hard links"):
        verify.run(data, {"x": np.zeros(1024, np.float32)}, base_dir=str(tmp_path))


def test_inputs_given_under_a_name_rename_io_changes_are_used(monkeypatch):
    m = gs.load(str(FIX / "conv_bn.onnx"))
    spec = verify.input_specs(m.proto)[0]
    x = np.random.default_rng(3).uniform(-1, 1, [d if isinstance(d, int) else 1 for d in spec.dims]).astype(np.float32)
    seen = []
    real_run = Runner.run
    monkeypatch.setattr(Runner, "run", lambda self, model, feeds, **kw: seen.append(dict(feeds))
                        or real_run(self, model, feeds, **kw))
    res = Pipeline.from_text(f"fuse-conv-bn,rename-io({spec.name}=image)", verify=True, inputs={spec.name: x}).run(m)
    assert all(d.ok for _, rep in res.verification for d in rep)
    assert any(np.array_equal(f.get("image", f.get(spec.name)), x) for f in seen)
    assert all(np.array_equal(f.get("image", f.get(spec.name)), x) for f in seen)
    with pytest.raises(verify.InputMismatch, match="array 'x' \\(renamed 'image'\\) has dtype float64"):
        Pipeline.from_text(f"fuse-conv-bn,rename-io({spec.name}=image)", verify=True,
                           inputs={spec.name: x.astype(np.float64)}).run(gs.load(str(FIX / "conv_bn.onnx")))


def test_a_static_dim_set_shape_changes_is_reported_not_failed():
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["i"], name="id"), helper.make_node("Relu", ["i"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10))
    res = Pipeline.from_text("set-shape(x=2x4),eliminate-noops", verify=True).run(m)
    [first], [second] = res.verification[0][1], res.verification[1][1]
    assert first.name == "(not verified)" and "changed input 'x' from float32 [1, 4] to float32 [2, 4]" in first.note
    assert second.name == "y" and second.ok and second.max_abs == 0


class _MapsBackBadly(gs.passes.Pass):
    """Changes nothing numerically, but maps the inputs of the model after it to inputs the
    model before it does not take (a batch of 2 where the model takes 1)."""

    name = "maps-back-badly"

    def apply(self, model, result):
        result.note("touched nothing")

    def feeds_before(self, feeds, before, after, result):
        return [{"x": np.zeros((2, 3, 4, 4), np.float32)}]


def test_inputs_a_pass_cannot_map_back_are_reported_not_failed():
    """Per-sample inputs a pass maps back that do not fit the model before it: that pass is
    not verified, and says so; it is not an error about onnxruntime, and the passes after it
    are still checked."""
    res = Pipeline([_MapsBackBadly(), create("cleanup")], verify=True).run(tiny_chain())
    [unverified] = res.verification[0][1]
    assert unverified.name == "(not verified)" and "input 'x' would get shape [2, 3, 4, 4]" in unverified.note


class _NoisyReference(gs.passes.Pass):
    """Changes nothing numerically, but its reference disagrees with itself from one
    computation to the next, as onnxruntime's kernels can between thread counts."""

    name = "noisy-reference"
    calls = 0

    def apply(self, model, result):
        result.note("touched nothing")

    def reference(self, before, after, feeds, result, run):
        out = super().reference(before, after, feeds, result, run)
        type(self).calls += 1
        return {k: v + np.float32(1e-3 if type(self).calls == 1 else 0) for k, v in out.items()}


def test_the_references_run_to_run_noise_is_measured_before_a_pass_is_blamed():
    _NoisyReference.calls = 0
    res = Pipeline([_NoisyReference()], verify=True).run(gs.load(_instancenorm_model()))
    [d] = res.verification[0][1]
    assert d.ok and d.noise == pytest.approx(1e-3, rel=1e-3) and "reference noise" in str(d)


def test_a_sequence_input_is_named_as_such_not_as_an_element_type(tmp_path, capsys):
    seq = helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])
    g = helper.make_graph([helper.make_node("SequenceLength", ["seq"], ["n"], name="len"),
                           helper.make_node("Identity", ["n"], ["m"], name="id")], "g", [seq],
                          [helper.make_tensor_value_info("m", TensorProto.INT64, [])])
    src = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), src)
    rc, out, err = cli(capsys, str(src), "-o", str(tmp_path / "out.onnx"), "--verify", "-p", "eliminate-noops")
    assert rc == 2 and "input 'seq' is a sequence, not a tensor" in err, err
    assert not (tmp_path / "out.onnx").exists()
