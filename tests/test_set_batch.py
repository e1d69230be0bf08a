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


# ---- where the batch is: found per input, a fixed dim is never overwritten ---------------------
def state_model(state_dims, meet=True):
    """x[N, 8] and state[2, N, 8]: the state's batch is axis 1, which meets x's in the Add."""
    nodes = [helper.make_node("Unsqueeze", ["x", "zero"], ["x1"], name="unsq"),
             helper.make_node("Add", ["state", "x1"] if meet else ["state", "one"], ["y"], name="add"),
             helper.make_node("Relu", ["x"], ["r"], name="relu")]
    return model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
                            helper.make_tensor_value_info("state", TensorProto.FLOAT, state_dims)],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, state_dims),
                     helper.make_tensor_value_info("r", TensorProto.FLOAT, ["N", 8])],
                    [numpy_helper.from_array(np.array([0], np.int64), "zero"),
                     numpy_helper.from_array(np.ones((1, 1, 1), np.float32), "one")])


@pytest.mark.parametrize("state_dims", [[2, None, 8], [2, "N", 8], [2, "S", 8]])
def test_a_fixed_dim_that_is_not_the_batch_is_never_overwritten(state_dims):
    proto = state_model(state_dims)
    original = proto.SerializeToString()
    m = gs.load(proto)
    r = create("set-batch", size="4").run(m)
    assert m.graph.tensor("state").shape == [2, 4, 8] and m.graph.tensor("x").shape == [4, 8]
    assert r.details["inputs"] == [["x", 0], ["state", 1]] and r.details["output_axes"] == {"y": [1], "r": [0]}
    assert m.graph.tensor("y").shape == [2, 4, 8]
    rng = np.random.default_rng(0)
    x, st = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((2, 4, 8)).astype(np.float32)
    out = run_ort(m.proto, {"x": x, "state": st})
    for i in range(4):
        one = verify.run(original, {"x": x[i:i + 1], "state": st[:, i:i + 1]})
        assert np.allclose(out["y"][:, i:i + 1], one["y"], rtol=1e-5, atol=1e-6)


def test_an_input_whose_batch_cannot_be_found_is_refused_by_name():
    m = gs.load(state_model([2, None, 8], meet=False))
    before = m.to_bytes()
    with pytest.raises(PassError, match="cannot find the batch axis of input 'state'.*inputs=x;state:AXIS"):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before
    create("set-batch", size="4", inputs="x").run(m)  # left out, as the message says
    assert m.graph.tensor("state").shape == [2, None, 8]


def test_silero_vad_as_exported_is_refused_naming_the_node_and_state_is_untouched():
    """Its rnn If adds a batch axis or not depending on the input length: no proof before the
    shape-driven Ifs are folded away. It used to write state [4, ?, 128]."""
    m = gs.load(str(DATA / "silero_vad.onnx"))
    before = m.to_bytes()
    with pytest.raises(PassError, match="node '.*rnn/If' \\(If\\).*nothing was changed"):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before


@pytest.mark.parametrize("model", ["silero_vad.onnx", "silero_vad_16k_op15.onnx"])
def test_silero_state_axis_found_without_naming_it(model):
    original = (DATA / model).read_bytes()
    m = gs.load(original)
    from graphsurgery.passes import Pipeline
    Pipeline.from_text("freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,remove-if,"
                       "cleanup,set-batch(size=4)").run(m)
    assert m.graph.tensor("input").shape == [4, 512] and m.graph.tensor("state").shape == [2, 4, 128]
    assert m.graph.tensor("stateN").shape == [2, 4, 128] and m.graph.tensor("output").shape == [4, 1]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 512)).astype(np.float32)
    st = rng.uniform(-1, 1, (2, 4, 128)).astype(np.float32)
    out = verify.run(m.to_bytes(), {"input": x, "state": st})
    for i in range(4):
        one = verify.run(original, {"input": x[i:i + 1], "state": st[:, i:i + 1], "sr": np.array(16000, np.int64)},
                         optimize=False)
        assert np.allclose(out["output"][i:i + 1], one["output"], rtol=1e-5, atol=1e-6)
        assert np.allclose(out["stateN"][:, i:i + 1], one["stateN"], rtol=1e-5, atol=1e-6)


# ---- free batches and shape glue ---------------------------------------------------------------
def test_paddle_ocr_classifier_with_a_free_batch():
    """paddle2onnx writes the batch as -1 and computes Reshape targets from Shape glue."""
    original = (DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx").read_bytes()
    m = gs.load(original)
    r = create("set-batch", size="4").run(m)
    assert m.graph.tensor("x").shape[0] == 4 and r.details["output_axes"] == {"save_infer_model/scale_0.tmp_1": [0]}
    assert m.graph.tensor("save_infer_model/scale_0.tmp_1").shape == [4, 2]
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 48, 192)).astype(np.float32)
    out = verify.run(m.to_bytes(), {"x": x})
    ref = per_sample(original, {"x": x})
    for k in ref:
        assert np.allclose(out[k], ref[k], rtol=1e-5, atol=1e-6 * np.abs(ref[k]).max()), k


@pytest.mark.parametrize("batch", [1, "N"])
def test_reshape_target_from_shape_glue_needs_no_fold_constants(batch):
    """x.view(x.size(0), -1) as PyTorch exports it: Shape -> Gather -> Unsqueeze -> Concat."""
    proto = model_of([helper.make_node("Shape", ["x"], ["s"], name="shape"),
                      helper.make_node("Gather", ["s", "i0"], ["b"], name="gather", axis=0),
                      helper.make_node("Unsqueeze", ["b", "i1"], ["b1"], name="unsq"),
                      helper.make_node("Concat", ["b1", "m1"], ["target"], name="concat", axis=0),
                      helper.make_node("Reshape", ["x", "target"], ["f"], name="view"),
                      helper.make_node("MatMul", ["f", "w"], ["y"], name="fc")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])],
                     [numpy_helper.from_array(np.array(0, np.int64), "i0"),
                      numpy_helper.from_array(np.array([0], np.int64), "i1"),
                      numpy_helper.from_array(np.array([-1], np.int64), "m1"),
                      numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(12, 2), "w")])
    original = proto.SerializeToString()
    m = gs.load(proto)
    create("set-batch", size="3").run(m)
    assert m.graph.tensor("y").shape == [3, 2]
    x = np.random.default_rng(0).standard_normal((3, 3, 4)).astype(np.float32)
    assert np.allclose(run_ort(m.proto, {"x": x})["y"], per_sample(original, {"x": x})["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("culprit,node,why", [
    ("soft", helper.make_node("Softmax", ["x"], ["y"], name="soft", axis=0), "normalizes across the batch axis 0"),
    ("cat", helper.make_node("Concat", ["x", "x"], ["y"], name="cat", axis=0), "joins along the batch axis 0"),
    ("sum", helper.make_node("ReduceSum", ["x", "ax0"], ["y"], name="sum", keepdims=1), "reduces over the batch axis"),
])
def test_a_free_batch_that_samples_mix_over_is_refused(culprit, node, why):
    proto = model_of([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [numpy_helper.from_array(np.array([0], np.int64), "ax0")])
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match=f"node '{culprit}'.*loses the batch: it {why}.*nothing was changed"):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before


@pytest.mark.parametrize("size,match", [("-1", "'-1' is not a dim"), ("\u00b2", "is not a dim"),
                                        ("99999999999999999999", "out of range"), ("0", "out of range"),
                                        ("a-b", "'a-b' is not a dim")])
def test_size_is_validated(size, match):
    m = gs.load(str(FIX / "view_one.onnx"))
    before = m.to_bytes()
    with pytest.raises(PassError, match=match):
        create("set-batch", size=size).run(m)
    assert m.to_bytes() == before


def test_torch_dynamo_view_with_allowzero_takes_the_batch_from_its_input():
    """torch.onnx.export(dynamo=True) writes x.permute(0, 2, 1).view(x.size(0), -1) at batch 1 as
    Reshape(allowzero=1) with target [1, -1]: 0 would mean an empty dim there."""
    proto = model_of([helper.make_node("Transpose", ["x"], ["p"], name="permute", perm=[0, 2, 1]),
                      helper.make_node("Reshape", ["p", "target"], ["f"], name="view", allowzero=1),
                      helper.make_node("MatMul", ["f", "w"], ["y"], name="fc")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                     [numpy_helper.from_array(np.array([1, -1], np.int64), "target"),
                      numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(12, 2), "w")])
    original = proto.SerializeToString()
    m = gs.load(proto)
    r = create("set-batch", size="4").run(m)
    assert any("takes its batch from its input" in c for c in r.changes)
    assert m.graph.tensor("y").shape == [4, 2]
    x = np.random.default_rng(0).standard_normal((4, 3, 4)).astype(np.float32)
    assert np.allclose(run_ort(m.proto, {"x": x})["y"], per_sample(original, {"x": x})["y"], rtol=1e-5, atol=1e-5)


def test_a_flatten_that_merges_the_batch_outermost_keeps_each_samples_rows_together():
    """Flatten(axis=2) of [N, S] gives [N*S, 1]: sample i's S rows follow sample i-1's, so the
    output is the single runs' outputs one after the other, whatever S is."""
    proto = model_of([helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=2)],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S"])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = gs.load(proto)
    original = m.to_bytes()
    r = create("set-batch", size="4").run(m)
    assert r.details["output_axes"] == {"y": [0]}
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    assert np.array_equal(run_ort(m.proto, {"x": x})["y"], per_sample(original, {"x": x})["y"])


def test_a_flatten_that_merges_the_batch_behind_another_dim_is_refused():
    """Flatten(axis=2) of [S, N]: the batch is not outermost, samples interleave."""
    proto = model_of([helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=2)],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, "N"])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match="cannot follow the batch through node 'flat'.*merges the batch axis 1"):
        create("set-batch", size="4", inputs=["x:1"]).run(m)
    assert m.to_bytes() == before


def test_dynamic_quantization_mixes_samples():
    """DynamicQuantizeLinear takes one scale over the whole batch: measured 1.9e-3 relative
    difference from single runs on an exported CNN before set-batch refused it."""
    proto = model_of([helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "scale", "zp"], name="dq")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                     [helper.make_tensor_value_info("q", TensorProto.UINT8, ["N", 4])])
    with pytest.raises(PassError, match="node 'dq'.*loses the batch: its scale"):
        create("set-batch", size="4").run(gs.load(proto))


def test_a_recurrence_along_the_batch_axis_is_refused():
    """LSTM(layout=0) reads X as [seq, batch, in]: a batch on axis 0 runs through the state."""
    rng = np.random.default_rng(0)
    proto = model_of([helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="lstm", hidden_size=2)],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 3])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [numpy_helper.from_array(rng.standard_normal((1, 8, 3)).astype(np.float32), "w"),
                      numpy_helper.from_array(rng.standard_normal((1, 8, 2)).astype(np.float32), "r")])
    with pytest.raises(PassError, match="node 'lstm'.*loses the batch: it runs its recurrence along the batch"):
        create("set-batch", size="4").run(gs.load(proto))


def test_a_reshape_that_merges_a_free_batch_outermost_is_followed():
    """[N, 16, 32] -> [-1, 32]: each sample's 16 rows follow the last sample's."""
    proto = model_of([helper.make_node("Reshape", ["x", "t"], ["y"], name="merge")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 32])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [numpy_helper.from_array(np.array([-1, 32], np.int64), "t")])
    m = gs.load(proto)
    original = m.to_bytes()
    create("set-batch", size="4").run(m)
    x = np.random.default_rng(0).standard_normal((4, 16, 32)).astype(np.float32)
    assert np.array_equal(run_ort(m.proto, {"x": x})["y"], per_sample(original, {"x": x})["y"])


def test_a_reshape_that_merges_a_free_batch_behind_other_rows_is_refused():
    proto = model_of([helper.make_node("Reshape", ["x", "t"], ["y"], name="merge")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 32])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [numpy_helper.from_array(np.array([16, -1], np.int64), "t")])
    with pytest.raises(PassError, match="node 'merge' \\(Reshape\\) loses the batch"):
        create("set-batch", size="4").run(gs.load(proto))


def test_shape_glue_of_a_tensor_inference_lost_still_follows_the_batch():
    """PaddleOCR v4 rec: a Reshape target shape inference cannot compute, then Shape of its
    output sliced into the next target. Its non-batch dims are not the batch, known or not."""
    proto = model_of([helper.make_node("Where", ["c", "ta", "tb"], ["t1"], name="pick"),
                      helper.make_node("Reshape", ["x", "t1"], ["y1"], name="r1"),
                      helper.make_node("Shape", ["y1"], ["s"], name="shape"),
                      helper.make_node("Slice", ["s", "one", "two"], ["s1"], name="slice"),
                      helper.make_node("Concat", ["zero", "s1", "one"], ["t2"], name="concat", axis=0),
                      helper.make_node("Reshape", ["y1", "t2"], ["y"], name="r2")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [numpy_helper.from_array(np.array([True]), "c"),
                      numpy_helper.from_array(np.array([0, 24], np.int64), "ta"),
                      numpy_helper.from_array(np.array([0, 24], np.int64), "tb"),
                      numpy_helper.from_array(np.array([0], np.int64), "zero"),
                      numpy_helper.from_array(np.array([1], np.int64), "one"),
                      numpy_helper.from_array(np.array([2], np.int64), "two")])
    original = proto.SerializeToString()
    m = gs.load(proto)
    r = create("set-batch", size="3").run(m)
    assert r.details["output_axes"] == {"y": [0]}
    x = np.random.default_rng(0).standard_normal((3, 4, 6)).astype(np.float32)
    out = run_ort(m.proto, {"x": x})["y"]
    assert out.shape == (3, 24, 1) and np.array_equal(out, per_sample(original, {"x": x})["y"])


# ---- defects the operator-test sweep found ---------------------------------------------------

@pytest.mark.parametrize("group,x_dims,w_dims", [(1, [1, 1, 3, 3], [1, 2, 3, 3]), (2, [1, 2, 3, 3], [2, 1, 3, 3]),
                                                 (1, [3, 1, 3, 3], [1, 2, 3, 3])])
def test_conv_transpose_weight_input_keeps_its_size(group, x_dims, w_dims):
    """ConvTranspose's weight is [C_in, C_out/group, k, k]: a weight given as a graph input whose
    C_in equals the old batch is a parameter, not a second batch input."""
    proto = model_of([helper.make_node("ConvTranspose", ["X", "W"], ["Y"], name="deconv", group=group)],
                     [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_dims),
                      helper.make_tensor_value_info("W", TensorProto.FLOAT, w_dims)],
                     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    original = proto.SerializeToString()
    m = gs.load(proto)
    r = create("set-batch", size="2").run(m)
    assert r.details["inputs"] == [["X", 0]]
    assert m.graph.tensor("W").shape == w_dims
    rng = np.random.default_rng(0)
    x = rng.standard_normal([2] + x_dims[1:]).astype(np.float32)
    w = rng.standard_normal(w_dims).astype(np.float32)
    out = run_ort(m.proto, {"X": x, "W": w})["Y"]
    old = x_dims[0]
    ref = [verify.run(original, {"X": np.repeat(x[i:i + 1], old, axis=0), "W": w})["Y"][:1] for i in range(2)]
    assert np.allclose(out, np.concatenate(ref), rtol=1e-5, atol=1e-6)


def reverse_sequence_model(batch_axis, time_axis):
    return model_of([helper.make_node("ReverseSequence", ["x", "sequence_lens"], ["y"], name="rev",
                                      batch_axis=batch_axis, time_axis=time_axis)],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4]),
                     helper.make_tensor_value_info("sequence_lens", TensorProto.INT64, [4])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])])


def test_reverse_sequence_with_the_time_axis_first_is_refused_by_name():
    m = gs.load(reverse_sequence_model(batch_axis=1, time_axis=0))
    before = m.to_bytes()
    with pytest.raises(PassError, match=r"'rev' \(ReverseSequence\) loses the batch.*time_axis.*batch_axis is 1"):
        create("set-batch", size="2").run(m)
    assert m.to_bytes() == before


@pytest.mark.parametrize("batch_axis,time_axis,names", [(0, 1, None), (1, 0, ["x:1", "sequence_lens"])])
def test_reverse_sequence_takes_one_length_per_sample(batch_axis, time_axis, names):
    proto = reverse_sequence_model(batch_axis, time_axis)
    original = proto.SerializeToString()
    m = gs.load(proto)
    r = create("set-batch", size="2", inputs=names).run(m)
    assert r.details["inputs"] == [["x", batch_axis], ["sequence_lens", 0]]
    x = np.arange(8, dtype=np.float32).reshape([2, 4] if batch_axis == 0 else [4, 2])
    lens = np.array([3, 1], np.int64)
    out = run_ort(m.proto, {"x": x, "sequence_lens": lens})["y"]
    ref = []
    for i in range(2):  # the original takes a batch of 4: one sample, four times
        xi = np.repeat(np.take(x, [i], axis=batch_axis), 4, axis=batch_axis)
        ref.append(np.take(verify.run(original, {"x": xi, "sequence_lens": np.repeat(lens[i:i + 1], 4)})["y"],
                           [0], axis=batch_axis))
    assert np.array_equal(out, np.concatenate(ref, axis=batch_axis))


def test_a_loop_the_batch_flows_into_is_refused_naming_the_node():
    """The operator tests' SequenceMap expansion runs a Loop over a sequence; set-batch cannot
    follow a Loop body, and a node without a name is named by its output."""
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)])
    proto = model_of([helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                     [numpy_helper.from_array(np.array(2, np.int64), "n")])
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match=r"node \(Loop\) making 'y': the batch flows into its Loop body"):
        create("set-batch", size="2").run(m)
    assert m.to_bytes() == before


# ---- transformer exports (tests/fixtures/make_transformer_models.py) ----------------------------

def transformer_feeds(proto, batch):
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in verify.input_specs(proto):
        if "mask" in spec.name:
            a = np.ones((batch, 8), np.int64)
            a[1 % batch, 5:] = 0
        else:
            a = rng.integers(0, 100, (batch, 8))
        feeds[spec.name] = a.astype(spec.dtype)
    return feeds


@pytest.mark.parametrize("size", ["4", "N"])
def test_gpt2_dynamo_export_merges_the_batch_and_splits_it_back(size):
    """The dynamo exporter writes GPT-2 with constant Reshape targets that merge the batch with the
    sequence ([1, 8, 32] -> [-1, 32] for the projections, [1, 2, 8, 16] -> [2, 8, 16] for the heads)
    and split it back ([1, 8, 96]): each sample's rows stay together, so the model is per-sample."""
    m = gs.load(str(FIX / "gpt2_dynamo.onnx"))
    original = m.to_bytes()
    r = create("set-batch", size=size).run(m)
    assert any("[1, 8, 96] -> [-1, 8, 96]" in c for c in r.changes)
    assert m.graph.tensor("input_ids").shape[0] == (4 if size == "4" else "N")
    m.check()
    feeds = transformer_feeds(m.proto, 4)
    out = verify.run(m.to_bytes(), feeds, optimize=False)["logits"]
    ref = per_sample(original, feeds)["logits"]
    assert out.shape == ref.shape == (4, 8, 100)
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("fixture,change", [
    ("bert_torchscript", "input 'attention_mask': dim 0 batch -> 4"),  # Range(0, batch) indexes the mask
    ("bert_dynamo", "GatherND 'node_GatherND_46': indices [1, 1, 1, 8, 2] that pick row 0"),  # baked for batch 1
])
def test_bert_exports_index_each_samples_own_mask_row(fixture, change):
    """Both exporters pick each sample's attention-mask row by index: TorchScript with row
    numbers Range(0, batch) into the flattened mask, dynamo with a constant GatherND index
    that hard-codes row 0 of a batch of 1. Batch 4 gives the four single runs."""
    m = gs.load(str(FIX / f"{fixture}.onnx"))
    original = m.to_bytes()
    r = create("set-batch", size="4").run(m)
    assert any(change in c for c in r.changes), r.changes
    m.check()
    feeds = transformer_feeds(m.proto, 4)
    out = verify.run(m.to_bytes(), feeds, optimize=False)["hidden"]
    ref = per_sample(original, feeds)["hidden"]
    assert out.shape == ref.shape == (4, 8, 32)
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    assert not create("set-batch", size="4").run(m).changed


@pytest.mark.parametrize("fixture", ["bert_torchscript", "bert_dynamo"])
def test_bert_exports_batched_pass_verify_from_the_command_line(fixture, tmp_path, capsys):
    from graphsurgery.cli import main

    out = tmp_path / "b4.onnx"
    assert main(["run", str(FIX / f"{fixture}.onnx"), "-o", str(out), "-p", "set-batch(size=4)", "--verify"]) == 0
    assert "verified after set-batch(size=4)" in capsys.readouterr().out


# ---- row numbers: Range(0, batch) as the index of each sample's own rows ---------------------

def rows_model(scale=None, offset="range", delta=1, leak=False):
    """y[i, j] = x.flatten()[i * S + j] (PyTorch's x[arange(N)[:, None], arange(S)]), as the
    TorchScript exporter writes it: row numbers Range(0, N) times S plus Range(0, S), gathered
    from Flatten(x, axis=2) and reshaped to the index's shape."""
    i64 = TensorProto.INT64
    c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.int64)))
    nodes = [c("zero", 0), c("one", 1), c("delta", delta), c("i0", [0]), c("i1", [1]), c("minus1", [-1]),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
             helper.make_node("Gather", ["shape", "i1"], ["s_vec"], axis=0),
             helper.make_node("Gather", ["shape", "one"], ["s"], axis=0),
             helper.make_node("Range", ["zero", "n", "delta"], ["rows"], name="rows"),
             helper.make_node("Unsqueeze", ["rows", "i1"], ["rows2"]),
             helper.make_node("Mul", ["rows2", scale or "s_vec"], ["starts"], name="scale")]
    if scale == "two":
        nodes.append(c("two", [2]))
    if offset == "range":
        nodes += [helper.make_node("Range", ["zero", "s", "one"], ["cols"]),
                  helper.make_node("Unsqueeze", ["cols", "i0"], ["cols2"])]
    else:  # a constant offset nothing bounds below S
        nodes.append(c("cols2", [[0, 1, 2]]))
    nodes += [helper.make_node("Add", ["starts", "cols2"], ["idx"], name="index"),
              helper.make_node("Flatten", ["x"], ["flat"], axis=2),
              helper.make_node("Gather", ["flat", "idx"], ["picked"], name="pick", axis=0),
              helper.make_node("Reshape", ["picked", "minus1"], ["line"]),
              helper.make_node("Shape", ["idx"], ["idx_shape"]),
              helper.make_node("Reshape", ["line", "idx_shape"], ["y"], name="back")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if leak:
        nodes.append(helper.make_node("Cast", ["rows"], ["where"], name="leak", to=TensorProto.INT64))
        outputs.append(helper.make_tensor_value_info("where", TensorProto.INT64, None))
    return model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])], outputs)


def test_row_numbers_into_a_flattened_batch_pick_each_samples_own_rows():
    m = gs.load(rows_model())
    original = m.to_bytes()
    create("set-batch", size="4").run(m)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    out = run_ort(m.proto, {"x": x})["y"]
    assert out.shape == (4, 3)
    assert np.array_equal(out, per_sample(original, {"x": x})["y"])


@pytest.mark.parametrize("kwargs,culprit,why", [
    ({"delta": 2}, "rows", "not the row numbers 0 .. batch-1"),   # Range(0, N, 2): its length is not the batch
    ({"leak": True}, "", "holds each sample's position in the batch"),  # row numbers reach an output
    ({"scale": "two"}, "pick", "step 2 rows per sample .* merged with 3 rows per sample"),  # rows of two samples
    ({"offset": "constant"}, "index", "cannot show the sum stays within each sample's rows"),
])
def test_row_numbers_that_would_mix_samples_are_refused(kwargs, culprit, why):
    m = gs.load(rows_model(**kwargs))
    before = m.to_bytes()
    with pytest.raises(PassError, match=(f"'{culprit}'.*" if culprit else "") + why):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before


# ---- GatherND with constant indices that hard-code row 0 of a batch of 1 ---------------------

def gather_nd_model(indices, x_dims=(1, 5)):
    return model_of([helper.make_node("GatherND", ["x", "i"], ["y"], name="gnd")],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_dims))],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                    [numpy_helper.from_array(np.array(indices, np.int64), "i")])


def test_a_gather_nd_that_picks_row_0_of_a_batch_of_1_reads_each_samples_row():
    m = gs.load(gather_nd_model([[[0, 4], [0, 1], [-1, 2]]]))
    original = m.to_bytes()
    r = create("set-batch", size="4").run(m)
    assert "GatherND 'gnd'" in r.changes[0]
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    out = run_ort(m.proto, {"x": x})["y"]
    assert out.shape == (4, 3)
    assert np.array_equal(out, per_sample(original, {"x": x})["y"])


@pytest.mark.parametrize("indices", [
    [[0, 4], [0, 1]],          # [2, 2]: two picks from row 0, no axis for the batch in the output
    [[[0, 4]], [[0, 1]]],      # [2, 1, 2]: the output's first axis is not the batch of 1
])
def test_a_gather_nd_along_the_batch_that_cannot_be_rewritten_is_refused(indices):
    m = gs.load(gather_nd_model(indices))
    before = m.to_bytes()
    with pytest.raises(PassError, match="'gnd' \\(GatherND\\) loses the batch: its indices 'i' pick along the batch"):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before


def test_a_gather_nd_whose_indices_carry_the_batch_into_the_batch_axis_is_refused():
    """indices [N, 2] with batch_dims 0 pick rows of any sample: samples would read each other."""
    proto = model_of([helper.make_node("GatherND", ["x", "i"], ["y"], name="gnd")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5]),
                      helper.make_tensor_value_info("i", TensorProto.INT64, ["N", 2])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(PassError, match="'gnd' \\(GatherND\\).*its indices carry the batch"):
        create("set-batch", size="4").run(gs.load(proto))


# ---- a merge computed from Shape glue, split back by Shape glue -------------------------------

def glue_merge_model(first_split):
    """x [N, S, 4] -> [-1, 4] (a target from Shape glue) -> Relu -> back to Shape(x) or not."""
    c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.int64)))
    nodes = [c("minus1", [-1]), c("s1", [1]), c("s2", [2]), c("s3", [3]),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape", "s2", "s3"], ["d"]),
             helper.make_node("Slice", ["shape", "s1", "s2"], ["s"]),
             helper.make_node("Concat", ["minus1", "d"] if not first_split else ["s", "minus1", "d"], ["t1"], axis=0),
             helper.make_node("Reshape", ["x", "t1"], ["a"], name="merge"),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Reshape", ["b", "shape"], ["y"], name="split")]
    return model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 4])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


def test_a_merge_from_shape_glue_with_a_symbolic_factor_splits_back_per_sample():
    m = gs.load(glue_merge_model(False))
    original = m.to_bytes()
    create("set-batch", size="4").run(m)
    x = np.random.default_rng(0).standard_normal((4, 6, 4)).astype(np.float32)
    assert np.array_equal(run_ort(m.proto, {"x": x})["y"], per_sample(original, {"x": x})["y"])


def test_a_merge_from_shape_glue_that_puts_other_rows_before_the_batch_is_refused():
    m = gs.load(glue_merge_model(True))
    before = m.to_bytes()
    with pytest.raises(PassError, match="'merge' \\(Reshape\\)"):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before


def reshape_model(x_dims, first, second=None, between="Relu"):
    nodes = [helper.make_node("Reshape", ["x", "t1"], ["a"], name="merge"),
             helper.make_node(between, ["a"], ["b"], name="between")]
    inits = [numpy_helper.from_array(np.array(first, np.int64), "t1")]
    out = "b"
    if second is not None:
        nodes.append(helper.make_node("Reshape", ["b", "t2"], ["y"], name="split"))
        inits.append(numpy_helper.from_array(np.array(second, np.int64), "t2"))
        out = "y"
    return model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)],
                    [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)


@pytest.mark.parametrize("x_dims,first,second", [
    ([1, 4, 6], [4, 6], [1, 4, 6]),        # batch 1 merged into the rows and split back
    ([1, 4, 6], [-1, 6], [1, 2, 2, 6]),    # -1 merges; the split may regroup each sample's rows
    ([2, 4, 6], [8, 6], [2, 4, 6]),        # a fixed batch of 2: 8 rows = 2 x 4
    ([2, 4, 6], [8, 6], None),             # the output stays merged: samples' rows still follow each other
])
def test_a_constant_reshape_that_merges_the_batch_and_splits_it_back(x_dims, first, second):
    proto = reshape_model(x_dims, first, second)
    original = proto.SerializeToString()
    m = gs.load(proto)
    create("set-batch", size="3").run(m)
    x = np.random.default_rng(0).standard_normal([3] + x_dims[1:]).astype(np.float32)
    out = run_ort(m.proto, {"x": x})
    name = next(iter(out))
    old = x_dims[0]
    ref = np.concatenate([verify.run(original, {"x": np.repeat(x[i:i + 1], old, axis=0)})[name][
        :len(verify.run(original, {"x": np.repeat(x[i:i + 1], old, axis=0)})[name]) // old] for i in range(3)])
    assert np.array_equal(out[name], ref)


@pytest.mark.parametrize("x_dims,first,second,between,why", [
    ([2, 4, 6], [3, 16], None, "Relu", "loses the batch"),      # 3 rows of 16: a row holds values of two samples
    ([1, 4, 6], [4, 6], [1, 4, 6], "Softmax", "loses the batch"),  # a softmax over the merged rows mixes them
    ([1, 4, 6], [4, 6], [1, 4, 6], "Flatten", "merged with other dims"),
])
def test_a_reshape_that_mixes_samples_is_refused(x_dims, first, second, between, why):
    proto = reshape_model(x_dims, first, second, between)
    if between == "Softmax":
        proto.graph.node[1].attribute.append(helper.make_attribute("axis", 0))
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match=why):
        create("set-batch", size="3").run(m)
    assert m.to_bytes() == before


def test_an_input_other_ops_read_is_not_left_out_to_make_the_trace_pass():
    """Only parameters of ops that take the batch on their data alone may keep the old batch's
    size; an input a reduction reads over its batch axis keeps the refusal."""
    proto = model_of([helper.make_node("ReduceSum", ["y", "axes"], ["r"], name="sum", keepdims=1),
                      helper.make_node("Add", ["x", "r"], ["z"], name="add")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
                      helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                     [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])],
                     [numpy_helper.from_array(np.array([0], np.int64), "axes")])
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match="'sum' \\(ReduceSum\\) loses the batch"):
        create("set-batch", size="2").run(m)
    assert m.to_bytes() == before


def test_a_recurrence_whose_initial_state_has_no_batch_is_refused():
    rng = np.random.default_rng(0)
    proto = model_of([helper.make_node("GRU", ["X", "W", "R", "", "", "h0"], ["Y", "Y_h"], name="gru", hidden_size=4)],
                     [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["seq", 1, 3])],
                     [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, 1, 4])],
                     [numpy_helper.from_array(rng.standard_normal((1, 12, 3)).astype(np.float32), "W"),
                      numpy_helper.from_array(rng.standard_normal((1, 12, 4)).astype(np.float32), "R"),
                      numpy_helper.from_array(np.zeros((1, 1, 4), np.float32), "h0")])
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match="'gru' \\(GRU\\).*initial state 'h0'"):
        create("set-batch", size="2", inputs=["X:1"]).run(m)
    assert m.to_bytes() == before


def test_a_slice_of_a_merged_batch_short_of_the_end_is_refused():
    """[1, 4, 6] -> [4, 6] merges the batch into the rows: a slice to row 4 keeps every sample at
    batch 1 but only the first sample at batch 3."""
    proto = model_of([helper.make_node("Reshape", ["x", "t1"], ["a"], name="merge"),
                      helper.make_node("Slice", ["a", "s", "e", "ax"], ["y"], name="rows")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                     [numpy_helper.from_array(np.array([4, 6], np.int64), "t1"),
                      numpy_helper.from_array(np.array([0], np.int64), "s"),
                      numpy_helper.from_array(np.array([4], np.int64), "e"),
                      numpy_helper.from_array(np.array([0], np.int64), "ax")])
    m = gs.load(proto)
    with pytest.raises(PassError, match="'rows' \\(Slice\\) loses the batch"):
        create("set-batch", size="4").run(m)


def _one(node, x_dims, extra_inputs=(), inits=(), outputs=("y",), opset=22, domains=()):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims), *extra_inputs],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *domains], ir_version=10)


@pytest.mark.parametrize("node,why", [
    (helper.make_node("EyeLike", ["x"], ["y"], name="eye"), "'eye' \\(EyeLike\\) loses the batch"),
    (helper.make_node("Trilu", ["x"], ["y"], name="tri"), "'tri' \\(Trilu\\) loses the batch"),
    (helper.make_node("CumProd", ["x", "zero"], ["y"], name="cum"), "'cum' \\(CumProd\\) loses the batch"),
    (helper.make_node("RMSNormalization", ["x", "scale"], ["y"], name="rms", axis=0), "'rms' \\(RMSNormalization\\) loses"),
    (helper.make_node("MaxPool", ["x"], ["y", "idx"], name="pool", kernel_shape=[2]),
     "'pool' \\(MaxPool\\) loses the batch: its indices"),
])
def test_ops_that_read_the_position_in_the_batch_are_refused(node, why):
    """The operator-test sweep found these written 'successfully' with results that differ from
    per-sample runs: a triangle or an identity over the batch axis, a running product, RMS
    normalization over it, MaxPool indices that count across samples."""
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.ones([4], np.float32), "scale")]
    proto = _one(node, [3, 4] if node.op_type != "MaxPool" else [3, 1, 4], inits=inits,
                 outputs=[o for o in node.output])
    if node.op_type == "RMSNormalization":
        proto.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.ones([3, 4], np.float32), "scale"))
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(PassError, match=why):
        create("set-batch", size="2").run(m)
    assert m.to_bytes() == before


def test_a_custom_domain_op_keeps_the_batch_inference_finds():
    """A node of another domain (ai.onnx.ml) passes the batch where shape inference puts it; the
    batch of its output was dropped, and its outputs' batch axes went unreported."""
    node = helper.make_node("Binarizer", ["x"], ["y"], name="bin", domain="ai.onnx.ml", threshold=0.0)
    proto = _one(node, [3, 4], domains=[helper.make_opsetid("ai.onnx.ml", 3)], opset=17)
    m = gs.load(proto)
    r = create("set-batch", size="2").run(m)
    assert r.details["output_axes"] == {"y": [0]}


def test_an_expand_to_a_shape_given_at_run_time_is_refused():
    """Expand(data[3, 1], new_shape) with new_shape a graph input: the shape fed at run time may
    hold the old batch ([3, 4]); set-batch wrote a model onnxruntime could not run."""
    proto = model_of([helper.make_node("Expand", ["x", "new_shape"], ["y"], name="expand")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1]),
                      helper.make_tensor_value_info("new_shape", TensorProto.INT64, [2])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])])
    m = gs.load(proto)
    with pytest.raises(PassError, match="'expand' \\(Expand\\).*graph input 'new_shape'"):
        create("set-batch", size="2").run(m)


def test_cast_like_takes_no_batch_from_its_type_donor():
    proto = model_of([helper.make_node("CastLike", ["x", "like"], ["y"], name="cast")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 1]),
                      helper.make_tensor_value_info("like", TensorProto.INT64, ["n"])],
                     [helper.make_tensor_value_info("y", TensorProto.INT64, [7, 1])])
    m = gs.load(proto)
    with pytest.raises(PassError, match="'cast' \\(CastLike\\).*parameter 'like'"):
        create("set-batch", size="2", inputs=["like"]).run(m)


def test_a_second_run_changes_nothing_when_the_batch_already_has_that_size():
    # after set-batch(size=2) the new size also stands where other dims were 2 already (GRU
    # weights, MatMul operands, OneHot depth); a second run must see the batch is set, not refuse
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    wanted = {"test_gru_batchwise", "test_matmul_bcast", "test_onehot_without_axis", "test_gather_2d_indices",
              "test_instancenorm_example"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = [c for c in collect_testcases() if c.name in wanted]
    assert {c.name for c in cases} == wanted
    for case in cases:
        m = gs.load(case.model.SerializeToString())
        first = create("set-batch", size="2").run(m)
        assert first.changed, case.name
        once = m.to_bytes()
        again = create("set-batch", size="2").run(m)
        assert not again.changed and m.to_bytes() == once, case.name
        assert "already 2" in again.skipped[0], case.name


def test_an_empty_input_is_no_batch_carrier():
    # CastLike's type donor declared [0] (an empty tensor): 0 is a size, not a free batch dim
    g = helper.make_graph([helper.make_node("CastLike", ["x", "like"], ["y"], name="cast")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [3, 4]),
                           helper.make_tensor_value_info("like", TensorProto.FLOAT, [0])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)], ir_version=9))
    create("set-batch", size="2").run(m)
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.proto.graph.input}
    assert dims == {"x": [2, 4], "like": [0]}


def heads_model(batch_first=True):
    """x [N, 2, S, 4] -> [N * 2, S, 4] (the target Mul(Shape(x)[0], 2), Shape(x)[2], 4) -> MatMul
    -> back to [N, 2, S, 4]: PyTorch's attention folding the heads into the batch."""
    rng = np.random.default_rng(0)
    c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.int64)))
    parts = ["bh", "s", "four"] if batch_first else ["s", "bh", "four"]
    nodes = [c("i0", [0]), c("i1", [1]), c("i2", [2]), c("i3", [3]), c("two", [2]), c("four", [4]),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape", "i0", "i1"], ["b"]),
             helper.make_node("Mul", ["b", "two"], ["bh"], name="heads"),
             helper.make_node("Slice", ["shape", "i2", "i3"], ["s"]),
             helper.make_node("Concat", parts, ["t"], axis=0),
             helper.make_node("Reshape", ["x", "t"], ["a"], name="fold"),
             helper.make_node("MatMul", ["a", "w"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["y"], name="unfold")]
    return model_of(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "S", 4])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "S", 4])],
                    [numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")])


def test_a_target_that_multiplies_the_batch_by_the_heads_merges_it_per_sample():
    m = gs.load(heads_model())
    original = m.to_bytes()
    create("set-batch", size="4").run(m)
    m.check()
    x = np.random.default_rng(1).standard_normal((4, 2, 5, 4)).astype(np.float32)
    assert np.allclose(run_ort(m.proto, {"x": x})["y"], per_sample(original, {"x": x})["y"], rtol=1e-6, atol=1e-6)


def test_a_target_that_puts_the_batch_times_heads_behind_another_dim_is_refused():
    m = gs.load(heads_model(batch_first=False))
    before = m.to_bytes()
    with pytest.raises(PassError, match="'fold' \\(Reshape\\)"):
        create("set-batch", size="4").run(m)
    assert m.to_bytes() == before
