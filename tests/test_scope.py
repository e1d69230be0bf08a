"""The public scope index of the core: who defines a name, who reads it, what a subgraph
captures, which node holds it, ranks, fresh names; and the layering of the core package."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphsurgery as gs
from graphsurgery.core import Use


def _vi(name, shape=(2,)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def if_model() -> onnx.ModelProto:
    """x -> Relu -> r; If(cond) whose then-branch reads r (captured), else-branch reads x."""
    then_g = helper.make_graph([helper.make_node("Neg", ["r"], ["t"], name="neg")], "then", [], [_vi("t")])
    else_g = helper.make_graph([helper.make_node("Abs", ["x"], ["e"], name="abs")], "else", [], [_vi("e")])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g),
             helper.make_node("Add", ["y", "r"], ["z"], name="add")]
    g = helper.make_graph(nodes, "m", [_vi("x"), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [_vi("z")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_defines_resolve_producer():
    m = gs.load(if_model())
    g = m.graph
    then = g.node("if").subgraphs()["then_branch"]
    assert g.defines("r") and not then.defines("r") and then.defines("t")
    assert then.resolve("r") is g and then.resolve("t") is then and then.resolve("nope") is None
    assert then.producer("r").name == "relu"
    assert g.producer("x") is None  # a graph input


def test_uses_are_named_tuples_and_see_into_subgraphs():
    g = gs.load(if_model()).graph
    uses = g.uses("r")
    assert all(isinstance(u, Use) for u in uses)
    assert sorted((u.node.name, u.index) for u in uses) == [("add", 1), ("neg", 0)]
    node, index = uses[0]  # still unpacks like the plain tuples it used to be
    assert (node, index) == (uses[0].node, uses[0].index)
    assert g.is_used("r") and g.is_used("z")  # z is a graph output
    assert not g.is_used("cond") is False


def test_captured_and_holder():
    g = gs.load(if_model()).graph
    subs = g.node("if").subgraphs()
    then, other = subs["then_branch"], subs["else_branch"]
    assert then.captured() == {"r"} and other.captured() == {"x"}
    assert then.holder() is g.node("if") and g.holder() is None
    assert g.holder_of(then.node("neg")) is g.node("if")
    assert g.reads(g.node("if")) == {"cond", "r", "x"}


def test_a_subgraph_read_orders_its_holder_after_the_producer():
    """A node feeding only a subgraph capture must rank before the node holding it."""
    m = gs.load(if_model())
    g = m.graph
    then = g.node("if").subgraphs()["then_branch"]
    late = g.make_node("Sigmoid", ["z"], name="late")  # ranked after everything
    with pytest.raises(gs.EditError, match="cycle"):  # z is computed from the If itself
        then.node("neg").set_input(0, late.outputs[0])
    early = g.make_node("Sigmoid", ["x"], name="early")
    g.make_node("Identity", ["x"], name="pad")
    then.node("neg").set_input(0, early.outputs[0])
    assert g.rank(early) < g.rank(g.node("if"))
    names = [p.name for p in m.proto.graph.node]
    assert names.index("early") < names.index("if")
    assert m.problems(onnx_checker=False) == []


def test_name_authority_is_unique_across_the_scope_chain():
    m = gs.load(if_model())
    then = m.graph.node("if").subgraphs()["then_branch"]
    assert m.names.may_exist("t") and not m.names.may_exist("fresh")
    fresh = then.unique_name("r")
    assert fresh != "r" and not m.graph.defines(fresh)
    assert m.graph.unique_name("t") != "t"  # defined below the main graph: taken there too
    with pytest.raises(gs.EditError, match="already defined"):
        m.graph.make_node("Relu", ["x"], ["t"])


def test_removed_nodes_leave_the_proto_when_it_is_read():
    m = gs.load(if_model())
    g = m.graph
    extra = g.make_node("Relu", ["x"], name="extra")
    g.remove_node(extra)
    assert not extra.alive
    assert "extra" not in [p.name for p in g.proto.node]
    assert len(g) == len(g.proto.node) == 3


def test_a_replacement_that_reads_its_own_reader_is_refused_unchanged():
    """Replacing a node by one that reads what its readers compute would close a cycle."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="first"),
             helper.make_node("Neg", ["a"], ["b"], name="second"),
             helper.make_node("Abs", ["b"], ["c"], name="third")]
    proto = helper.make_model(helper.make_graph(nodes, "m", [_vi("x")], [_vi("c")]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(gs.EditError, match="cycle"):
        m.graph.replace_node(m.graph.node("first"), [helper.make_node("Add", ["x", "b"], ["a"], name="loop")])
    assert m.to_bytes() == before


def test_a_refused_bypass_changes_nothing():
    """bypass checks the node's other outputs before it rewires anything."""
    nodes = [helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop"),
             helper.make_node("Relu", ["y"], ["r"], name="relu"),
             helper.make_node("Cast", ["mask"], ["mf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["r", "mf"], ["z"], name="add")]
    proto = helper.make_model(helper.make_graph(nodes, "m", [_vi("x")], [_vi("z")]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m = gs.load(proto)
    before = m.to_bytes()
    with pytest.raises(gs.EditError, match="other outputs"):
        m.graph.bypass(m.graph.node("drop"))
    assert m.to_bytes() == before


def test_ranks_stay_topological_through_edits_against_the_order():
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"n{i}") for i in range(30)]
    proto = helper.make_model(helper.make_graph(nodes, "m", [_vi("t0")], [_vi("t30")]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    m = gs.load(proto)
    g = m.graph
    side = g.make_node("Neg", ["t0"], name="side")  # ranked early
    g.node("n25").set_input(0, side.outputs[0])  # fine: side comes first
    tail = g.make_node("Abs", ["t29"], name="tail")
    g.node("n29").set_input(0, "t28")
    g.make_node("Sum", ["t3", tail.outputs[0]], name="sum")
    g.node("n5").set_input(0, "t4")
    for n in g.nodes_in_file_order():
        for name in g.reads(n):
            p = g.producer(name)
            if p is not None:
                assert g.rank(p) < g.rank(n)
    assert m.problems(onnx_checker=False) == []
    np.testing.assert_equal(len(g), 33)


def test_the_core_imports_nothing_above_it():
    """Every import in graphsurgery/core (lazy ones included) stays in the core or goes down to
    the modules it stands on; presentation, passes and tools are never imported."""
    import ast
    import pathlib

    core = pathlib.Path(gs.__file__).parent / "core"
    allowed = {"errors", "ops", "tensors", "checks", "serialization", "external_data", "interop"}
    found = {}
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = node.module or ""
                if node.level == 1:
                    continue  # inside the core
                top = target.split(".")[0] if target else [a.name for a in node.names][0]
                found.setdefault(top, []).append(path.name)
    assert set(found) <= allowed, {k: v for k, v in found.items() if k not in allowed}
    assert found  # the walk saw the core's imports


def test_displays_are_registered_by_the_package():
    m = gs.load(if_model())
    assert "main graph" in m.graph._repr_html_()
    assert "relu" in m.graph.node("relu")._repr_html_()


def test_a_branch_cannot_return_what_its_if_computes():
    """A subgraph output read from outside is a read of the holder: one computed downstream of
    the holder would close a cycle, and is refused with nothing changed."""
    m = gs.load(if_model())
    then = m.graph.node("if").subgraphs()["then_branch"]
    before = m.to_bytes()
    with pytest.raises(gs.EditError, match="cycle"):
        then.add_output("z", dtype=np.float32)  # z = Add(y, r), y the If's own output
    assert m.to_bytes() == before
    then.add_output("x", dtype=np.float32)  # an input of the main graph: fine
    assert m.problems(onnx_checker=False) == []


def test_the_default_domain_opset_is_found_under_either_spelling():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("ai.onnx", 17)]))
    assert m.opset("") == m.opset("ai.onnx") == 17 and m.opset("com.microsoft") is None
