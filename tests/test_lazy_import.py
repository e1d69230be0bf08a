"""``import graphsurgery`` is cheap: public names, and the passes, are imported on first use."""

import json
import subprocess
import sys

import graphsurgery
from graphsurgery.passes import registry


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_every_public_name_imports_and_is_listed():
    for name in graphsurgery.__all__:
        assert getattr(graphsurgery, name) is not None, name
        assert name in dir(graphsurgery), name
    assert "__version__" in dir(graphsurgery) and graphsurgery.__version__
    out = _fresh("from graphsurgery import *\nimport graphsurgery\n"
                 "print(all(globals()[n] is getattr(graphsurgery, n) for n in graphsurgery.__all__))")
    assert out.strip() == "True"


def test_import_pulls_nothing_heavy():
    out = _fresh("import sys, json, graphsurgery\n"
                 "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
                 "('onnx', 'numpy', 'onnxruntime', 'networkx') or m in ('importlib.metadata', "
                 "'graphsurgery.passes', 'graphsurgery.core.model'))))")
    assert json.loads(out) == []


def test_functions_stay_functions_when_their_module_is_imported():
    # the package attribute ``fix`` is the function even after ``graphsurgery.fix`` (the module) is imported
    out = _fresh("import graphsurgery.fix, graphsurgery.optimize, graphsurgery as gs, inspect\n"
                 "from graphsurgery import fix, optimize\n"
                 "print(inspect.isfunction(gs.fix), inspect.isfunction(gs.optimize), "
                 "inspect.isfunction(fix), inspect.isfunction(optimize))")
    assert out.split() == ["True"] * 4


def test_unknown_name_is_an_attribute_error():
    try:
        graphsurgery.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_registry_names_match_their_classes_and_load_on_demand():
    out = _fresh("import sys\nfrom graphsurgery.passes import create\ncreate('cleanup')\n"
                 "print(sorted(m for m in sys.modules if m.startswith('graphsurgery.passes.') and "
                 "m not in ('graphsurgery.passes.base', 'graphsurgery.passes.pipeline', "
                 "'graphsurgery.passes.registry')))")
    assert out.strip() == "['graphsurgery.passes.cleanup']"
    for name in list(registry.PASSES):
        assert registry.PASSES[name].name == name
    assert len(set(registry.PASSES)) == len(registry.PASSES) > 20


def test_the_model_reaches_interop_through_the_core_hooks_only():
    import ast
    import pathlib

    source = (pathlib.Path(graphsurgery.__file__).parent / "core" / "model.py").read_text()
    imported = [n.module or "" for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.lstrip(".").split(".")[0] in ("interop", "display", "lint", "summary")]
    m = graphsurgery.load(_tiny())
    assert m.to_networkx().number_of_nodes() >= 1


def _tiny():
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
