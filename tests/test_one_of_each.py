"""One of each: errors, required options, the comparator, the onnxruntime runner."""

import inspect

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import graphsurgery as gs
from graphsurgery import errors, verify
from graphsurgery.cli import main
from graphsurgery.debug import compare as debug_compare
from graphsurgery.passes import PassError, create, describe_all


def _model(nodes, inputs, outputs, inits=(), opset=17):
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                             opset_imports=[helper.make_opsetid("", opset)])


def test_every_error_class_lives_in_errors_and_is_exported():
    from graphsurgery import cli, passes
    from graphsurgery.passes import base

    classes = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors.__name__}
    assert {"PassError", "NotVerifiable", "VerificationError", "InputMismatch", "RuntimeFailure",
            "UsageError"} <= classes
    for name in classes:
        assert getattr(gs, name) is getattr(errors, name) and name in gs.__all__, name
        assert issubclass(getattr(errors, name), errors.GraphSurgeryError)
    # the old import paths name the same classes
    assert passes.PassError is base.PassError is gs.PassError
    assert verify.NotVerifiable is gs.NotVerifiable and verify.VerificationError is gs.VerificationError
    assert verify.InputMismatch is gs.InputMismatch and verify.RuntimeFailure is gs.RuntimeFailure
    assert cli.UsageError is gs.UsageError
    # and no public error class is defined anywhere else
    import pathlib
    import re

    root = pathlib.Path(gs.__file__).parent
    elsewhere = [f"{p.relative_to(root)}: {m}" for p in root.rglob("*.py") if p.name != "errors.py"
                 for m in re.findall(r"^class ([A-Z]\w*)\((?:\w+Error|\w*Exception|GraphSurgeryError)\)", p.read_text(), re.M)]
    # a failed match is a status the rewriter reports in its results, never raised to callers
    assert elsewhere == ["rewrite.py: MatchFailure"]


def test_did_you_mean_is_spelt_one_way():
    with pytest.raises(PassError) as pass_err:
        create("remove-iff")
    with pytest.raises(gs.NotFoundError) as node_err:
        gs.load(_model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])).graph.node("rleu")
    assert str(pass_err.value).endswith("; did you mean 'remove-if', 'rename-io'?")
    assert str(node_err.value).endswith("; did you mean 'relu'?")


@pytest.mark.parametrize("name, option", [("convert-opset", "version"), ("instancenorm-epsilon", "epsilon")])
def test_a_required_option_that_is_missing_is_refused_before_anything_runs(name, option):
    with pytest.raises(PassError) as exc:
        create(name)
    message = str(exc.value)
    assert "\n" not in message and f"option {option!r} is required" in message and message.startswith(name)
    info = {p["name"]: p for p in describe_all()}
    assert info[name]["options"][option]["required"] is True
    assert info["cut"]["options"]["outputs"]["required"] is False


def test_passes_command_shows_required_options(capsys):
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    assert "version=(required): the target opset" in out and "epsilon=(required)" in out


def test_debug_compare_measures_on_the_outputs_scale_even_with_infinities():
    """A reference holding an infinity still has a scale (its largest finite magnitude): a
    last-digit difference on 1000 is within tolerance, and max rel is relative to that scale,
    as --verify reports it."""
    m = _model([helper.make_node("Identity", ["x"], ["y"], name="id")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    x = np.array([np.inf, 1000.0, 0.001], np.float32)
    ref = {"y": np.array([np.inf, 1000.01, 0.0011], np.float32)}
    report = debug_compare(gs.load(m), ref, {"x": x}, backend="ort-noopt")
    row = report.outputs[0]
    assert row.ok and not report.bad
    expected = verify.compare(ref, {"y": x}, rtol=1e-4, atol=1e-5)[0]
    assert row.max_abs == pytest.approx(expected.max_abs) and row.max_rel == pytest.approx(expected.max_rel)
    assert row.max_rel == pytest.approx(0.01 / 1000, rel=1e-3)


def test_compare_takes_per_output_tolerances_and_names_misplaced_nans():
    e = {"a": np.array([1.0, 2.0]), "b": np.array([1.0, np.nan])}
    a = {"a": np.array([1.0, 2.01]), "b": np.array([np.nan, 1.0])}
    da, db = verify.compare(e, a, rtol={"a": 1e-2})
    assert da.ok and not db.ok and db.note == "NaNs differ"
    assert not verify.compare(e, a)[0].ok  # the default for outputs not named


def test_convert_opset_checks_without_weight_prepacking(monkeypatch):
    """convert-opset compares meaning, as --verify does: no graph optimizer, no pre-packing
    (which picks other kernels and changes last bits)."""
    seen = []
    real = onnxruntime.InferenceSession

    def spy(data, so=None, **kw):
        seen.append((_entries(so).get("session.disable_prepacking"), so.graph_optimization_level))
        return real(data, so, **kw)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.arange(16, dtype=np.float32))
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w], opset=16)
    assert create("convert-opset", version=17).run(m).changed
    assert len(seen) == 2
    assert all(p == "1" and level == onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL for p, level in seen)


def _entries(so):
    try:
        return {"session.disable_prepacking": so.get_session_config_entry("session.disable_prepacking")}
    except RuntimeError:  # not set
        return {}


def test_one_input_generator_makes_sequences_and_optionals():
    m = _model([helper.make_node("SequenceLength", ["s"], ["n"]), helper.make_node("OptionalHasElement", ["o"], ["h"])],
               [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, ["N", 3]),
                helper.make_value_info("o", helper.make_optional_type_proto(
                    helper.make_tensor_type_proto(TensorProto.INT64, [2])))],
               [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                helper.make_tensor_value_info("h", TensorProto.BOOL, [])], opset=18)
    with pytest.raises(gs.NotVerifiable, match="'s' is a sequence"):
        verify.make_inputs(m)
    feeds = verify.make_inputs(m, batch=2, containers=True)
    assert [a.shape for a in feeds["s"]] == [(2, 3), (2, 3)] and feeds["o"].dtype == np.int64
    from graphsurgery.runner import EXACT

    out = EXACT.run(m, feeds)
    assert verify.compare(out, out)[0].name == "n" and int(out["n"]) == 2 and bool(out["h"])


def test_onnxruntime_is_imported_in_one_module_only():
    import pathlib
    import re

    root = pathlib.Path(gs.__file__).parent
    importers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                       if re.search(r"^\s*(import onnxruntime|from onnxruntime)", p.read_text(), re.M))
    assert importers == ["runner.py"]


# ---- layers: passes and debugging do not import each other ----------------------------------------
def _imports(path):
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(path).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_passes_and_debugging_do_not_import_each_other():
    import pathlib

    def reaches(modules, package):
        return any(m.lstrip(".").removeprefix("graphsurgery.").split(".")[0] == package for m in modules)

    root = pathlib.Path(gs.__file__).parent
    for path in (root / "passes").glob("*.py"):
        assert not reaches(_imports(path), "debug"), path.name
    for name in ("capture.py", "expose.py", "runner.py", "verify.py"):
        assert not reaches(_imports(root / name), "passes") and not reaches(_imports(root / name), "debug"), name


# ---- the verifier knows no pass by name ------------------------------------------------------------
def test_a_pass_that_renames_an_input_says_so_and_given_arrays_follow(monkeypatch):
    from graphsurgery.passes import Pass, Pipeline
    from graphsurgery.runner import Runner

    class RenameX(Pass):
        """Test-only: renames input x to image, as a converter's own pass might."""

        name = "test-rename-x"

        def input_after(self, name, result):
            return "image" if name == "x" else name

        def feeds_before(self, feeds, before, after, result):
            return [{("x" if k == "image" else k): v for k, v in feeds.items()}]

        def reference(self, before, after, feeds, result, run):
            return run(before, self.feeds_before(feeds, None, after, result)[0])

        def apply(self, model, result):
            model.graph.rename("x", "image")
            result.note("x -> image")

    m = _model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    x = np.array([-3.5, 7.25], np.float32)
    seen = []
    real = Runner.run
    monkeypatch.setattr(Runner, "run", lambda self, model, feeds, **kw: seen.append(dict(feeds))
                        or real(self, model, feeds, **kw))
    res = Pipeline([RenameX()], verify=True, inputs={"x": x}).run(gs.load(m))
    assert all(d.ok for _, rep in res.verification for d in rep)
    assert any(np.array_equal(f.get("image"), x) for f in seen) and any(np.array_equal(f.get("x"), x) for f in seen)


def test_bisect_verifies_as_the_pipeline_does_given_inputs_included():
    """A given value for an input the pipeline freezes to another value is refused, as --verify
    refuses it, not silently dropped."""
    from graphsurgery.debug import bisect_pipeline

    m = _model([helper.make_node("Mul", ["x", "s"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    inputs = {"x": np.ones(2, np.float32), "s": np.array(3.0, np.float32)}
    with pytest.raises(gs.InputMismatch, match="fixed input 's' to 2.0"):
        bisect_pipeline(gs.load(m), "freeze-inputs(s=2.0),cleanup", inputs)
    assert bisect_pipeline(gs.load(m), "freeze-inputs(s=3.0),cleanup", inputs).pass_name is None


# ---- rule passes and named match failures ---------------------------------------------------------
def test_passes_written_as_rules_share_one_base_and_keep_their_reports():
    from graphsurgery.passes import PASSES, RulePass

    assert {n for n, cls in PASSES.items() if issubclass(cls, RulePass)} == {
        "prelu-to-relu", "fuse-conv-bn", "fold-preprocessing", "eliminate-noops", "focus-to-conv",
        "eliminate-neutral", "fold-conv-affine", "matmul-add-to-gemm", "merge-reshapes", "merge-slices",
        "remove-single-piece", "rejoin-elements", "transpose-to-reshape"}
    # a PRelu on an unsigned input is the rule's near miss, reported with its reason
    m = _model([helper.make_node("PRelu", ["x", "s"], ["y"], name="p")],
               [helper.make_tensor_value_info("x", TensorProto.UINT8, [2]),
                helper.make_tensor_value_info("s", TensorProto.UINT8, [2])],
               [helper.make_tensor_value_info("y", TensorProto.UINT8, [2])])
    r = create("prelu-to-relu").run(m)
    assert not r.changed and r.details["rewritten"] == 0
    assert r.skipped == ["prelu-to-relu: node 'p': its input is unsigned, which Relu and Neg do not take"]
    m = _model([helper.make_node("PRelu", ["x", "s"], ["y"], name="p")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                helper.make_tensor_value_info("s", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    r = create("prelu-to-relu").run(m)
    assert r.details["rewritten"] == 1 and r.changes == ["PRelu 'p' in main graph -> Relu(x) - slope*Relu(-x)"]


def test_match_failures_are_named_statuses():
    from graphsurgery.rewrite import Alias, MissKind, Op, Rule, rewrite

    double_neg = Rule("double-neg", Op("Neg", [Op("Neg", ["x"], name="inner")]), build=lambda m, g: Alias(m["x"]))
    never = Rule("never", Op("Neg", ["x"]), build=lambda m, g: None, condition=lambda m, g: "not today")
    # the inner Neg's output is also a graph output: the shape fits, the sharing does not
    m = _model([helper.make_node("Neg", ["x"], ["a"], name="n1"), helper.make_node("Neg", ["a"], ["b"], name="n2")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])
    out = rewrite(gs.load(m), [double_neg, never])
    assert not out.applied
    assert out.misses["double-neg"].kind is MissKind.SHARED and "also read elsewhere" in out.near_misses["double-neg"]
    assert out.misses["never"].kind is MissKind.CONDITION and out.near_misses["never"] == "node 'n2': not today"


def test_one_spelling_of_operator_facts():
    import pathlib
    import re

    from graphsurgery.ops import if_branch_taken, is_nondeterministic

    assert if_branch_taken(np.array(True)) == "then_branch" and if_branch_taken(np.array([0])) == "else_branch"
    assert if_branch_taken(np.array([1, 0])) is None
    assert is_nondeterministic("RandomNormalLike") and is_nondeterministic("Dropout") and not is_nondeterministic("Add")
    root = pathlib.Path(gs.__file__).parent
    spelt = [p.name for p in root.rglob("*.py") if re.search(r'"", "ai\.onnx"', p.read_text())]
    assert spelt == ["ops.py"], spelt


def test_inputs_fitted_around_given_arrays_agree_on_symbolic_dims():
    """A given array fixes its symbolic dims for the inputs generated beside it (the tensor
    comparison behind bisect used to generate them with its own batch, so the model could not run)."""
    m = _model([helper.make_node("Add", ["x", "y"], ["z"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
                helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
               [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])])
    x = np.ones((3, 4), np.float32)
    feeds = verify.fit_inputs(m, {"x": x, "other": np.zeros(1)})
    assert feeds["x"] is not None and feeds["y"].shape == (3, 4) and set(feeds) == {"x", "y"}
    with pytest.raises(gs.InputMismatch, match=r"^session inputs: array 'x' has dtype float64.*undone$"):
        gs.Session(m, inputs={"x": x.astype(np.float64)}).apply("cleanup")
