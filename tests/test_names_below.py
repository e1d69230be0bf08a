"""``is_taken`` answers from a count of the names defined below each graph, which the edits
keep: after any edit, anywhere, it must agree with a fresh walk (``names_below``)."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery.passes import Pipeline

DATA = pathlib.Path(__file__).parent / "data"


def nested() -> onnx.ModelProto:
    """Main graph: If(cond) whose then branch holds a Loop (body two levels down), and a second If."""
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Add", ["v", "x"], ["v2"], name="b_add"),
         helper.make_node("Identity", ["c"], ["c2"], name="b_id")],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v", f, [2])],
        [helper.make_tensor_value_info("c2", TensorProto.BOOL, []), helper.make_tensor_value_info("v2", f, [2])])
    then_g = helper.make_graph(
        [helper.make_node("Loop", ["trips", "", "x"], ["t_loop"], name="loop", body=body),
         helper.make_node("Relu", ["t_loop"], ["t_out"], name="t_relu")],
        "then", [], [helper.make_tensor_value_info("t_out", f, [2])],
        [numpy_helper.from_array(np.array(3, np.int64), "trips")])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e_out"], name="e_neg")], "else", [],
                               [helper.make_tensor_value_info("e_out", f, [2])])
    then2 = helper.make_graph([helper.make_node("Abs", ["x"], ["t2_out"], name="t2_abs")], "then2", [],
                              [helper.make_tensor_value_info("t2_out", f, [2])])
    else2 = helper.make_graph([helper.make_node("Sqrt", ["x"], ["e2_out"], name="e2_sqrt")], "else2", [],
                              [helper.make_tensor_value_info("e2_out", f, [2])])
    g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y1"], name="if1", then_branch=then_g, else_branch=else_g),
         helper.make_node("If", ["cond"], ["y2"], name="if2", then_branch=then2, else_branch=else2),
         helper.make_node("Add", ["y1", "y2"], ["y"], name="add")],
        "main",
        [helper.make_tensor_value_info("x", f, [2]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", f, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


NAMES = ["v2", "c2", "t_loop", "t_out", "trips", "e_out", "t2_out", "e2_out", "i", "c", "v", "fresh", "fresh2",
         "t_out_renamed", "extra", "extra_in", "y1", "new_then", "x"]


def agree(model: gs.Model, names=NAMES) -> None:
    """is_taken, with and without an excluded holder, equals the answer of a fresh walk."""
    for g in model.graphs():
        below = g.names_below()
        for name in names:
            assert g.is_taken(name) == (g.resolve(name) is not None or name in below), (g.describe(), name)
        for holder in g.find_nodes():
            if holder.has_subgraphs():
                below_but = g.names_below(exclude=holder)
                for name in names:
                    expect = g.resolve(name) is not None or name in below_but
                    assert g.is_taken(name, exclude=holder) == expect, (g.describe(), holder.name, name)


def test_counts_follow_edits_at_every_depth():
    m = gs.load(nested())
    agree(m)  # every graph keeps a count from here on
    main = m.graph
    then_g = main.node("if1").subgraphs()["then_branch"]
    body = then_g.node("loop").subgraphs()["body"]
    # a definition two levels down
    n = body.make_node("Relu", ["v2"], ["fresh"])
    agree(m)
    assert main.is_taken("fresh")
    body.remove_node(n)
    agree(m)
    assert not main.is_taken("fresh")
    # renames, inputs, initializers, outputs added to a node, constants
    then_g.rename("t_out", "t_out_renamed")
    agree(m)
    then_g.set_initializer("extra", np.float32(1))
    body.add_input("extra_in", np.float32, [1])
    agree(m)
    assert main.is_taken("extra") and main.is_taken("extra_in")
    body.remove_input("extra_in")
    then_g.remove_initializer("extra")
    agree(m)
    assert not main.is_taken("extra") and not main.is_taken("extra_in")
    relu = then_g.node("t_relu")
    then_g.replace_with_constants({"t_out_renamed": np.ones(2, np.float32)}, nodes=[relu])
    agree(m)
    out = then_g.add_node_output(then_g.node("loop"), "fresh2")
    agree(m)
    assert main.is_taken(out)
    # holders: replaced, removed, added, and a graph attribute set
    if2 = main.node("if2")
    main.replace_node(if2, [helper.make_node("Abs", ["x"], ["y2"], name="abs2")])
    agree(m)
    assert not main.is_taken("t2_out")
    then3 = helper.make_graph([helper.make_node("Abs", ["x"], ["new_then"], name="n_abs")], "then3", [],
                              [helper.make_tensor_value_info("new_then", TensorProto.FLOAT, [2])])
    main.node("if1").attrs["else_branch"] = then3
    agree(m)
    assert main.is_taken("new_then") and not main.is_taken("e_out")
    else3 = helper.make_graph([helper.make_node("Sqrt", ["x"], ["e3_out"], name="e3_sqrt")], "else3", [],
                              [helper.make_tensor_value_info("e3_out", TensorProto.FLOAT, [2])])
    main.add_node(helper.make_node("If", ["cond"], ["z"], name="if3", then_branch=then3, else_branch=else3))
    agree(m, [*NAMES, "e3_out"])
    assert main.is_taken("e3_out")
    assert m.problems(onnx_checker=False) == []


def test_counts_follow_remove_if_and_folding_on_nested_ifs():
    """silero_vad: 25 nested Ifs on its sample rate, inlined at every depth."""
    m = gs.load(str(DATA / "silero_vad.onnx"))
    names = sorted({o for g in m.graphs() for o in g.defined_names()})
    agree(m, names[::7])
    Pipeline.from_text("freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,"
                       "remove-if").run(m)
    agree(m, names[::7])
    assert not m.find_nodes("If")
