"""A session never replaces the arrays it was given: one that does not fit is an error naming it."""

import numpy as np
import pytest

import graphsurgery as gs
from graphsurgery import verify
from conftest import tiny_chain


@pytest.mark.parametrize("x,problem", [
    (np.zeros((1, 3, 4, 4), np.float64), "dtype float64"),
    (np.zeros((1, 3, 5, 5), np.float32), r"shape \[1, 3, 5, 5\]"),
    (np.zeros((3, 4, 4), np.float32), r"rank 3 \(shape \[3, 4, 4\]\)"),
])
def test_an_array_that_does_not_fit_is_an_error_naming_it(x, problem):
    s = gs.Session(gs.load(tiny_chain()), inputs={"x": x})
    original = s.model.to_bytes()
    with pytest.raises(verify.InputMismatch, match=f"array 'x' has {problem}, but input 'x' of the model before"):
        s.apply("debug-outputs")
    assert s.model.to_bytes() == original and s.history == []


def test_an_array_that_stops_fitting_after_the_step_is_an_error_and_the_step_is_undone():
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    s = gs.Session(gs.load(tiny_chain()), inputs={"x": x})
    original = s.model.to_bytes()
    with pytest.raises(verify.InputMismatch, match="input 'x' of the model after this step takes float32 \\[4, 3"):
        s.apply("set-batch(size=4)")
    assert s.model.to_bytes() == original and s.history == []


def test_an_array_naming_no_input_is_an_error():
    with pytest.raises(verify.InputMismatch, match="array 'image' names no input of the model"):
        gs.Session(gs.load(tiny_chain()), inputs={"image": np.zeros((1, 3, 4, 4), np.float32)})


def test_the_given_array_is_the_one_that_runs():
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    s = gs.Session(gs.load(tiny_chain()), inputs={"x": x})
    with s.edit("swap relu"):
        s.model.graph.node("relu").op_type = "Sigmoid"
    assert not all(d.ok for d in s.last_change.drift if d.name == "y")
