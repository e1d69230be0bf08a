"""What shape lookups and optimize's statistics read is made once, and only what is asked:
``declared_types`` builds an initializer's type when it is looked up, ``Stats`` measures a
model's bytes without encoding its weights, or takes them from bytes already serialized."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import shapes
from graphsurgery.optimize import Stats, serialized_size

DATA = pathlib.Path(__file__).parent / "data"


def old_declared_types(proto: onnx.GraphProto) -> dict:
    types: dict = {}
    for field in (proto.input, proto.output, proto.value_info):
        for vi in field:
            if vi.HasField("type") and vi.name not in types:
                types[vi.name] = vi.type
    for t in proto.initializer:
        types.setdefault(t.name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return types


def weights(n: int, big: int = 0, twice: bool = True) -> onnx.ModelProto:
    """An Add over ``n`` initializers (one also a graph input, declared with another shape), a
    repeated name, a value_info without a type; ``big`` floats in one more weight."""
    inits = [numpy_helper.from_array(np.full((i % 3 + 1,), i, np.float32), f"w{i}") for i in range(n)]
    if twice:
        inits.append(numpy_helper.from_array(np.zeros(5, np.int64), "w1"))  # a second w1: the first counts
    if big:
        inits.append(numpy_helper.from_array(np.arange(big, dtype=np.float32), "big"))
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Add", ["x", "w0"], ["y"], name="add")], "g",
                          [vi("x", TensorProto.FLOAT, [1]), vi("w2", TensorProto.FLOAT, ["n"])],
                          [vi("y", TensorProto.FLOAT, [1])], inits,
                          value_info=[onnx.ValueInfoProto(name="untyped"), vi("y", TensorProto.DOUBLE, [7])])
    g.sparse_initializer.add().values.CopyFrom(numpy_helper.from_array(np.ones(2, np.float32), "sparse"))
    g.sparse_initializer[0].indices.CopyFrom(numpy_helper.from_array(np.array([0, 3], np.int64), "idx"))
    g.sparse_initializer[0].dims.extend([4])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, producer_name="t",
                          doc_string="d" * 300)
    m.metadata_props.add(key="k", value="v")
    return m


def test_declared_types_answer_as_before():
    for proto in [weights(40).graph, onnx.load(str(DATA / "silero_vad.onnx")).graph]:
        old, new = old_declared_types(proto), shapes.declared_types(proto)
        assert sorted(new) == sorted(old) and len(new) == len(old)
        for name in list(old) + ["nothing"]:
            assert (name in new) == (name in old)
            assert new.get(name) == old.get(name)
        assert dict(new) == old
    new = shapes.declared_types(weights(3).graph)
    assert new["w1"] == helper.make_tensor_type_proto(TensorProto.FLOAT, [2])  # the first w1
    assert new["w2"].tensor_type.shape.dim[0].dim_param == "n"  # declared as an input first
    new["w0"] = helper.make_tensor_type_proto(TensorProto.INT8, [9])
    assert new.get("w0").tensor_type.elem_type == TensorProto.INT8


def test_declared_types_build_only_the_types_asked_for(monkeypatch):
    graph = weights(2000).graph
    made = []
    original = helper.make_tensor_type_proto

    def counting(*args, **kwargs):
        made.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(onnx.helper, "make_tensor_type_proto", counting)
    types = shapes.declared_types(graph)
    assert types.get("w7") is types.get("w7") and types.get("x") is not None and types.get("nope") is None
    assert len(made) == 1


def test_serialized_size_is_bytesize_without_encoding_the_weights():
    for m in [weights(5, big=70_000), weights(5, big=20), weights(0, big=300_000),
              onnx.load(str(DATA / "silero_vad.onnx")), onnx.ModelProto(ir_version=8)]:
        assert serialized_size(m) == m.ByteSize() == len(m.SerializeToString())


def test_stats_take_the_size_of_bytes_already_serialized():
    m = gs.load(weights(5, big=70_000, twice=False))
    data = m.to_bytes()
    assert Stats.of(m) == Stats.of(m, data)
    assert Stats.of(m).bytes == len(data)
