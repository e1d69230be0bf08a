"""Passes on real models, each checked numerically against the original or against PyTorch.

Fixtures come from tests/fixtures/make_torch_models.py (PyTorch outputs saved beside them)
and tests/data (see its README for provenance)."""

import pathlib

import numpy as np
import onnx
import pytest

import graphsurgery as gs
from graphsurgery import verify
from graphsurgery.passes import Pipeline, create
from conftest import DATA, assert_close, run_ort

FIX = pathlib.Path(__file__).parent / "fixtures"


def fixture(name):
    return str(FIX / f"{name}.onnx"), dict(np.load(FIX / f"{name}.npz"))


# ---- silero_vad: 25 nested If, sr frozen ----------------------------------------------------
@pytest.mark.parametrize("sr,chunk", [(16000, 512), (8000, 256)])
def test_silero_vad_loses_every_if_and_matches_over_a_stream(sr, chunk):
    original = (DATA / "silero_vad.onnx").read_bytes()
    m = gs.load(original)
    res = Pipeline.from_text(f"freeze-inputs(sr={sr}),set-shape(input=1x{chunk},state=2x1x128),"
                             "fold-constants,remove-if,cleanup").run(m)
    assert not m.find_nodes("If")
    assert len(res.results[3].details["branches"]) == 7  # measured; the other 18 went with the branches not taken
    # measured: 51 nodes (onnxslim 36, onnxscript's optimizer 57 with one If left)
    assert len(m.graph) <= 51, m.op_histogram()
    m.check()
    rng = np.random.default_rng(sr)
    ours = m.to_bytes()
    state = {"orig": np.zeros((2, 1, 128), np.float32), "exact": None, "deployed": None}
    state["exact"] = state["deployed"] = state["orig"]
    for _ in range(10):  # stream chunks, each model feeding its own stateN back as state
        x = rng.uniform(-1, 1, (1, chunk)).astype(np.float32)
        a = verify.run(original, {"input": x, "state": state["orig"], "sr": np.array(sr, np.int64)},
                       optimize=False, prepack=False)
        # the same computation, bit for bit, when onnxruntime picks the same kernels
        exact = verify.run(ours, {"input": x, "state": state["exact"]}, optimize=False, prepack=False)
        assert_close(exact, a, rtol=0, atol=0)
        # as deployed: optimizations on (onnxruntime's own If-inlining fails on the original once sr is
        # frozen), and constant weights pre-packed, which moves the last bits
        deployed = verify.run(ours, {"input": x, "state": state["deployed"]})
        for name in ("output", "stateN"):
            err = np.abs(deployed[name] - a[name])
            assert np.all(err <= 1e-5 * np.maximum(1.0, np.abs(a[name]))), f"{name}: max abs {err.max()}"
        state = {"orig": a["stateN"], "exact": exact["stateN"], "deployed": deployed["stateN"]}


def test_silero_vad_pipeline_verified_pass_by_pass():
    m = gs.load(str(DATA / "silero_vad.onnx"))
    inputs = {"input": np.random.default_rng(0).uniform(-1, 1, (1, 512)).astype(np.float32),
              "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
    res = Pipeline.from_text("freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,"
                             "remove-if,cleanup,set-batch(size=3,inputs=input;state:1)", verify=True,
                             inputs=inputs).run(m)
    assert [name.split("(")[0] for name, _ in res.verification] == [
        "freeze-inputs", "set-shape", "fold-constants", "remove-if", "cleanup", "set-batch"]
    # the reference runs the model before each pass (frozen inputs fed their values, set-batch
    # sample by sample) in onnxruntime without optimizer or pre-packing: exact, except that a
    # batched LSTM rounds differently from three single ones (measured 1.2e-7)
    for name, report in res.verification:
        assert all(d.ok for d in report), name
        if not name.startswith("set-batch"):
            assert all(d.max_abs == 0 for d in report), name
    assert res.verification[-1][0] == "set-batch(size=3,inputs=input;state:1)"


def test_silero_vad_16k_op15_pytorch_export():
    original = (DATA / "silero_vad_16k_op15.onnx").read_bytes()
    m = gs.load(original)
    feeds_shape = {vi.name: vi for vi in m.proto.graph.input}
    Pipeline.from_text("set-shape(input=1x512,state=2x1x128),fold-constants,remove-if,cleanup").run(m)
    remaining = m.find_nodes("If")
    assert not remaining, [n.name for n in remaining]
    x = np.random.default_rng(3).uniform(-1, 1, (1, 512)).astype(np.float32)
    feeds = {"input": x, "state": np.zeros((2, 1, 128), np.float32)}
    if "sr" in feeds_shape:
        feeds["sr"] = np.array(16000, np.int64)
    assert_close(verify.run(m.to_bytes(), feeds), verify.run(original, feeds, optimize=False), rtol=1e-5, atol=1e-5)


# ---- If models exported from PyTorch ---------------------------------------------------------
@pytest.mark.parametrize("mode,key", [(1, "y_mode1"), (0, "y_mode0")])
def test_torchscript_mode_switch(mode, key):
    path, ref = fixture("script_mode_if")
    m = gs.load(path)
    Pipeline.from_text(f"freeze-inputs(mode={mode}),remove-if,cleanup").run(m)
    assert not m.find_nodes("If") and m.graph.input_names == ["x"]
    assert_close(run_ort(m.proto, {"x": ref["x"]}), {"y": ref[key]})


def test_torchscript_data_dependent_if_is_kept():
    path = str(FIX / "script_data_if.onnx")
    m = gs.load(path)
    r = create("remove-if").run(m)
    assert not r.changed and len(m.find_nodes("If")) == 1 and "not constant" in r.skipped[0]


@pytest.mark.parametrize("flag,key", [(True, "y_true"), (False, "y_false")])
def test_torch_cond(flag, key):
    path, ref = fixture("torch_cond")
    m = gs.load(path)
    Pipeline.from_text(f"freeze-inputs(flag={str(flag).lower()}),remove-if,cleanup").run(m)
    assert not m.find_nodes("If")
    assert_close(run_ort(m.proto, {"x": ref["x"]}), {"y": ref[key]})


# ---- fast-neural-style: InstanceNorm epsilon, padding glue ------------------------------------
def test_instancenorm_epsilon_matches_pytorch():
    path, ref = fixture("fast_style")
    original = open(path, "rb").read()
    assert_close(run_ort(original, {"image": ref["image"]}), {"stylized": ref["stylized"]}, rtol=1e-5, atol=1e-5)
    m = gs.load(path)
    r = create("instancenorm-epsilon", epsilon="1e-5").run(m)  # the exported value already
    assert not r.changed and m.to_bytes() == original
    r = create("instancenorm-epsilon", epsilon="0.001").run(m)
    assert len(r.details["epsilon"]) == 5
    assert all(abs(old - 1e-5) < 1e-9 and new == 0.001 for old, new in r.details["epsilon"].values())
    assert_close(run_ort(m.proto, {"image": ref["image"]}), {"stylized": ref["stylized_eps_1e_3"]},
                 rtol=1e-5, atol=1e-5)


def test_fold_constants_on_padding_glue():
    path, ref = fixture("fast_style")
    m = gs.load(path)
    before = m.op_histogram()
    r = create("fold-constants").run(m)
    create("cleanup").run(m)
    after = m.op_histogram()
    assert r.details["folded"] >= 10
    assert "ConstantOfShape" not in after and "Constant" not in after and after["Pad"] == before["Pad"]
    assert_close(run_ort(m.proto, {"image": ref["image"]}), {"stylized": ref["stylized"]}, rtol=1e-5, atol=1e-5)


# ---- ArcFace-style PReLU ------------------------------------------------------------------------
def test_prelu_to_relu_matches_pytorch():
    path, ref = fixture("arcface_prelu")
    m = gs.load(path)
    r = create("prelu-to-relu").run(m)
    assert r.details["rewritten"] == 4 and not m.find_nodes("PRelu")
    assert_close(run_ort(m.proto, {"x": ref["x"]}), {"embedding": ref["embedding"]}, rtol=1e-5, atol=1e-5)


def test_fix_prelu_slope_on_mxnet_style_slopes():
    path, ref = fixture("arcface_prelu")
    m = gs.load(path)
    for node in m.find_nodes("PRelu"):  # store each slope as [C], as MXNet exports do
        name = node.inputs[1]
        m.graph.set_initializer(name, np.ascontiguousarray(m.graph.initializer(name).reshape(-1)))
    with pytest.raises(verify.RuntimeFailure, match="broadcast"):
        verify.run(m.to_bytes(), {"x": ref["x"]})
    r = create("fix-prelu-slope").run(m)
    assert len(r.changes) == 4
    assert_close(run_ort(m.proto, {"x": ref["x"]}), {"embedding": ref["embedding"]}, rtol=1e-5, atol=1e-5)
    assert not create("fix-prelu-slope").run(m).changed


# ---- debug-outputs ------------------------------------------------------------------------------
def test_debug_outputs_every_tensor_equals_its_subgraph_run_alone(tmp_path):
    path, ref = fixture("arcface_prelu")
    m = gs.load(path)
    r = create("debug-outputs").run(m)
    out = run_ort(m.proto, {"x": ref["x"]})
    assert_close({"embedding": out["embedding"]}, {"embedding": ref["embedding"]}, rtol=1e-5, atol=1e-5)
    assert len(r.details["outputs"]) == len(m.graph) - 1  # every node output but the existing one
    for name in r.details["outputs"]:
        sub = tmp_path / "sub.onnx"
        onnx.utils.extract_model(path, str(sub), ["x"], [name])
        alone = run_ort(onnx.load(str(sub)), {"x": ref["x"]})[name]
        assert np.allclose(out[name], alone, rtol=1e-5, atol=1e-6), name


def test_debug_outputs_inside_silero_branches_equal_the_inlined_tensors():
    """Two independent mechanisms agree: values threaded out of If branches, and the same
    tensors once the top-level If is inlined."""
    original = (DATA / "silero_vad.onnx").read_bytes()
    m = gs.load(original)
    r = create("debug-outputs").run(m)
    assert len(r.details["outputs"]) >= 500
    x = np.random.default_rng(0).uniform(-1, 1, (1, 512)).astype(np.float32)
    state = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 1, 128)).astype(np.float32)
    out = verify.run(m.to_bytes(), {"input": x, "state": state, "sr": np.array(16000, np.int64)}, optimize=False)
    baseline = verify.run(original, {"input": x, "state": state, "sr": np.array(16000, np.int64)}, optimize=False)
    assert_close({k: out[k] for k in baseline}, baseline, rtol=0, atol=0)  # existing outputs undisturbed
    inlined = gs.load(original)
    Pipeline.from_text("freeze-inputs(sr=16000),fold-constants(shapes=false,constant_nodes=false),"
                       "remove-if(fold=false),debug-outputs(subgraphs=false)").run(inlined)
    flat = verify.run(inlined.to_bytes(), {"input": x, "state": state}, optimize=False)
    common = [n for n in r.details["outputs"] if n in flat]
    assert len(common) >= 90
    for n in common:
        assert np.allclose(out[r.details["outputs"][n]], flat[n], rtol=1e-5, atol=1e-6), n
