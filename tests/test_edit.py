"""Editing verbs on hand-built graphs: exact structure, refusals that change nothing, and
numeric equality in onnxruntime with an equivalent model built by hand."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphsurgery as gs
from conftest import assert_close, if_model, run_ort, tiny_chain

X = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)


def hand_built(nodes, inits=None):
    base = tiny_chain()
    g = helper.make_graph(nodes, "chain", list(base.graph.input), list(base.graph.output),
                          inits if inits is not None else list(base.graph.initializer))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_lookups():
    m = gs.load(tiny_chain())
    g = m.graph
    assert [n.name for n in g.nodes] == ["conv", "relu", "add"]
    assert g.node("relu").op_type == "Relu"
    assert g.producer("r").name == "relu"
    assert g.producer("x") is None and g.producer("w") is None
    assert [n.name for n in g.consumers("c")] == ["relu"]
    assert g.tensor("y").is_graph_output and g.tensor("x").is_graph_input and g.tensor("w").is_initializer
    assert g.tensor("x").shape == [1, 3, 4, 4] and g.tensor("x").dtype == np.float32
    assert [n.name for n in g.find_nodes("Add")] == ["add"]
    assert g.node("conv").attrs["pads"] == [1, 1, 1, 1]
    assert g.initializer("w").shape == (2, 3, 3, 3)
    assert m.metadata == {"k": "v"}


def test_misspelt_names_suggest_close_matches():
    g = gs.load(tiny_chain()).graph
    with pytest.raises(gs.NotFoundError, match="did you mean 'relu'"):
        g.node("rlu")
    with pytest.raises(gs.NotFoundError, match="did you mean 'pads'"):
        g.node("conv").attrs["pad"]
    with pytest.raises(gs.EditError, match="did you mean 'r'"):
        g.make_node("Neg", ["rr"])


def test_initializer_is_a_read_only_view():
    w = gs.load(tiny_chain()).graph.initializer("w")
    assert not w.flags.writeable
    assert w.base is not None  # a view over the tensor's raw bytes


def test_insert_after_and_rewire_matches_hand_built():
    m = gs.load(tiny_chain())
    g = m.graph
    g.make_node("Sigmoid", ["r"], ["s"], name="sig", after=g.node("relu"))
    assert g.rewire("r", "s") == 1
    assert [n.name for n in g.nodes] == ["conv", "relu", "sig", "add"]
    assert g.node("add").inputs == ("s", "b")
    m.check()
    expected = hand_built([
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Sigmoid", ["r"], ["s"]),
        helper.make_node("Add", ["s", "b"], ["y"]),
    ])
    assert_close(run_ort(m.proto, {"x": X}), run_ort(expected, {"x": X}))


def test_op_builder_and_fresh_names():
    m = gs.load(tiny_chain())
    g = m.graph
    neg = g.op.Neg("y")
    assert neg not in ("y", "r", "c") and g.producer(neg).op_type == "Neg"
    a, b = g.op.Split("c", _outputs=2, axis=1)
    assert a != b
    m.check()


def test_remove_refuses_when_read_and_changes_nothing():
    m = gs.load(tiny_chain())
    before = m.proto.SerializeToString()
    with pytest.raises(gs.EditError, match="'c' is read by 'relu'"):
        m.graph.remove_node(m.graph.node("conv"))
    with pytest.raises(gs.EditError, match="graph output"):
        m.graph.remove_node(m.graph.node("add"))
    assert m.proto.SerializeToString() == before
    m.check()


def test_bypass_and_remove_matches_hand_built():
    m = gs.load(tiny_chain())
    g = m.graph
    g.bypass(g.node("relu"))
    assert [n.name for n in g.nodes] == ["conv", "add"]
    m.check()
    expected = hand_built([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                           helper.make_node("Add", ["c", "b"], ["y"])])
    assert_close(run_ort(m.proto, {"x": X}), run_ort(expected, {"x": X}))


def test_bypass_of_node_feeding_a_graph_output_keeps_the_output_name():
    m = gs.load(tiny_chain())
    g = m.graph
    ident = g.make_node("Identity", ["y"], ["y2"], name="id")
    g.remove_output("y")
    g.add_output("y2")
    g.bypass(ident)
    assert g.output_names == ["y2"] and g.producer("y2").name == "add"
    m.check()


def test_replace_node_with_subgraph_matches_hand_built():
    m = gs.load(tiny_chain())
    g = m.graph
    relu = g.node("relu")
    # Relu(c) == (c + |c|) / 2
    g.set_initializer("half", np.float32(0.5))
    g.replace_node(relu, [
        helper.make_node("Abs", ["c"], ["c_abs"], name="abs"),
        helper.make_node("Add", ["c", "c_abs"], ["c_sum"], name="sum"),
        helper.make_node("Mul", ["c_sum", "half"], ["r"], name="halve"),
    ])
    assert [n.name for n in g.nodes] == ["conv", "abs", "sum", "halve", "add"]
    m.check()
    expected = hand_built([
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Add", ["r", "b"], ["y"]),
    ])
    assert_close(run_ort(m.proto, {"x": X}), run_ort(expected, {"x": X}))
    with pytest.raises(gs.EditError):
        relu.name = "dead"  # a removed node cannot be edited


def test_replace_refuses_when_an_output_would_go_missing():
    m = gs.load(tiny_chain())
    before = m.proto.SerializeToString()
    with pytest.raises(gs.EditError, match="does not produce"):
        m.graph.replace_node(m.graph.node("relu"), [helper.make_node("Abs", ["c"], ["other"])])
    assert m.proto.SerializeToString() == before


def test_add_refuses_duplicate_producer_and_dangling_input():
    m = gs.load(tiny_chain())
    before = m.proto.SerializeToString()
    with pytest.raises(gs.EditError, match="already defined"):
        m.graph.make_node("Neg", ["x"], ["r"])
    with pytest.raises(gs.EditError, match="not defined"):
        m.graph.make_node("Neg", ["nope"], ["z"])
    with pytest.raises(gs.EditError, match="not defined"):
        m.graph.node("add").set_input(0, "nope")
    assert m.proto.SerializeToString() == before


def test_rename_everywhere_including_subgraphs_and_value_info():
    m = gs.load(if_model())
    g = m.graph
    m.proto.graph.value_info.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]))
    g.rename("x", "audio")
    assert g.input_names == ["audio", "cond"]
    sub = g.node("if").subgraphs()
    assert sub["then_branch"].node("t_mul").inputs[0] == "audio"
    assert sub["else_branch"].node("e_add").inputs[0] == "audio"
    assert m.proto.graph.value_info[0].name == "audio"
    m.check()
    for c in (True, False):
        out = run_ort(m.proto, {"audio": np.array([1, 2], np.float32), "cond": np.array(c)})
        assert np.allclose(out["y"], [2, 4] if c else [2, 5])
    with pytest.raises(gs.EditError, match="already defined"):
        g.rename("audio", "w")


def test_outer_scope_consumers_and_uses():
    m = gs.load(if_model())
    g = m.graph
    cons = g.consumers("x")
    assert sorted(n.name for n in cons) == ["e_add", "t_mul"]
    assert {n.graph.attr_name for n in cons} == {"then_branch", "else_branch"}
    assert [n.name for n in g.consumers("w")] == ["e_add"]
    then = g.node("if").subgraphs()["then_branch"]
    assert then.producer("x") is None and then.tensor("x").graph is g
    assert then.tensor("two").is_initializer
    with pytest.raises(gs.EditError, match="read by"):
        g.remove_initializer("w")
    assert [n.name for n in m.find_nodes("Mul")] == ["t_mul"]


def test_edit_inside_subgraph_updates_outer_indexes():
    m = gs.load(if_model())
    g = m.graph
    then = g.node("if").subgraphs()["then_branch"]
    then.node("t_mul").set_input(0, "w")
    assert sorted(n.name for n in g.consumers("w")) == ["e_add", "t_mul"]
    assert [n.name for n in g.consumers("x")] == ["e_add"]
    m.check()


def test_rewire_outer_tensor_reaches_subgraphs():
    m = gs.load(if_model())
    g = m.graph
    neg = g.op.Neg("x")
    g.rewire("x", neg)
    assert g.consumers("x")[0].op_type == "Neg"
    out = run_ort(m.proto, {"x": np.array([1, 2], np.float32), "cond": np.array(True)})
    assert np.allclose(out["y"], [-2, -4])


def test_attributes_keep_their_type():
    m = gs.load(tiny_chain())
    conv = m.graph.node("conv")
    conv.attrs["pads"] = (0, 0, 0, 0)
    assert conv.attrs.proto("pads").type == onnx.AttributeProto.INTS
    conv.attrs["group"] = 1
    assert conv.attrs["group"] == 1
    m.graph.make_node("LeakyRelu", ["y"], ["lr"], name="lrelu", alpha=0.1)
    lr = m.graph.node("lrelu")
    lr.attrs["alpha"] = 1  # an int into a FLOAT attribute stays a float
    assert lr.attrs.proto("alpha").type == onnx.AttributeProto.FLOAT and lr.attrs["alpha"] == 1.0
    with pytest.raises(gs.EditError, match="FLOAT"):
        lr.attrs["alpha"] = "high"
    del conv.attrs["group"]
    assert "group" not in conv.attrs
    c = m.graph.make_node("Constant", [], ["k"], value=np.arange(3, dtype=np.int64))
    assert c.attrs["value"].tolist() == [0, 1, 2]
    c.attrs["value"] = [5, 6, 7]  # keeps int64 from the old tensor
    assert c.attrs["value"].dtype == np.int64
    assert conv.doc_string == "conv doc"


def test_graph_attribute_can_be_replaced():
    m = gs.load(if_model())
    node = m.graph.node("if")
    new_then = helper.make_graph([helper.make_node("Sub", ["x", "w"], ["t2"], name="t_sub")], "then2", [],
                                 [helper.make_tensor_value_info("t2", TensorProto.FLOAT, [2])])
    node.attrs["then_branch"] = new_then
    assert [n.name for n in node.subgraphs()["then_branch"].nodes] == ["t_sub"]
    assert sorted(n.name for n in m.graph.consumers("w")) == ["e_add", "t_sub"]
    m.check()


def test_inputs_outputs_initializers():
    m = gs.load(tiny_chain())
    g = m.graph
    g.add_input("extra", np.float32, [1, 2, 4, 4])
    g.node("add").set_input(1, "extra")
    with pytest.raises(gs.EditError, match="read by"):
        g.remove_input("extra")
    g.node("add").set_input(1, "b")
    g.remove_input("extra")
    g.add_output("c")
    assert g.output_names == ["y", "c"]
    g.set_initializer("b", np.full((1, 2, 1, 1), 3, np.float32))
    assert g.initializer("b").ravel().tolist() == [3, 3]
    out = run_ort(m.proto, {"x": X})
    assert np.allclose(out["y"], np.maximum(out["c"], 0) + 3, atol=1e-6)
    g.remove_output("c")
    g.set_initializer("unused", np.zeros(3, np.float32))
    assert g.remove_unused() == {"nodes": 0, "initializers": 1, "value_info": 0}
    m.check()


def test_toposort_keeps_valid_order_and_names_cycles():
    m = gs.load(tiny_chain())
    g = m.graph
    g.make_node("Neg", ["x"], ["nx"], name="neg", after=g.node("add"))
    g.node("conv").set_input(0, "nx")  # now conv depends on a node placed after it
    assert [n.name for n in g.nodes] == ["neg", "conv", "relu", "add"]
    m.check()
    before = m.to_bytes()
    with pytest.raises(gs.EditError, match="'neg' cannot read 'y'.*cycle"):
        g.node("neg").set_input(0, "y")  # add -> neg -> conv -> relu -> add would be a cycle
    assert m.to_bytes() == before


def test_subgraph_reading_a_downstream_tensor_is_refused():
    m = gs.load(if_model())
    g = m.graph
    g.op.Neg("y", _name="after_if")
    then = g.node("if").subgraphs()["then_branch"]
    before = m.to_bytes()
    with pytest.raises(gs.EditError, match="cycle"):
        then.make_node("Identity", ["after_if_out"])
    with pytest.raises(gs.EditError, match="cycle"):
        then.node("t_mul").set_input(0, "after_if_out")
    assert m.to_bytes() == before
    # reading an outer tensor computed before the If is fine, and the order is kept valid
    early = g.op.Abs("x", _name="early")
    then.node("t_mul").set_input(0, early)
    names = [n.name for n in g.nodes]
    assert names.index("early") < names.index("if")
    m.check()


def test_remove_unused_refuses_graph_without_outputs():
    m = gs.load(tiny_chain())
    m.graph.remove_output("y")
    with pytest.raises(gs.EditError, match="no outputs"):
        m.graph.remove_unused()
    assert len(m.graph) == 3


def test_remove_unused_dead_chain_and_value_info():
    m = gs.load(tiny_chain())
    g = m.graph
    a = g.op.Neg("c")
    g.op.Abs(a)
    m.proto.graph.value_info.append(helper.make_tensor_value_info("gone", TensorProto.FLOAT, [1]))
    assert g.remove_unused() == {"nodes": 2, "initializers": 0, "value_info": 1}
    assert [n.name for n in g.nodes] == ["conv", "relu", "add"]


def test_removal_from_a_subgraph_keeps_outer_links_current():
    m = gs.load(if_model())
    g = m.graph
    els = g.node("if").subgraphs()["else_branch"]
    k = els.op.Neg("x")
    assert len(g.consumers("x")) == 3
    els.remove_node(els.producer(k))
    assert len(g.consumers("x")) == 2


def test_networkx_view():
    m = gs.load(tiny_chain())
    nxg = m.to_networkx()
    conv, relu = m.graph.node("conv"), m.graph.node("relu")
    assert nxg.has_edge(conv, relu) and nxg.has_edge(("input", "x"), conv)
    import networkx as nx
    assert nx.is_directed_acyclic_graph(nxg)


def test_graphsurgeon_interop_round_trip_runs_the_same():
    m = gs.load(tiny_chain())
    ggraph = m.to_graphsurgeon()
    assert sorted(n.op for n in ggraph.nodes) == ["Add", "Conv", "Relu"]
    back = gs.Model.from_graphsurgeon(ggraph)
    assert_close(run_ort(back.proto, {"x": X}), run_ort(m.proto, {"x": X}))


def test_functions_are_graphs():
    f = helper.make_function("local", "Double", ["a"], ["b"],
                             [helper.make_node("Add", ["a", "a"], ["b"], name="f_add")],
                             [helper.make_opsetid("", 17)])
    g = helper.make_graph([helper.make_node("Double", ["x"], ["y"], domain="local", name="call")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                              functions=[f], ir_version=10)
    m = gs.load(proto)
    body = m.functions[("local", "Double")]
    assert body.input_names == ["a"] and body.output_names == ["b"]
    assert [n.name for n in m.find_nodes("Add")] == ["f_add"]
    body.node("f_add").op_type = "Mul"
    out = run_ort(m.proto, {"x": np.array([3, 4], np.float32)})
    assert np.allclose(out["y"], [9, 16])


def test_remove_nodes_together_with_the_if_whose_branch_reads_them():
    m = gs.load(if_model())
    g = m.graph
    neg = g.make_node("Neg", ["x"], name="neg")
    then = g.node("if").subgraphs()["then_branch"]
    then.node("t_mul").set_input(0, neg.outputs[0])
    with pytest.raises(gs.EditError, match="read by 't_mul'"):
        g.remove_node(neg)
    g.remove_output("y")
    g.add_output("x", np.float32, [2])
    g.remove_nodes([neg, g.node("if")])  # the only reader is inside the If that goes too
    assert len(g) == 0
    m.check()


def test_graph_attribute_deleted_before_any_index_exists():
    m = gs.load(if_model())
    node = m.graph.find_nodes("If")[0]  # found by a scan: no index built yet
    del node.attrs["else_branch"]
    assert list(node.subgraphs()) == ["then_branch"]
    assert [n.name for n in m.graph.consumers("w")] == []


def test_model_proto_is_always_in_topological_order():
    """Edits may append nodes out of order; whoever reads model.proto sees them sorted."""
    m = gs.load(tiny_chain())
    g = m.graph
    g.replace_node(g.node("relu"), [helper.make_node("Abs", ["c"], ["r"], name="abs")])
    assert [n.op_type for n in m.proto.graph.node] == ["Conv", "Abs", "Add"]
    onnx.checker.check_model(m.proto, full_check=True)
