"""A save's own checks (the ordered scan, the tensors' data, the text) run in the checker's child
beside onnx's checker; meanwhile this process writes on what it assumes of the scan. A write made
on an assumption the child's scan contradicts is redone, never committed; a refusal keeps its
message and leaves nothing behind."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import graphsurgery as gs
from graphsurgery import checker, checks, serialization
from conftest import tiny_chain

BROKEN = "refusing to save a broken model (1 problem(s)): {}. Fix it, or pass check=False to save anyway"


def _dangling(m):
    m.graph.node[1].input[0] = "nowhere"


def _twice(m):
    m.graph.node[2].output[0] = "r"
    m.graph.output[0].name = "r"


def _ghost(m):
    m.graph.output.add(name="ghost")


def _cycle(m):
    m.graph.node[0].input[0] = "y"


def _no_location(m):
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL


@pytest.mark.parametrize("damage, problem", [
    (_dangling, "node 'relu' (Relu) in main graph reads 'nowhere', which nothing defines (dangling input)"),
    (_twice, "tensor 'r' is produced by two nodes, 'relu' and 'add'; rename one output"),
    (_ghost, "output 'ghost' of main graph has no producer"),
    (_cycle, "the graph has a cycle: 'relu' -> 'add' -> 'conv' -> 'relu'"),
    (_no_location, "tensor 'w' is marked EXTERNAL but names no 'location'"),  # (assumed: no external data)
])
def test_what_the_scan_finds_in_the_child_is_refused_as_before(tmp_path, damage, problem):
    m = tiny_chain()
    damage(m)
    with pytest.raises(gs.SaveError) as exc:
        gs.load(m).save(tmp_path / "m.onnx")
    assert str(exc.value) == BROKEN.format(problem)
    assert os.listdir(tmp_path) == []


def deep_model(levels: int = 33) -> onnx.ModelProto:
    # built in place: onnx.helper cannot copy a graph this deep
    proto = onnx.helper.make_model(onnx.helper.make_graph(
        [], "main", [onnx.helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [onnx.helper.make_tensor_value_info("y0", TensorProto.BOOL, [])]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    g = proto.graph
    for depth in range(levels):
        node = g.node.add(op_type="If", name=f"if{depth}", input=["c"], output=[f"y{depth}"])
        for branch in ("then_branch", "else_branch"):
            attr = node.attribute.add(name=branch, type=onnx.AttributeProto.GRAPH)
            attr.g.name = f"{branch}{depth}"
            attr.g.output.add(name=f"y{depth + 1}" if branch == "then_branch" else "c")
        g = node.attribute[0].g
    g.node.add(op_type="Identity", input=["c"], output=[f"y{levels}"])
    return proto


def test_nesting_too_deep_to_read_is_refused_once_the_child_measured_it(tmp_path):
    with pytest.raises(gs.SaveError, match="^subgraphs nest 33 levels deep; protobuf readers refuse"):
        gs.load(deep_model()).save(tmp_path / "deep.onnx")  # written meanwhile on "not too deep": dropped
    assert os.listdir(tmp_path) == []


def test_the_save_scans_in_the_checkers_child_not_here(tmp_path, monkeypatch):
    here = os.getpid()
    forks, scans = [], []
    real_fork, real_scan = checker._fork, checks.scan
    monkeypatch.setattr(checker, "_fork", lambda *a: forks.append(a[4]) or real_fork(*a))
    monkeypatch.setattr(checks, "scan", lambda proto: scans.append(os.getpid()) or real_scan(proto))
    model = gs.load(tiny_chain())
    model.save(tmp_path / "m.onnx")
    assert forks == [checker.INFERENCE, checker.STRUCTURE] and here not in scans
    assert (tmp_path / "m.onnx").read_bytes() == model.to_bytes()
    broken = tiny_chain()
    _dangling(broken)
    forks.clear()
    with pytest.raises(gs.SaveError, match="nowhere"):
        gs.load(broken).save(tmp_path / "b.onnx")
    assert forks == [checker.INFERENCE, checker.STRUCTURE] and here not in scans
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_a_write_on_a_wrong_assumption_is_redone_before_it_is_committed(tmp_path, monkeypatch):
    # text that reads like an external tensor's data file: external data is assumed, the child finds none
    prepared = []
    real = serialization.prepare
    monkeypatch.setattr(serialization, "prepare", lambda *a, **k: prepared.append(k["has_external"]) or real(*a, **k))
    m = tiny_chain()
    m.metadata_props.add(key="location", value="elsewhere.data")
    model = gs.load(m)
    model.save(tmp_path / "m.onnx")
    assert prepared == [True, False]  # assumed, then as the child's scan found it
    assert os.listdir(tmp_path) == ["m.onnx"]  # one file, weights inside, as without the assumption
    assert (tmp_path / "m.onnx").read_bytes() == model.to_bytes()
    prepared.clear()
    model.save(tmp_path / "again.onnx")  # the state that passed is known: nothing assumed, nothing checked
    assert prepared == [False]


def test_external_data_assumed_from_the_bytes_is_written_right(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "ext.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(tmp_path / "ext.onnx"))
    before = {t.name: model.graph.initializer(t.name) for t in model.proto.graph.initializer}
    model.set_metadata("k", "edited")  # a new state: checked in full
    out = tmp_path / "out"
    out.mkdir()
    model.save(out / "m.onnx")
    assert sorted(os.listdir(out)) == ["m.onnx", "m.onnx.data"]
    again = gs.load(str(out / "m.onnx"))
    assert again.metadata["k"] == "edited"
    for name, value in before.items():
        np.testing.assert_array_equal(again.graph.initializer(name), value)


def _scan_that_dies_in_the_child(monkeypatch, how):
    here = os.getpid()
    real = checks.scan

    def scan(proto):
        if os.getpid() != here:
            how()
        return real(proto)

    monkeypatch.setattr(checks, "scan", scan)


def test_a_child_that_crashes_before_its_facts_is_reported_and_scanned_here(tmp_path, monkeypatch):
    _scan_that_dies_in_the_child(monkeypatch, os.abort)
    with pytest.raises(gs.SaveError, match=r"onnx checker crashed \(SIGABRT\)"):
        gs.load(tiny_chain()).save(tmp_path / "m.onnx")
    with pytest.raises(gs.SaveError, match="nest 33 levels deep"):  # the scan made here still comes first
        gs.load(deep_model()).save(tmp_path / "deep.onnx")
    assert os.listdir(tmp_path) == []


def test_a_child_stuck_in_its_scan_falls_back_and_the_save_goes_on(tmp_path, monkeypatch):
    import time

    _scan_that_dies_in_the_child(monkeypatch, lambda: time.sleep(60))
    monkeypatch.setattr(checker, "STALL_SECONDS", 0.5)
    model = gs.load(tiny_chain())
    model.save(tmp_path / "m.onnx")  # checked here and in a fresh process
    assert (tmp_path / "m.onnx").read_bytes() == model.to_bytes()
    broken = tiny_chain()
    _dangling(broken)
    with pytest.raises(gs.SaveError, match="dangling input"):
        gs.load(broken).save(tmp_path / "b.onnx")
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_an_error_of_the_write_waits_for_the_scan(tmp_path):
    src = tmp_path / "src.onnx"
    gs.load(tiny_chain()).save(src)
    model = gs.load(str(src))
    with pytest.raises(gs.SaveError, match="^refusing to overwrite the input model"):
        model.save(src)
    _dangling(model.proto)  # a broken model is refused as broken first, as before
    with pytest.raises(gs.SaveError, match="dangling input"):
        model.save(src)
    assert os.listdir(tmp_path) == ["src.onnx"] and gs.load(str(src)).to_bytes() == gs.load(tiny_chain()).to_bytes()


def test_the_facts_a_child_reports_are_taken_only_when_well_formed():
    assert checks.ScanResult.reported(None) is None
    assert checks.ScanResult.reported([None, "3", False]) is None
    assert checks.ScanResult.reported([None, 3, 1]) is None
    got = checks.ScanResult.reported(["dangling", 2, True])
    assert (got.problem, got.depth, got.has_external) == ("dangling", 2, True)


def test_without_fork_the_own_checks_run_here_and_judge_alike(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "fork")
    model = gs.load(tiny_chain())
    model.save(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == model.to_bytes()
    broken = tiny_chain()
    _dangling(broken)
    with pytest.raises(gs.SaveError) as exc:
        gs.load(broken).save(tmp_path / "b.onnx")
    assert str(exc.value) == BROKEN.format(
        "node 'relu' (Relu) in main graph reads 'nowhere', which nothing defines (dangling input)")
    assert os.listdir(tmp_path) == ["m.onnx"]


def _relu_model(weight_bytes: bytes = b"\0" * 8) -> onnx.ModelProto:
    w = onnx.helper.make_tensor("w", TensorProto.FLOAT, [2], b"\0" * 8, raw=True)
    w.raw_data = weight_bytes
    g = onnx.helper.make_graph([onnx.helper.make_node("Add", ["x", "w"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                               [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [w])
    return onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_a_check_whose_scan_ran_here_runs_the_tensor_checks_in_the_child():
    # the path of an ordered check that cannot go whole to the child (a model of 2 GiB or more
    # with external data): the scan is made here and the child starts with the tensors' data
    for proto, expected in ((_relu_model(), []), (_relu_model(b"\0" * 6), "raw_data holds 6 bytes")):
        found = checks._problems(proto, None, lambda: [], True, True, checks.scan(proto),
                                 proto.SerializeToString(), None, None, None)[0]
        if expected == []:
            assert found == []
        else:
            assert len(found) == 1 and expected in found[0]
