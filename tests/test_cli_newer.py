"""A sample of scripts/cli_sweep.py's cases for optimize, fix --for, inspect --for and several
models at once, in-process: each that fails, fails cleanly (the sweep runs them all)."""

import os
import pathlib
import shutil
import stat
import sys

from graphsurgery.cli import main

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "scripts"))
try:
    import cli_sweep
finally:
    sys.path.pop(0)


def _clean(out: pathlib.Path) -> None:
    for name in os.listdir(out):
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def test_sampled_newer_command_lines_fail_cleanly(tmp_path, capsys):
    files, out = tmp_path / "files", tmp_path / "out"
    files.mkdir()
    out.mkdir()
    f = cli_sweep.fixtures(str(files))
    good = open(f["good"], "rb").read()
    newer = cli_sweep.newer_cases(f, str(out))
    assert len(newer) > 300 and {c[0] for c in newer} == {"optimize", "fix", "inspect"}
    failed = 0
    for argv in newer[::29]:
        _clean(out)
        rc = main(argv)
        err = capsys.readouterr().err
        assert "Traceback" not in err and rc in (0, 1, 2, 3), argv
        if rc in (2, 3):
            failed += 1
            assert len(err.strip().splitlines()) == 1 and not os.listdir(out), (argv, err)
        assert open(f["good"], "rb").read() == good and stat.S_ISFIFO(os.lstat(f["fifo"]).st_mode), argv
    assert failed >= 5
    many = [(argv, allowed) for argv, allowed in cli_sweep.many_cases(f, str(out)) if "2" not in argv]
    for argv, allowed in many[::6]:
        _clean(out)
        rc = main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc in (0, 2, 3), argv
        if rc:
            assert lines and all(x.startswith("graphsurgery: error: ") or " model(s) written to " in x
                                 for x in lines), (argv, lines)
            assert set(os.listdir(out)) <= allowed, argv
