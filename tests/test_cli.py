import json
import subprocess
import sys

from graphsurgery.cli import example_path, main
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


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "graphsurgery", "inspect", example_path(), "--json"],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["nodes"] == 8
