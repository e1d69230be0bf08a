import os
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

DATA = pathlib.Path(__file__).parent / "data"
REAL_MODELS = sorted(DATA.glob("*.onnx"))


def tiny_chain() -> onnx.ModelProto:
    """x[1,3,4,4] -> Conv -> Relu -> Add(bias) -> y, with metadata and doc strings to survive edits."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.arange(2, dtype=np.float32).reshape(1, 2, 1, 1), "b")
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], doc_string="conv doc"),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Add", ["r", "b"], ["y"], name="add"),
        ],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w, b],
        doc_string="graph doc",
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests", ir_version=10)
    m.metadata_props.add(key="k", value="v")
    m.model_version = 7
    return m


def if_model() -> onnx.ModelProto:
    """y = If(cond, then: x*2 (reads outer x), else: x+w (reads outer x and an outer initializer))."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t_out"], name="t_mul")], "then", [],
                               [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2])],
                               [numpy_helper.from_array(np.array([2, 2], np.float32), "two")])
    else_g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["e_out"], name="e_add")], "else", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2])])
    g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)],
        "ifg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array([1, 3], np.float32), "w")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def run_ort(model, feeds):
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def assert_close(actual: dict, expected: dict, rtol=1e-5, atol=1e-6):
    assert set(actual) == set(expected), f"outputs differ: {sorted(actual)} vs {sorted(expected)}"
    for k in expected:
        a, e = np.asarray(actual[k]), np.asarray(expected[k])
        assert a.shape == e.shape, f"output {k!r}: shape {a.shape} != {e.shape}"
        if a.size:
            err = np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)))
            assert np.allclose(a, e, rtol=rtol, atol=atol), f"output {k!r}: max abs error {err:.3g}"


@pytest.fixture
def tmp(tmp_path):
    old = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)
