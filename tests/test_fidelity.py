"""Load -> save with no edit gives the same bytes: every onnx operator test model, every
model onnx ships, the real models. Also after building every index and walking everything."""

import glob
import os

import onnx
import pytest
from onnx.backend.test.case.node import collect_testcases

import graphsurgery as gs
from conftest import REAL_MODELS

ONNX_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
SHIPPED = sorted(glob.glob(os.path.join(ONNX_DATA, "**", "*.onnx"), recursive=True))


def _touch_everything(model: gs.Model) -> None:
    """Build every index and read every view without editing: must not change a byte."""
    for g in model.graphs():
        for n in g.nodes:
            n.inputs, n.outputs, dict(n.attrs), n.consumers(), n.producers()
        for name in g.input_names + g.output_names:
            if name:
                t = g.tensor(name)
                t.shape, t.dtype, t.producer, t.consumers  # noqa: B018 - reading must not change a byte
    model.op_histogram()
    model.problems(onnx_checker=False)


def test_generated_operator_models_round_trip_byte_identical():
    cases = collect_testcases()
    assert len(cases) >= 1800, len(cases)
    changed = []
    for case in cases:
        data = case.model.SerializeToString()
        model = gs.load(data)
        _touch_everything(model)
        if model.to_bytes() != data:
            changed.append(case.name)
    assert not changed, f"{len(changed)} operator models changed: {changed[:10]}"


@pytest.mark.parametrize("path", SHIPPED + [str(p) for p in REAL_MODELS],
                         ids=lambda p: os.path.relpath(p, ONNX_DATA) if p.startswith(ONNX_DATA) else os.path.basename(p))
def test_files_round_trip_byte_identical(path, tmp_path):
    original = open(path, "rb").read()
    model = gs.load(path)
    _touch_everything(model)
    out = tmp_path / "out.onnx"
    model.save(out)
    assert out.read_bytes() == original


def test_shipped_model_count():
    assert len(SHIPPED) >= 140
