"""The documentation builds with warnings as errors, and every Python example in it (and in
the README) runs, against real files."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from graphsurgery.cli import example_path

ROOT = pathlib.Path(__file__).parent.parent
DATA = ROOT / "tests" / "data"
FIX = ROOT / "tests" / "fixtures"
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def python_blocks(text: str) -> list[str]:
    """The ```python fences, in order (```{code-block} python is shown, not run: it needs torch)."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def setup_files(page: pathlib.Path, folder: pathlib.Path) -> None:
    shutil.copy(DATA / "silero_vad.onnx", folder / "silero_vad.onnx")
    if page.name == "debugging.md":
        import graphsurgery as gs
        from graphsurgery.debug.capture import capture

        shutil.copy(FIX / "arcface_prelu.onnx", folder / "model.onnx")
        shutil.copy(FIX / "arcface_prelu.onnx", folder / "model_fp32.onnx")
        x = dict(np.load(FIX / "arcface_prelu.npz"))["x"]
        np.save(folder / "x.npy", x)
        np.savez(folder / "activations.npz", **next(capture(gs.load(str(FIX / "arcface_prelu.onnx")), {"x": x})))
        shutil.copy(FIX / "arcface_prelu_activations.npz", folder / "module_activations.npz")
    else:
        shutil.copy(example_path(), folder / "model.onnx")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(page, tmp_path):
    blocks = python_blocks(page.read_text())
    if page.name in ("getting-started.md", "passes.md", "editing-api.md", "debugging.md", "README.md"):
        assert blocks, f"{page.name} should have runnable examples"
    setup_files(page, tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        if page.name == "debugging.md":
            namespace["inputs"] = {"x": np.load("x.npy")}
        for i, block in enumerate(blocks):
            exec(compile(block, f"{page.name}[python block {i + 1}]", "exec"), namespace)
    finally:
        os.chdir(cwd)


def test_docs_build_without_warnings(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                        str(ROOT / "docs"), str(tmp_path / "html")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    page = (tmp_path / "html" / "api.html").read_text()
    assert "graphsurgery.load" in page and "Pipeline" in page  # the API reference came from docstrings
