"""Every pass over a sample of onnx's operator test models: no defect (scripts/sweep.py runs them all)."""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import random

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphsurgery as gs
from graphsurgery.passes import PASSES, Pass, PassError, create

ROOT = pathlib.Path(__file__).resolve().parent.parent


@functools.cache
def sweep_module():
    """scripts/sweep.py as a module (loaded once per process; other tests sweep with it too)."""
    spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "scripts" / "sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Models chosen for what breaks passes: control flow (If, Loop, Scan), sequences and optionals
# in and out of control flow, function-expanded graphs (ranks shape inference cannot tell),
# float16, NaN and infinity inputs, IR < 4 models (initializers must stay inputs), batch-sensitive
# ops, training-mode BatchNormalization (writes into its inputs), PRelu, InstanceNormalization.
CHOSEN = [
    "test_if", "test_if_seq", "test_if_opt", "test_loop11", "test_loop13_seq", "test_loop16_seq_none",
    "test_scan_sum", "test_scan9_sum", "test_sequence_insert_at_back", "test_split_to_sequence_1",
    "test_sequence_map_add_2_sequences", "test_sequence_map_add_2_sequences_expanded",
    "test_optional_get_element_optional_tensor", "test_optional_has_element_empty_optional_input",
    "test_identity_opt", "test_affine_grid_2d_expanded", "test_reduce_log_sum_default_expanded",
    "test_layer_normalization_2d_axis0_expanded", "test_softmax_axis_0_expanded", "test_attention_4d_fp16",
    "test_cast_FLOAT_to_FLOAT16", "test_isinf_float16", "test_isnan", "test_and2d", "test_ai_onnx_ml_binarizer",
    "test_convtranspose", "test_reversesequence_batch", "test_batchnorm_example_training_mode",
    "test_prelu_example", "test_instancenorm_example", "test_conv_with_strides_padding", "test_range_float_type_positive_delta_expanded",
]
SAMPLE, SEED = 8, 9  # plus a seeded sample of the rest, so the set drifts over the whole suite in time


def _function_model() -> onnx.ModelProto:
    """A model whose main graph calls a model-local function (no operator test model has one)."""
    fn = helper.make_function("local", "AddRelu", ["a", "b"], ["y"],
                              [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
                              [helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("AddRelu", ["m", "x"], ["r"], domain="local"),
         helper.make_node("Neg", ["r"], ["out"])],
        "with_function", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                             functions=[fn], ir_version=9)


def test_sampled_sweep_finds_no_defect(tmp_path):
    sweep = sweep_module()
    everything = sweep.list_models(True, [])
    chosen = [f"node:{n}" for n in CHOSEN]
    missing = [m for m in chosen if m not in everything]
    assert not missing, f"operator test models not found: {missing}"
    rest = sorted(set(everything) - set(chosen))
    onnx.save(_function_model(), str(tmp_path / "with_function.onnx"))
    models = chosen + random.Random(SEED).sample(rest, SAMPLE) + sweep.list_models(False, [str(tmp_path)])
    passes = list(PASSES) + sweep.VARIANTS
    records, baselines = sweep.drive(models, passes, jobs=2, timeout=60)
    assert len(records) == len(models) * len(passes)
    assert all(b.get("runs") for m, b in baselines.items() if m.endswith("with_function.onnx"))
    defects = sweep.defect_lines(records)
    assert not defects, f"{len(defects)} defect(s) in {len(records)} runs:\n" + "\n".join(defects)


class _Broken(Pass):
    """Stands in for a registered pass, to see the sweep classify what a faulty pass does."""

    free_options = True
    how = ""

    def apply(self, model, result):
        g = model.graph
        node = g.nodes[0]
        if self.how == "wrong":  # a silent wrong result: y = x * 1.5 instead of the op
            scale = g.unique_name("scale")
            g.set_initializer(scale, np.float32(1.5))
            g.replace_node(node, [helper.make_node("Mul", [node.inputs[0], scale], [node.outputs[0]])])
        elif self.how == "crash":
            raise KeyError("boom")
        elif self.how == "dirty":
            node.proto.name = "renamed before refusing"
            raise PassError("refused, but too late")
        elif self.how == "again":  # one more output on every run
            out = g.proto.output[0]
            copy = g.unique_name("copy")
            g.add_node(helper.make_node("Identity", [out.name], [copy]))
            g.add_output(copy, out.type.tensor_type.elem_type, [d.dim_value for d in out.type.tensor_type.shape.dim])
        elif self.how == "invalid":  # an attribute the operator does not have
            node.proto.attribute.append(helper.make_attribute("no_such_attribute", 1))
        elif self.how == "grow":  # an initializer nothing reads, added once: valid, equal, idempotent
            if "unused" not in g.initializers:
                g.set_initializer("unused", np.zeros(64, np.float32))
        result.note(self.how)


@pytest.mark.parametrize("how, expected", [("wrong", "outputs differ"), ("crash", "crashed"),
                                           ("dirty", "refused dirty"), ("again", "not idempotent"),
                                           ("invalid", "checker-invalid"), ("grow", "grew")])
def test_sweep_classifies_a_faulty_pass(monkeypatch, how, expected):
    sweep = sweep_module()
    base = sweep.Baseline("node:test_relu")
    assert base.runs and base.checker is None
    name = "fold-constants" if how == "grow" else "cleanup"  # fold-constants promises no growth
    monkeypatch.setitem(PASSES, name, type("Broken", (_Broken,), {"name": name, "how": how}))
    rec = sweep.run_one(name, base)
    assert rec["class"] == expected, rec
    if how == "grow":  # a pass that promises nothing about size may add it
        monkeypatch.setitem(PASSES, "cleanup", type("Broken", (_Broken,), {"name": "cleanup", "how": how}))
        assert sweep.run_one("cleanup", base)["class"] == "changed"


def test_sweep_runs_convert_opset_down_and_up():
    sweep = sweep_module()
    base = sweep.Baseline("node:test_relu")
    ver = next(o.version for o in base.proto.opset_import if o.domain in ("", "ai.onnx"))
    assert sweep.options_for("convert-opset", base.proto, base.feeds) == {"version": ver + 1}
    assert sweep.options_for("convert-opset:-2", base.proto, base.feeds) == {"version": ver - 2}
    assert sweep.known_name("convert-opset:+2", PASSES) and not sweep.known_name("convert-opset:0", PASSES)
    assert not sweep.known_name("fold-constants:-1", PASSES)
    assert sweep.run_one("convert-opset:-1", base)["class"] in ("changed", "refused")


def test_sweep_classifies_a_refusal_a_change_and_a_wrong_output():
    """The sweep's own oracle: a correct change passes, a refusal is no defect, wrong numbers are."""
    sweep = sweep_module()
    base = sweep.Baseline("node:test_instancenorm_example")
    assert base.runs
    assert sweep.run_one("instancenorm-epsilon", base)["class"] == "changed"
    assert sweep.run_one("set-batch", base)["class"] in ("changed", "refused")
    assert sweep.compare(np.float32([1.0, 2.0]), np.float32([1.0, 2.0 + 1e-6])) is None  # scale-relative
    assert sweep.compare(np.float32([1.0, 2.0]), np.float32([1.0, 2.1]))[0] == "differ"
    assert sweep.compare(np.float16([1000.0]), np.float16([1000.5]))[0] == "fp16"  # one unit in the last place
    assert sweep.compare(np.float16([1000.0]), np.float16([1010.0]))[0] == "differ"
    assert sweep.compare([np.int64([1])], [np.int64([2])])[0] == "differ"
    assert sweep.compare(np.float32([np.nan]), np.float32([0.0]))[0] == "differ"


def test_a_dying_or_hanging_worker_is_recorded_and_the_sweep_goes_on(monkeypatch):
    sweep = sweep_module()
    models = ["node:test_relu", "node:test_neg"]
    monkeypatch.setenv("SWEEP_DIE_ON", "cleanup@node:test_relu")
    records, _ = sweep.drive(models, ["eliminate-noops", "cleanup", "rename-io"], jobs=1, timeout=60)
    by = {(r["model"], r["pass"]): r for r in records}
    assert len(records) == 6
    assert by[("node:test_relu", "cleanup")]["class"] == "crashed"
    assert "worker died (exit code 3)" in by[("node:test_relu", "cleanup")]["error"]
    assert by[("node:test_relu", "rename-io")]["class"] == "changed"  # the rest of that model still ran
    assert all(r["class"] != "crashed" for k, r in by.items() if k != ("node:test_relu", "cleanup"))
    monkeypatch.delenv("SWEEP_DIE_ON")
    records, baselines = sweep.drive(models[:1], ["cleanup", "rename-io"], jobs=1, timeout=0.001)
    assert [r["class"] for r in records] == ["crashed", "crashed"]
    assert all("timeout" in r["error"] for r in records)


# ---- cut: a new output or input needs a rank; a refusal changes nothing ------------------------
def _reshape_by_input_model() -> onnx.ModelProto:
    """``r = Reshape(x, shape)`` with ``shape`` a graph input: shape inference cannot tell r's rank."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Reshape", ["a", "shape"], ["r"]),
         helper.make_node("Abs", ["r"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
              helper.make_tensor_value_info("shape", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cut_refuses_an_output_of_unknown_rank_and_changes_nothing():
    m = gs.load(_reshape_by_input_model())
    before = m.to_bytes()
    with pytest.raises(PassError, match=r"rank of 'r' is unknown"):
        create("cut", outputs="r").run(m)
    assert m.to_bytes() == before
    # one good output and one of unknown rank: still nothing changes
    with pytest.raises(PassError, match=r"rank of 'r' is unknown"):
        create("cut", outputs="a;r").run(m)
    assert m.to_bytes() == before
    # an input of unknown rank is refused before the outputs are touched
    with pytest.raises(PassError, match=r"rank of 'r' is unknown"):
        create("cut", inputs="r", outputs="y").run(m)
    assert m.to_bytes() == before
    # a tensor of known rank cuts to a checker-valid model
    create("cut", outputs="a").run(m)
    assert m.graph.output_names == ["a"]
    onnx.checker.check_model(m.proto, full_check=True)


# ---- fuse-conv-bn: only statistics with one value per output channel fold into the weights ----
def _conv_bn_per_element_model() -> onnx.ModelProto:
    """Conv (one output channel) then BatchNormalization with spatial=0 (opset 7): statistics per
    element of the [1, 4, 4] feature map, not per channel."""
    rng = np.random.default_rng(0)
    stats = [helper.make_tensor(n, TensorProto.FLOAT, [1, 4, 4], v.ravel())
             for n, v in (("scale", rng.uniform(0.5, 2, 16)), ("bias", rng.uniform(-1, 1, 16)),
                          ("mean", rng.uniform(-1, 1, 16)), ("var", rng.uniform(0.5, 2, 16)))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
         helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn", spatial=0)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], rng.uniform(-1, 1, 9))] + stats)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)], ir_version=4)


def test_fuse_conv_bn_leaves_per_element_statistics_alone():
    onnx.checker.check_model(_conv_bn_per_element_model(), full_check=True)
    m = gs.load(_conv_bn_per_element_model())
    before = m.to_bytes()
    r = create("fuse-conv-bn").run(m)
    assert not r.changed and m.to_bytes() == before
    assert any("not one value per output channel" in s for s in r.skipped), r.skipped


# ---- fold-preprocessing: a per-channel constant lines up with axis 1 of the input, whatever its rank ----
def _normalised_conv3d(mean_shape) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    mean = rng.uniform(0.2, 0.8, mean_shape).astype(np.float32)
    w = rng.uniform(-1, 1, (4, 3, 1, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "mean"], ["s"]), helper.make_node("Conv", ["s", "w"], ["y"], name="conv")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3, 2, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 2, 1])],
        [helper.make_tensor("mean", TensorProto.FLOAT, mean.shape, mean.ravel()),
         helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("mean_shape, folds", [((3, 1, 1), False), ((1, 3, 1, 1, 1), True)])
def test_fold_preprocessing_reads_the_channel_axis_of_a_3d_conv_input(mean_shape, folds):
    """[3, 1, 1] against an NCDHW input subtracts along the depth, not the channels: no fold."""
    from conftest import run_ort

    proto = _normalised_conv3d(mean_shape)
    x = np.random.default_rng(2).random((1, 3, 3, 2, 1)).astype(np.float32)
    expected = run_ort(proto, {"x": x})["y"]
    m = gs.load(proto.SerializeToString())
    r = create("fold-preprocessing").run(m)
    assert r.changed == folds
    np.testing.assert_allclose(run_ort(m.proto, {"x": x})["y"], expected, rtol=1e-5, atol=1e-6)


# ---- eliminate-noops: initializers are duplicates only when their values are ----
def test_eliminate_noops_does_not_merge_initializers_that_differ_only_where_their_names_appear():
    """Initializers '1' = [49] and '2' = [50] (int32): each one's bytes with its own name's byte
    removed are the same, but their values are not."""
    from conftest import run_ort

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "1"], ["a"]), helper.make_node("Mul", ["a", "2"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1])],
        [onnx.numpy_helper.from_array(np.array([49], np.int32), "1"),
         onnx.numpy_helper.from_array(np.array([50], np.int32), "2")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([1], np.int32)
    m = gs.load(proto.SerializeToString())
    create("eliminate-noops").run(m)
    assert sorted(m.graph.initializers) == ["1", "2"]
    assert run_ort(m.proto, {"x": x})["y"].tolist() == [(1 + 49) * 50]


def test_eliminate_noops_keeps_two_training_mode_dropouts_apart():
    """Dropout in training mode draws its own mask: two on the same input are not duplicates."""
    graph = helper.make_graph(
        [helper.make_node("Dropout", ["x", "ratio", "train"], ["a"], name="d1"),
         helper.make_node("Dropout", ["x", "ratio", "train"], ["b"], name="d2"),
         helper.make_node("Sub", ["a", "b"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [onnx.numpy_helper.from_array(np.array(0.5, np.float32), "ratio"),
         onnx.numpy_helper.from_array(np.array(True), "train")])
    m = gs.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    create("eliminate-noops").run(m)
    assert [n.name for n in m.find_nodes("Dropout")] == ["d1", "d2"]


# ---- prelu-to-relu: Relu and Neg have no unsigned versions ----
def test_prelu_to_relu_leaves_an_unsigned_prelu_alone():
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"], name="p")],
        "g", [helper.make_tensor_value_info("x", TensorProto.UINT32, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.UINT32, [2, 3])],
        [onnx.numpy_helper.from_array(np.array([2], np.uint32), "slope")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    onnx.checker.check_model(proto, full_check=True)
    m = gs.load(proto.SerializeToString())
    before = m.to_bytes()
    r = create("prelu-to-relu").run(m)
    assert not r.changed and m.to_bytes() == before
    assert any("unsigned" in s for s in r.skipped)
    onnx.checker.check_model(m.proto, full_check=True)
