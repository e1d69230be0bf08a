"""debug-outputs, freeze-inputs and convert-opset (one opset down and one up) on a sample of
onnx's operator test models (control flow, sequences, optionals, IR 3, NaN inputs, pooling
shapes that change with the opset), classified by scripts/sweep.py: after each pass the model
passes the full checker, loads, runs, gives the same original outputs, and a second run changes
nothing, or the pass refuses and changes nothing."""

import pytest

from test_sweep import sweep_module

SAMPLE = [
    "test_if", "test_if_seq", "test_if_opt", "test_loop11", "test_loop13_seq", "test_loop16_seq_none",
    "test_scan_sum", "test_scan9_sum", "test_sequence_map_identity_2_sequences_expanded",
    "test_sequence_map_extract_shapes_expanded", "test_affine_grid_3d_align_corners_expanded",
    "test_range_float_type_positive_delta_expanded", "test_and2d", "test_ai_onnx_ml_binarizer", "test_isnan",
    "test_maxpool_2d_ceil_output_size_reduce_by_one", "test_identity_sequence", "test_sequence_insert_at_back",
    "test_reduce_log_sum_default_expanded", "test_equal_string",
]
RUNS = ["debug-outputs", "freeze-inputs", "convert-opset:-1", "convert-opset:+1"]


@pytest.mark.parametrize("name", SAMPLE)
def test_pass_result_is_valid_runs_equal_and_idempotent(name):
    sweep = sweep_module()
    base = sweep.Baseline(f"node:{name}")
    assert base.checker is None and base.runs, (base.checker, getattr(base, "ort_error", None))
    records = [sweep.run_one(run, base) for run in RUNS]
    bad = [f"{r['pass']}: {r['class']}: {r.get('error', '')}" for r in records if r["class"] in sweep.DEFECTS]
    assert not bad, bad
