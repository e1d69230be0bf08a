"""The pass framework and each pass on hand-built graphs: exact structure, idempotence,
refusals with clear errors."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import PASSES, Pass, PassError, Pipeline, create, describe_all, parse
from graphsurgery.verify import VerificationError
from conftest import assert_close, if_model, run_ort, tiny_chain


def model_of(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def vi(name, dtype=TensorProto.FLOAT, shape=(2,)):
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


# ---- framework ---------------------------------------------------------------------------
def test_parse_pipeline_text():
    assert parse("freeze-inputs(sr=16000),fold-constants,remove-if,cleanup") == [
        ("freeze-inputs", {"sr": "16000"}), ("fold-constants", {}), ("remove-if", {}), ("cleanup", {})]
    assert parse("debug-outputs(names=a;b, first=3)") == [("debug-outputs", {"names": "a;b", "first": "3"})]
    assert parse("freeze-inputs(v=[1,2])") == [("freeze-inputs", {"v": "[1,2]"})]
    with pytest.raises(PassError, match="unbalanced"):
        parse("remove-if(fold=true")
    with pytest.raises(PassError, match="key=value"):
        parse("remove-if(fold)")


def test_registry_lists_every_pass_with_docs():
    info = {p["name"]: p for p in describe_all()}
    for name in ["freeze-inputs", "set-shape", "fold-constants", "remove-if", "cleanup", "prelu-to-relu",
                 "fix-prelu-slope", "instancenorm-epsilon", "debug-outputs"]:
        assert name in info and info[name]["summary"] and len(info[name]["doc"]) > 80
    assert set(info) == set(PASSES)
    with pytest.raises(PassError, match="did you mean .remove-if."):
        create("remove-iff")
    with pytest.raises(PassError, match="unknown option"):
        create("remove-if", fld="true")
    with pytest.raises(PassError, match="fold='maybe': expected true or false"):
        create("remove-if", fold="maybe")


def test_proto_in_proto_out_and_model_in_model_out():
    proto = if_model()
    out = Pipeline.from_text("freeze-inputs(cond=true),remove-if")(proto)
    assert isinstance(out, onnx.ModelProto) and not [n for n in out.graph.node if n.op_type == "If"]
    m = gs.load(if_model())
    assert isinstance(create("cleanup")(m), gs.Model)


class BreakOneNode(Pass):
    """Test-only: turns the first Relu into a Sigmoid."""

    name = "break-one-node"

    def apply(self, model, result):
        for n in model.find_nodes("Relu")[:1]:
            n.op_type = "Sigmoid"
            result.note(f"broke {n.name!r}")


def test_verification_names_the_pass_that_drifts():
    m = gs.load(tiny_chain())
    with pytest.raises(VerificationError, match="pass break-one-node changed the outputs") as err:
        Pipeline([create("cleanup"), BreakOneNode(), create("cleanup")], verify=True).run(m)
    assert err.value.report[0].name == "y" and not err.value.report[0].ok


def test_verification_passes_and_reports_per_output():
    m = gs.load(if_model())
    res = Pipeline.from_text("freeze-inputs(cond=true),remove-if,cleanup", verify=True,
                             inputs={"x": np.array([1, 2], np.float32), "cond": np.array(True)}).run(m)
    assert [name for name, _ in res.verification] == ["freeze-inputs(cond=true)", "remove-if", "cleanup"]
    assert all(d.ok and d.max_abs == 0 for _, rep in res.verification for d in rep)


class TouchesMetadata(Pass):
    name = "touches-metadata"

    def apply(self, model, result):
        model.set_metadata("k", "changed")


def test_fidelity_guard_catches_a_pass_changing_what_it_does_not_own():
    with pytest.raises(PassError, match="changed metadata_props"):
        TouchesMetadata().run(gs.load(tiny_chain()))


# ---- freeze-inputs / set-shape ----------------------------------------------------------------
def test_freeze_inputs_typed_and_idempotent():
    m = gs.load(if_model())
    r = create("freeze-inputs", cond="false").run(m)
    assert r.changed and m.graph.input_names == ["x"]
    assert m.graph.initializer("cond").dtype == np.bool_ and m.graph.initializer("cond").shape == ()
    assert not create("freeze-inputs", cond="false").run(m).changed
    with pytest.raises(gs.NotFoundError, match="did you mean 'x'"):
        create("freeze-inputs", xx="1").run(m)
    with pytest.raises(PassError, match="has shape \\[2\\]; value \\[1, 2, 3\\] has 3 element"):
        create("freeze-inputs", x="[1,2,3]").run(gs.load(if_model()))


def test_set_shape():
    m = gs.load(tiny_chain())
    r = create("set-shape", x="2x3x4x4").run(m)
    assert r.changed and m.graph.tensor("x").shape == [2, 3, 4, 4]
    assert not create("set-shape", x="2x3x4x4").run(m).changed
    with pytest.raises(PassError, match="dim 0 of input 'x' is fixed at 2.*set-batch"):
        create("set-shape", x="Nx3x4x4").run(m)
    with pytest.raises(PassError, match="rank 4"):
        create("set-shape", x="1x512").run(m)


# ---- fold-constants ----------------------------------------------------------------------
def test_fold_constants_shape_glue_and_size_limit():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["b"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["b", "zero1"], ["b1"], name="unsq"),
        helper.make_node("Concat", ["b1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
        helper.make_node("ConstantOfShape", ["big_shape"], ["big"], name="cos",
                         value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("RandomUniform", [], ["rnd"], name="rnd", shape=[2], dtype=1),
        helper.make_node("ReduceSum", ["big"], ["bs"], name="sum", keepdims=0),
        helper.make_node("Add", ["bs", "rnd"], ["z"], name="add"),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "zero1"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array([1024, 1024], np.int64), "big_shape")]
    m = gs.load(model_of(nodes, [vi("x", shape=(3, 4, 5))], [vi("y", shape=(3, 20)), vi("z", shape=(2,))], inits))
    r = create("fold-constants").run(m)
    ops = [n.op_type for n in m.graph.nodes]
    assert ops == ["Reshape", "ConstantOfShape", "RandomUniform", "ReduceSum", "Add"], ops
    assert m.graph.initializer("target").tolist() == [3, -1]
    assert any("ConstantOfShape 'cos'" in s and "grow the model" in s for s in r.skipped)
    assert not create("fold-constants").run(m).changed
    m.check()


# ---- remove-if -------------------------------------------------------------------------------
def test_remove_if_keeps_branch_moves_initializers_and_output_names():
    m = gs.load(if_model())
    res = Pipeline.from_text("freeze-inputs(cond=true),remove-if,cleanup").run(m)
    assert res.results[1].details["branches"] == [{"node": "if", "graph": "main graph", "kept": "then_branch"}]
    assert [n.op_type for n in m.graph.nodes] == ["Mul"]
    assert m.graph.node("t_mul").outputs == ("y",)
    assert m.graph.initializer("two").tolist() == [2, 2]
    out = run_ort(m.proto, {"x": np.array([1, 2], np.float32)})
    assert out["y"].tolist() == [2, 4]
    assert not create("remove-if").run(m).changed


def test_remove_if_branch_returning_outer_value_and_own_initializer():
    then_g = helper.make_graph([], "then", [], [vi("x")])  # returns the outer input directly
    else_g = helper.make_graph([], "else", [], [vi("k")], [numpy_helper.from_array(np.array([7, 8], np.float32),
                                                                                      "k")])
    nodes = [helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g),
             helper.make_node("Neg", ["y"], ["z"], name="neg")]
    for flag, expected in ((True, [-1, -2]), (False, [-7, -8])):
        m = gs.load(model_of(nodes, [vi("x"), vi("c", TensorProto.BOOL, ())], [vi("z"), vi("y")]))
        Pipeline.from_text(f"freeze-inputs(c={str(flag).lower()}),remove-if,cleanup").run(m)
        assert not m.find_nodes("If")
        assert m.graph.output_names == ["z", "y"]
        m.check()
        out = run_ort(m.proto, {"x": np.array([1, 2], np.float32)})
        assert out["z"].tolist() == expected and out["y"].tolist() == [-v for v in expected]


def test_remove_if_renames_colliding_branch_names_and_handles_nesting():
    inner_then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["tmp"], name="inner_add")], "it", [],
                                   [vi("tmp")])
    inner_else = helper.make_graph([helper.make_node("Sub", ["x", "x"], ["tmp_e"], name="inner_sub")], "ie", [],
                                   [vi("tmp_e")])
    outer_then = helper.make_graph([
        helper.make_node("Neg", ["x"], ["tmp_outer"], name="neg_in_branch"),
        helper.make_node("If", ["c2"], ["inner_out"], name="inner_if", then_branch=inner_then,
                         else_branch=inner_else),
        helper.make_node("Add", ["inner_out", "tmp_outer"], ["b_out"], name="branch_add")], "ot", [], [vi("b_out")])
    outer_else = helper.make_graph([helper.make_node("Identity", ["x"], ["e_out"])], "oe", [], [vi("e_out")])
    nodes = [helper.make_node("Relu", ["x"], ["tmp_outer_main"], name="relu"),
             helper.make_node("If", ["c1"], ["y"], name="outer_if", then_branch=outer_then, else_branch=outer_else),
             helper.make_node("Add", ["y", "tmp_outer_main"], ["z"], name="final")]
    proto = model_of(nodes, [vi("x"), vi("c1", TensorProto.BOOL, ()), vi("c2", TensorProto.BOOL, ())], [vi("z")])
    # make a branch-internal name collide with a main-graph name
    proto.graph.node[0].output[0] = "tmp_outer"
    proto.graph.node[2].input[1] = "tmp_outer"
    m = gs.load(proto)
    r = Pipeline.from_text("freeze-inputs(c1=true,c2=true),remove-if,cleanup").run(m)
    assert not m.find_nodes("If")
    assert [(b["node"], b["kept"]) for b in r.results[1].details["branches"]] == [
        ("outer_if", "then_branch"), ("inner_if", "then_branch")]
    m.check()
    x = np.array([1, -2], np.float32)
    out = run_ort(m.proto, {"x": x})
    assert out["z"].tolist() == ((x + x) + (-x) + np.maximum(x, 0)).tolist()


def test_remove_if_leaves_data_dependent_conditions_and_says_why():
    m = gs.load(if_model())
    r = create("remove-if").run(m)
    assert not r.changed and any("not constant" in s for s in r.skipped)


# ---- prelu / instancenorm ----------------------------------------------------------------------
@pytest.mark.parametrize("slope", [np.array([0.25], np.float32), np.array([0.1, 0.2, 0.3], np.float32).reshape(3, 1, 1),
                                   np.random.default_rng(0).uniform(0, 1, (1, 3, 2, 2)).astype(np.float32)],
                         ids=["scalar", "per-channel", "full"])
def test_prelu_to_relu_same_values(slope):
    nodes = [helper.make_node("PRelu", ["x", "slope"], ["y"], name="p")]
    proto = model_of(nodes, [vi("x", shape=(1, 3, 2, 2))], [vi("y", shape=(1, 3, 2, 2))],
                     [numpy_helper.from_array(slope, "slope")])
    x = np.random.default_rng(1).standard_normal((1, 3, 2, 2)).astype(np.float32)
    expected = run_ort(proto, {"x": x})
    m = gs.load(proto)
    r = create("prelu-to-relu").run(m)
    assert [n.op_type for n in m.graph.nodes] == ["Relu", "Neg", "Relu", "Mul", "Sub"]
    assert m.graph.producer("y").op_type == "Sub" and r.details["rewritten"] == 1
    assert_close(run_ort(m.proto, {"x": x}), expected)
    assert not create("prelu-to-relu").run(m).changed


def test_prelu_to_relu_computed_slope():
    nodes = [helper.make_node("Sigmoid", ["s_in"], ["slope"], name="sig"),
             helper.make_node("PRelu", ["x", "slope"], ["y"], name="p")]
    proto = model_of(nodes, [vi("x", shape=(2, 3)), vi("s_in", shape=(3,))], [vi("y", shape=(2, 3))])
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32),
             "s_in": np.array([0.0, 1.0, -1.0], np.float32)}
    expected = run_ort(proto, feeds)
    m = gs.load(proto)
    create("prelu-to-relu").run(m)
    assert_close(run_ort(m.proto, feeds), expected)


def test_fix_prelu_slope_proves_the_channel_axis():
    slope = numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "slope")
    ok = model_of([helper.make_node("PRelu", ["x", "slope"], ["y"], name="p")], [vi("x", shape=(1, 3, 4, 5))],
                  [vi("y", shape=(1, 3, 4, 5))], [slope])
    m = gs.load(ok)
    r = create("fix-prelu-slope").run(m)
    assert m.graph.initializer("slope").shape == (3, 1, 1) and r.changed
    assert not create("fix-prelu-slope").run(m).changed
    ambiguous = model_of([helper.make_node("PRelu", ["x", "slope"], ["y"], name="p")], [vi("x", shape=(1, 3, 4, 3))],
                         [vi("y", shape=(1, 3, 4, 3))], [slope])
    before = ambiguous.SerializeToString()
    with pytest.raises(PassError, match="'p'.*axis=1"):  # W == C and nothing else tells: refuse
        create("fix-prelu-slope").run(ambiguous)
    assert ambiguous.SerializeToString() == before
    unknown = model_of([helper.make_node("PRelu", ["x", "slope"], ["y"], name="p")], [vi("x", shape=None)],
                       [vi("y", shape=None)], [slope])
    r = create("fix-prelu-slope").run(gs.load(unknown))
    assert not r.changed and "set-shape" in r.skipped[0]


def test_instancenorm_epsilon_filters_and_reports():
    def inorm(name, eps):
        return helper.make_node("InstanceNormalization", ["x", "s", "b"], [name], name=name, epsilon=eps)
    proto = model_of([inorm("enc/in1", 1e-9), inorm("dec/in1", 1e-3)], [vi("x", shape=(1, 2, 3, 3))],
                     [vi("enc/in1", shape=(1, 2, 3, 3)), vi("dec/in1", shape=(1, 2, 3, 3))],
                     [numpy_helper.from_array(np.ones(2, np.float32), "s"),
                      numpy_helper.from_array(np.zeros(2, np.float32), "b")])
    m = gs.load(proto)
    r = create("instancenorm-epsilon", epsilon="1e-5", below="1e-6").run(m)
    assert list(r.details["epsilon"]) == ["enc/in1"] and "1e-09 -> 1e-05" in r.changes[0]
    r = create("instancenorm-epsilon", epsilon="0.01", pattern="dec/*").run(m)
    assert list(r.details["epsilon"]) == ["dec/in1"]
    assert not create("instancenorm-epsilon", epsilon="0.01", pattern="dec/*").run(m).changed
    with pytest.raises(PassError, match="needs epsilon"):
        create("instancenorm-epsilon").run(m)


# ---- debug-outputs --------------------------------------------------------------------------
def test_debug_outputs_main_graph_keeps_existing_outputs_first():
    m = gs.load(tiny_chain())
    r = create("debug-outputs").run(m)
    assert m.graph.output_names == ["y", "c", "r"]
    assert r.details["outputs"] == {"c": "c", "r": "r"}
    out = run_ort(m.proto, {"x": np.ones((1, 3, 4, 4), np.float32)})
    assert np.allclose(out["y"], out["r"] + np.arange(2).reshape(1, 2, 1, 1))
    assert not create("debug-outputs").run(m).changed
    m2 = gs.load(tiny_chain())
    create("debug-outputs", op_types="Relu").run(m2)
    assert m2.graph.output_names == ["y", "r"]
    with pytest.raises(gs.NotFoundError, match="did you mean 'r'"):
        create("debug-outputs", names="rr").run(gs.load(tiny_chain()))


def test_debug_outputs_threads_out_of_if_loop_and_scan():
    # If: then computes t = x * 2 inside; Loop: body computes s = acc + x each step; Scan: running sum
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t_in"], name="t_mul"),
                                helper.make_node("Neg", ["t_in"], ["t_out"], name="t_neg")], "then", [], [vi("t_out")],
                               [numpy_helper.from_array(np.array([2, 2], np.float32), "two")])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e_out"])], "else", [], [vi("e_out")])
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["s"], name="loop_add"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop_cond"),
         helper.make_node("Identity", ["s"], ["acc_out"], name="loop_acc")], "body",
        [vi("iter", TensorProto.INT64, ()), vi("cond_in", TensorProto.BOOL, ()), vi("acc_in")],
        [vi("cond_out", TensorProto.BOOL, ()), vi("acc_out")])
    scan_body = helper.make_graph(
        [helper.make_node("Add", ["st_in", "elem"], ["st_new"], name="scan_add"),
         helper.make_node("Mul", ["st_new", "st_new"], ["sq"], name="scan_sq"),
         helper.make_node("Identity", ["st_new"], ["st_out"], name="scan_id")], "scan_body",
        [vi("st_in", shape=(2,)), vi("elem", shape=(2,))], [vi("st_out", shape=(2,))])
    nodes = [
        helper.make_node("If", ["c"], ["y_if"], name="if", then_branch=then_g, else_branch=else_g),
        helper.make_node("Loop", ["trip", "", "zeros"], ["y_loop"], name="loop", body=body),
        helper.make_node("Scan", ["zeros", "seq"], ["y_scan"], name="scan", body=scan_body, num_scan_inputs=1),
    ]
    inits = [numpy_helper.from_array(np.array(3, np.int64), "trip"),
             numpy_helper.from_array(np.zeros(2, np.float32), "zeros")]
    proto = model_of(nodes, [vi("x"), vi("c", TensorProto.BOOL, ()), vi("seq", shape=(3, 2))],
                     [vi("y_if"), vi("y_loop"), vi("y_scan")], inits)
    m = gs.load(proto)
    r = create("debug-outputs", names="t_in;s;sq").run(m)
    carried = r.details["outputs"]
    assert set(carried) == {"t_in", "s", "sq"}
    m.check()
    x = np.array([1, 2], np.float32)
    seq = np.arange(6, dtype=np.float32).reshape(3, 2)
    for flag in (True, False):
        out = run_ort(m.proto, {"x": x, "c": np.array(flag), "seq": seq})
        assert out["y_if"].tolist() == (-(x * 2)).tolist() if flag else x.tolist()
        assert out[carried["t_in"]].tolist() == ((x * 2).tolist() if flag else [])
        assert out[carried["s"]].tolist() == [(x * k).tolist() for k in (1, 2, 3)]  # one row per iteration
        running = np.cumsum(seq, axis=0)
        assert out[carried["sq"]].tolist() == (running * running).tolist()
        assert out["y_loop"].tolist() == (3 * x).tolist()
