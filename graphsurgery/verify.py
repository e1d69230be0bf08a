"""Run a model in onnxruntime and compare outputs: the numeric check behind ``--verify``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

# the errors verification raises live with every other error; importable from here as before
from .errors import InputMismatch, NotVerifiable
from .errors import LoadFailure as LoadFailure
from .errors import RuntimeFailure as RuntimeFailure
from .errors import VerificationError as VerificationError
from .ops import is_default_domain, subgraph_protos

# the tolerances (how they apply: graphsurgery.tolerances), importable from here as before
from .tolerances import ACROSS_BACKENDS_ATOL as ACROSS_BACKENDS_ATOL
from .tolerances import ACROSS_BACKENDS_RTOL as ACROSS_BACKENDS_RTOL
from .tolerances import ATOL, RTOL


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


@dataclass
class InputSpec:
    """One graph input as declared: dims are ints, names (symbolic) or None (unknown)."""

    name: str
    dtype: np.dtype
    dims: list | None  # None: rank unknown
    #: containers around the tensor, outermost first: ("sequence",), ("optional",), ...
    wrappers: tuple[str, ...] = ()

    def type_text(self) -> str:
        """``float32 [1, 512]``; ``?`` for an unknown dim."""
        if self.dims is None:
            return f"{self.dtype} [rank unknown]"
        return f"{self.dtype} [{', '.join(str(d if d is not None else '?') for d in self.dims)}]"

    def text(self) -> str:
        """``input float32 [1, 512]``."""
        return f"{self.name} {self.type_text()}"


def input_specs(model_proto: onnx.ModelProto, *, containers: bool = False) -> list[InputSpec]:
    """The graph inputs that are not initializers, with their declared dtype and dims; a
    negative dim (``-1`` written by some exporters) counts as unknown. With ``containers``,
    sequences and optionals of tensors are described by their tensor and ``wrappers``; else
    they raise :class:`NotVerifiable`."""
    inits = {t.name for t in model_proto.graph.initializer}
    out = []
    for vi in model_proto.graph.input:
        if vi.name in inits:
            continue
        tp, wrappers = vi.type, []
        while containers and tp.WhichOneof("value") in ("sequence_type", "optional_type"):
            kind = tp.WhichOneof("value")
            wrappers.append(kind.removesuffix("_type"))
            tp = tp.sequence_type.elem_type if kind == "sequence_type" else tp.optional_type.elem_type
        kind = tp.WhichOneof("value")
        if kind != "tensor_type":
            what = {"sequence_type": "a sequence", "optional_type": "an optional", "map_type": "a map",
                    "sparse_tensor_type": "a sparse tensor"}.get(kind, "untyped")
            raise NotVerifiable(f"input {vi.name!r} is {what}, not a tensor; verification generates and compares "
                                "tensors only")
        tt = tp.tensor_type
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
        out.append(InputSpec(vi.name, dtype, dims, tuple(wrappers)))
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
            if n.op_type == "Constant" and is_default_domain(n.domain):
                for a in n.attribute:
                    if a.name == "value" and a.t.data_location != onnx.TensorProto.EXTERNAL:
                        consts.setdefault(n.output[0], numpy_helper.to_array(a.t))
                    elif a.name in ("value_int", "value_ints"):
                        consts.setdefault(n.output[0], np.asarray(onnx.helper.get_attribute_value(a)))
            if n.op_type in _COMPARE and len(n.input) == 2:
                compares.append((n.op_type, list(n.input)))
            for sub in subgraph_protos(n):
                walk(sub)

    walk(model_proto.graph)
    hints: dict[str, list[int]] = {}
    for _op, (a, b) in sorted(compares, key=lambda c: c[0] != "Equal"):  # Equal first
        for name, other in ((a, b), (b, a)):
            if name in names and other in consts and consts[other].size >= 1 \
                    and np.issubdtype(consts[other].dtype, np.integer):
                hints.setdefault(name, []).extend(int(x) for x in consts[other].reshape(-1)[:4])
    return hints


def make_inputs(model_proto: onnx.ModelProto, *, batch: int = 1, seed: int = 0,
                ranges: dict[str, tuple[float, float]] | None = None, size: int = 1,
                known: dict[str, int] | None = None, batch_first_unknown: bool = False,
                containers: bool = False) -> dict[str, np.ndarray]:
    """Random inputs for every graph input that is not an initializer, from its declared type.

    Unknown dims become ``batch`` on axis 0 and ``size`` elsewhere; with
    ``batch_first_unknown``, ``batch`` goes to each input's first dim that is not a number
    instead (a recurrent state ``[2, ?, 128]`` has its batch on axis 1). A symbolic dim takes
    the same value wherever it appears (``known`` fixes some by name). Floats are uniform in
    [-1, 1], integers in [0, 10] (an integer input the graph compares with constants takes the
    first of them), bools random; ``ranges`` overrides per input. With ``containers``, a
    sequence input gets a list of two such tensors and an optional one its tensor; else such
    inputs raise :class:`NotVerifiable`. The one input generator of graphsurgery.
    """
    rng = np.random.default_rng(seed)
    hints = integer_hints(model_proto)
    symbols = dict(known or {})
    specs = input_specs(model_proto, containers=containers)

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

        def tensor(spec=spec, shape=shape, dtype=dtype, lo=lo, hi=hi):
            if spec.name in hints and np.issubdtype(dtype, np.integer) and not (ranges and spec.name in ranges):
                return np.full(shape, hints[spec.name][0], dtype)
            if np.issubdtype(dtype, np.floating):
                return rng.uniform(lo, hi, shape).astype(dtype)
            if dtype == np.bool_:
                return rng.integers(0, 2, shape).astype(bool)
            if np.issubdtype(dtype, np.integer):
                return rng.integers(int(lo), int(hi) + 1, shape).astype(dtype)
            raise NotVerifiable(f"input {spec.name!r} is {dtype}, which verification cannot generate; "
                                "give it with --inputs")

        def value(wrappers, tensor=tensor):
            if not wrappers:
                return tensor()
            if wrappers[0] == "sequence":
                return [value(wrappers[1:]) for _ in range(2)]
            return value(wrappers[1:])  # an optional holds its value

        feeds[spec.name] = value(spec.wrappers)
    return feeds


def mismatch(spec: InputSpec, arr) -> str | None:
    """What about ``arr`` does not fit ``spec`` (dtype, rank, static dims), or None."""
    if not isinstance(arr, np.ndarray):
        return f"type {type(arr).__name__}"
    if arr.dtype != spec.dtype:
        return f"dtype {arr.dtype}"
    if spec.dims is not None and arr.ndim != len(spec.dims):
        return f"rank {arr.ndim} (shape {list(arr.shape)})"
    if spec.dims is not None and any(isinstance(d, int) and d != n for d, n in zip(spec.dims, arr.shape, strict=True)):
        return f"shape {list(arr.shape)}"
    return None


def check_given(spec: InputSpec, arr: np.ndarray, where: str, given_as: str | None = None, *,
                source: str = "--inputs", hint: str = "") -> None:
    """Raise :class:`InputMismatch` unless ``arr`` fits ``spec`` (dtype, rank, static dims);
    the message starts with ``source`` (where the array came from) and ends with ``hint``."""
    problem = mismatch(spec, arr)
    if problem:
        raise InputMismatch(f"{source}: array {given_as or repr(spec.name)} has {problem}, but input {spec.name!r} "
                            f"of {where} takes {spec.type_text()}; give an array of that type and shape{hint}")


def symbols_in(model_proto: onnx.ModelProto, arrays: dict | None) -> dict[str, int]:
    """The sizes ``arrays`` give the model's symbolic input dims (``{"N": 3}`` for an array of
    shape ``[3, 512]`` given for an input declared ``[N, 512]``), so generated inputs agree."""
    known: dict[str, int] = {}
    for spec in input_specs(model_proto, containers=True):
        arr = (arrays or {}).get(spec.name)
        if spec.wrappers or not hasattr(arr, "shape"):
            continue
        for d, n in zip(spec.dims or [], arr.shape, strict=False):
            if isinstance(d, str):
                known.setdefault(d, int(n))
    return known


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
               seed: int = 0, where: str = "the model", source: str = "--inputs",
               hint: str = "") -> dict[str, np.ndarray]:
    """Inputs for ``model_proto``: the ``given`` arrays for the inputs they name, generated ones
    (:func:`make_inputs`) for the rest, a symbolic dim taking the size a given array gives it.
    A given array that does not fit its input (dtype, rank, static dims) raises
    :class:`InputMismatch` (see :func:`check_given`): it is never replaced by a generated one.
    Arrays for names the model has no input for are left out."""
    given = {k: np.asarray(v) for k, v in (given or {}).items()}
    specs = input_specs(model_proto)
    for spec in specs:
        if spec.name in given:
            check_given(spec, given[spec.name], where, source=source, hint=hint)
    feeds = make_inputs(model_proto, batch=batch, seed=seed, known=symbols_in(model_proto, given))
    feeds.update({s.name: given[s.name] for s in specs if s.name in given})
    return feeds


def run(model: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray], *, optimize: bool = True,
        prepack: bool = True, base_dir: str | None = None, threads: int | None = None) -> dict[str, np.ndarray]:
    """Outputs of ``model`` in onnxruntime's CPU provider, by name: :class:`graphsurgery.runner.Runner`
    with these settings (see there; checks that compare models use ``runner.EXACT``)."""
    from .runner import Runner

    return Runner(optimize=optimize, prepack=prepack, threads=threads).run(model, feeds, base_dir=base_dir)


Tolerance = float | Mapping[str, float]  # one value, or per output name (missing names: the default)


@dataclass
class Measure:
    """How one array compares with its expected value: ``max_abs``, ``max_rel`` (``max_abs``
    over the expected output's scale), ``beyond`` (share of elements beyond tolerance), ``ok``
    and, when NaNs or infinities sit in other places, a ``note`` saying so."""

    max_abs: float
    max_rel: float
    beyond: float
    ok: bool
    note: str = ""


def measure(expected: np.ndarray, actual: np.ndarray, *, rtol: float = RTOL, atol: float = ATOL,
            noise: float = 0.0) -> Measure:
    """Compare two arrays of one shape elementwise (see the tolerance rule above). NaN against
    NaN and an infinity against the same infinity are equal; a NaN or infinity against anything
    else is beyond tolerance and named in ``note``. Non-numeric arrays must be equal."""
    e, a = np.asarray(expected), np.asarray(actual)
    if e.size == 0:
        return Measure(0.0, 0.0, 0.0, True)
    if not (np.issubdtype(e.dtype, np.number) and np.issubdtype(a.dtype, np.number)):
        same = bool(np.array_equal(a, e))
        return Measure(0.0 if same else 1.0, 0.0 if same else 1.0, 0.0 if same else 1.0, same)
    e64, a64 = e.astype(np.float64), a.astype(np.float64)
    e_nan, a_nan = np.isnan(e64), np.isnan(a64)
    e_inf, a_inf = np.isinf(e64), np.isinf(a64)
    nan_off = e_nan != a_nan
    inf_off = ~nan_off & (e_inf | a_inf) & (a64 != e64)
    special = e_nan | a_nan | e_inf | a_inf
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(special, 0.0, np.abs(a64 - e64))
    finite = np.abs(e64[np.isfinite(e64)])
    scale = float(finite.max()) if finite.size else 0.0
    max_abs = float("inf") if (nan_off.any() or inf_off.any()) else float(diff.max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    bad = (diff > atol + rtol * scale + noise) | nan_off | inf_off
    note = "NaNs differ" if nan_off.any() else "infinities differ" if inf_off.any() else ""
    return Measure(max_abs, max_rel, float(bad.mean()), not bool(bad.any()), note)


def flatten_outputs(outputs: dict) -> dict[str, np.ndarray]:
    """Outputs as plain arrays: a sequence's items as ``name[i]`` and its length as
    ``name (length)``, an absent optional left out."""
    flat = {}
    for name, value in outputs.items():
        if isinstance(value, list):
            for i, item in enumerate(value):
                flat[f"{name}[{i}]"] = np.asarray(item)
            flat[f"{name} (length)"] = np.asarray(len(value))
        elif value is not None:
            flat[name] = np.asarray(value)
    return flat


def tolerance_for(tol: Tolerance, name: str, default: float) -> float:
    """The tolerance of output ``name`` from one value or a per-output mapping."""
    if isinstance(tol, Mapping):
        return float(tol.get(name, default))
    return float(tol)


def compare(expected: dict, actual: dict, *, rtol: Tolerance = RTOL, atol: Tolerance = ATOL,
            noise: dict[str, float] | None = None, on_purpose: bool = False) -> list[OutputDiff]:
    """Per-output differences, by the tolerance rule above (:func:`measure`); ``rtol`` and
    ``atol`` are one value or a value per output name. Sequence outputs are compared item by
    item. With ``on_purpose`` (a pass that changes outputs by design) numeric drift is
    reported but ok; a missing output, another shape or dtype still fail."""
    report = []
    noise = noise or {}
    expected, actual = flatten_outputs(expected), flatten_outputs(actual)
    for name, e in expected.items():
        if name not in actual:
            report.append(OutputDiff(name, float("inf"), float("inf"), False, "missing after the change"))
            continue
        a = actual[name]
        if a.shape != e.shape:
            report.append(OutputDiff(name, float("inf"), float("inf"), False, f"shape {e.shape} -> {a.shape}"))
            continue
        if a.dtype != e.dtype:
            report.append(OutputDiff(name, float("inf"), float("inf"), False, f"dtype {e.dtype} -> {a.dtype}"))
            continue
        n = float(noise.get(name, 0.0))
        m = measure(e, a, rtol=tolerance_for(rtol, name, RTOL), atol=tolerance_for(atol, name, ATOL), noise=n)
        report.append(OutputDiff(name, m.max_abs, m.max_rel, m.ok or on_purpose, m.note, noise=n,
                                 on_purpose=on_purpose and not m.ok))
    return report


class LoadGuard:
    """The guarantee that a pipeline does not turn a model onnxruntime loads into one it
    refuses: onnxruntime as an application runs it (graph optimizations on, which inline
    ``If`` branches and fold shapes, so they meet type errors a session without them does not),
    in a child process, so a crash or a hang there is a verdict, not a dead caller.

        guard = LoadGuard(model.to_bytes(), model.base_dir)   # checks the input meanwhile
        ...                                                   # the pipeline runs
        note = guard.check(model.to_bytes(), steps)           # raises LoadFailure

    A model that did not load before is never blamed on a pass: the result is then not checked.
    """

    def __init__(self, original: bytes, base_dir: str | None = None, runner=None):
        from .runner import DEPLOYED, start_load

        self.original = original
        self.base_dir = base_dir
        self.runner = runner or DEPLOYED
        self._before = start_load(original, base_dir=base_dir, runner=self.runner)
        self._cache: dict[int, object] = {}

    def _verdict(self, data: bytes):
        from .runner import start_load

        if data is self.original or data == self.original:
            return self._before.result()
        key = id(data)
        if key not in self._cache:
            self._cache[key] = start_load(data, base_dir=self.base_dir, runner=self.runner).result()
        return self._cache[key]

    def check(self, final: bytes, steps: list[tuple[str, bytes]] | None = None, *,
              indices: list[int] | None = None) -> str | None:
        """Raise :class:`LoadFailure` when the input loaded and ``final`` does not; return a note
        when it could not be told (the input does not load, or a check could not finish), else
        None. ``steps``: ``(pass, model after it)`` for each pass that changed the model, in
        order, to name the pass after which it stops loading (``indices``: their places in the
        pipeline, for ``LoadFailure.pass_index``)."""
        before = self._before.result()
        if before.loads is not True:
            if before.loads is False:
                return (f"the input model does not load in onnxruntime with its default optimizations "
                        f"({before.error}), so the result's loading is not checked against it")
            return f"whether the result loads in onnxruntime was not checked: {before.error}"
        if final == self.original:
            return None
        after = self._verdict(final)
        if after.loads is True:
            return None
        if after.loads is None:
            return f"whether the result loads in onnxruntime was not checked: {after.error}"
        where, index = "", None
        steps = [s for s in (steps or []) if s[1] != self.original]
        if steps and steps[-1][1] == final:
            lo, hi = -1, len(steps) - 1  # steps[lo] loads (-1: the input), steps[hi] does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                verdict = self._verdict(steps[mid][1])
                if verdict.loads is None:
                    break
                lo, hi = (mid, hi) if verdict.loads else (lo, mid)
            else:
                where = f"; it loads before {steps[hi][0]} and not after it"
                index = indices[hi] if indices and hi < len(indices) else None
        raise LoadFailure(f"the result does not load in onnxruntime with its default optimizations, though the "
                          f"input model does: {after.error}{where}", [], pass_index=index)
