#!/usr/bin/env python3
"""Every registered pass over every ONNX operator test model (and real models), classified.

Each run (one pass on one model) ends in exactly one class:

    unchanged        the pass left the bytes as they were
    changed          the pass changed the model and every check below holds
    refused          the pass raised a GraphSurgeryError and left the model as it was
    fp16 noise       changed, outputs differ only by float16/bfloat16 last-bit rounding

and the defects:

    crashed          the pass raised something other than a GraphSurgeryError (or hung)
    refused dirty    the pass refused but left the model modified
    checker-invalid  the input passes onnx.checker (full_check) and the output does not
    no longer loads  the input loads in onnxruntime (CPU, no optimizer) and the output does not
    no longer runs   the input runs on the test inputs and the output does not
    outputs differ   the outputs differ beyond a scale-relative tolerance
    not idempotent   running the pass again on its output changes the bytes (or fails)
    grew             a pass that promises never to make the file larger (fold-constants) did

A run takes the first defect class that applies, in the order above.

Models: the operator test models onnx ships (``node:NAME``, with the inputs shipped beside them,
generated from the declared types where none ship) and every ``.onnx`` under ``--corpus DIR``
(``corpus:PATH``; inputs from ``PATH.inputs.npz`` beside the model when present, else generated
from the declared shapes). Work runs in ``--jobs`` worker subprocesses; a crash or hang of one
model is recorded and the run goes on.

    python scripts/sweep.py --out sweep-results             # the full sweep
    python scripts/sweep.py --passes cleanup --models 'node:test_if*'
    python scripts/sweep.py --sample 40 --seed 1
    python scripts/sweep.py --corpus corpus/ --out corpus-results
    python scripts/sweep.py --passes convert-opset --opset-deltas=-2,-1,1,2
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import random
import selectors
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict

CLASSES = ["unchanged", "changed", "refused", "fp16 noise",
           "crashed", "refused dirty", "checker-invalid", "no longer loads", "no longer runs",
           "outputs differ", "not idempotent", "grew"]
DEFECTS = CLASSES[4:]
RTOL, ATOL = 1e-5, 1e-6
NO_GROWTH = {"fold-constants"}  # passes whose result is never larger, serialized, than their input


# ---------------------------------------------------------------- models and their inputs
def node_cache() -> str:
    """A folder with onnx's operator test models and their inputs, one folder per test
    (``model.onnx``, ``inputs.pkl``), made once per onnx version from
    ``onnx.backend.test.case.node.collect_testcases()`` (the wheel ships no test data)."""
    import pickle

    import onnx

    root = os.environ.get("SWEEP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graphsurgery-sweep",
                                                         f"onnx-{onnx.__version__}")
    if os.path.exists(os.path.join(root, "COMPLETE")):
        return root
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    import shutil
    import tempfile

    try:
        os.makedirs(os.path.dirname(root), exist_ok=True)
    except OSError:  # no writable home: a temporary folder, made again by each process
        root = os.path.join(tempfile.gettempdir(), f"graphsurgery-sweep-{os.getuid()}", f"onnx-{onnx.__version__}")
        if os.path.exists(os.path.join(root, "COMPLETE")):
            return root
        os.makedirs(os.path.dirname(root), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(root))  # made whole, then moved in place
    for c in cases:
        folder = os.path.join(tmp, c.name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(c.model.SerializeToString())
        inits = {t.name for t in c.model.graph.initializer}
        names = [vi.name for vi in c.model.graph.input if vi.name not in inits]
        inputs = [_value(x) for x in (c.data_sets[0][0] if c.data_sets else [])]
        with open(os.path.join(folder, "inputs.pkl"), "wb") as f:
            pickle.dump(dict(zip(names, inputs)), f)
    open(os.path.join(tmp, "COMPLETE"), "w").close()
    try:
        os.rename(tmp, root)
    except OSError:  # made meanwhile by another process, or a stale partial one
        if not os.path.exists(os.path.join(root, "COMPLETE")):
            shutil.rmtree(root, ignore_errors=True)
            os.rename(tmp, root)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _value(x):
    """A test input as onnxruntime takes it (some tests give TensorProtos for exotic types)."""
    import onnx
    from onnx import numpy_helper

    import numpy as np

    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, np.generic):  # a numpy scalar: onnxruntime takes only arrays
        return np.asarray(x)
    if isinstance(x, (list, tuple)):
        return [_value(v) for v in x]
    return x


def list_models(node: bool, corpora: list[str]) -> list[str]:
    ids = []
    if node:
        root = node_cache()
        os.environ["SWEEP_CACHE"] = root  # the workers find it there
        ids += [f"node:{d}" for d in sorted(os.listdir(root)) if os.path.exists(os.path.join(root, d, "model.onnx"))]
    for corpus in corpora:
        for dirpath, _, files in os.walk(corpus):
            for f in sorted(files):
                if f.endswith(".onnx"):
                    ids.append("corpus:" + os.path.abspath(os.path.join(dirpath, f)))
    return ids


def load_model(model_id: str):
    """(model bytes, feeds, where the feeds came from)."""
    import numpy as np
    import onnx

    from graphsurgery import verify

    kind, _, ref = model_id.partition(":")
    if kind == "node":
        import pickle

        folder = os.path.join(node_cache(), ref)
        data = open(os.path.join(folder, "model.onnx"), "rb").read()
        with open(os.path.join(folder, "inputs.pkl"), "rb") as f:
            feeds = {k: _value(v) for k, v in pickle.load(f).items()}
        if feeds:
            return data, feeds, "shipped"
        return data, _generated(onnx.ModelProto.FromString(data)), "generated"
    data = open(ref, "rb").read()
    side = ref + ".inputs.npz"
    if os.path.exists(side):
        with np.load(side) as z:
            return data, {k: z[k] for k in z.files}, "given"
    proto = onnx.ModelProto.FromString(data)
    return data, _generated(proto), "generated"


def _generated(proto):
    from graphsurgery import verify

    try:
        return verify.make_inputs(proto, batch=1)
    except Exception:  # non-tensor inputs: the model is swept without a baseline run
        return {}


# ---------------------------------------------------------------- running and comparing
def ort_session(data: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.intra_op_num_threads = so.inter_op_num_threads = 1  # the workers are the parallelism
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def ort_run(sess, feeds) -> dict:
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    # copies: some kernels (BatchNormalization in training mode) write into their inputs
    return dict(zip(names, sess.run(None, {k: copy.deepcopy(v) for k, v in feeds.items() if k in wanted}),
                    strict=True))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}"[:400]


def check(proto) -> str | None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        return None
    except Exception as exc:
        return first_line(exc)


def compare(expected, actual, path="") -> tuple[str, str] | None:
    """None when equal within tolerance; ("fp16", why) for float16 last-bit noise; ("differ", why)."""
    import numpy as np

    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return "differ", f"{path}: sequence of {len(expected)} -> {type(actual).__name__}"
        worst = None
        for i, (e, a) in enumerate(zip(expected, actual)):
            got = compare(e, a, f"{path}[{i}]")
            if got and (worst is None or got[0] == "differ"):
                worst = got
        return worst
    if expected is None or actual is None:
        return None if expected is None and actual is None else ("differ", f"{path}: None vs value")
    if isinstance(expected, dict):
        return None if expected.keys() == actual.keys() and all(compare(expected[k], actual[k]) is None
                                                               for k in expected) else ("differ", f"{path}: map")
    e, a = np.asarray(expected), np.asarray(actual)
    if e.shape != a.shape:
        return "differ", f"{path}: shape {list(e.shape)} -> {list(a.shape)}"
    if e.dtype != a.dtype:
        return "differ", f"{path}: dtype {e.dtype} -> {a.dtype}"
    if e.size == 0:
        return None
    if not np.issubdtype(e.dtype, np.number) and e.dtype != np.bool_:
        return None if np.array_equal(e, a) else ("differ", f"{path}: values differ")
    if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
        return None if np.array_equal(e, a) else ("differ", f"{path}: {int((e != a).sum())} element(s) differ")
    e64, a64 = e.astype(np.float64), a.astype(np.float64)
    if not np.array_equal(np.isnan(e64), np.isnan(a64)):
        return "differ", f"{path}: NaNs differ"
    fin = np.isfinite(e64)
    if not np.array_equal(e64[~fin & ~np.isnan(e64)], a64[~fin & ~np.isnan(e64)]):
        return "differ", f"{path}: infinities differ"
    both = fin & np.isfinite(a64)
    if not np.array_equal(fin, np.isfinite(a64)):
        return "differ", f"{path}: finite/infinite elements differ"
    if not both.any():
        return None
    diff = np.abs(a64[both] - e64[both])
    scale = float(np.abs(e64[both]).max())
    bound = ATOL + RTOL * scale
    if (diff <= bound).all():
        return None
    why = f"{path}: max abs diff {diff.max():.3g} (scale {scale:.3g})"
    if e.dtype.itemsize == 2:  # float16 / bfloat16: two units in the last place at the output's scale
        eps = float(np.finfo(e.dtype).eps) if e.dtype == np.float16 else 2.0 ** -7
        if (diff <= 2 * eps * max(scale, 1e-30) + ATOL).all():
            return "fp16", why
    return "differ", why


# ---------------------------------------------------------------- per-pass options and oracles
def tensor_inputs(proto, feeds):
    inits = {t.name for t in proto.graph.initializer}
    return [vi for vi in proto.graph.input if vi.name not in inits and vi.type.HasField("tensor_type")
            and vi.name in feeds]


# other option sets for some passes, run as "PASS:VARIANT" (``--variants``)
VARIANTS = ["cut:inputs", "rename-io:output"]


def pass_of(name: str) -> str:
    return name.partition(":")[0]


def opset_delta(name: str) -> int | None:
    """The target opset of a convert-opset run, relative to the model's: ``convert-opset`` is +1,
    ``convert-opset:-2`` is -2 (``--opset-deltas``); None for other names."""
    pname, _, var = name.partition(":")
    if pname != "convert-opset":
        return None
    try:
        return int(var) if var else 1
    except ValueError:
        return None


def known_name(name: str, passes) -> bool:
    if pass_of(name) not in passes:
        return False
    return ":" not in name or name in VARIANTS or (opset_delta(name) is not None and opset_delta(name) != 0)


def options_for(name: str, proto, feeds) -> dict:
    import numpy as np

    g = proto.graph
    inits = {t.name for t in g.initializer}
    if name == "cut:inputs":  # the model after an intermediate tensor: it becomes the input
        t = intermediate(proto)
        return {"inputs": [t]} if t and t not in {o.name for o in g.output} else {}
    if name == "rename-io:output":
        return {g.output[0].name: g.output[0].name + "_renamed"} if len(g.output) else {}
    if name == "freeze-inputs":
        ins = tensor_inputs(proto, feeds)
        return {ins[-1].name: np.asarray(feeds[ins[-1].name])} if ins else {}
    if name == "set-shape":
        return {vi.name: [int(d) for d in np.asarray(feeds[vi.name]).shape] for vi in tensor_inputs(proto, feeds)}
    if name == "set-batch":
        return {"size": "2"}
    if pass_of(name) == "convert-opset":
        ver = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
        return {"version": ver + opset_delta(name)} if ver is not None else {}
    if name == "cut":
        t = intermediate(proto)
        return {"outputs": [t]} if t else {}
    if name == "rename-io":
        ins = [vi.name for vi in g.input if vi.name not in inits]
        first = ins[0] if ins else (g.output[0].name if len(g.output) else None)
        return {first: first + "_renamed"} if first else {}
    if name == "instancenorm-epsilon":
        return {"epsilon": 1e-3}
    return {}  # debug-outputs: all tensors by default; others need none


def intermediate(proto) -> str | None:
    """One intermediate tensor of the main graph: an output of the middle node that is not a
    graph output; else the first graph output when there are several (the cut drops the rest)."""
    g = proto.graph
    outs = {o.name for o in g.output}
    cands = [t for n in g.node for t in n.output if t and t not in outs]
    if cands:
        return cands[len(cands) // 2]
    return g.output[0].name if len(g.output) > 1 else None


def expected_outputs(name, opts, base_bytes, base_out, feeds, result, out_proto):
    """(feeds for the model after the pass, expected outputs by name) or a string saying why
    the outputs are not compared. ``base_out`` holds the original model's outputs for ``feeds``."""
    import numpy as np
    import onnx

    if name == "freeze-inputs":
        return {k: v for k, v in feeds.items() if k not in opts}, base_out
    if name in ("rename-io", "rename-io:output"):
        return {opts.get(k, k): v for k, v in feeds.items()}, {opts.get(k, k): v for k, v in base_out.items()}
    if name == "cut:inputs":  # fed the cut tensors' values in the model before the pass
        new_inputs = [vi.name for vi in out_proto.graph.input]
        wanted = [o.name for o in out_proto.graph.output]
        got = _intermediates(base_bytes, [t for t in new_inputs + wanted if t not in feeds], feeds)
        return ({t: feeds[t] if t in feeds else got[t] for t in new_inputs},
                {t: got[t] if t in got else base_out[t] for t in wanted})
    if name == "instancenorm-epsilon":
        ref = onnx.ModelProto.FromString(base_bytes)
        _set_in_eps(ref.graph, opts["epsilon"])
        for f in ref.functions:
            _set_in_eps(f, opts["epsilon"])
        return feeds, ort_run(ort_session(ref.SerializeToString()), feeds)
    if name == "cut":
        wanted = [o.name for o in out_proto.graph.output]
        got = _intermediates(base_bytes, wanted, feeds)
        return feeds, {t: got[t] for t in wanted}
    if name == "debug-outputs":
        # the original outputs, and every main-graph tensor exposed under its own name: its value
        # in the model before the pass
        ref = onnx.ModelProto.FromString(base_bytes)
        made = {t for n in ref.graph.node for t in n.output if t}
        carried = result.details.get("outputs") or {}
        extra = [t for t, o in carried.items() if t == o and t in made and t not in base_out]
        try:
            got = _intermediates(base_bytes, extra, feeds) if extra else {}
        except Exception:
            return feeds, base_out
        return feeds, {**base_out, **{t: got[t] for t in extra}}
    if name == "set-batch":
        targets = result.details.get("inputs") or []
        if not targets:
            return feeds, base_out
        new = dict(feeds)
        for inp, axis in targets:
            arr = np.asarray(feeds[inp])
            n = arr.shape[axis] if arr.ndim > axis else 0
            if n == 0:
                return "an input has an empty batch"
            new[inp] = np.take(arr, [i % n for i in range(2)], axis=axis)
        try:
            return new, ort_run(ort_session(base_bytes), new)
        except Exception:
            return new, None  # the model before has a fixed other batch: only that it runs is checked
    if name == "split-preprocessing":
        pre = result.details.get("preprocessing_model")
        if pre is None:
            return feeds, base_out
        pre_out = ort_run(ort_session(pre.SerializeToString()), feeds)
        ins = [vi.name for vi in pre.graph.input if vi.name in feeds]
        outs = [o.name for o in pre.graph.output]
        if len(ins) != len(outs):
            return "the preprocessing model's inputs and outputs do not pair up"
        new = dict(feeds)
        for i, o in zip(ins, outs):
            new[i] = pre_out[o]
        return new, base_out
    # debug-outputs: the original outputs must stay; set-shape: same data, same shapes;
    # convert-opset, fold/remove/cleanup/eliminate/fuse/focus/prelu/preprocessing: same values
    return feeds, base_out


def _intermediates(base_bytes: bytes, names: list[str], feeds) -> dict:
    """Values of main-graph tensors ``names`` in the original model: a copy of it with them as outputs."""
    import onnx

    ref = onnx.ModelProto.FromString(base_bytes)
    have = {o.name for o in ref.graph.output}
    missing = [t for t in names if t not in have]
    if missing:
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(ref).graph.value_info}
        for t in missing:
            ref.graph.output.append(inferred.get(t) or onnx.ValueInfoProto(name=t))
    return ort_run(ort_session(ref.SerializeToString()), feeds)


def _set_in_eps(g, eps):
    import onnx

    from graphsurgery.ops import subgraph_protos

    for node in g.node:
        if node.op_type == "InstanceNormalization" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "epsilon":
                    a.f = eps
                    break
            else:
                node.attribute.append(onnx.helper.make_attribute("epsilon", eps))
        for sub in subgraph_protos(node):
            _set_in_eps(sub, eps)


# ---------------------------------------------------------------- the worker
class Baseline:
    def __init__(self, model_id: str):
        import onnx

        import graphsurgery

        self.data, self.feeds, self.source = load_model(model_id)
        self.proto = onnx.ModelProto.FromString(self.data)
        self.bytes = graphsurgery.load(self.data).to_bytes()  # the library's own round trip
        self.checker = check(self.proto)
        self.loads = self.runs = False
        self.outputs = None
        try:
            sess = ort_session(self.data)
            self.loads = True
            self.outputs = ort_run(sess, self.feeds)
            self.runs = True
        except Exception as exc:
            self.ort_error = first_line(exc)


def run_one(name: str, base: Baseline) -> dict:
    import onnx

    import graphsurgery
    from graphsurgery.errors import GraphSurgeryError
    from graphsurgery.passes import create

    opts = options_for(name, base.proto, base.feeds)
    rec = {"pass": name, "options": {k: _short(v) for k, v in opts.items()}}
    model = graphsurgery.load(base.bytes)
    try:
        result = create(pass_of(name), **opts).run(model)
    except GraphSurgeryError as exc:
        dirty = model.to_bytes() != base.bytes
        return {**rec, "class": "refused dirty" if dirty else "refused", "error": first_line(exc)}
    except Exception as exc:
        return {**rec, "class": "crashed", "error": first_line(exc), "trace": _trace(exc)}
    try:
        out = model.to_bytes()
    except Exception as exc:
        return {**rec, "class": "crashed", "error": "saving the result: " + first_line(exc), "trace": _trace(exc)}
    if out == base.bytes:
        return {**rec, "class": "unchanged", **({"note": "reported a change"} if result.changed else {})}
    if not result.changed:
        rec["note"] = "changed the bytes but reported no change"
    out_proto = onnx.ModelProto.FromString(out)
    if base.checker is None:
        err = check(out_proto)
        if err:
            return {**rec, "class": "checker-invalid", "error": err}
    noise = None
    if base.loads:
        try:
            sess = ort_session(out)
        except Exception as exc:
            return {**rec, "class": "no longer loads", "error": first_line(exc)}
        if base.runs:
            try:
                plan = expected_outputs(name, opts, base.data, base.outputs, base.feeds, result, out_proto)
            except Exception as exc:
                plan = f"reference failed: {first_line(exc)}"
            if isinstance(plan, str):
                rec["note"] = "outputs not compared: " + plan
            else:
                feeds, expected = plan
                try:
                    got = ort_run(sess, feeds)
                except Exception as exc:
                    return {**rec, "class": "no longer runs", "error": first_line(exc)}
                for k, v in (expected or {}).items():
                    if k not in got:
                        return {**rec, "class": "outputs differ", "error": f"output {k!r} is gone"}
                    diff = compare(v, got[k], k)
                    if diff and diff[0] == "differ":
                        return {**rec, "class": "outputs differ", "error": diff[1]}
                    if diff:
                        noise = diff[1]
    try:
        again = graphsurgery.load(out)
        create(pass_of(name), **opts).run(again)
        twice = again.to_bytes()
    except Exception as exc:
        return {**rec, "class": "not idempotent", "error": "second run: " + first_line(exc)}
    if twice != out:
        return {**rec, "class": "not idempotent", "error": "the second run changed the model again"}
    if pass_of(name) in NO_GROWTH and len(out) > len(base.bytes):
        return {**rec, "class": "grew", "error": f"{len(base.bytes):,} -> {len(out):,} bytes"}
    if noise:
        return {**rec, "class": "fp16 noise", "error": noise}
    return {**rec, "class": "changed"}


def _short(v):
    import numpy as np

    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 8 else f"<{v.dtype} {list(v.shape)}>"
    return v


def _trace(exc) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(tb[-4:]))


def worker() -> None:
    import logging
    import warnings

    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # nothing but the protocol on the pipe
    for line in sys.stdin:
        task = json.loads(line)

        def send(msg):
            out.write(json.dumps(msg, default=str) + "\n")
            out.flush()

        send({"start": "(baseline)"})
        try:
            base = Baseline(task["model"])
        except Exception as exc:
            send({"baseline_error": first_line(exc)})
            continue
        send({"baseline": {"checker": base.checker, "loads": base.loads, "runs": base.runs, "inputs": base.source,
                           "ort_error": getattr(base, "ort_error", None)}})
        for name in task["passes"]:
            send({"start": name})
            if os.environ.get("SWEEP_DIE_ON") == f"{name}@{task['model']}":  # tests: a worker that dies
                os._exit(3)
            try:
                rec = run_one(name, base)
            except Exception as exc:
                rec = {"pass": name, "class": "crashed", "error": "sweep: " + first_line(exc), "trace": _trace(exc)}
            send({"result": rec})
        send({"done": True})


# ---------------------------------------------------------------- the driver
class Worker:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buf = b""
        self.eof = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def send(self, msg):
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, timeout: float):
        """The next message, or None on timeout or when the worker died."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:  # the worker closed its end: it died
                self.eof = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.sel.close()

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.kill()


def drive(models: list[str], passes: list[str], jobs: int, timeout: float, progress=None) -> tuple[list, dict]:
    """Run the sweep; returns (one record per run, baseline facts per model)."""
    queue = [(m, list(passes)) for m in models]
    lock = threading.Lock()
    records: list[dict] = []
    baselines: dict[str, dict] = {}
    done = [0]

    def loop():
        w = None
        while True:
            with lock:
                if not queue:
                    break
                model, todo = queue.pop(0)
            w = w or Worker()
            w.send({"model": model, "passes": todo})
            current, finished = None, []
            while True:
                msg = w.recv(timeout)
                if msg is None:  # hung or died: record the run in progress, go on with the rest
                    if w.eof:
                        try:
                            rc = w.proc.wait(timeout=10)
                        except subprocess.TimeoutExpired:
                            rc = "unknown"
                        why = f"worker died (exit code {rc})"
                    else:
                        why = f"timeout after {timeout:g} s"
                    w.kill()
                    w = None
                    with lock:
                        if current == "(baseline)" or current is None:
                            baselines[model] = {"error": why}
                            for p in todo:
                                records.append({"model": model, "pass": p, "class": "crashed",
                                                "error": f"baseline: {why}"})
                        else:
                            records.append({"model": model, "pass": current, "class": "crashed", "error": why})
                            rest = [p for p in todo if p not in finished and p != current]
                            if rest:
                                queue.insert(0, (model, rest))
                    break
                if "start" in msg:
                    current = msg["start"]
                elif "baseline" in msg:
                    with lock:
                        baselines[model] = msg["baseline"]
                elif "baseline_error" in msg:
                    with lock:
                        baselines[model] = {"error": msg["baseline_error"]}
                    break
                elif "result" in msg:
                    finished.append(msg["result"]["pass"])
                    with lock:
                        records.append({"model": model, **msg["result"]})
                elif "done" in msg:
                    break
            with lock:
                done[0] += 1
                if progress:
                    progress(done[0], len(models), model)
        if w is not None:
            w.close()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records, baselines


def short_model(m: str) -> str:
    kind, _, ref = m.partition(":")
    return ref if kind == "node" else os.path.basename(ref)


def summarize(records: list[dict], passes: list[str]) -> dict:
    counts = defaultdict(Counter)
    for r in records:
        counts[r["pass"]][r["class"]] += 1
    return {p: dict(counts[p]) for p in passes}


def markdown(records: list[dict], passes: list[str], models: int, baselines: dict) -> str:
    counts = summarize(records, passes)
    cols = [c for c in CLASSES if any(counts[p].get(c) for p in passes)] or ["unchanged"]
    lines = ["| pass | " + " | ".join(cols) + " | defects |", "|---|" + "---:|" * (len(cols) + 1)]
    total = Counter()
    for p in passes:
        row = counts[p]
        total.update(row)
        lines.append(f"| {p} | " + " | ".join(str(row.get(c, 0)) for c in cols) + f" | {sum(row.get(c, 0) for c in DEFECTS)} |")
    lines.append("| **total** | " + " | ".join(f"**{total.get(c, 0)}**" for c in cols)
                 + f" | **{sum(total.get(c, 0) for c in DEFECTS)}** |")
    ndef = sum(total.get(c, 0) for c in DEFECTS)
    base = Counter()
    for b in baselines.values():
        base["models"] += 1
        base["checker-valid"] += b.get("checker") is None and "error" not in b
        base["load in onnxruntime"] += bool(b.get("loads"))
        base["run in onnxruntime"] += bool(b.get("runs"))
    head = (f"{len(records)} runs ({len(passes)} passes x {models} models), {ndef} defects: "
            + ", ".join(f"{c} {total[c]}" for c in DEFECTS if total.get(c)) + ".\n\n"
            + "Inputs: " + ", ".join(f"{v} {k}" for k, v in base.items()) + ".\n\n")
    return head + "\n".join(lines) + "\n"


def defect_lines(records: list[dict]) -> list[str]:
    out = []
    for r in sorted(records, key=lambda r: (r["pass"], r["class"], r["model"])):
        if r["class"] in DEFECTS:
            line = f"{r['pass']}\t{short_model(r['model'])}\t{r['class']}\t{r.get('error', '')}"
            if r.get("trace"):
                line += f"\t[{r['trace']}]"
            out.append(line)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--passes", help="comma-separated pass names (default: every registered pass)")
    ap.add_argument("--models", action="append", help="shell pattern on model ids, e.g. 'node:test_if*' (repeatable)")
    ap.add_argument("--corpus", action="append", default=[], help="a folder of real models (repeatable)")
    ap.add_argument("--node", action=argparse.BooleanOptionalAction, default=None,
                    help="include onnx's operator test models (default: yes unless --corpus is given)")
    ap.add_argument("--variants", action="store_true",
                    help=f"also run passes with other options: {', '.join(VARIANTS)}")
    ap.add_argument("--opset-deltas", help="convert-opset to these opsets relative to the model's, e.g. "
                    "'-2,-1,1,2' (default: 1); each delta is a run named convert-opset:DELTA")
    ap.add_argument("--sample", type=int, help="a random sample of N models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one pass may take on one model")
    ap.add_argument("--out", help="folder for sweep.json, sweep.md and defects.txt")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.worker:
        worker()
        return 0
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from graphsurgery.passes import PASSES

    passes = args.passes.split(",") if args.passes else list(PASSES) + (VARIANTS if args.variants else [])
    if args.opset_deltas:
        try:
            deltas = [int(d) for d in args.opset_deltas.split(",") if d.strip()]
        except ValueError:
            ap.error(f"--opset-deltas takes comma-separated integers, not {args.opset_deltas!r}")
        if 0 in deltas or not deltas:
            ap.error("--opset-deltas takes non-zero integers, e.g. -2,-1,1,2")
        runs = [f"convert-opset:{d:+d}" for d in deltas]
        passes = [q for p in passes for q in (runs if p == "convert-opset" else [p])]
    unknown = [p for p in passes if not known_name(p, PASSES)]
    if unknown:
        ap.error(f"unknown pass(es) {unknown}")
    node = args.node if args.node is not None else not args.corpus
    models = list_models(node, args.corpus)
    if args.models:
        models = [m for m in models if any(fnmatch.fnmatchcase(m, pat) or fnmatch.fnmatchcase(short_model(m), pat)
                                           for pat in args.models)]
    if args.sample and args.sample < len(models):
        models = sorted(random.Random(args.seed).sample(models, args.sample))
    t0 = time.time()

    def progress(i, n, m):
        if not args.quiet and (i % 50 == 0 or i == n):
            print(f"[{time.time() - t0:6.0f} s] {i}/{n} models", file=sys.stderr, flush=True)

    records, baselines = drive(models, passes, args.jobs, args.timeout, progress)
    records.sort(key=lambda r: (r["model"], passes.index(r["pass"])))
    md = markdown(records, passes, len(models), baselines)
    defects = defect_lines(records)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "sweep.json"), "w") as f:
            json.dump({"passes": passes, "models": models, "seconds": round(time.time() - t0, 1),
                       "counts": summarize(records, passes), "baselines": baselines, "runs": records}, f, indent=1,
                      default=str)
        with open(os.path.join(args.out, "sweep.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, "defects.txt"), "w") as f:
            f.write("\n".join(defects) + ("\n" if defects else ""))
    print(md)
    for line in defects:
        print(line)
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
