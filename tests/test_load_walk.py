"""The load's one walk over attributes (validation, and the main graph's subgraph holders) and
the scan behind find_nodes."""

from __future__ import annotations

import onnx
import pytest
from conftest import if_model, tiny_chain
from onnx import helper

import graphsurgery as gs


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
