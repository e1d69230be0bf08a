"""The load's one walk over attributes (validation, and the main graph's subgraph holders), the
scan behind find_nodes, and instancenorm-epsilon's single decision pass."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import if_model, tiny_chain
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import PassError, create


def _places(model: gs.Model) -> list[str]:
    return [g.describe() for g in model.graphs()]


def _nested() -> onnx.ModelProto:
    """Two Ifs in the main graph (each holding two branches), one with an If inside a branch,
    between nodes with one and with several plain attributes."""
    inner = if_model().graph.node[0]
    outer = onnx.ModelProto()
    outer.CopyFrom(if_model())
    g = outer.graph
    then_g = next(a.g for a in g.node[0].attribute if a.name == "then_branch")
    nested = then_g.node.add()
    nested.CopyFrom(inner)
    nested.name, nested.input[0], nested.output[0] = "if_in_then", "cond", "t_nested"
    second = g.node.add()
    second.CopyFrom(inner)
    second.name, second.output[0] = "if2", "y2"
    g.node.add().CopyFrom(helper.make_node("Transpose", ["y2"], ["y3"], name="tr", perm=[0]))
    g.node.add().CopyFrom(helper.make_node("Concat", ["y", "y3"], ["y4"], name="cat", axis=0))
    return outer


def test_the_holders_the_load_records_are_those_a_scan_finds():
    proto = _nested()
    loaded = gs.load(proto.SerializeToString())
    scanned = gs.Model(onnx.ModelProto.FromString(proto.SerializeToString()))  # no load walk: a scan
    assert _places(loaded) == _places(scanned) == [  # (helper.make_node sorts attributes: else first)
        "main graph",
        "main graph › node 'if'.else_branch",
        "main graph › node 'if'.then_branch",
        "main graph › node 'if'.then_branch › node 'if_in_then'.else_branch",
        "main graph › node 'if'.then_branch › node 'if_in_then'.then_branch",
        "main graph › node 'if2'.else_branch",
        "main graph › node 'if2'.then_branch",
    ]
    assert [n.name for n in loaded.find_nodes("If")] == ["if", "if2", "if_in_then"]


def test_a_node_added_through_the_proto_after_a_walk_is_seen():
    for ask_first in (False, True):
        m = gs.load(tiny_chain())
        if ask_first:
            assert _places(m) == ["main graph"]
        m.proto.graph.node.add().CopyFrom(if_model().graph.node[0])
        assert _places(m) == ["main graph", "main graph › node 'if'.else_branch",
                              "main graph › node 'if'.then_branch"], ask_first


def test_an_attribute_reference_after_a_plain_attribute_is_refused():
    m = tiny_chain()
    conv = m.graph.node[0]
    conv.attribute.add().CopyFrom(helper.make_attribute_ref("group", onnx.AttributeProto.INT))
    with pytest.raises(gs.InvalidModelError, match="attribute 'group' of node 'conv'.*only nodes inside a function"):
        gs.load(m)


def test_find_nodes_by_op_type_alone_matches_any_domain_built_or_not():
    m = tiny_chain()
    m.graph.node.add().CopyFrom(helper.make_node("Relu", ["y"], ["z"], name="custom_relu", domain="my.ops"))
    m.opset_import.add(domain="my.ops", version=1)
    for build in (False, True):
        model = gs.load(m.SerializeToString())
        if build:
            model.graph.producer("y")
        assert [n.name for n in model.graph.find_nodes("Relu")] == ["relu", "custom_relu"]
        assert [n.name for n in model.find_nodes("Relu", "")] == ["relu"]
        assert [n.name for n in model.find_nodes("Relu", name="custom_relu")] == ["custom_relu"]
        assert model.find_nodes("Nothing") == []


def _inorm_model(eps_main: float) -> onnx.ModelProto:
    """A main-graph InstanceNormalization, and a function whose InstanceNormalization takes its
    epsilon from the function's attribute."""
    body = helper.make_node("InstanceNormalization", ["fx", "fs", "fb"], ["fy"], name="fn_in")
    body.attribute.add().CopyFrom(helper.make_attribute_ref("epsilon", onnx.AttributeProto.FLOAT, ref_attr_name="eps"))
    fn = helper.make_function("local", "Norm", ["fx", "fs", "fb"], ["fy"], [body],
                              [helper.make_opsetid("", 17)], attributes=["eps"])
    call = helper.make_node("Norm", ["m", "s", "b"], ["y"], name="call", domain="local", eps=1e-3)
    g = helper.make_graph(
        [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["m"], name="main_in", epsilon=eps_main), call],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])],
        [numpy_helper.from_array(np.ones(2, np.float32), "s"), numpy_helper.from_array(np.zeros(2, np.float32), "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                             functions=[fn], ir_version=10)


def test_instancenorm_epsilon_refuses_an_epsilon_it_cannot_read_and_changes_nothing():
    m = gs.load(_inorm_model(1e-9))
    before = m.to_bytes()
    with pytest.raises(PassError, match="epsilon of node 'fn_in' .*function local::Norm.* attribute 'eps'"):
        create("instancenorm-epsilon", epsilon="0.001").run(m)
    assert m.to_bytes() == before
    r = create("instancenorm-epsilon", epsilon="0.001", pattern="main_*").run(m)  # the way round it
    assert r.changes == ["InstanceNormalization 'main_in': epsilon 1e-09 -> 0.001"]
    assert r.details["epsilon"] == {"main_in": (pytest.approx(1e-9), 0.001)}


def test_instancenorm_epsilon_compares_as_stored_and_sets_a_missing_one():
    proto = _inorm_model(1e-9)
    del proto.functions[:]
    proto.graph.node[1].CopyFrom(helper.make_node("InstanceNormalization", ["m", "s", "b"], ["y"], name="plain"))
    m = gs.load(proto)
    r = create("instancenorm-epsilon", epsilon="1e-9").run(m)  # 1e-9 as a float32 is what main_in holds
    assert r.changes == ["InstanceNormalization 'plain': epsilon 1e-05 -> 1e-09"]
    assert m.graph.node("plain").attrs["epsilon"] == pytest.approx(1e-9)
    assert not create("instancenorm-epsilon", epsilon="1e-9").run(m).changed
