"""Every benchmark workload of every tool, on tiny generated models: the results agree with
raw protobuf's and with the original model, so the benchmark cannot rot (no timing here)."""

from __future__ import annotations

import importlib
import json
import os
import sys

import onnx
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, BENCH)
    try:
        mods = {name: importlib.import_module(name) for name in ("generate", "workloads", "checks", "report", "run")}
    finally:
        sys.path.remove(BENCH)
    return mods


@pytest.fixture(scope="module")
def models(bench, tmp_path_factory):
    gen = bench["generate"]
    d = tmp_path_factory.mktemp("bench-models")
    paths = {"cnn": str(d / "cnn.onnx"), "small": str(d / "small.onnx")}
    onnx.save(gen.cnn(3, channels=2, hw=4), paths["cnn"])
    onnx.save(gen.small_ops(24), paths["small"])
    paths["transformer"] = gen.transformer(str(d / "transformer"), layers=2, d=16, ff=32)
    return paths


CASES = [  # (model, kind, spec)
    ("cnn", "structural", "prelu"),
    ("cnn", "attribute", "instancenorm-epsilon"),
    ("small", "structural", "leaky-relu"),
    ("small", "attribute", "leaky-relu-alpha"),
    ("transformer", "structural", "relu-max"),
    ("transformer", "attribute", "softmax-axis"),
]


def _attr(workloads, spec):
    s = workloads.SPECS[spec]
    return s.attr if isinstance(s, workloads.Structural) else (s.op, s.name, s.value)


@pytest.mark.parametrize("model,kind,spec", CASES, ids=[f"{m}-{s}" for m, _, s in CASES])
def test_every_tool_does_the_same_edit(bench, models, tmp_path, model, kind, spec):
    workloads, checks = bench["workloads"], bench["checks"]
    src, attr = models[model], _attr(workloads, spec)
    reference = str(tmp_path / "reference.onnx")
    if model != "transformer":  # the reference is the original with only the attribute set
        checks.with_attribute(src, reference, attr)
    summaries = {}
    for tool in workloads.TOOLS:
        out = tmp_path / tool
        out.mkdir()
        dst = str(out / "out.onnx")
        workloads.run(kind, tool, src, dst, spec)
        summaries[tool] = checks.summary(dst, attr)
        assert summaries[tool]["topologically_sorted"], tool
        if model == "transformer":
            assert checks.external_data_differences(src, dst) == [], tool
            assert any(f.endswith(".data") for f in os.listdir(out)), tool
            onnx.checker.check_model(dst)
        else:
            assert checks.max_difference(dst, reference) <= 1e-6, tool
    assert all(s == summaries["raw"] for s in summaries.values()), summaries
    s = summaries["raw"]
    if kind == "structural":
        w = workloads.SPECS[spec]
        assert w.op not in s["ops"]
        before = checks.summary(src)
        assert s["nodes"] == before["nodes"] + before["ops"][w.op] * (len(w.recipe) - 1)
    if attr:  # every node of the op type carries the new value
        assert s[f"{attr[0]}.{attr[1]}"] == {repr(round(attr[2], 6)): checks.summary(src)["ops"][attr[0]]}


def test_the_checks_notice_a_tool_that_does_less(bench, models, tmp_path):
    """A result missing one replacement, or with changed weights, is caught."""
    workloads, checks = bench["workloads"], bench["checks"]
    ref = str(tmp_path / "ref.onnx")
    checks.with_attribute(models["cnn"], ref, workloads.PRELU.attr)
    full, partial = str(tmp_path / "full.onnx"), str(tmp_path / "partial.onnx")
    workloads.structural_raw(models["cnn"], full, workloads.PRELU)
    m = onnx.load(full)
    sub = next(n for n in m.graph.node if n.op_type == "Sub")
    sub.op_type = "Add"  # a wrong decomposition
    onnx.save(m, partial)
    assert checks.summary(partial) != checks.summary(full)
    assert checks.max_difference(partial, ref) > 1e-3

    src = models["transformer"]
    out = tmp_path / "t"
    out.mkdir()
    dst = str(out / "model.onnx")
    workloads.attribute_raw(src, dst, workloads.SPECS["softmax-axis"])
    data = str(out / "model.onnx.data")
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    assert len(checks.external_data_differences(src, dst)) == 1


def test_the_driver_times_checks_and_tabulates(bench, models, tmp_path):
    """One job through the child entry points and the markdown table, as run.py does it."""
    run, report = bench["run"], bench["report"]
    job = {"kind": "structural", "tool": "graphsurgery", "src": models["cnn"], "dst": str(tmp_path / "o.onnx"),
           "spec": "prelu"}
    timed = run.child_time(job)
    assert timed["seconds"] > 0 and timed["peak_mib"] >= 0
    checked = run.child_check(job)
    json.dumps(checked)
    rows = [{"section": "structural", "case": "cnn 12 nodes", "tool": tool, "runs": [timed], "loadavg_before": "0 0 0",
             "seconds": timed["seconds"], "peak_mib": max(timed["peak_mib"], 1.0), "check": checked}
            for tool in ("raw", "graphsurgery")]
    rows.append({"section": "structural", "case": "cnn 24 nodes", "tool": "graphsurgery", "timeout": True})

    class Args:
        runs, limit, repeat_under = 1, 300, 60

    text = report.markdown(rows, Args, [])
    assert "| cnn 12 nodes | **graphsurgery** |" in text and "1.00×" in text and "> 300" in text
    assert "DIFFERS" not in text
