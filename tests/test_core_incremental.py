"""The core's bookkeeping costs what the change costs, and lags nothing a reader can see.

Work is counted as lines executed inside graphsurgery (a wall clock is flaky on a loaded
machine): a verb that scans a list on every call doubles its per-call work when the graph
doubles, one that does not stays flat.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from conftest import if_model
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs

PACKAGE = gs.__file__.rsplit("/", 1)[0]


def lines(fn) -> int:
    """Lines executed inside graphsurgery while ``fn`` runs."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def trace(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(PACKAGE) else None

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def weights_model(n: int) -> onnx.ModelProto:
    """One Add reading one weight, plus ``n`` initializers nothing reads."""
    inits = [numpy_helper.from_array(np.full(2, i, np.float32), f"w{i}") for i in range(n)]
    g = helper.make_graph([helper.make_node("Add", ["x", "w0"], ["y"], name="add")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_removing_initializers_one_by_one_is_constant_time_each():
    counts = []
    for n in (200, 400):
        m = gs.load(weights_model(n))
        g = m.graph
        g.initializer("w0")  # index built outside the count
        names = [f"w{i}" for i in range(n - 1, 0, -1)]  # from the back: a scan walks the whole list
        counts.append(lines(lambda g=g, names=names: [g.remove_initializer(x) for x in names]) / len(names))
        assert [t.name for t in m.proto.graph.initializer] == ["w0"]
        m.check()
    assert counts[1] < 1.3 * counts[0], f"lines per removal grew from {counts[0]:.0f} to {counts[1]:.0f}"


def test_removed_initializers_leave_the_proto_when_it_is_read():
    m = gs.load(weights_model(6))
    g = m.graph
    g.remove_initializer("w3")
    g.remove_initializers(["w1", "w5"])
    assert [t.name for t in g.proto.initializer] == ["w0", "w2", "w4"]
    g.set_initializer("w3", np.ones(2, np.float32))  # the name can be defined again
    g.remove_initializer("w2")
    assert [t.name for t in m.proto.graph.initializer] == ["w0", "w4", "w3"]
    assert [t.name for t in onnx.load_from_string(m.to_bytes()).graph.initializer] == ["w0", "w4", "w3"]
    assert sorted(g.initializers) == ["w0", "w3", "w4"]


def test_a_node_removed_from_a_branch_is_gone_from_the_saved_model():
    """Editing a branch before the main graph was ever indexed: the save still brings the
    branch's proto up to date (it used to keep the removed node)."""
    m = gs.load(if_model())
    then = m.find_nodes("If")[0].subgraphs()["then_branch"]
    then.add_node(helper.make_node("Neg", ["two"], ["dead"], name="dead_neg"))
    then.remove_node(then.node("dead_neg"))
    saved = onnx.load_from_string(m.to_bytes())
    branch = next(a.g for a in saved.graph.node[0].attribute if a.name == "then_branch")
    assert [n.name for n in branch.node] == ["t_mul"]
    m.check()


def cnn_in_a_branch(blocks: int) -> onnx.ModelProto:
    """An If whose then-branch is a CNN of ``blocks`` Conv/PRelu/InstanceNorm blocks reading the
    outer input ``x``."""
    C = 2
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        inits += [numpy_helper.from_array(np.ones((C, C, 1, 1), np.float32), f"w{i}"),
                  numpy_helper.from_array(np.full((C, 1, 1), 0.1, np.float32), f"sl{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}"),
                  helper.make_node("PRelu", [f"c{i}", f"sl{i}"], [f"p{i}"], name=f"prelu{i}")]
        x = f"p{i}"
    vi = helper.make_tensor_value_info
    then = helper.make_graph(nodes, "then", [], [vi(x, TensorProto.FLOAT, [1, C, 4, 4])], inits)
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="e")], "else", [],
                              [vi("e", TensorProto.FLOAT, [1, C, 4, 4])])
    g = helper.make_graph([helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other)],
                          "m", [vi("x", TensorProto.FLOAT, [1, C, 4, 4]), vi("cond", TensorProto.BOOL, [])],
                          [vi("y", TensorProto.FLOAT, [1, C, 4, 4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_edits_inside_a_big_branch_keep_its_captured_names_incrementally():
    """Each edit inside a branch used to throw away what the branch captures, and the next
    question about the enclosing graph recomputed it over the whole branch."""
    counts = []
    for blocks in (60, 120):
        m = gs.load(cnn_in_a_branch(blocks))
        branch = m.find_nodes("If")[0].subgraphs()["then_branch"]

        def edit(m=m, g=branch):
            for node in g.find_nodes("PRelu"):
                x, s = node.inputs
                r = g.make_node("Relu", [x])
                neg = g.make_node("Neg", [x])
                mul = g.make_node("Mul", [s, g.make_node("Relu", [neg.outputs[0]]).outputs[0]])
                g.rewire(node.outputs[0], g.make_node("Sub", [r.outputs[0], mul.outputs[0]]).outputs[0],
                         outputs=True)
                g.remove_node(node)
                assert m.graph.is_used("x") and "x" in g.captured()

        counts.append(lines(edit))
        assert sorted(branch.captured()) == ["x"]
        assert m.problems(onnx_checker=False) == []
        fresh = gs.load(m.to_bytes()).find_nodes("If")[0].subgraphs()["then_branch"]
        assert len(fresh) == len(branch) == 6 * blocks
    assert counts[1] < 2.4 * counts[0], f"doubling the branch multiplied the work by {counts[1] / counts[0]:.2f}"


def test_captured_names_follow_edits_inside_a_branch():
    m = gs.load(if_model())
    g = m.graph
    then = m.find_nodes("If")[0].subgraphs()["then_branch"]
    assert sorted(then.captured()) == ["x"] and g.is_used("w")
    assert [n.name for n in g.consumers("w")] == ["e_add"]
    mul = then.node("t_mul")
    mul.set_input(1, "w")  # now reads the outer initializer too
    assert sorted(then.captured()) == ["w", "x"]
    assert sorted(n.name for n in g.consumers("w")) == ["e_add", "t_mul"]
    mul.set_input(0, "two")  # no longer reads x
    assert sorted(then.captured()) == ["w"]
    assert sorted(n.name for n in g.consumers("x")) == ["e_add"]
    neg = then.make_node("Neg", ["x"])
    assert sorted(then.captured()) == ["w", "x"] and g.is_used("x")
    then.remove_node(neg)
    assert sorted(then.captured()) == ["w"]
    m.check()


def test_a_refused_make_node_changes_nothing():
    m = gs.load(if_model())
    g = m.graph
    before = m.to_bytes()
    for args, kwargs in [((["x", None],), {}), ((["nope"],), {}), ((["x"], ["y"]), {}), ((["x"], ["a", "a"]), {}),
                         ((["x"], [7]), {})]:
        try:
            g.make_node("Neg", *args, **kwargs)
        except gs.EditError:
            pass
        else:
            raise AssertionError(f"make_node{args} was accepted")
    assert m.to_bytes() == before and len(g) == 1
    neg = g.make_node("Neg", ["x"], ["a"])
    assert g.producer("a") is neg and sorted(n.name for n in g.consumers("x")) == sorted(["t_mul", "e_add", neg.name])
    m.check()


def chain_model(n: int) -> onnx.ModelProto:
    """``n`` Relu nodes in a chain."""
    nodes = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}"], name=f"r{i}") for i in range(n)]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "chain", [vi("x", TensorProto.FLOAT, [2])], [vi(f"t{n}", TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_reading_the_proto_after_each_small_edit_costs_the_edit_not_the_graph():
    """A loop "edit one node, read the proto" used to re-sort the whole node list on every
    read (quadratic over the loop); removals are now cut out where they sit, and appends in
    order leave the list as it is, so the work per edit stays flat when the graph doubles."""
    k = 40
    counts = []
    for n in (2000, 4000):
        m = gs.load(chain_model(n))
        g = m.graph
        side = [g.make_node("Neg", [f"t{i * 7 + 1}"]) for i in range(k)]  # read by nothing
        m.proto  # index built, list in order, outside the count

        def edit(m=m, g=g, side=side):
            for node in side:
                g.remove_node(node)
                assert len(m.proto.graph.node) == n + k - 1
                g.make_node("Abs", [f"t{n}"])  # appended in order: nothing to move
                assert len(g.proto.node) == n + k

        counts.append(lines(edit) / k)
        assert [id(x.proto) for x in g.nodes] == [id(p) for p in m.proto.graph.node]
        m.check()
    assert counts[1] < 1.3 * counts[0], f"lines per edit and read grew from {counts[0]:.0f} to {counts[1]:.0f}"


def test_the_node_list_stays_in_rank_order_through_mixed_edits_and_reads():
    """Removals cut out in place, appends, nodes placed before others, replacements, and
    rewires against the order, with reads in between: the proto's list is always the index's
    topological order, node for node."""
    import random

    rng = random.Random(5)
    m = gs.load(chain_model(60))
    g = m.graph
    extra = []
    for step in range(300):
        what = rng.randrange(6)
        names = [n.outputs[0] for n in g.nodes]
        if what == 0 and extra:
            node = extra[rng.randrange(len(extra))]
            try:
                g.remove_node(node)
                extra.remove(node)
            except gs.EditError:
                pass  # another extra node reads it: refused, nothing changed
        elif what == 1:
            extra.append(g.make_node("Neg", [rng.choice(names)]))
        elif what == 2:
            anchor = g.node(f"r{rng.randrange(1, 60)}")
            extra.append(g.make_node("Abs", [anchor.inputs[0]], before=anchor))
        elif what == 3 and extra:
            old = extra.pop(rng.randrange(len(extra)))
            extra.append(g.replace_node(old, [helper.make_node("Sin", list(old.inputs), list(old.outputs),
                                                               name=f"sin{step}")])[0])
        elif what == 5:
            names_before = [n.name for n in g.nodes]
            r = g.node(f"r{rng.randrange(60)}")
            try:  # a rewire against the order: the ranks are repaired locally, or it is refused
                r.set_input(0, rng.choice(names))
            except gs.EditError:
                assert [n.name for n in g.nodes] == names_before
        elif what == 4 and extra:
            node = extra[rng.randrange(len(extra))]
            try:
                node.set_input(0, rng.choice(names))
            except gs.EditError:
                pass  # would make a cycle: refused, nothing changed
        if rng.random() < 0.5:
            listed = [id(p) for p in (g.proto.node if rng.random() < 0.5 else m.proto.graph.node)]
            assert listed == [id(n.proto) for n in g.nodes], f"step {step}"
    assert m.problems(onnx_checker=False) == []
    m.check()
