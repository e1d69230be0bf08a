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
