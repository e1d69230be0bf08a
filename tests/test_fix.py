"""Backend lint (``inspect --for``) and ``fix --for``."""

import pathlib

import onnx

import graphsurgery as gs
from graphsurgery.passes import create

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def codes(found):
    return [f.code for f in found]


def test_instancenorm_epsilon_set_to_the_clamp_clears_the_finding():
    """The epsilon is stored as float32: 1e-4 written by the fix reads back as 9.99999975e-05,
    which must count as at the clamp, not below it."""
    m = gs.load(onnx.load(str(FIXTURES / "fast_style.onnx")))
    assert "instancenorm-epsilon" in codes(gs.lint.lint(m))
    create("instancenorm-epsilon", epsilon=1e-4)(m)
    assert "instancenorm-epsilon" not in codes(gs.lint.lint(m))
