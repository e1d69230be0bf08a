"""set-batch: the batch changes everywhere it must, or the pass refuses and changes nothing."""

import pathlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import verify
from graphsurgery.passes import PassError, create
from conftest import DATA, run_ort

FIX = pathlib.Path(__file__).parent / "fixtures"


def model_of(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def per_sample(model_bytes, feeds_batched, split_axis=None):
    """Run the original model once per sample and stack: the reference for a batched run."""
    name = next(iter(feeds_batched))
    n = feeds_batched[name].shape[0]
    outs = [verify.run(model_bytes, {k: v[i:i + 1] for k, v in feeds_batched.items()}) for i in range(n)]
    return {k: np.concatenate([o[k] for o in outs], axis=0) for k in outs[0]}


@pytest.mark.parametrize("fixture", ["view_batch", "view_one"])
@pytest.mark.parametrize("size", ["4", "N"])
def test_pytorch_views_follow_the_batch(fixture, size):
    ref = dict(np.load(FIX / f"{fixture}.npz"))
    m = gs.load(str(FIX / f"{fixture}.onnx"))
    r = create("set-batch", size=size).run(m)
    assert "[1, -1] -> [0, -1]" in r.changes[0]
    assert m.graph.tensor("x").shape[0] == (4 if size == "4" else "N")
    out = verify.run(m.to_bytes(), {"x": ref["x4"]})
    assert out["y"].shape == ref["y4"].shape  # (4, 128) for view(1, -1), not the (1, 512) peers give
    assert np.allclose(out["y"], ref["y4"], rtol=1e-5, atol=1e-6)
    assert not create("set-batch", size=size).run(m).changed
    m.check()


def test_the_measured_peer_case_conv_reshape_1_minus_1():
    proto = model_of([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                      helper.make_node("Reshape", ["c", "shape"], ["y"], name="flatten")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
                     [numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32), "w"),
                      numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    original = proto.SerializeToString()  # load() wraps the proto: the pass edits it in place
    m = gs.load(proto)
    create("set-batch", size="4").run(m)
    x = np.random.default_rng(1).standard_normal((4, 3, 4, 4)).astype(np.float32)
    out = run_ort(m.proto, {"x": x})["y"]
    assert out.shape == (4, 32)
    assert np.allclose(out, per_sample(original, {"x": x})["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("culprit,nodes,inits,out_shape", [
    ("flatten", [helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten")],
     [numpy_helper.from_array(np.array([2, -1], np.int64), "shape")], [2, 24]),
    ("mean", [helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[0], keepdims=1)], [], [1, 3, 4, 4]),
])
def test_refuses_when_the_batch_is_lost_and_changes_nothing(culprit, nodes, inits, out_shape):
    proto = model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match=f"node '{culprit}'.*loses the batch.*nothing was changed"):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before


def test_constant_of_shape_takes_the_batch_at_run_time():
    proto = model_of([helper.make_node("ConstantOfShape", ["h0_shape"], ["h0"], name="h0",
                                       value=numpy_helper.from_array(np.array([0.5], np.float32))),
                      helper.make_node("MatMul", ["x", "w"], ["xw"], name="mm"),
                      helper.make_node("Add", ["xw", "h0"], ["y"], name="add")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                     [numpy_helper.from_array(np.array([1, 8], np.int64), "h0_shape"),
                      numpy_helper.from_array(np.ones((4, 8), np.float32), "w")])
    m = gs.load(proto)
    r = create("set-batch", size="B").run(m)
    assert any("ConstantOfShape 'h0'" in c for c in r.changes)
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
        out = run_ort(m.proto, {"x": x})["y"]
        assert out.shape == (n, 8) and np.allclose(out, x @ np.ones((4, 8)) + 0.5, atol=1e-5)


def test_magika_unnamed_batch():
    original = (DATA / "magika_standard_v3_3.onnx").read_bytes()
    m = gs.load(original)
    assert m.graph.tensor("bytes").shape[0] == "unk__214"
    create("set-batch", size="3").run(m)
    assert m.graph.tensor("bytes").shape == [3, 2048]
    assert m.graph.tensor(m.graph.output_names[0]).shape[0] == 3
    m.check()
    x = np.random.default_rng(0).integers(0, 257, (3, 2048)).astype(np.int32)
    out = verify.run(m.to_bytes(), {"bytes": x})
    ref = per_sample(original, {"bytes": x})
    for k in ref:
        assert np.allclose(out[k], ref[k], rtol=1e-5, atol=1e-6), k


def test_silero_batch_on_two_axes():
    """input is [batch, samples] and state is [2, batch, 128]: name the axes."""
    original = (DATA / "silero_vad.onnx").read_bytes()
    m = gs.load(original)
    from graphsurgery.passes import Pipeline
    Pipeline.from_text("freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,remove-if,"
                       "cleanup,set-batch(size=2,inputs=input;state:1)").run(m)
    assert m.graph.tensor("input").shape == [2, 512] and m.graph.tensor("state").shape == [2, 2, 128]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 512)).astype(np.float32)
    st = rng.uniform(-1, 1, (2, 2, 128)).astype(np.float32)
    out = verify.run(m.to_bytes(), {"input": x, "state": st})
    for i in range(2):
        one = verify.run(original, {"input": x[i:i + 1], "state": st[:, i:i + 1], "sr": np.array(16000, np.int64)},
                         optimize=False)
        assert np.allclose(out["output"][i:i + 1], one["output"], rtol=1e-5, atol=1e-6)
        assert np.allclose(out["stateN"][:, i:i + 1], one["stateN"], rtol=1e-5, atol=1e-6)


def test_options_and_errors():
    m = gs.load(str(FIX / "view_one.onnx"))
    with pytest.raises(PassError, match="needs size"):
        create("set-batch").run(m)
    with pytest.raises(gs.NotFoundError, match="did you mean 'x'"):
        create("set-batch", size="2", inputs="xx").run(m)
