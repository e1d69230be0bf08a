"""Run a model in onnxruntime and compare outputs: the numeric check behind ``--verify``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .errors import GraphSurgeryError


class NotVerifiable(GraphSurgeryError):
    """A pass's result cannot be compared with the model before it (the reason says why)."""


class VerificationError(GraphSurgeryError):
    """Outputs drifted beyond tolerance (``report`` holds the per-output differences)."""

    def __init__(self, message: str, report: list[OutputDiff]):
        self.report = report
        super().__init__(message)


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""

    def __str__(self) -> str:
        return f"{self.name}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}" + (f" ({self.note})" if self.note else "")


def make_inputs(model_proto: onnx.ModelProto, *, batch: int = 1, seed: int = 0,
                ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, np.ndarray]:
    """Random inputs for every graph input that is not an initializer, from its declared type.

    Symbolic or unknown dims become ``batch`` for the first dim and 1 elsewhere; floats are
    uniform in [-1, 1], integers in [0, 10], bools random; ``ranges`` overrides per input.
    """
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model_proto.graph.initializer}
    feeds = {}
    for vi in model_proto.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = [d.dim_value if d.HasField("dim_value") else (batch if i == 0 else 1)
                 for i, d in enumerate(tt.shape.dim)]
        lo, hi = (ranges or {}).get(vi.name, (-1.0, 1.0) if np.issubdtype(dtype, np.floating) else (0, 10))
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.uniform(lo, hi, shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[vi.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[vi.name] = rng.integers(int(lo), int(hi) + 1, shape).astype(dtype)
    return feeds


def fit_inputs(model_proto: onnx.ModelProto, given: dict[str, np.ndarray] | None, *, batch: int = 2,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for ``model_proto``: the ``given`` arrays that fit its declared signature (dtype
    and static dims), generated ones (:func:`make_inputs`) for the rest."""
    generated = make_inputs(model_proto, batch=batch, seed=seed)
    if not given:
        return generated
    out = {}
    for vi in model_proto.graph.input:
        if vi.name not in generated:
            continue
        arr = given.get(vi.name)
        if arr is not None and _fits(np.asarray(arr), vi):
            out[vi.name] = np.asarray(arr)
        else:
            out[vi.name] = generated[vi.name]
    return out


def _fits(arr: np.ndarray, vi: onnx.ValueInfoProto) -> bool:
    tt = vi.type.tensor_type
    if onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type) != arr.dtype:
        return False
    if not tt.HasField("shape"):
        return True
    dims = tt.shape.dim
    return len(dims) == arr.ndim and all(not d.HasField("dim_value") or d.dim_value == n
                                         for d, n in zip(dims, arr.shape, strict=True))


def run(model: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray], *, optimize: bool = True,
        prepack: bool = True, base_dir: str | None = None) -> dict[str, np.ndarray]:
    """Outputs of ``model`` in onnxruntime's CPU provider, by name.

    ``prepack=False`` stops onnxruntime from pre-packing constant weights (LSTM, Conv, MatMul),
    which picks different kernels and so changes the last bits of results: use it to check
    that two models compute exactly the same thing.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise GraphSurgeryError("verification needs onnxruntime: pip install 'graphsurgery[ort]' "
                                "(or onnxruntime-gpu)") from None
    so = ort.SessionOptions()
    so.log_severity_level = 4  # failures are reported by us, as exceptions
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        return _run(ort, so, data, feeds, base_dir)
    except GraphSurgeryError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"onnxruntime cannot run the model: {first}") from None


class RuntimeFailure(GraphSurgeryError):
    """onnxruntime refused to load or run a model."""


def _run(ort, so, data: bytes, feeds, base_dir):
    if base_dir is not None:
        import os
        import tempfile
        fd, path = tempfile.mkstemp(prefix=".graphsurgery-verify-", suffix=".onnx", dir=base_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        finally:
            os.unlink(path)
    else:
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(None, {k: v for k, v in feeds.items() if k in wanted}), strict=True))


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], *, rtol: float = 1e-5,
            atol: float = 1e-6) -> list[OutputDiff]:
    """Per-output differences; an output is ok when ``|a - e| <= atol + rtol * max|e|`` everywhere:
    tolerance relative to the output's scale, since kernels (and batched against single runs)
    legitimately round near-zero elements differently in relative terms."""
    report = []
    for name, e in expected.items():
        if name not in actual:
            report.append(OutputDiff(name, float("inf"), float("inf"), False, "missing after the change"))
            continue
        a = np.asarray(actual[name])
        e = np.asarray(e)
        if a.shape != e.shape:
            report.append(OutputDiff(name, float("inf"), float("inf"), False, f"shape {e.shape} -> {a.shape}"))
            continue
        if a.dtype != e.dtype:
            report.append(OutputDiff(name, float("inf"), float("inf"), False, f"dtype {e.dtype} -> {a.dtype}"))
            continue
        if e.size == 0:
            report.append(OutputDiff(name, 0.0, 0.0, True))
            continue
        if not np.issubdtype(e.dtype, np.number):
            same = bool(np.array_equal(a, e))
            report.append(OutputDiff(name, 0.0 if same else 1.0, 0.0 if same else 1.0, same))
            continue
        diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        rel = diff / np.maximum(np.abs(e.astype(np.float64)), np.finfo(np.float64).tiny)
        nan_same = np.array_equal(np.isnan(a), np.isnan(e))
        diff = np.where(np.isnan(diff), 0, diff)
        rel = np.where(np.isnan(rel), 0, rel)
        finite = np.abs(e.astype(np.float64))[np.isfinite(e.astype(np.float64))]
        scale = float(finite.max()) if finite.size else 0.0
        ok = nan_same and bool(np.all(diff <= atol + rtol * scale))
        report.append(OutputDiff(name, float(diff.max()), float(rel.max()), ok, "" if nan_same else "NaNs differ"))
    return report
