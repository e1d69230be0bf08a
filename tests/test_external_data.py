"""External data: memory-mapped reads, streamed saves to a new folder, values preserved."""

import os

import numpy as np
import onnx
import pytest

import graphsurgery as gs
from conftest import DATA, assert_close, run_ort, tiny_chain

X = np.random.default_rng(3).standard_normal((1, 3, 4, 4)).astype(np.float32)


def test_save_external_then_load_memory_maps(tmp_path):
    model = gs.load(tiny_chain())
    expected = run_ort(model.proto, {"x": X})
    model.save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    assert (tmp_path / "m.onnx.data").exists()
    again = gs.load(str(tmp_path / "m.onnx"))
    w = again.graph.initializer("w")
    assert isinstance(w.base, np.memmap) or isinstance(w, np.memmap)
    assert np.array_equal(w, onnx.numpy_helper.to_array(tiny_chain().graph.initializer[0]))
    assert_close(run_ort(onnx.load(str(tmp_path / "m.onnx")), {"x": X}), expected)


def test_external_model_saved_to_new_folder_streams_data(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    gs.load(tiny_chain()).save(a / "m.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(a / "m.onnx"))
    model.graph.node("relu").op_type = "Sigmoid"
    model.save(b / "out.onnx")  # stays external by default
    assert (b / "out.onnx.data").exists()
    loaded = onnx.load(str(b / "out.onnx"))
    expected = tiny_chain()
    expected.graph.node[1].op_type = "Sigmoid"
    assert_close(run_ort(loaded, {"x": X}), run_ort(expected, {"x": X}))
    # the input folder is untouched, and the in-memory model now reads the new file
    assert gs.load(str(a / "m.onnx")).graph.node("relu").op_type == "Relu"
    assert model.base_dir == str(b)


def test_save_external_model_inline(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(tmp_path / "m.onnx"))
    model.save(tmp_path / "inline.onnx", external_data=False)
    proto = onnx.load(str(tmp_path / "inline.onnx"), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert_close(run_ort(proto, {"x": X}), run_ort(tiny_chain(), {"x": X}))


def test_never_clobbers_the_data_file_the_input_needs(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0, location="w.data")
    before = (tmp_path / "w.data").read_bytes()
    model = gs.load(str(tmp_path / "m.onnx"))
    model.graph.set_initializer("b", np.full((1, 2, 1, 1), 5, np.float32))
    model.save(tmp_path / "m2.onnx", location="w.data", size_threshold=0)  # the name is taken: a fresh one
    assert (tmp_path / "w.data").read_bytes() == before
    assert_close(run_ort(onnx.load(str(tmp_path / "m.onnx")), {"x": X}), run_ort(tiny_chain(), {"x": X}))
    used = {e.value for t in onnx.load(str(tmp_path / "m2.onnx"), load_external_data=False).graph.initializer
            for e in t.external_data if e.key == "location"}
    assert len(used) == 1 and used != {"w.data"} and next(iter(used)).startswith("w.")
    assert np.array_equal(gs.load(str(tmp_path / "m2.onnx")).graph.initializer("b"), np.full((1, 2, 1, 1), 5))


def test_overwrite_in_place_with_external_data(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(tmp_path / "m.onnx"))
    model.graph.initializer("w")  # memory-mapped before the overwrite
    model.graph.set_initializer("b", np.zeros((1, 2, 1, 1), np.float32))
    model.save(tmp_path / "m.onnx", overwrite=True)
    again = gs.load(str(tmp_path / "m.onnx"))
    assert np.array_equal(again.graph.initializer("b"), np.zeros((1, 2, 1, 1), np.float32))
    assert np.array_equal(again.graph.initializer("w"), onnx.numpy_helper.to_array(tiny_chain().graph.initializer[0]))
    # the new data went to a fresh name (the old file was in use until the model was replaced);
    # the old data file is gone, and no temporary is left
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and names[0] == "m.onnx" and names[1].startswith("m.onnx.") and names[1].endswith(".data")
    # and once more: a fresh name again (a name is never reused, so a reader holding the previous
    # model cannot open a newer file under the name it knew)
    again.save(tmp_path / "m.onnx", overwrite=True)
    newer = sorted(os.listdir(tmp_path))
    assert len(newer) == 2 and newer[1] not in (names[1], "m.onnx.data")


def test_real_model_external_round_trip(tmp_path):
    model = gs.load(str(DATA / "magika_standard_v3_3.onnx"))
    model.save(tmp_path / "mg.onnx", external_data=True)
    feeds = {"bytes": np.random.default_rng(0).integers(0, 257, (2, 2048)).astype(np.int32)}
    assert_close(run_ort(onnx.load(str(tmp_path / "mg.onnx")), feeds),
                 run_ort(onnx.load(str(DATA / "magika_standard_v3_3.onnx")), feeds), rtol=0, atol=0)
    # and back to one file, byte-identical to the original
    gs.load(str(tmp_path / "mg.onnx")).save(tmp_path / "mg_inline.onnx", external_data=False)
    assert (tmp_path / "mg_inline.onnx").read_bytes() == (DATA / "magika_standard_v3_3.onnx").read_bytes()


def test_check_finds_external_data_beside_the_model_not_in_cwd(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    gs.load(tiny_chain()).save(folder / "m.onnx", external_data=True, size_threshold=0)
    assert os.getcwd() != str(folder)
    model = gs.load(str(folder / "m.onnx"))
    assert model.problems() == []
    assert sorted(os.listdir(folder)) == ["m.onnx", "m.onnx.data"]  # the checker's temporary file is gone


# ---- a save interrupted at any step, concurrent saves, file modes, stale temporaries ---------
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

W_OLD = np.full((2, 3, 3, 3), 1.0, np.float32)
B_OLD = np.full((1, 2, 1, 1), 1.0, np.float32)


def _version(tag: float) -> onnx.ModelProto:
    """tiny_chain whose weights are all ``tag`` and whose metadata says ``tag``: a mix shows."""
    m = tiny_chain()
    for t in m.graph.initializer:
        t.CopyFrom(onnx.numpy_helper.from_array(np.full(tuple(t.dims), tag, np.float32), t.name))
    m.metadata_props[0].value = str(tag)
    return m


def _state(folder) -> float:
    """The version the model in ``folder`` is, after checking its weights are of that version too."""
    model = gs.load(str(folder / "m.onnx"))
    tag = float(model.metadata["k"])
    for name in ("w", "b"):
        values = np.asarray(model.graph.initializer(name))
        assert np.all(values == tag), f"model says version {tag} but {name} holds {np.unique(values)}: a mix"
    return tag


# Runs one overwrite of m.onnx (version 1 -> 2) in a child process, killing it just before its
# Nth change to the folder (a rename, link or unlink). Prints how many changes a full save makes.
_KILL_AT = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np, onnx
    import graphsurgery as gs
    folder, kill_at = sys.argv[1], int(sys.argv[2])
    calls = [0]
    def wrap(fn):
        def inner(*a, **k):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return inner
    for name in ("replace", "rename", "link", "unlink"):
        setattr(os, name, wrap(getattr(os, name)))
    model = gs.load(os.path.join(folder, "m.onnx"))
    model.set_metadata("k", "2.0")
    for t in ("w", "b"):
        model.graph.set_initializer(t, np.full(model.graph.initializer(t).shape, 2.0, np.float32))
    model.save(os.path.join(folder, "m.onnx"), overwrite=True, external_data=True, size_threshold=0)
    print(json.dumps(calls[0]))
""")


def test_external_save_killed_at_any_step_leaves_old_or_new_never_a_mix(tmp_path):
    seen = set()
    for kill_at in range(1, 20):
        folder = tmp_path / str(kill_at)
        folder.mkdir()
        gs.load(_version(1.0)).save(folder / "m.onnx", external_data=True, size_threshold=0)
        proc = subprocess.run([sys.executable, "-c", _KILL_AT, str(folder), str(kill_at)], capture_output=True,
                              text=True, timeout=120)
        state = _state(folder)  # old (1) or new (2), and never a mix
        seen.add(state)
        if proc.returncode == 0:  # the save ran to the end without reaching this step
            assert state == 2.0 and json.loads(proc.stdout) < kill_at
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        # the next save in the folder reclaims what the killed one left behind
        gs.load(str(folder / "m.onnx")).save(folder / "other.onnx", size_threshold=0)
        assert not [n for n in os.listdir(folder) if n.endswith(".gstmp")], os.listdir(folder)
        assert _state(folder) == state
    else:
        pytest.fail("the save never completed")
    assert seen == {1.0, 2.0}


def test_external_save_failing_at_any_step_leaves_old_or_new(tmp_path, monkeypatch):
    for fail_at in range(1, 20):
        folder = tmp_path / str(fail_at)
        folder.mkdir()
        gs.load(_version(1.0)).save(folder / "m.onnx", external_data=True, size_threshold=0)
        model = gs.load(str(folder / "m.onnx"))
        model.set_metadata("k", "2.0")
        for t in ("w", "b"):
            model.graph.set_initializer(t, np.full(model.graph.initializer(t).shape, 2.0, np.float32))
        calls = [0]
        with monkeypatch.context() as mp:
            for name in ("replace", "rename", "link", "unlink"):
                real = getattr(os, name)

                def inner(*a, _real=real, **k):
                    calls[0] += 1
                    if calls[0] == fail_at:
                        raise OSError("injected failure")
                    return _real(*a, **k)
                mp.setattr(os, name, inner)
            try:
                model.save(folder / "m.onnx", overwrite=True, external_data=True, size_threshold=0)
                done = True
            except OSError:
                done = False
        assert _state(folder) in (1.0, 2.0)
        assert not [n for n in os.listdir(folder) if n.endswith(".gstmp")]
        if done:
            assert _state(folder) == 2.0
            break


_SAVER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import graphsurgery as gs
    sys.path.insert(0, sys.argv[3])
    from test_external_data import _version
    folder, tag = sys.argv[1], float(sys.argv[2])
    for _ in range(15):
        gs.load(_version(tag)).save(os.path.join(folder, "m.onnx"), overwrite=True, external_data=True, size_threshold=0)
""")


def test_concurrent_external_saves_never_mix(tmp_path):
    gs.load(_version(1.0)).save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    procs = [subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path), str(tag), tests_dir],
                              stderr=subprocess.PIPE, text=True) for tag in (2.0, 3.0)]
    reads = 0
    while any(p.poll() is None for p in procs):
        try:
            _state(tmp_path)  # a mix fails the test; a data file deleted under us is only an error
            reads += 1
        except gs.GraphSurgeryError:
            pass
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    assert _state(tmp_path) in (2.0, 3.0)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".gstmp")]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_saved_files_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        gs.load(tiny_chain()).save(tmp_path / "inline.onnx")
        gs.load(tiny_chain()).save(tmp_path / "ext.onnx", external_data=True, size_threshold=0)
    finally:
        os.umask(old)
    for name in ("inline.onnx", "ext.onnx", "ext.onnx.data"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_stale_temporaries_of_killed_saves_are_reclaimed(tmp_path):
    from graphsurgery import serialization

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process that has exited
    stale = tmp_path / f".m.onnx.data.{gone}-0123abcd.gstmp"
    stale.write_bytes(b"\0" * 1000)
    live = tmp_path / f".m.onnx.data.{os.getpid()}-89abcdef.gstmp"  # a save still running: left alone
    live.write_bytes(b"\0")
    old_live = tmp_path / f".x.onnx.{os.getppid()}-00000000.gstmp"  # alive but a day old: pid reused
    old_live.write_bytes(b"\0")
    os.utime(old_live, (1, 1))
    foreign = tmp_path / ".m.onnx.data.12345.tmp"  # not ours: left alone
    foreign.write_bytes(b"\0")
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    assert not stale.exists() and not old_live.exists()
    assert live.exists() and foreign.exists()
    assert serialization.reclaim_stale(str(tmp_path)) == []
