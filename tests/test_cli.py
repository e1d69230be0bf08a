import json
import subprocess
import sys

from graphsurgery.cli import main
from conftest import DATA


def test_inspect_example_text(capsys):
    assert main(["inspect", "--example"]) == 0
    out = capsys.readouterr().out
    assert "image" in out and "PRelu 1" in out and "problems   none found" in out


def test_inspect_json_real_model(capsys):
    assert main(["inspect", str(DATA / "silero_vad.onnx"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["ops"]["If"] == 25 and s["graphs"] == 51
    assert [i["name"] for i in s["inputs"]] == ["input", "state", "sr"]


def test_inspect_bad_file_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty" in err[0] and str(bad) in err[0]


def test_module_entry_point_runs(tmp_path):
    # run from elsewhere, so the installed package is used, not this source tree: a packaging
    # mistake (a subpackage left out of the wheel) fails here
    r = subprocess.run([sys.executable, "-m", "graphsurgery", "inspect", "--example", "--json"],
                       capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(r.stdout)["nodes"] == 8
    r = subprocess.run([sys.executable, "-m", "graphsurgery", "run", "--example", "-o", "fixed.onnx", "-p",
                        "fix-prelu-slope,prelu-to-relu,remove-if,cleanup"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fixed.onnx").exists()


def test_run_repairs_silero_with_the_documented_spelling(tmp_path):
    out = tmp_path / "vad16k.onnx"
    r = subprocess.run([sys.executable, "-m", "graphsurgery", "run", str(DATA / "silero_vad.onnx"), "-o", str(out),
                        "-p", "freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,"
                              "remove-if,cleanup", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [p["name"] for p in report["passes"]] == ["freeze-inputs", "set-shape", "fold-constants", "remove-if",
                                                     "cleanup"]
    import graphsurgery as gs
    assert not gs.load(str(out)).find_nodes("If")


def test_refused_pass_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.onnx"
    code = main(["run", str(DATA.parent / "fixtures" / "view_one.onnx"), "-o", str(out), "-p",
                 "fold-constants,set-batch(size=4),instancenorm-epsilon"])
    err = capsys.readouterr().err
    assert code == 2 and "instancenorm-epsilon needs epsilon" in err and not out.exists()


def test_run_verify_and_passes_listing(tmp_path, capsys):
    out = tmp_path / "ex.onnx"
    assert main(["run", "--example", "-o", str(out), "-p",
                 "fix-prelu-slope,prelu-to-relu,instancenorm-epsilon(epsilon=0.001),remove-if,cleanup"]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "-o", str(tmp_path / "ex2.onnx"), "-p", "remove-if,set-batch(size=2)",
                 "--verify"]) == 0
    assert "verified after set-batch(size=2): logits: max abs 0, max rel 0" in capsys.readouterr().out
    assert main(["passes"]) == 0
    listing = capsys.readouterr().out
    for name in ["freeze-inputs", "set-shape", "fold-constants", "remove-if", "cleanup", "prelu-to-relu",
                 "fix-prelu-slope", "instancenorm-epsilon", "set-batch", "debug-outputs"]:
        assert name in listing


def test_run_never_overwrites_the_input_unless_asked(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes((DATA / "silero_vad.onnx").read_bytes())
    assert main(["run", str(model), "-o", str(model), "-p", "cleanup"]) == 2
    assert "overwrite the input" in capsys.readouterr().err
    assert main(["run", str(model), "-o", str(model), "-p", "cleanup", "--overwrite"]) == 0


# --- every failure: one line on stderr, exit code 2, no file left, the input untouched ---------

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from graphsurgery.cli import example_path  # noqa: E402


def fails_cleanly(capsys, argv, folder=None, code=2):
    """Run ``argv`` in-process: exit ``code``, one line on stderr, no traceback, no file in ``folder``."""
    before = sorted(os.listdir(folder)) if folder else None
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == code, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("graphsurgery: error: "), err
    assert "Traceback" not in err
    if folder:
        assert sorted(os.listdir(folder)) == before
    return lines[0], out


@pytest.fixture
def model(tmp_path):
    """A copy of the example model in a folder of its own, and that folder."""
    path = tmp_path / "m.onnx"
    shutil.copy(example_path(), path)
    return str(path)


def test_output_into_an_unwritable_folder(model, tmp_path, capsys, monkeypatch):
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", a[0] if a else str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what an unwritable folder does, even for root
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(tmp_path / "o.onnx"), "-p", "cleanup"], tmp_path)
    assert "Permission denied" in line and str(tmp_path) in line


def test_output_rename_fails_after_the_work_no_file_left(model, tmp_path, capsys, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", src, None, dst)

    monkeypatch.setattr(os, "replace", refuse)
    data = open(model, "rb").read()
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(tmp_path / "o.onnx"), "-p", "cleanup"], tmp_path)
    assert "cannot write" in line and "o.onnx" in line and "Permission denied" in line
    assert open(model, "rb").read() == data


@pytest.mark.parametrize("out", [".", "", "/proc/out.onnx", "nofolder/o.onnx", "m.onnx/o.onnx", "new/", "-"])
def test_run_output_paths_that_cannot_be_written(model, tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    fails_cleanly(capsys, ["run", model, "-o", out, "-p", "cleanup"], tmp_path)
    fails_cleanly(capsys, ["extract", model, "-o", out, "--outputs", "logits"], tmp_path)


def test_output_that_is_not_a_regular_file_is_never_replaced(model, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # like /dev/null: saving would replace it by a regular file
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(fifo), "-p", "cleanup"], tmp_path)
    assert "not a regular file" in line
    import stat

    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_output_is_the_input_by_another_name(model, tmp_path, capsys):
    link = tmp_path / "link.onnx"
    os.symlink(model, link)
    data = open(model, "rb").read()
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(link), "-p", "prelu-to-relu"], tmp_path)
    assert "overwrite the input" in line
    fails_cleanly(capsys, ["extract", model, "-o", str(link), "--outputs", "logits"], tmp_path)
    assert open(model, "rb").read() == data


def _npz_files(folder):
    f = {}
    f["missing"] = folder / "nope.npz"
    f["folder"] = folder / "sub"
    f["folder"].mkdir()
    f["pickled"] = folder / "pickled.npz"
    np.savez(f["pickled"], image=np.array([{"a": 1}], dtype=object))
    f["not zip"] = folder / "corrupt.npz"
    f["not zip"].write_bytes(b"PK\x03\x04garbage" * 10)
    f["text"] = folder / "text.npz"
    f["text"].write_text("hello")
    f["empty"] = folder / "empty.npz"
    f["empty"].write_bytes(b"")
    f["npy"] = folder / "array.npy"
    np.save(f["npy"], np.zeros(3, np.float32))
    f["no arrays"] = folder / "nothing.npz"
    np.savez(f["no arrays"])
    return f


def test_bad_npz_files_one_line_each(model, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "o.onnx"
    for kind, path in _npz_files(data).items():
        line, _ = fails_cleanly(capsys, ["run", model, "-o", str(out), "-p", "cleanup", "--verify", "--inputs",
                                         str(path)], tmp_path)
        assert "--inputs" in line and str(path) in line, kind
        line, _ = fails_cleanly(capsys, ["debug", model, "--backend", "reference", "--inputs", str(path)])
        assert "--inputs" in line, kind
        line, _ = fails_cleanly(capsys, ["debug", model, "--arrays", str(path)])
        assert "--arrays" in line, kind


def test_inputs_that_match_no_model_input_and_inputs_without_verify(model, tmp_path, capsys):
    npz = tmp_path / "x.npz"
    np.savez(npz, imgae=np.zeros((1, 3, 8, 8), np.float32))
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(tmp_path / "o.onnx"), "-p", "cleanup", "--verify",
                                     "--inputs", str(npz)], tmp_path)
    assert "'imgae' is not an input" in line and "image" in line
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(tmp_path / "o.onnx"), "-p", "cleanup",
                                     "--inputs", str(npz)], tmp_path)
    assert "--verify" in line


@pytest.mark.parametrize("value", ["'abc'", "{1:2}", "[1,[2]]", "None", "1j", "__import__('os')", "", "0.5",
                                   "1e40"])
def test_freeze_inputs_values_that_are_not_numbers_or_do_not_fit(model, tmp_path, capsys, value):
    # image is float32[1,3,8,8]: 0.5 has the wrong size (refused before), 1e40 overflows float32
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(tmp_path / "o.onnx"), "-p",
                                     f"freeze-inputs(image={value})"], tmp_path)
    assert "freeze-inputs" in line


def test_freeze_inputs_refuses_a_value_its_type_would_change():
    import graphsurgery as gs
    from graphsurgery.passes import PassError, create

    m = gs.load(str(DATA / "silero_vad.onnx"))
    with pytest.raises(PassError, match="not a whole number"):
        create("freeze-inputs", sr="16000.5").run(m)
    assert "sr" in m.graph.input_names  # refused, nothing changed
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["f"], ["y"]), helper.make_node("Identity", ["b"], ["z"])],
                          "g", [helper.make_tensor_value_info("f", TensorProto.FLOAT, []),
                                helper.make_tensor_value_info("b", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, []),
                           helper.make_tensor_value_info("z", TensorProto.BOOL, [])])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(PassError, match="out of range"):
        create("freeze-inputs", f="1e40").run(m)  # float32 would hold inf
    with pytest.raises(PassError, match="not true/false"):
        create("freeze-inputs", b="5").run(m)
    assert m.graph.input_names == ["f", "b"]
    create("freeze-inputs", f="0.5", b="1").run(m)
    assert m.graph.input_names == []


@pytest.mark.parametrize("pipeline", ["", " ", ",", "cleanup,", ",cleanup", "remove-if,,cleanup", "(x=1)",
                                      "cleanup(,)", "set-batch(size=2,size=3)", "freeze-inputs(=1)"])
def test_empty_or_meaningless_pipeline_text_is_an_error(model, tmp_path, capsys, pipeline):
    line, _ = fails_cleanly(capsys, ["run", model, "-o", str(tmp_path / "o.onnx"), "-p", pipeline], tmp_path)
    assert "pipeline" in line or "option" in line


def test_pipeline_parse_names_the_empty_step():
    from graphsurgery.passes import PassError
    from graphsurgery.passes.pipeline import parse

    with pytest.raises(PassError, match="empty"):
        parse("")
    with pytest.raises(PassError, match="step 2 of 3 is empty"):
        parse("remove-if,,cleanup")
    with pytest.raises(PassError, match="given twice"):
        parse("set-batch(size=2,size=3)")
    assert parse("cleanup()") == [("cleanup", {})]


def test_json_failures_print_an_error_object(model, tmp_path, capsys):
    for argv in (["inspect", str(tmp_path / "missing.onnx"), "--json"],
                 ["run", model, "-o", str(tmp_path / "o.onnx"), "-p", "nope", "--json"],
                 ["run", model, "-o", str(tmp_path / "o.onnx"), "-p", "cleanup", "--json", "--nope"],
                 ["diff", model, str(tmp_path), "--json"],
                 ["debug", model, "--json"],
                 ["passes", "--json", "extra"]):
        line, out = fails_cleanly(capsys, argv, tmp_path)
        obj = json.loads(out)
        assert obj["error"] and obj["error"] in line and obj["exit_code"] == 2, argv


def test_version_in_process(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"graphsurgery {version('graphsurgery')}"


def test_version_subprocess(tmp_path):
    from importlib.metadata import version

    import graphsurgery

    r = subprocess.run([sys.executable, "-m", "graphsurgery", "--version"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"graphsurgery {version('graphsurgery')}"
    assert graphsurgery.__version__ == version("graphsurgery")


def test_passes_shows_whole_first_sentences(capsys):
    from graphsurgery.passes import describe_all

    for p in describe_all():
        doc = " ".join(p["doc"].split()).replace("``", "")
        assert doc.startswith(p["summary"]) and p["summary"].endswith((".", ")")), p["name"]
    info = {p["name"]: p["summary"] for p in describe_all()}
    assert "(shell-style, e.g. */in1*)" in info["instancenorm-epsilon"]
    assert info["instancenorm-epsilon"].endswith("(TensorRT's parser clamps small values, changing results).")
    # a summary says what the pass does, not what exporters do
    assert info["fix-prelu-slope"].startswith("Reshape a per-channel PRelu slope")
    # free NAME=VALUE options are explained per pass: rename-io renames outputs too
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    assert "OLD=NEW for each graph input or output to rename" in out and "NAME=DIMS for each graph input" in out


def test_run_prints_one_line_per_pass_details_with_v(tmp_path, capsys):
    src = str(DATA / "silero_vad.onnx")
    pipeline = "freeze-inputs(sr=16000),set-shape(input=1x512,state=2x1x128),fold-constants,remove-if,cleanup"
    assert main(["run", src, "-o", str(tmp_path / "a.onnx"), "-p", pipeline]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) <= 8, out
    fold = [x for x in out if x.startswith("fold-constants: ")]
    assert len(fold) == 1 and fold[0].split(": ")[1].split()[0].isdigit()
    assert not any(x.startswith("  ") for x in out)
    assert main(["run", src, "-o", str(tmp_path / "b.onnx"), "-p", pipeline, "-v"]) == 0
    verbose = capsys.readouterr()
    assert sum(x.startswith("  - ") for x in verbose.out.splitlines()) > 40
    assert not verbose.err  # the details once, on stdout, not again as log lines


def test_diff_prints_its_summary_first_details_with_v(tmp_path, capsys):
    a = str(DATA / "silero_vad.onnx")
    b = str(tmp_path / "b.onnx")
    assert main(["run", a, "-o", b, "-p", "freeze-inputs(sr=16000),remove-if,cleanup", "-q"]) == 0
    assert main(["diff", a, b]) == 1
    short = capsys.readouterr().out.splitlines()
    assert len(short) <= 8 and short[0].startswith("inputs: 1 removed (sr)")
    assert short[-1].startswith("(") and "-v" in short[-1]
    assert main(["-v", "diff", a, b]) == 1
    full = capsys.readouterr().out.splitlines()
    assert full[: len(short) - 1] == short[:-1] and len(full) > 100
    assert "input removed: sr int64[]" in full


def test_usage_errors_are_one_line(model, tmp_path, capsys):
    for argv in ([], ["nope"], ["inspect", model, "--nope"], ["run", model, "-o", "x.onnx"],
                 ["debug", model, "--backend", "nope"], ["debug", model, "--backend", "reference", "--chunk", "0"],
                 ["run", model, "-o", "x.onnx", "-p", "cleanup", "--rtol", "-1"],
                 ["show", model, "--port", "99999"], ["diff", model], ["extract", model, "-o", "x.onnx"],
                 ["extract", model, "-o", "x.onnx", "--outputs", ","]):
        fails_cleanly(capsys, argv, tmp_path)


def test_unexpected_errors_one_line_traceback_with_v(model, tmp_path, capsys, monkeypatch):
    import graphsurgery.summary

    def broken(*a, **k):
        raise TypeError("boom")

    monkeypatch.setattr(graphsurgery.summary, "summarize", broken)
    line, _ = fails_cleanly(capsys, ["inspect", model])
    assert "unexpected TypeError: boom" in line and "-v" in line
    assert main(["inspect", model, "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == line


def test_model_paths_that_are_not_models(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    for bad in (str(folder), str(tmp_path / "missing.onnx"), os.devnull, example_path() + "/x.onnx"):
        fails_cleanly(capsys, ["inspect", bad])
        fails_cleanly(capsys, ["run", bad, "-o", str(tmp_path / "o.onnx"), "-p", "cleanup"], tmp_path)
        fails_cleanly(capsys, ["diff", bad, example_path()])
        fails_cleanly(capsys, ["debug", bad, "--backend", "reference"])
        fails_cleanly(capsys, ["debug", example_path(), "--against", bad])
        fails_cleanly(capsys, ["extract", bad, "-o", str(tmp_path / "o.onnx"), "--outputs", "x"], tmp_path)
        fails_cleanly(capsys, ["show", bad, "--no-browser", "--no-wait"])


def test_a_device_is_refused_not_read_without_end(capsys):
    line, _ = fails_cleanly(capsys, ["inspect", os.devnull])  # /dev/zero would be read until memory runs out
    assert "is a device" in line
    line, _ = fails_cleanly(capsys, ["debug", example_path(), "--backend", "reference", "--inputs", os.devnull])
    assert "is a device" in line


def test_show_help_does_not_start_anything(capsys):
    assert main(["show", "--help"]) == 0
    assert "--port" in capsys.readouterr().out


def test_gitignore_covers_the_readme_virtualenv():
    import pathlib

    lines = (pathlib.Path(__file__).parent.parent / ".gitignore").read_text().split()
    assert ".venv/" in lines


def test_a_save_that_fails_half_way_leaves_no_file(tmp_path, capsys, monkeypatch):
    # a model with external data is written as two files: the data first, under a name no model
    # refers to yet, then the model, in one rename; that rename failing leaves neither behind
    real = os.replace
    calls = []

    def fail(src, dst):
        calls.append(dst)
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(os, "replace", fail)
    src = str(DATA.parent / "fixtures" / "arcface_prelu_dynamo.onnx")
    out = tmp_path / "out"
    out.mkdir()
    fails_cleanly(capsys, ["run", src, "-o", str(out / "o.onnx"), "-p", "cleanup"], out)
    monkeypatch.setattr(os, "replace", real)
    assert calls and sorted(os.listdir(out)) == []


def test_misspelt_command_and_options(capsys):
    line, _ = fails_cleanly(capsys, ["inspectt", "m.onnx"])
    assert "unknown command 'inspectt'; did you mean 'inspect'?" in line
    line, _ = fails_cleanly(capsys, ["run", "--example", "-o", "x.onnx", "-p", "cleanup", "--over"])
    assert "--over" in line  # not taken for --overwrite


def test_verification_failure_json_exit_3(tmp_path, capsys):
    # the bundled example does not run on onnxruntime before its repair: nothing to verify against
    line, out = fails_cleanly(capsys, ["run", "--example", "-o", str(tmp_path / "o.onnx"), "-p", "prelu-to-relu,cleanup",
                                       "--verify", "--json"], tmp_path, code=3)
    obj = json.loads(out)
    assert obj["exit_code"] == 3 and obj["type"] == "VerificationError" and obj["error"] in line


def test_sampled_sweep_of_malformed_command_lines(tmp_path, capsys):
    # a sample of scripts/cli_sweep.py's cases, in-process: each that fails, fails cleanly
    import pathlib
    import stat

    sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "scripts"))
    try:
        import cli_sweep
    finally:
        sys.path.pop(0)
    files = tmp_path / "files"
    files.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    f = cli_sweep.fixtures(str(files))
    good = open(f["good"], "rb").read()
    cases = cli_sweep.cases(f, str(out))
    assert len(cases) > 300
    failed = 0
    for argv in cases[::3]:
        if any("\x00" in a for a in argv) or argv[:1] == ["show"] and len(argv) > 1 and argv[1] == f["good"]:
            continue
        for name in os.listdir(out):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        rc = main(argv)
        err = capsys.readouterr().err
        assert "Traceback" not in err and rc in (0, 1, 2, 3), argv
        if rc in (2, 3):
            failed += 1
            assert len(err.strip().splitlines()) == 1, (argv, err)
            assert not os.listdir(out), argv
        assert open(f["good"], "rb").read() == good, argv
        assert stat.S_ISFIFO(os.lstat(f["fifo"]).st_mode), argv
    assert failed > 80


def test_unreadable_files(model, tmp_path, capsys, monkeypatch):
    import builtins

    import graphsurgery.serialization as ser

    npz = tmp_path / "x.npz"
    np.savez(npz, image=np.zeros((1, 3, 8, 8), np.float32))
    real_open = builtins.open

    def no_permission(path, *a, **k):  # what chmod 000 does, even when the tests run as root
        if os.fspath(path) in (model, str(npz)):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(ser, "open", no_permission, raising=False)
    monkeypatch.setattr(builtins, "open", no_permission)
    line, _ = fails_cleanly(capsys, ["inspect", model])
    assert "Permission denied" in line and model in line
    line, _ = fails_cleanly(capsys, ["debug", example_path(), "--backend", "reference", "--inputs", str(npz)])
    assert "Permission denied" in line and "--inputs" in line


def test_output_into_a_closed_pipe_is_no_traceback(tmp_path):
    # `graphsurgery ... --json | head` where head has stopped reading: no traceback, the exit code kept
    import os

    for cmd, code in ((["inspect", "--example", "--json"], 0),
                      (["run", "--example", "-o", str(tmp_path / "o.onnx"), "-p", "prelu-to-relu,cleanup",
                        "--verify", "--json"], 3)):
        r, w = os.pipe()
        os.close(r)
        try:
            p = subprocess.run([sys.executable, "-m", "graphsurgery", *cmd], stdout=w, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path)
        finally:
            os.close(w)
        assert p.returncode == code and "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr
