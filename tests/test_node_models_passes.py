"""debug-outputs, freeze-inputs and convert-opset on a sample of onnx's operator test models
(control flow, sequences, optionals, IR 3, NaN inputs, pooling shapes that change with the
opset): after each pass the model passes the full checker, runs, gives the same original
outputs, and a second run changes nothing, or the pass refuses and changes nothing."""

import numpy as np
import onnx
import pytest

import graphsurgery as gs
from graphsurgery.errors import GraphSurgeryError
from graphsurgery.passes import create

SAMPLE = [
    "test_if", "test_if_seq", "test_if_opt", "test_loop11", "test_loop13_seq", "test_loop16_seq_none",
    "test_scan_sum", "test_scan9_sum", "test_sequence_map_identity_2_sequences_expanded",
    "test_sequence_map_extract_shapes_expanded", "test_affine_grid_3d_align_corners_expanded",
    "test_range_float_type_positive_delta_expanded", "test_and2d", "test_ai_onnx_ml_binarizer", "test_isnan",
    "test_maxpool_2d_ceil_output_size_reduce_by_one", "test_identity_sequence", "test_sequence_insert_at_back",
    "test_reduce_log_sum_default_expanded", "test_equal_string",
]


@pytest.fixture(scope="module")
def cases():
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = {c.name: c for c in collect_testcases() if c.name in SAMPLE}
    assert set(found) == set(SAMPLE)
    return found


def _array(v):
    if isinstance(v, onnx.TensorProto):
        return onnx.numpy_helper.to_array(v)
    return np.asarray(v) if isinstance(v, np.generic) else v


def _run(data, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {k: v for k, v in feeds.items() if k in wanted}), strict=True))


def _same(a, b):
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(a, b))


def _variants(proto, inputs):
    yield "debug-outputs", {}, set()
    names = [vi.name for vi in proto.graph.input if vi.name not in {t.name for t in proto.graph.initializer}]
    last = _array(inputs[len(names) - 1]) if names and len(inputs) >= len(names) else None
    if last is not None:
        yield "freeze-inputs", {names[-1]: last}, {names[-1]}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    for target in () if opset is None else (opset - 1, opset + 1):
        if 7 <= target <= onnx.defs.onnx_opset_version():
            yield "convert-opset", {"version": target}, set()


@pytest.mark.parametrize("name", SAMPLE)
def test_pass_result_is_valid_runs_equal_and_idempotent(cases, name):
    case = cases[name]
    proto = case.model
    data = proto.SerializeToString()
    names = [vi.name for vi in proto.graph.input if vi.name not in {t.name for t in proto.graph.initializer}]
    feeds = dict(zip(names, map(_array, case.data_sets[0][0])))
    try:
        onnx.checker.check_model(proto, full_check=True)
        valid = True
    except onnx.checker.ValidationError:
        valid = False
    base = _run(data, feeds)
    for pass_name, opts, frozen in _variants(proto, case.data_sets[0][0]):
        m = gs.load(onnx.ModelProto.FromString(data))
        try:
            create(pass_name, **opts).run(m)
        except GraphSurgeryError:
            assert m.proto.SerializeToString() == data, f"{pass_name} refused but changed the model"
            continue
        after = m.proto.SerializeToString()
        if valid:
            onnx.checker.check_model(m.proto, full_check=True)
        got = _run(after, {k: v for k, v in feeds.items() if k not in frozen})
        for out in base:
            assert _same(base[out], got[out]), f"{pass_name} {opts}: output {out!r} changed"
        create(pass_name, **opts).run(m)
        assert m.proto.SerializeToString() == after, f"{pass_name} {opts}: a second run changed the model"
