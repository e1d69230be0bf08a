"""ruff over the package, with the rules in pyproject.toml (SLF001 among them: no reaching into
another object's private members). The test command is what CI runs, so this is how ruff
runs in CI."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing_in_the_package():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "graphsurgery"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"ruff check graphsurgery:\n{proc.stdout}{proc.stderr}"


def test_ruff_config_keeps_the_private_member_rule():
    import tomllib

    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "SLF001" in lint["select"] and "SLF001" not in lint.get("ignore", [])
