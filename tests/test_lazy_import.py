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


# what the run command never needs: the backends' support data and lint, the notebook displays,
# the comparator and onnxruntime (no --verify), the other commands' modules
_NOT_FOR_RUN = ("graphsurgery.backends", "graphsurgery.lint", "graphsurgery.summary", "graphsurgery.display",
                "graphsurgery.verify", "graphsurgery.runner", "graphsurgery.cli_optimize", "graphsurgery.cli_fix",
                "graphsurgery.fix", "graphsurgery.optimize", "html", "onnxruntime", "onnx.reference", "networkx")


def test_the_run_command_imports_only_what_it_uses(tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    src.write_bytes(_tiny_instancenorm().SerializeToString())
    code = ("import sys\nfrom graphsurgery.cli import main\n"
            f"rc = main(['run', {str(src)!r}, '-p', 'instancenorm-epsilon(epsilon=0.001)', '-o', {str(out)!r}, '-q'])\n"
            f"print(rc, sorted(m for m in sys.modules if m in {_NOT_FOR_RUN!r} or m.startswith('graphsurgery.backends')))")
    assert _fresh(code).split(None, 1) == ["0", "[]\n"]
    assert out.exists()


def test_each_command_parses_as_with_every_command_built():
    # the parser gives a command its options only when that command runs: each command's help,
    # and the list of commands, are what the parser with every command built shows
    from graphsurgery import cli

    def helps(parser):
        sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001 - argparse's own
        return {name: p.format_help() for name, p in sub.choices.items()}

    full = helps(cli.build_parser())
    assert list(full) == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        one = cli.build_parser(name)
        assert helps(one)[name] == full[name], name
        assert one.format_help() == cli.build_parser().format_help()
    args = cli.build_parser("run").parse_args(["run", "m.onnx", "-p", "cleanup", "-o", "o.onnx"])
    assert args.func is cli._cmd_run and args.rtol == 1e-5 and args.model == ["m.onnx"]  # noqa: SLF001
    assert cli.build_parser("debug").parse_args(["debug", "m.onnx", "--arrays", "a.npz"]).rtol == 1e-4


def test_the_displays_are_imported_when_first_drawn():
    out = _fresh("import sys, graphsurgery as gs\n"
                 "from onnx import TensorProto, helper\n"
                 "g = helper.make_graph([helper.make_node('Relu', ['x'], ['y'], name='r')], 'g',"
                 " [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],"
                 " [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])\n"
                 "m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)]))\n"
                 "before = 'graphsurgery.display' in sys.modules\n"
                 "html = m._repr_html_(), m.graph._repr_html_(), m.graph.nodes[0]._repr_html_()\n"
                 "print(before, 'graphsurgery.display' in sys.modules, all('<' in h for h in html))")
    assert out.split() == ["False", "True", "True"]
    # every kind the display draws has its stand-in, so no drawing asks before it is imported
    from graphsurgery import display
    from graphsurgery.core import hooks

    kinds = []
    original = hooks.register_renderer
    hooks.register_renderer = lambda kind, fn: kinds.append(kind)
    try:
        display.register()
    finally:
        hooks.register_renderer = original
    assert sorted(kinds) == sorted(graphsurgery._DISPLAYED)  # noqa: SLF001


def test_no_import_circle_in_the_package():
    # every import, at the top of a module or inside a function, between the package's modules;
    # a module importing names from its own package's __init__ is not counted
    import ast
    import pathlib

    root = pathlib.Path(graphsurgery.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)
    edges: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        here = name.split(".") if package else name.split(".")[:-1]
        targets = set()
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Import):
                targets.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom):
                if n.level:  # from . import x, from ..core import y
                    base = ".".join(here[:len(here) - n.level + 1] + ([n.module] if n.module else []))
                else:
                    base = n.module
                subs = {f"{base}.{a.name}" for a in n.names} & set(modules)
                targets |= subs | ({base} if len(subs) < len(n.names) else set())
        edges[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    circles = [sorted(c) for c in _cycles(edges)]
    assert circles == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return found


def _tiny_instancenorm():
    from onnx import TensorProto, helper

    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], name="n", epsilon=1e-9)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3])],
                          [helper.make_tensor("s", TensorProto.FLOAT, [2], [1.0, 1.0]),
                           helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0, 0.0])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
