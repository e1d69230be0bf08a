"""freeze-inputs: valid results on old IR versions, NaN values, non-tensor inputs, values the
model's operators reject."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import graphsurgery as gs
from graphsurgery.passes import PassError, create
from conftest import run_ort


def add_model(ir_version=10, opset=17):
    g = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"], name="add")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def test_freeze_inputs_on_ir3_keeps_the_input_listed_so_the_checker_accepts_it():
    m = gs.load(add_model(ir_version=3, opset=7))
    r = create("freeze-inputs", y=np.array([1.0, 2.0], np.float32)).run(m)
    assert r.changed
    onnx.checker.check_model(m.proto, full_check=True)
    assert "y" in [vi.name for vi in m.proto.graph.input] and "y" in m.graph.initializers
    [y] = [vi for vi in m.proto.graph.input if vi.name == "y"]
    assert [d.dim_value for d in y.type.tensor_type.shape.dim] == [2]
    out = run_ort(m.proto, {"x": np.array([10, 20], np.float32)})
    assert out["z"].tolist() == [11, 22]
    before = m.proto.SerializeToString()
    assert not create("freeze-inputs", y=np.array([1.0, 2.0], np.float32)).run(m).changed
    assert m.proto.SerializeToString() == before
    create("freeze-inputs", y="[5, 6]").run(m)  # a new value replaces the old one
    assert run_ort(m.proto, {"x": np.array([10, 20], np.float32)})["z"].tolist() == [15, 26]
    onnx.checker.check_model(m.proto, full_check=True)


def test_freeze_inputs_twice_with_nan_changes_nothing():
    m = gs.load(add_model())
    value = np.array([np.nan, 1.0], np.float32)
    assert create("freeze-inputs", y=value).run(m).changed
    before = m.proto.SerializeToString()
    assert not create("freeze-inputs", y=value).run(m).changed
    assert m.proto.SerializeToString() == before
    with pytest.raises(PassError, match="'y' is a constant of the model already"):
        create("freeze-inputs", y="[1, 2]").run(m)


def test_freeze_inputs_refuses_a_sequence_input_and_a_value_the_model_rejects():
    g = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"], name="len")], "g",
                          [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    seq = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10))
    with pytest.raises(PassError, match="input 's' is a sequence, not a tensor"):
        create("freeze-inputs", s="[1]").run(seq)
    # HannWindow's size must be positive: freezing it to 0 would make a model the checker rejects
    g = helper.make_graph([helper.make_node("HannWindow", ["size"], ["w"], name="hann")], "g",
                          [helper.make_tensor_value_info("size", TensorProto.INT32, [])],
                          [helper.make_tensor_value_info("w", TensorProto.FLOAT, [None])])
    win = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10))
    before = win.proto.SerializeToString()
    with pytest.raises(PassError, match="freezing 'size' makes the model invalid"):
        create("freeze-inputs", size="0").run(win)
    assert win.proto.SerializeToString() == before
    create("freeze-inputs", size="4").run(win)
    assert run_ort(win.proto, {})["w"].shape == (4,)


def test_freeze_inputs_twice_with_strings_changes_nothing():
    g = helper.make_graph([helper.make_node("StringConcat", ["x", "y"], ["z"], name="concat")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.STRING, [2]),
                           helper.make_tensor_value_info("y", TensorProto.STRING, [2])],
                          [helper.make_tensor_value_info("z", TensorProto.STRING, [2])])
    m = gs.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=9))
    value = np.array(["a", "b"], dtype=object)
    assert create("freeze-inputs", y=value).run(m).changed
    assert not create("freeze-inputs", y=value).run(m).changed
