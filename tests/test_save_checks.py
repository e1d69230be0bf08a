"""Saves check what can have changed, and nothing twice; onnx's checker runs where a crash,
a stuck child or an endless check cannot take the caller down."""

import os
import threading
import time

import onnx
import pytest
from onnx import helper

import graphsurgery as gs
from graphsurgery import checker, checks, serialization, text
from conftest import tiny_chain


@pytest.fixture
def checker_runs(monkeypatch):
    """How many times onnx's checker was started (in a child) by this process."""
    runs = []
    real = checks.start_check

    def counting(*args, **kwargs):
        runs.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(checks, "start_check", counting)
    return runs


def test_a_checked_model_is_not_checked_again_until_it_changes(tmp_path, checker_runs):
    model = gs.load(tiny_chain())
    model.check()
    assert len(checker_runs) == 1
    model.save(tmp_path / "a.onnx")
    model.save(tmp_path / "b.onnx")
    model.check()
    assert len(checker_runs) == 1
    model.set_metadata("k", "w")  # an edit: the next save checks again
    model.save(tmp_path / "c.onnx")
    assert len(checker_runs) == 2
    model.save(tmp_path / "d.onnx")  # what was saved passed: not again
    assert len(checker_runs) == 2
    assert (tmp_path / "c.onnx").read_bytes() == (tmp_path / "d.onnx").read_bytes()


def test_editing_the_proto_directly_after_a_check_is_still_caught(tmp_path):
    model = gs.load(tiny_chain())
    model.check()
    model.save(tmp_path / "ok.onnx")
    # something only onnx's checker sees, done behind the library's back
    model.proto.graph.node[0].attribute[0].type = onnx.AttributeProto.FLOAT
    with pytest.raises(gs.SaveError, match="refusing to save"):
        model.save(tmp_path / "bad.onnx")
    model.proto.graph.node[0].attribute[0].type = onnx.AttributeProto.INTS
    model.proto.graph.node.append(helper.make_node("Relu", ["nowhere"], ["z"], name="dangling"))
    with pytest.raises(gs.SaveError, match="nowhere"):
        model.save(tmp_path / "bad.onnx")
    assert sorted(os.listdir(tmp_path)) == ["ok.onnx"]


def test_text_smuggled_in_by_merging_bytes_is_refused_at_save(tmp_path):
    model = gs.load(tiny_chain())
    model.check()
    node = onnx.NodeProto(name="\u00ffrelu")
    data = node.SerializeToString().replace("\u00ff".encode(), b"\xff\xfe")
    model.proto.graph.node[1].MergeFromString(data)  # protobuf does not check proto2 text here
    with pytest.raises(gs.SaveError, match="not valid UTF-8"):
        model.save(tmp_path / "bad.onnx")
    assert os.listdir(tmp_path) == []


def test_external_data_is_checked_at_every_save(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(tmp_path / "m.onnx"))
    model.check()
    data_file = next(p for p in tmp_path.iterdir() if p.name != "m.onnx")
    data_file.write_bytes(data_file.read_bytes()[:8])  # the model's bytes are the same; its data is not
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(gs.SaveError, match="external data"):
        model.save(out / "m.onnx")


def test_a_model_whose_weights_moved_out_is_known_sound_after_the_save(tmp_path, checker_runs):
    model = gs.load(tiny_chain())
    model.save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    assert len(checker_runs) == 1
    model.save(tmp_path / "again.onnx")
    assert len(checker_runs) == 1
    assert gs.load(str(tmp_path / "again.onnx")).problems() == []


def test_clean_text_is_not_walked_field_by_field(monkeypatch):
    def walk(*a, **k):
        raise AssertionError("the text was walked field by field")

    monkeypatch.setattr(text, "find_bad_text", walk)
    data = tiny_chain().SerializeToString()
    gs.load(data)
    gs.load(onnx.ModelProto.FromString(data))
    assert gs.load(data).problems() == []


def test_save_goes_down_the_layers_and_returns_what_it_did(tmp_path):
    proto = tiny_chain()
    saved = serialization.save(proto, str(tmp_path / "m.onnx"), base_dir=None, source_path=None, overwrite=False,
                               external=True, location=None, size_threshold=0, depth=0, has_external=False,
                               durable=False)
    assert saved.external and saved.base_dir == str(tmp_path)
    assert saved.data == (tmp_path / "m.onnx").read_bytes()
    assert not hasattr(gs.Model, "_moved_to")


# ---- the isolated checker -------------------------------------------------------------------
def test_a_forked_checker_stuck_on_a_lock_falls_back_to_a_fresh_process(monkeypatch):
    # a fork copies a lock another thread holds at that moment; the child would wait forever
    lock = threading.Lock()
    real = onnx.checker.check_model

    def needs_the_lock(*args, **kwargs):
        with lock:
            return real(*args, **kwargs)

    monkeypatch.setattr(onnx.checker, "check_model", needs_the_lock)
    monkeypatch.setattr(checker, "STALL_SECONDS", 0.5)
    holding = threading.Event()

    def hold():
        with lock:
            holding.set()
            time.sleep(3)

    threading.Thread(target=hold, daemon=True).start()
    holding.wait()
    data = tiny_chain().SerializeToString()
    result = []
    worker = threading.Thread(target=lambda: result.append(checker.isolated_check(data, None, True)), daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(60)
    assert result == [[]]  # the fresh process checked it: sound
    assert time.monotonic() - start < 60


def test_a_check_that_never_ends_is_stopped_and_reported(monkeypatch):
    def spin(*args, **kwargs):
        while True:
            pass

    monkeypatch.setattr(onnx.checker, "check_model", spin)
    monkeypatch.setattr(checker, "TIME_LIMIT", 1.0)
    found = checker.isolated_check(tiny_chain().SerializeToString(), None, True)
    assert found and "did not finish within" in found[0]


def test_a_fresh_process_checks_and_its_crash_is_caught():
    good = tiny_chain()
    assert checker._spawned(good.SerializeToString(), None, True) == []
    good.graph.node[0].attribute[0].type = onnx.AttributeProto.FLOAT
    assert "onnx checker" in checker._spawned(good.SerializeToString(), None, True)[0]
    found = checker._spawned(b"", None, True, code="import os; os.abort()")
    assert found and "crashed (SIGABRT)" in found[0]
    assert "without a verdict" in checker._spawned(b"", None, True, code="print('no')")[0]


def test_the_quick_look_at_plain_raw_tensors_judges_as_the_full_one():
    import numpy as np
    from onnx import TensorProto, numpy_helper

    from graphsurgery import tensors

    def full_verdict(t):
        # the same tensor with a field the quick look does not take, so the full path judges it
        u = TensorProto()
        u.CopyFrom(t)
        u.data_location = TensorProto.DEFAULT  # (said explicitly, it means the same)
        return tensors.problem(u, None)

    cases = []
    for arr in (np.zeros((2, 3), np.float32), np.ones(5, np.int64), np.zeros((), np.float16), np.zeros(0, np.uint8),
                np.array([True, False]), np.zeros((2, 2), np.complex64)):
        cases.append(numpy_helper.from_array(arr, "t"))
    short = numpy_helper.from_array(np.zeros((2, 3), np.float32), "short")
    short.raw_data = short.raw_data[:-1]
    negative = numpy_helper.from_array(np.zeros(4, np.float32), "negative")
    negative.dims[:] = [-2, -2]
    bf16 = numpy_helper.from_array(np.zeros(4, np.float32), "bfloat16")
    bf16.data_type = TensorProto.BFLOAT16  # 16 bytes: 8 elements of 2 bytes, not 4
    strings = TensorProto(name="strings", data_type=TensorProto.STRING, dims=[1], raw_data=b"abcd")
    unknown = TensorProto(name="unknown", data_type=999, dims=[1], raw_data=b"abcd")
    cases += [short, negative, bf16, strings, unknown]
    for t in cases:
        assert tensors.problem(t, None) == full_verdict(t), t.name
    assert all(tensors.problem(t, None) is not None for t in (short, negative, bf16, strings, unknown))


def test_a_tensor_segment_is_refused_by_check_and_save(tmp_path):
    # onnx's checker lets it through, but no reader can read it back
    m = tiny_chain()
    m.graph.initializer[1].segment.begin = 0
    m.graph.initializer[1].segment.end = 2
    model = gs.load(m)
    assert any("segment" in p for p in model.problems())
    with pytest.raises(gs.SaveError, match="segment"):
        model.save(tmp_path / "m.onnx")


# ---- the save's order: the checks read protos; the file is written while onnx's checker runs ----------
def test_the_checks_read_protos_never_the_model():
    import ast
    import pathlib

    import graphsurgery

    root = pathlib.Path(graphsurgery.__file__).parent
    for name in ("checks.py", "checker.py", "serialization.py", "text.py"):
        tree = ast.parse((root / name).read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.startswith(("core", "graphsurgery.core"))], name


def test_the_file_is_written_while_the_checker_runs_and_renamed_only_when_it_passes(tmp_path, monkeypatch):
    seen = []
    real = checker.PendingCheck.result

    def verdict(bad):
        def result(self):
            seen.append(sorted(os.listdir(tmp_path)))
            found = real(self)
            return found + (["onnx checker: planted problem"] if bad else [])
        return result

    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    monkeypatch.setattr(checker.PendingCheck, "result", verdict(True))
    with pytest.raises(gs.SaveError, match="planted problem"):
        gs.load(tiny_chain()).save(target)
    assert len(seen) == 1 and len(seen[0]) == 2 and seen[0][0].endswith(".gstmp")  # written before the verdict
    assert os.listdir(tmp_path) == ["m.onnx"] and target.read_bytes() == b"old"  # then dropped, nothing replaced
    monkeypatch.setattr(checker.PendingCheck, "result", verdict(False))
    model = gs.load(tiny_chain())
    model.save(target)
    assert os.listdir(tmp_path) == ["m.onnx"] and target.read_bytes() == model.to_bytes()


def test_a_refused_save_that_would_move_weights_changes_nothing(tmp_path, monkeypatch):
    # weights that move into the file are moved only once the check passed: a refusal leaves the proto alone
    gs.load(tiny_chain()).save(tmp_path / "ext.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(tmp_path / "ext.onnx"))
    before = model.to_bytes()
    monkeypatch.setattr(checker.PendingCheck, "result", lambda self: ["onnx checker: planted problem"])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(gs.SaveError, match="planted problem"):
        model.save(out / "in.onnx", external_data=False)
    assert model.to_bytes() == before and os.listdir(out) == []


def _inference_only_failure() -> onnx.ModelProto:
    # the checker accepts it; strict shape inference with type checks refuses the declared output type
    m = tiny_chain()
    m.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    return m


def test_a_full_check_runs_as_its_two_halves_at_once_and_judges_as_one(monkeypatch):
    forks = []
    real = checker._fork

    def counting(*args):
        forks.append(args[4])
        return real(*args)

    monkeypatch.setattr(checker, "_fork", counting)
    broken = tiny_chain()
    broken.graph.node[0].attribute[0].type = onnx.AttributeProto.FLOAT
    for m in (tiny_chain(), broken, _inference_only_failure()):
        data = m.SerializeToString()
        whole = checker.run_onnx_checker(data, None, True)  # onnx's check_model(full_check=True), in this process
        forks.clear()
        assert checker.isolated_check(data, None, True) == whole
        assert forks == [checker.STRUCTURE, checker.INFERENCE]
        forks.clear()
        assert checker.isolated_check(data, None, False) == checker.run_onnx_checker(data, None, False)
        assert forks == [checker.ALL]
    assert checker.run_onnx_checker(_inference_only_failure().SerializeToString(), None, False) == []
    assert "shape inference" in checker.isolated_check(_inference_only_failure().SerializeToString(), None, True)[0]


def test_a_model_only_shape_inference_refuses_is_not_saved(tmp_path):
    with pytest.raises(gs.SaveError, match="shape inference"):
        gs.load(_inference_only_failure()).save(tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fork", [True, False])
def test_tensor_data_that_does_not_fit_is_refused_whether_the_checker_forks_or_not(tmp_path, monkeypatch, fork):
    # the tensors are checked in the forked child beside onnx's checker, or here when there is no fork
    if not fork:
        monkeypatch.delattr(os, "fork")
    m = tiny_chain()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-1]
    with pytest.raises(gs.SaveError, match="raw_data holds"):
        gs.load(m).save(tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []
