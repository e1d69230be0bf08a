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
    """How one output differs. ``max_rel`` is ``max_abs`` relative to the output's scale (its
    largest finite magnitude), the measure the tolerance uses; ``noise`` is how much the
    reference disagrees with itself (e.g. batched against single runs), added to the tolerance;
    ``on_purpose`` marks drift from a pass whose purpose is to change outputs (reported, not failed)."""

    name: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""
    noise: float = 0.0
    on_purpose: bool = False

    def __str__(self) -> str:
        notes = [self.note] if self.note else []
        if self.noise:
            notes.append(f"reference noise {self.noise:.3g}, added to the tolerance")
        if self.on_purpose:
            notes.append("changed on purpose: reported, not checked")
        return f"{self.name}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}" + \
            (f" ({'; '.join(notes)})" if notes else "")


class InputMismatch(GraphSurgeryError):
    """Inputs given for verification do not fit the model (name, dtype or rank)."""


@dataclass
class InputSpec:
    """One graph input as declared: dims are ints, names (symbolic) or None (unknown)."""

    name: str
    dtype: np.dtype
    dims: list | None  # None: rank unknown

    def type_text(self) -> str:
        """``float32 [1, 512]``; ``?`` for an unknown dim."""
        if self.dims is None:
            return f"{self.dtype} [rank unknown]"
        return f"{self.dtype} [{', '.join(str(d if d is not None else '?') for d in self.dims)}]"

    def text(self) -> str:
        """``input float32 [1, 512]``."""
        return f"{self.name} {self.type_text()}"


def input_specs(model_proto: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs that are not initializers, with their declared dtype and dims; a
    negative dim (``-1`` written by some exporters) counts as unknown."""
    inits = {t.name for t in model_proto.graph.initializer}
    out = []
    for vi in model_proto.graph.input:
        if vi.name in inits:
            continue
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            what = {"sequence_type": "a sequence", "optional_type": "an optional", "map_type": "a map",
                    "sparse_tensor_type": "a sparse tensor"}.get(kind, "untyped")
            raise NotVerifiable(f"input {vi.name!r} is {what}, not a tensor; verification generates and compares "
                                "tensors only")
        tt = vi.type.tensor_type
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, ValueError, TypeError):
            raise NotVerifiable(f"input {vi.name!r} has element type {tt.elem_type}, which verification "
                                "cannot generate") from None
        dims = None
        if tt.HasField("shape"):
            dims = []
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value >= 0:
                    dims.append(int(d.dim_value))
                elif d.HasField("dim_param") and d.dim_param:
                    dims.append(d.dim_param)
                else:
                    dims.append(None)
        out.append(InputSpec(vi.name, dtype, dims))
    return out


_COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}


def integer_hints(model_proto: onnx.ModelProto) -> dict[str, list[int]]:
    """Values the graph compares integer inputs against (``Equal(sr, 16000)`` in an If
    condition): a generated input takes the first, so the model takes a branch it has."""
    from onnx import numpy_helper

    names = {vi.name for vi in model_proto.graph.input}
    consts: dict[str, np.ndarray] = {}
    compares: list[tuple[str, list[str]]] = []

    def walk(g):
        for t in g.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL:
                consts.setdefault(t.name, numpy_helper.to_array(t))
        for n in g.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                for a in n.attribute:
                    if a.name == "value" and a.t.data_location != onnx.TensorProto.EXTERNAL:
                        consts.setdefault(n.output[0], numpy_helper.to_array(a.t))
                    elif a.name in ("value_int", "value_ints"):
                        consts.setdefault(n.output[0], np.asarray(onnx.helper.get_attribute_value(a)))
            if n.op_type in _COMPARE and len(n.input) == 2:
                compares.append((n.op_type, list(n.input)))
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        walk(sub)

    walk(model_proto.graph)
    hints: dict[str, list[int]] = {}
    for op, (a, b) in sorted(compares, key=lambda c: c[0] != "Equal"):  # Equal first
        for name, other in ((a, b), (b, a)):
            if name in names and other in consts and consts[other].size >= 1 \
                    and np.issubdtype(consts[other].dtype, np.integer):
                hints.setdefault(name, []).extend(int(x) for x in consts[other].reshape(-1)[:4])
    return hints


def make_inputs(model_proto: onnx.ModelProto, *, batch: int = 1, seed: int = 0,
                ranges: dict[str, tuple[float, float]] | None = None, size: int = 1,
                known: dict[str, int] | None = None, batch_first_unknown: bool = False) -> dict[str, np.ndarray]:
    """Random inputs for every graph input that is not an initializer, from its declared type.

    Unknown dims become ``batch`` on axis 0 and ``size`` elsewhere; with
    ``batch_first_unknown``, ``batch`` goes to each input's first dim that is not a number
    instead (a recurrent state ``[2, ?, 128]`` has its batch on axis 1). A symbolic dim takes
    the same value wherever it appears (``known`` fixes some by name). Floats are uniform in
    [-1, 1], integers in [0, 10] (an integer input the graph compares with constants takes the
    first of them), bools random; ``ranges`` overrides per input.
    """
    rng = np.random.default_rng(seed)
    hints = integer_hints(model_proto)
    symbols = dict(known or {})
    specs = input_specs(model_proto)

    def batch_axis(dims):
        if not batch_first_unknown:
            return 0
        return next((i for i, d in enumerate(dims) if not isinstance(d, int)), 0)

    for spec in specs:  # a symbol where an input has its batch is a batch
        if spec.dims and isinstance(spec.dims[batch_axis(spec.dims)], str):
            symbols.setdefault(spec.dims[batch_axis(spec.dims)], batch)
    feeds = {}
    for spec in specs:
        shape = []
        axis = batch_axis(spec.dims or [])
        for i, d in enumerate(spec.dims or []):
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str):
                shape.append(symbols.setdefault(d, batch if i == axis else size))
            else:
                shape.append(batch if i == axis else size)
        dtype = spec.dtype
        lo, hi = (ranges or {}).get(spec.name, (-1.0, 1.0) if np.issubdtype(dtype, np.floating) else (0, 10))
        if spec.name in hints and np.issubdtype(dtype, np.integer) and not (ranges and spec.name in ranges):
            feeds[spec.name] = np.full(shape, hints[spec.name][0], dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.uniform(lo, hi, shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif np.issubdtype(dtype, np.integer):
            feeds[spec.name] = rng.integers(int(lo), int(hi) + 1, shape).astype(dtype)
        else:
            raise NotVerifiable(f"input {spec.name!r} is {dtype}, which verification cannot generate; "
                                "give it with --inputs")
    return feeds


def mismatch(spec: InputSpec, arr) -> str | None:
    """What about ``arr`` does not fit ``spec`` (dtype, rank, static dims), or None."""
    if not isinstance(arr, np.ndarray):
        return f"type {type(arr).__name__}"
    if arr.dtype != spec.dtype:
        return f"dtype {arr.dtype}"
    if spec.dims is not None and arr.ndim != len(spec.dims):
        return f"rank {arr.ndim} (shape {list(arr.shape)})"
    if spec.dims is not None and any(isinstance(d, int) and d != n for d, n in zip(spec.dims, arr.shape)):
        return f"shape {list(arr.shape)}"
    return None


def check_given(spec: InputSpec, arr: np.ndarray, where: str, given_as: str | None = None) -> None:
    """Raise :class:`InputMismatch` unless ``arr`` fits ``spec`` (dtype, rank, static dims)."""
    problem = mismatch(spec, arr)
    if problem:
        raise InputMismatch(f"--inputs: array {given_as or repr(spec.name)} has {problem}, but input {spec.name!r} of {where} "
                            f"takes {spec.type_text()}; give an array of that type and shape")


def feeds_problem(model_proto: onnx.ModelProto, feeds: dict) -> str | None:
    """Why ``feeds`` cannot be the model's inputs (a missing input, another dtype, rank or
    static dim), or None when they fit its declared signature."""
    for spec in input_specs(model_proto):
        if spec.name not in feeds:
            return f"no value for input {spec.name!r}"
        problem = mismatch(spec, feeds[spec.name])
        if problem:
            return f"input {spec.name!r} would get {problem} but takes {spec.type_text()}"
    return None


def fit_inputs(model_proto: onnx.ModelProto, given: dict[str, np.ndarray] | None, *, batch: int = 2,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for ``model_proto``: the ``given`` arrays for the inputs they name, generated ones
    (:func:`make_inputs`) for the rest. A given array that does not fit its input (dtype, rank,
    static dims) raises :class:`InputMismatch`: it is never replaced by a generated one."""
    feeds = make_inputs(model_proto, batch=batch, seed=seed)
    for spec in input_specs(model_proto):
        if given and spec.name in given:
            arr = np.asarray(given[spec.name])
            check_given(spec, arr, "the model")
            feeds[spec.name] = arr
    return feeds


def run(model: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray], *, optimize: bool = True,
        prepack: bool = True, base_dir: str | None = None, threads: int | None = None) -> dict[str, np.ndarray]:
    """Outputs of ``model`` in onnxruntime's CPU provider, by name.

    ``prepack=False`` stops onnxruntime from pre-packing constant weights (LSTM, Conv, MatMul),
    which picks different kernels and so changes the last bits of results: use it to check
    that two models compute exactly the same thing. A model with external data reads it from
    ``base_dir`` after the same containment checks as :func:`graphsurgery.load` (no link, no
    ``..``, no file outside the folder); nothing is written to disk. ``threads`` sets
    onnxruntime's intra-op thread count (default: its own choice).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise GraphSurgeryError("verification needs onnxruntime: pip install 'graphsurgery[ort]' "
                                "(or onnxruntime-gpu)") from None
    proto = model if isinstance(model, onnx.ModelProto) else None
    data = model if isinstance(model, bytes) else model.SerializeToString()
    so = ort.SessionOptions()
    so.log_severity_level = 4  # failures are reported by us, as exceptions
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if threads is not None:
        so.intra_op_num_threads = threads
    if _check_external(proto if proto is not None else onnx.ModelProto.FromString(data), base_dir):
        import os

        so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                    os.path.realpath(base_dir))
    try:
        return _run(ort, so, data, feeds)
    except GraphSurgeryError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"onnxruntime cannot run the model: {first}") from None


class RuntimeFailure(GraphSurgeryError):
    """onnxruntime refused to load or run a model."""


def _tensors(proto: onnx.ModelProto):
    """Every TensorProto of the model: initializers, tensor attributes, sparse tensors, at any depth."""
    def graph(g):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
        yield from nodes(g.node)

    def nodes(ns):
        for n in ns:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield a.sparse_tensor.values
                    yield a.sparse_tensor.indices
                if a.HasField("g"):
                    yield from graph(a.g)
                for sub in a.graphs:
                    yield from graph(sub)

    yield from graph(proto.graph)
    for f in proto.functions:
        yield from nodes(f.node)


def _check_external(proto: onnx.ModelProto, base_dir: str | None) -> bool:
    """Validate every external data reference as loading does; True when there are any."""
    from . import external_data

    found = False
    for t in _tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            external_data.resolve(t, base_dir)  # raises ExternalDataError naming the tensor and file
            found = True
    return found


def _run(ort, so, data: bytes, feeds):
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(None, {k: v for k, v in feeds.items() if k in wanted}), strict=True))


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], *, rtol: float = 1e-5,
            atol: float = 1e-6, noise: dict[str, float] | None = None, on_purpose: bool = False) -> list[OutputDiff]:
    """Per-output differences; an output is ok when ``|a - e| <= atol + rtol * max|e| + noise``
    everywhere: tolerance relative to the output's scale, since kernels (and batched against
    single runs) legitimately round near-zero elements differently in relative terms, plus the
    reference's own measured noise for that output. ``max rel`` is reported on the same scale.
    With ``on_purpose`` (a pass that changes outputs by design) numeric drift is reported but
    ok; a missing output, another shape or dtype still fail."""
    report = []
    noise = noise or {}
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
            report.append(OutputDiff(name, 0.0 if same else 1.0, 0.0 if same else 1.0, same or on_purpose,
                                     on_purpose=on_purpose and not same))
            continue
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        nan_same = np.array_equal(np.isnan(a64), np.isnan(e64))
        with np.errstate(invalid="ignore"):
            diff = np.abs(a64 - e64)
        inf_same = np.array_equal(a64[np.isinf(e64)], e64[np.isinf(e64)]) and np.array_equal(np.isinf(a64), np.isinf(e64))
        diff = np.where(np.isnan(diff), 0, diff)  # NaN vs NaN, inf vs same inf: equal; differing NaNs reported apart
        finite = np.abs(e64)[np.isfinite(e64)]
        scale = float(finite.max()) if finite.size else 0.0
        max_abs = float(diff.max())
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        n = float(noise.get(name, 0.0))
        within = bool(np.all(diff <= atol + rtol * scale + n))
        ok = nan_same and inf_same and within
        why = "" if nan_same else "NaNs differ"
        if nan_same and not inf_same:
            why = "infinities differ"
        report.append(OutputDiff(name, max_abs, max_rel, ok or on_purpose, why, noise=n,
                                 on_purpose=on_purpose and not ok))
    return report
