"""Bad input gets a clear error naming the culprit, and nothing is lost or half-written."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphsurgery as gs
from graphsurgery import serialization
from conftest import DATA, tiny_chain


def write(path, data):
    path.write_bytes(data)
    return str(path)


# ---- files that are not models ------------------------------------------------------------
def test_empty_file(tmp_path):
    with pytest.raises(gs.ModelLoadError, match="empty"):
        gs.load(write(tmp_path / "e.onnx", b""))


def test_truncated_file(tmp_path):
    data = (DATA / "silero_vad.onnx").read_bytes()
    with pytest.raises(gs.ModelLoadError, match="truncated|not a readable"):
        gs.load(write(tmp_path / "t.onnx", data[: len(data) // 2]))


@pytest.mark.parametrize("junk", [b"\x00" * 16, b"hello world, not a model", os.urandom(7)[:0] + b"\x08\x00",
                                  bytes(range(256))])
def test_random_bytes(tmp_path, junk):
    with pytest.raises(gs.ModelLoadError):
        gs.load(write(tmp_path / "r.onnx", junk))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(gs.ModelLoadError, match="does not exist"):
        gs.load(str(tmp_path / "nope.onnx"))
    with pytest.raises(gs.ModelLoadError, match="folder"):
        gs.load(str(tmp_path))


def test_ir_version_zero():
    m = tiny_chain()
    m.ir_version = 0
    with pytest.raises(gs.ModelLoadError, match="ir_version"):
        gs.load(m.SerializeToString())


def test_missing_opset_import():
    m = tiny_chain()
    del m.opset_import[:]
    with pytest.raises(gs.ModelLoadError, match="imports no opset"):
        gs.load(m)


def test_duplicate_opset_import():
    m = tiny_chain()
    m.opset_import.append(helper.make_opsetid("", 13))
    with pytest.raises(gs.ModelLoadError, match="twice"):
        gs.load(m)


def test_duplicate_initializer_refused():
    m = tiny_chain()
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 2, 1, 1), np.float32), "b"))
    with pytest.raises(gs.InvalidModelError, match="initializer 'b' appears twice"):
        gs.load(m)


def test_duplicate_producer_refused(tmp_path):
    m = tiny_chain()
    m.graph.node.append(helper.make_node("Neg", ["x"], ["r"], name="dup"))
    model = gs.load(m)  # loading is lazy; the first use of the index refuses
    with pytest.raises(gs.InvalidModelError, match="'r' is produced by two nodes, 'relu' and 'dup'"):
        model.graph.consumers("r")
    with pytest.raises(gs.InvalidModelError, match="produced by two nodes"):
        model.check(onnx_checker=False)
    with pytest.raises(gs.SaveError, match="produced by two nodes"):
        model.save(tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_duplicate_producer_inside_a_subgraph_refused_at_save(tmp_path):
    from conftest import if_model
    m = if_model()
    then = next(a.g for a in m.graph.node[0].attribute if a.name == "then_branch")
    then.node.append(helper.make_node("Neg", ["x"], ["t_out"], name="dup"))
    with pytest.raises(gs.SaveError, match="t_out"):
        gs.load(m).save(tmp_path / "out.onnx")


def test_dangling_input_reported_and_not_saved(tmp_path):
    m = tiny_chain()
    m.graph.node[2].input[1] = "ghost"
    model = gs.load(m)  # a repair tool must open it
    with pytest.raises(gs.InvalidModelError, match="'add'.*'ghost'.*dangling"):
        model.check(onnx_checker=False)
    with pytest.raises(gs.SaveError, match="ghost"):
        model.save(tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_cycle_names_its_nodes(tmp):
    m = tiny_chain()
    m.graph.node[0].input[0] = "y"  # conv reads add's output
    model = gs.load(m)
    problems = model.problems(onnx_checker=False)
    assert any("cycle" in p and "'conv'" in p and "'relu'" in p and "'add'" in p for p in problems), problems
    with pytest.raises(gs.SaveError, match="cycle"):
        model.save("never.onnx")


def test_output_without_producer():
    m = tiny_chain()
    m.graph.output.append(helper.make_tensor_value_info("phantom", TensorProto.FLOAT, [1]))
    problems = gs.load(m).problems(onnx_checker=False)
    assert any("output 'phantom'" in p and "no producer" in p for p in problems)


def test_bad_pass_through_from_protobuf_is_not_a_traceback(tmp_path):
    # a field of the wrong wire type deep inside
    with pytest.raises(gs.ModelLoadError):
        gs.load(b"\x3a\x05\x0a\x03\xff\xff\xff")


# ---- saving ------------------------------------------------------------------------
def test_refuses_to_overwrite_input(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(tiny_chain(), p)
    original = p.read_bytes()
    model = gs.load(str(p))
    model.graph.node("relu").name = "renamed"
    with pytest.raises(gs.SaveError, match="overwrite the input"):
        model.save(p)
    assert p.read_bytes() == original
    model.save(p, overwrite=True)
    assert gs.load(str(p)).graph.node("renamed").op_type == "Relu"


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    model = gs.load(tiny_chain())
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous contents")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        model.save(target, durable=True)
    assert target.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["out.onnx"]


def test_failed_external_save_leaves_nothing_and_undoes_in_memory_changes(tmp_path, monkeypatch):
    model = gs.load(tiny_chain())
    before = model.to_bytes()
    real_replace = os.replace

    def fail_on_model(src, dst):
        if str(dst).endswith("out.onnx"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_model)
    with pytest.raises(OSError):
        model.save(tmp_path / "out.onnx", external_data=True, size_threshold=0)
    assert os.listdir(tmp_path) == []
    assert model.to_bytes() == before  # tensors point at their inline data again


def test_refuses_over_2gb_without_external_data(tmp_path, monkeypatch):
    # The 2 GiB protobuf limit, scaled down so the test stays small: same code path.
    monkeypatch.setattr(serialization, "TWO_GB", 200)
    model = gs.load(tiny_chain())
    with pytest.raises(gs.SaveError, match="external_data=True"):
        model.save(tmp_path / "big.onnx", external_data=False)
    assert not (tmp_path / "big.onnx").exists()
    # by default it switches to external data on its own
    model.save(tmp_path / "big.onnx", size_threshold=100)
    assert (tmp_path / "big.onnx.data").exists()


def test_refuses_unreadably_deep_nesting(tmp_path):
    # Built in place: onnx.helper itself cannot copy a graph this deep.
    proto = helper.make_model(helper.make_graph([], "main", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                                                [helper.make_tensor_value_info("y0", TensorProto.BOOL, [])]),
                              opset_imports=[helper.make_opsetid("", 17)])
    g = proto.graph
    for depth in range(33):
        node = g.node.add(op_type="If", name=f"if{depth}", input=["c"], output=[f"y{depth}"])
        for branch in ("then_branch", "else_branch"):
            attr = node.attribute.add(name=branch, type=onnx.AttributeProto.GRAPH)
            attr.g.name = f"{branch}{depth}"
            attr.g.output.add(name=f"y{depth + 1}" if branch == "then_branch" else "c")
        g = node.attribute[0].g
    g.node.add(op_type="Identity", input=["c"], output=[f"y{33}"])
    model = gs.load(proto)
    with pytest.raises(gs.SaveError, match="33 levels deep"):
        model.save(tmp_path / "deep.onnx", check=False)
    assert not (tmp_path / "deep.onnx").exists()


# ---- external data -------------------------------------------------------------------
def external_model(tmp_path, location="w.bin", offset=0, length=None, data=None, name="m.onnx"):
    m = tiny_chain()
    w = m.graph.initializer[0]
    raw = w.raw_data if data is None else data
    (tmp_path / "blob").mkdir(exist_ok=True)
    target = tmp_path / location if not os.path.isabs(location) and ".." not in location else None
    if target is not None and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset))) + ((("length", str(length)),) if length is not None else ()):
        e = w.external_data.add()
        e.key, e.value = k, v
    p = tmp_path / name
    p.write_bytes(m.SerializeToString())
    return str(p)


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_location_escaping_folder(tmp_path, location):
    d = tmp_path / "model"
    d.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 216)
    path = external_model(d, location=location)
    model = gs.load(path)
    with pytest.raises(gs.ExternalDataError, match="'w'"):
        model.graph.initializer("w")


def test_external_location_through_symlink(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\1" * 216)
    os.symlink(secret, d / "link.bin")
    model = gs.load(external_model(d, location="link.bin"))
    with pytest.raises(gs.ExternalDataError, match="symbolic link"):
        model.graph.initializer("w")


def test_external_location_hardlink(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    outside = tmp_path / "outside.bin"
    outside.write_bytes(tiny_chain().graph.initializer[0].raw_data)
    os.link(outside, d / "hard.bin")
    model = gs.load(external_model(d, location="hard.bin"))
    with pytest.raises(gs.ExternalDataError, match="hard link"):
        model.graph.initializer("w")


def test_external_offset_or_length_outside_file(tmp_path):
    model = gs.load(external_model(tmp_path, offset=10_000))
    with pytest.raises(gs.ExternalDataError, match="offset 10000 lies outside"):
        model.graph.initializer("w")
    model = gs.load(external_model(tmp_path, location="w2.bin", length=10_000))
    with pytest.raises(gs.ExternalDataError, match="lies outside"):
        model.graph.initializer("w")


def test_external_length_disagrees_with_dtype_and_shape(tmp_path):
    model = gs.load(external_model(tmp_path, data=b"\0" * 300, length=300))
    with pytest.raises(gs.ExternalDataError, match="holds 300 bytes but dtype FLOAT .* needs 216"):
        model.graph.initializer("w")


def test_external_file_missing(tmp_path):
    path = external_model(tmp_path)
    os.unlink(tmp_path / "w.bin")
    with pytest.raises(gs.ExternalDataError, match="does not exist"):
        gs.load(path).graph.initializer("w")


# ---- damaged fields that onnx, numpy or protobuf would trip over ------------------------------
def _with_bad_utf8(proto, marker="\u00ff\u00fe"):
    """Serialize ``proto`` with every ``marker`` replaced by bytes that are not UTF-8 (same length)."""
    data = proto.SerializeToString()
    assert marker.encode() in data
    return data.replace(marker.encode(), b"\xff\xfe\xc3\x28")


@pytest.mark.parametrize("where", ["node name", "op_type", "opset domain", "input name", "metadata"])
def test_text_that_is_not_utf8_is_refused_at_load(tmp_path, where):
    m = tiny_chain()
    if where == "node name":
        m.graph.node[1].name = "\u00ff\u00fe"
    elif where == "op_type":
        m.graph.node[1].op_type = "\u00ff\u00fe"
    elif where == "opset domain":
        m.opset_import.add(domain="\u00ff\u00fe", version=1)
    elif where == "input name":
        m.graph.node[2].input[1] = "\u00ff\u00fe"
    else:
        m.metadata_props.add(key="\u00ff\u00fe", value="v")
    data = _with_bad_utf8(m)
    with pytest.raises(gs.ModelLoadError, match="not valid UTF-8"):
        gs.load(write(tmp_path / "u.onnx", data))
    with pytest.raises(gs.ModelLoadError, match="not valid UTF-8"):
        gs.load(onnx.ModelProto.FromString(data))  # a proto parsed elsewhere too
    # a pass given such a proto refuses the same way, instead of crashing in its fidelity snapshot
    from graphsurgery.passes import create
    with pytest.raises(gs.GraphSurgeryError):
        create("cleanup").run(onnx.ModelProto.FromString(data))


def test_inspect_survives_an_unknown_element_type():
    from graphsurgery.summary import format_text, summarize

    m = tiny_chain()
    m.graph.input[0].type.tensor_type.elem_type = 99
    text = format_text(summarize(gs.load(m), check=False))
    assert "unknown(99)" in text
    assert any("99" in p for p in gs.load(m).problems())


def test_raw_data_length_that_does_not_match_the_shape():
    m = tiny_chain()
    m.graph.initializer[1].raw_data = m.graph.initializer[1].raw_data[:-4]
    model = gs.load(m)
    found = model.problems()
    assert any("raw_data holds 4 bytes" in p and "'b'" in p for p in found), found
    with pytest.raises(gs.InvalidModelError, match="'b': raw_data holds 4 bytes but element type FLOAT"):
        model.graph.initializer("b")


@pytest.mark.parametrize("data_type", [0, 99, -3])
def test_undefined_element_type_of_a_tensor(data_type):
    m = tiny_chain()
    m.graph.initializer[1].data_type = data_type
    model = gs.load(m)
    assert any("which ONNX does not define" in p for p in model.problems())
    with pytest.raises(gs.InvalidModelError, match="does not define"):
        model.graph.initializer("b")


def test_typed_values_that_do_not_match_the_shape():
    m = tiny_chain()
    b = m.graph.initializer[1]
    b.ClearField("raw_data")
    b.float_data.extend([1.0, 2.0, 3.0])  # the shape [1, 2, 1, 1] needs 2
    model = gs.load(m)
    assert any("holds 3 value(s) in float_data" in p for p in model.problems())
    with pytest.raises(gs.InvalidModelError, match="float_data"):
        model.graph.initializer("b")


def test_check_reports_external_data_that_does_not_fit(tmp_path):
    model = gs.load(external_model(tmp_path, offset=10_000))
    found = model.problems()
    assert any("offset 10000 lies outside" in p for p in found), found
    with pytest.raises(gs.InvalidModelError):
        model.check()
    model = gs.load(external_model(tmp_path, location="w2.bin", length=10_000))
    assert any("lies outside" in p for p in model.problems())


def test_nul_byte_in_an_external_location(tmp_path):
    path = external_model(tmp_path)
    m = onnx.load(path, load_external_data=False)
    m.graph.initializer[0].external_data[0].value = "w.bin\0.txt"
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    model = gs.load(path)
    with pytest.raises(gs.ExternalDataError, match="NUL byte"):
        model.graph.initializer("w")
    assert any("NUL byte" in p for p in model.problems())


def test_two_locations_on_one_tensor_are_refused(tmp_path):
    path = external_model(tmp_path)
    (tmp_path / "other.bin").write_bytes(b"\0" * 216)
    m = onnx.load(path, load_external_data=False)
    m.graph.initializer[0].external_data.add(key="location", value="other.bin")
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    model = gs.load(path)
    with pytest.raises(gs.ExternalDataError, match="'location' twice"):
        model.graph.initializer("w")
    assert any("'location' twice" in p for p in model.problems())


@pytest.mark.parametrize("value", ["1_0", " 8", "1e3", "+8", "0x10"])
def test_external_offset_must_be_plain_digits(tmp_path, value):
    path = external_model(tmp_path)
    m = onnx.load(path, load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "offset":
            e.value = value
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(gs.ExternalDataError, match="plain non-negative integers"):
        gs.load(path).graph.initializer("w")


def test_check_turns_any_onnx_failure_into_a_problem(monkeypatch):
    def odd(*a, **k):
        raise ValueError("Invalid tensor data type 99.")

    monkeypatch.setattr(onnx.checker, "check_model", odd)
    found = gs.load(tiny_chain()).problems()
    assert found and "Invalid tensor data type" in found[0]


def test_save_refuses_what_check_rejects(tmp_path):
    from conftest import if_model

    # a subgraph node redefining a name of the enclosing graph
    m = if_model()
    then_g = m.graph.node[0].attribute[0].g
    then_g.node.add(op_type="Identity", name="shadow", input=["x"], output=["w"])
    model = gs.load(m)
    assert model.problems()
    with pytest.raises(gs.SaveError, match="refusing to save"):
        model.save(tmp_path / "a.onnx")
    # a subgraph with the same initializer twice
    m = if_model()
    then_g = m.graph.node[0].attribute[0].g
    then_g.initializer.add().CopyFrom(then_g.initializer[0])
    with pytest.raises(gs.SaveError, match="refusing to save"):
        gs.load(m).save(tmp_path / "b.onnx")
    # something only onnx's checker sees: an attribute whose type does not match its value
    m = tiny_chain()
    m.graph.node[0].attribute[0].type = onnx.AttributeProto.FLOAT
    model = gs.load(m)
    assert model.problems(onnx_checker=False) == []
    with pytest.raises(gs.SaveError, match="refusing to save"):
        model.save(tmp_path / "c.onnx")
    assert os.listdir(tmp_path) == []
    model.save(tmp_path / "c.onnx", check=False)  # still possible when asked for


def test_onnx_checker_crashing_does_not_take_the_caller_down(monkeypatch, tmp_path):
    # onnx's C++ shape inference aborts the process on some damaged models; stand in for it.
    def crash(*a, **k):
        os.abort()

    monkeypatch.setattr(onnx.checker, "check_model", crash)
    model = gs.load(tiny_chain())
    found = model.problems()
    assert found and "crashed (SIGABRT)" in found[0]
    with pytest.raises(gs.InvalidModelError, match="crashed"):
        model.check()
    with pytest.raises(gs.SaveError, match="crashed"):
        model.save(tmp_path / "m.onnx")


def test_attribute_reference_outside_a_function_is_refused():
    from conftest import if_model

    m = if_model()
    m.graph.node[0].attribute[0].ref_attr_name = "body"  # only function bodies may refer to attributes
    with pytest.raises(gs.InvalidModelError, match="only nodes inside a function body"):
        gs.load(m)


def test_graph_attribute_taken_from_a_function_attribute_is_refused():
    body = helper.make_graph([helper.make_node("Identity", ["fx"], ["t"], name="inner")], "b", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    if_node = helper.make_node("If", ["fc"], ["fy"], name="f_if", then_branch=body, else_branch=body)
    if_node.attribute[0].ref_attr_name = "branch"
    fn = helper.make_function("local", "F", ["fx", "fc"], ["fy"], [if_node], [helper.make_opsetid("", 17)],
                              attributes=["branch"])
    g = helper.make_graph([helper.make_node("F", ["x", "c"], ["y"], name="call", domain="local")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                          functions=[fn])
    with pytest.raises(gs.InvalidModelError, match="takes its graph from the function attribute 'branch'"):
        gs.load(m)
