"""An edit held in the view of one subgraph survives a change to another graph attribute of
the same node: replacing or deleting a sibling attribute makes the node's subgraph views anew
from the protos, so what was pending in them must be in the protos first."""

import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import graphsurgery as gs


def _branch(name: str, k: int = 30) -> onnx.GraphProto:
    nodes = [h.make_node("Neg", ["x" if i == 0 else f"{name}_{i - 1}"], [f"{name}_{i}"], name=f"{name}_n{i}")
             for i in range(k)]
    nodes.append(h.make_node("Identity", ["x"], [f"{name}_dead"], name=f"{name}_dead"))
    return h.make_graph(nodes, name, [], [h.make_tensor_value_info(f"{name}_{k - 1}", T.FLOAT, [2])])


def _model() -> gs.Model:
    c = h.make_node("Constant", [], ["c"], value=h.make_tensor("v", T.BOOL, [], [True]))
    iff = h.make_node("If", ["c"], ["y"], name="if", then_branch=_branch("t"), else_branch=_branch("e"))
    g = h.make_graph([c, iff], "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2])])
    return gs.Model(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]))


@pytest.mark.parametrize("change", ["replace", "delete"])
def test_a_removed_node_stays_removed_when_a_sibling_attribute_changes(change):
    m = _model()
    node = m.graph.node("if")
    then = node.attrs["then_branch"]
    then.remove_node(then.node("t_dead"))
    if change == "replace":
        node.attrs["else_branch"] = _branch("e2")
    else:
        del node.attrs["else_branch"]
    names = [n.name for n in node.attrs["then_branch"].nodes]
    assert "t_dead" not in names and len(names) == 30
    then_proto = next(a.g for a in m.proto.graph.node[1].attribute if a.name == "then_branch")
    assert [n.name for n in then_proto.node] == names
    if change == "replace":
        m.check()


def test_a_nested_edit_survives_too():
    inner = h.make_node("If", ["c"], ["t_out"], name="inner", then_branch=_branch("a"), else_branch=_branch("b"))
    outer_then = h.make_graph([inner], "outer_then", [], [h.make_tensor_value_info("t_out", T.FLOAT, [2])])
    c = h.make_node("Constant", [], ["c"], value=h.make_tensor("v", T.BOOL, [], [True]))
    iff = h.make_node("If", ["c"], ["y"], name="if", then_branch=outer_then, else_branch=_branch("e"))
    g = h.make_graph([c, iff], "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2])])
    m = gs.Model(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]))
    node = m.graph.node("if")
    a = node.attrs["then_branch"].node("inner").attrs["then_branch"]
    a.remove_node(a.node("a_dead"))
    node.attrs["else_branch"] = _branch("e2")
    names = [n.name for n in node.attrs["then_branch"].node("inner").attrs["then_branch"].nodes]
    assert "a_dead" not in names and len(names) == 30
    m.check()
