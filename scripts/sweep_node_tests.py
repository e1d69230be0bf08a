"""Run a pass over onnx's operator test models and check what it promises.

For each model: does it pass ``onnx.checker.check_model(full_check=True)`` before and after,
does it load and run in onnxruntime before and after, are the outputs the same, and does a
second run of the pass change nothing (bytes after run 1 == bytes after run 2)?

    python scripts/sweep_node_tests.py fold-constants [--only NAME ...] [--every N] [--json out.jsonl]

Prints one line per problem and a table of counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings

import numpy as np
import onnx

from graphsurgery.errors import GraphSurgeryError
from graphsurgery.passes.pipeline import Pipeline


def _checks(data: bytes) -> str | None:
    try:
        onnx.checker.check_model(onnx.ModelProto.FromString(data), full_check=True)
        return None
    except Exception as exc:  # the checker raises several kinds
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def _ort_run(data: bytes, feeds: dict):
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return None, f"load: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    try:
        return sess.run(None, feeds), None
    except Exception as exc:
        return None, f"run: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def _same(a, b) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            _same(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        tol = 2e-3 if a.dtype == np.float16 else 1e-5
        return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=tol, atol=tol, equal_nan=True))
    return bool(np.array_equal(a, b))


def _feeds(model: onnx.ModelProto, inputs: list) -> dict:
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    return dict(zip(names, inputs, strict=False))


def _apply(pipeline: str, data: bytes) -> tuple[bytes | None, str | None]:
    m = onnx.ModelProto.FromString(data)
    try:
        Pipeline.from_text(pipeline).run(m)
    except GraphSurgeryError as exc:
        return None, f"refused: {str(exc)[:200]}"
    except Exception as exc:
        return None, f"CRASH {type(exc).__name__}: {str(exc)[:200]}"
    return m.SerializeToString(), None


def sweep_one(pipeline: str, case) -> dict:
    before = case.model.SerializeToString()
    feeds = _feeds(case.model, case.data_sets[0][0]) if case.data_sets else {}
    row = {"name": case.name}
    row["check_before"] = _checks(before)
    outs_before, row["ort_before"] = _ort_run(before, feeds)
    after, err = _apply(pipeline, before)
    row["pass"] = err
    if after is None:
        return row
    row["changed"] = after != before
    row["check_after"] = _checks(after)
    outs_after, row["ort_after"] = _ort_run(after, feeds)
    if outs_before is not None and outs_after is not None:
        row["same_outputs"] = len(outs_before) == len(outs_after) and all(
            _same(a, b) for a, b in zip(outs_before, outs_after, strict=True))
    again, err2 = _apply(pipeline, after)
    row["idempotent"] = again == after if again is not None else f"second run: {err2}"
    row["grew"] = len(after) > len(before)
    row["bytes"] = (len(before), len(after))
    return row


def problems(row: dict) -> list[str]:
    out = []
    if row.get("pass"):
        out.append(row["pass"])
        return out
    if row["check_before"] is None and row.get("check_after"):
        out.append(f"checker fails after: {row['check_after']}")
    if row["ort_before"] is None and row.get("ort_after"):
        out.append(f"onnxruntime fails after: {row['ort_after']}")
    if row.get("same_outputs") is False:
        out.append("outputs differ")
    if row.get("idempotent") is not True:
        out.append(f"not idempotent ({row.get('idempotent')})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pipeline")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--every", type=int, default=1, help="take every Nth model")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from onnx.backend.test.case.node import collect_testcases

    cases = [c for c in collect_testcases() if not args.only or c.name in args.only][::args.every]
    counts = collections.Counter()
    sink = open(args.json, "w") if args.json else None  # noqa: SIM115
    for case in cases:
        row = sweep_one(args.pipeline, case)
        if sink:
            sink.write(json.dumps(row) + "\n")
            sink.flush()
        counts["models"] += 1
        counts["checker ok before"] += row["check_before"] is None
        counts["onnxruntime ok before"] += row["ort_before"] is None
        if row.get("pass"):
            counts["crashed" if row["pass"].startswith("CRASH") else "refused"] += 1
        else:
            counts["changed"] += row["changed"]
            counts["checker ok after"] += row["check_after"] is None
            counts["onnxruntime ok after"] += row["ort_after"] is None
            counts["outputs differ"] += row.get("same_outputs") is False
            counts["not idempotent"] += row.get("idempotent") is not True
            counts["grew"] += row["grew"]
        for p in problems(row):
            counts["problem models"] += 0
            print(f"{case.name}: {p}", flush=True)
    for k, v in counts.items():
        print(f"{k:>24}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
