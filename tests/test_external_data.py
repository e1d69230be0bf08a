"""External data: memory-mapped reads, streamed saves to a new folder, values preserved."""

import os

import numpy as np
import onnx
import pytest

import graphsurgery as gs
from conftest import DATA, assert_close, run_ort, tiny_chain

X = np.random.default_rng(3).standard_normal((1, 3, 4, 4)).astype(np.float32)


def test_save_external_then_load_memory_maps(tmp_path):
    model = gs.load(tiny_chain())
    expected = run_ort(model.proto, {"x": X})
    model.save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    assert (tmp_path / "m.onnx.data").exists()
    again = gs.load(str(tmp_path / "m.onnx"))
    w = again.graph.initializer("w")
    assert isinstance(w.base, np.memmap) or isinstance(w, np.memmap)
    assert np.array_equal(w, onnx.numpy_helper.to_array(tiny_chain().graph.initializer[0]))
    assert_close(run_ort(onnx.load(str(tmp_path / "m.onnx")), {"x": X}), expected)


def test_external_model_saved_to_new_folder_streams_data(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    gs.load(tiny_chain()).save(a / "m.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(a / "m.onnx"))
    model.graph.node("relu").op_type = "Sigmoid"
    model.save(b / "out.onnx")  # stays external by default
    assert (b / "out.onnx.data").exists()
    loaded = onnx.load(str(b / "out.onnx"))
    expected = tiny_chain()
    expected.graph.node[1].op_type = "Sigmoid"
    assert_close(run_ort(loaded, {"x": X}), run_ort(expected, {"x": X}))
    # the input folder is untouched, and the in-memory model now reads the new file
    assert gs.load(str(a / "m.onnx")).graph.node("relu").op_type == "Relu"
    assert model.base_dir == str(b)


def test_save_external_model_inline(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(tmp_path / "m.onnx"))
    model.save(tmp_path / "inline.onnx", external_data=False)
    proto = onnx.load(str(tmp_path / "inline.onnx"), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert_close(run_ort(proto, {"x": X}), run_ort(tiny_chain(), {"x": X}))


def test_refuses_to_clobber_the_data_file_the_input_needs(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0, location="w.data")
    model = gs.load(str(tmp_path / "m.onnx"))
    with pytest.raises(gs.SaveError, match="data file"):
        model.save(tmp_path / "m2.onnx", location="w.data")
    model.save(tmp_path / "m2.onnx", location="w2.data")
    assert_close(run_ort(onnx.load(str(tmp_path / "m2.onnx")), {"x": X}), run_ort(tiny_chain(), {"x": X}))


def test_overwrite_in_place_with_external_data(tmp_path):
    gs.load(tiny_chain()).save(tmp_path / "m.onnx", external_data=True, size_threshold=0)
    model = gs.load(str(tmp_path / "m.onnx"))
    model.graph.initializer("w")  # memory-mapped before the overwrite
    model.graph.set_initializer("b", np.zeros((1, 2, 1, 1), np.float32))
    model.save(tmp_path / "m.onnx", overwrite=True)
    again = gs.load(str(tmp_path / "m.onnx"))
    assert np.array_equal(again.graph.initializer("b"), np.zeros((1, 2, 1, 1), np.float32))
    assert np.array_equal(again.graph.initializer("w"), onnx.numpy_helper.to_array(tiny_chain().graph.initializer[0]))
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.data"]


def test_real_model_external_round_trip(tmp_path):
    model = gs.load(str(DATA / "magika_standard_v3_3.onnx"))
    model.save(tmp_path / "mg.onnx", external_data=True)
    feeds = {"bytes": np.random.default_rng(0).integers(0, 257, (2, 2048)).astype(np.int32)}
    assert_close(run_ort(onnx.load(str(tmp_path / "mg.onnx")), feeds),
                 run_ort(onnx.load(str(DATA / "magika_standard_v3_3.onnx")), feeds), rtol=0, atol=0)
    # and back to one file, byte-identical to the original
    gs.load(str(tmp_path / "mg.onnx")).save(tmp_path / "mg_inline.onnx", external_data=False)
    assert (tmp_path / "mg_inline.onnx").read_bytes() == (DATA / "magika_standard_v3_3.onnx").read_bytes()


def test_check_finds_external_data_beside_the_model_not_in_cwd(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    gs.load(tiny_chain()).save(folder / "m.onnx", external_data=True, size_threshold=0)
    assert os.getcwd() != str(folder)
    model = gs.load(str(folder / "m.onnx"))
    assert model.problems() == []
    assert sorted(os.listdir(folder)) == ["m.onnx", "m.onnx.data"]  # the checker's temporary file is gone
