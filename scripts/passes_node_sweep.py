"""Run debug-outputs, freeze-inputs or convert-opset over every onnx operator test model and
record, per model and variant, the defects: checker-invalid (the input passed the full checker,
the result does not), crashed (an error that is not a GraphSurgeryError), no longer loads / no
longer runs in onnxruntime, outputs differ (the original outputs, on the test data), not
idempotent (a second run changes the bytes). A refusal (GraphSurgeryError) is recorded, not
counted as a defect. freeze-inputs freezes the last input to its test value; convert-opset
targets the model's opset -2..+2.

usage: python scripts/passes_node_sweep.py PASS OUT.jsonl [--filter SUBSTRING]
"""
import json
import sys
import traceback
import warnings

import numpy as np
import onnx

warnings.filterwarnings("ignore")

import onnxruntime as ort  # noqa: E402

import graphsurgery as gs  # noqa: E402
from graphsurgery.errors import GraphSurgeryError  # noqa: E402
from graphsurgery.passes import create  # noqa: E402


def ort_run(data: bytes, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        return "load", str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    try:
        wanted = {i.name for i in sess.get_inputs()}
        outs = sess.run(None, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as e:
        return "run", str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return "ok", dict(zip([o.name for o in sess.get_outputs()], outs))


def same(a, b):
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.size == 0:
        return True
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        return bool(np.allclose(a.astype(np.complex128) if np.iscomplexobj(a) else a.astype(np.float64),
                                b.astype(np.complex128) if np.iscomplexobj(b) else b.astype(np.float64),
                                rtol=1e-5, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(a, b))


def checker_ok(proto):
    try:
        onnx.checker.check_model(proto, full_check=True)
        return True, ""
    except Exception as e:
        return False, str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def apply(pname, opts, data: bytes):
    m = gs.load(onnx.ModelProto.FromString(data))
    r = create(pname, **opts).run(m)
    return r.model.to_bytes() if hasattr(r.model, "to_bytes") else r.model.SerializeToString(), r


def variants(pname, case, proto):
    if pname == "debug-outputs":
        yield "default", {}, set()
    elif pname == "freeze-inputs":
        inputs = case.data_sets[0][0]
        names = [vi.name for vi in proto.graph.input if vi.name not in {t.name for t in proto.graph.initializer}]
        if not names:
            return
        # the last input with an ndarray value
        for i in range(min(len(names), len(inputs)) - 1, -1, -1):
            if isinstance(inputs[i], (np.ndarray, np.generic, onnx.TensorProto)):
                value = onnx.numpy_helper.to_array(inputs[i]) if isinstance(inputs[i], onnx.TensorProto) else np.asarray(inputs[i])
                yield f"freeze {names[i]}", {names[i]: value}, {names[i]}
                return
        yield f"freeze {names[-1]} (non-tensor)", {names[-1]: 0}, {names[-1]}
    elif pname == "convert-opset":
        cur = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if cur is None:
            return
        top = onnx.defs.onnx_opset_version()
        for t in (cur - 2, cur - 1, cur + 1, cur + 2):
            if 7 <= t <= top:
                yield f"to {t}", {"version": t}, set()


def main():
    pname, out = sys.argv[1], sys.argv[2]
    filt = sys.argv[4] if len(sys.argv) > 3 and sys.argv[3] == "--filter" else None
    from onnx.backend.test.case.node import collect_testcases
    cases = collect_testcases()
    with open(out, "w") as f:
        for case in cases:
            if filt and filt not in case.name:
                continue
            proto = case.model
            data = proto.SerializeToString()
            names = [vi.name for vi in proto.graph.input if vi.name not in {t.name for t in proto.graph.initializer}]
            inputs = case.data_sets[0][0] if case.data_sets else []
            feeds = {k: (np.asarray(v) if isinstance(v, np.generic) else onnx.numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v) for k, v in zip(names, inputs)}
            ck0, _ = checker_ok(proto)
            st0, base = ort_run(data, feeds)
            orig_out = [vi.name for vi in proto.graph.output]
            for vname, opts, frozen in variants(pname, case, proto):
                rec = {"model": case.name, "variant": vname, "checker0": ck0, "ort0": st0, "defects": []}
                try:
                    after, res = apply(pname, opts, data)
                    rec["changed"] = res.changed
                    rec["skipped"] = len(res.skipped)
                except GraphSurgeryError as e:
                    rec["refused"] = f"{type(e).__name__}: {str(e)[:300]}"
                    f.write(json.dumps(rec) + "\n")
                    continue
                except Exception as e:
                    rec["defects"].append("crashed")
                    rec["crash"] = f"{type(e).__name__}: {str(e)[:300]}"
                    rec["tb"] = traceback.format_exc()[-600:]
                    f.write(json.dumps(rec) + "\n")
                    continue
                aproto = onnx.ModelProto.FromString(after)
                ck1, msg = checker_ok(aproto)
                if ck0 and not ck1:
                    rec["defects"].append("checker-invalid")
                    rec["checker_msg"] = msg
                if st0 == "ok":
                    st1, got = ort_run(after, {k: v for k, v in feeds.items() if k not in frozen})
                    if st1 == "load":
                        rec["defects"].append("no longer loads")
                        rec["ort_msg"] = got
                    elif st1 == "run":
                        rec["defects"].append("no longer runs")
                        rec["ort_msg"] = got
                    else:
                        bad = [n for n in orig_out if n not in got or not same(base[n], got[n])]
                        if bad:
                            rec["defects"].append("outputs differ")
                            rec["differ"] = bad[:5]
                try:
                    again, _ = apply(pname, opts, after)
                    if again != after:
                        rec["defects"].append("not idempotent")
                        rec["growth"] = [len(aproto.graph.output), len(onnx.ModelProto.FromString(again).graph.output)]
                except GraphSurgeryError as e:
                    rec["defects"].append("not idempotent")
                    rec["second"] = f"refused: {type(e).__name__}: {str(e)[:200]}"
                except Exception as e:
                    rec["defects"].append("not idempotent")
                    rec["second"] = f"crashed: {type(e).__name__}: {str(e)[:200]}"
                f.write(json.dumps(rec) + "\n")
                f.flush()


if __name__ == "__main__":
    main()
