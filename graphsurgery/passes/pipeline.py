"""Pipelines: passes in order, from Python or from text like ``freeze-inputs(sr=16000),remove-if``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..core.model import Model, load
from ..tolerances import ATOL, RTOL
from .base import Pass, PassError, PassResult

log = logging.getLogger("graphsurgery")


def parse(text: str) -> list[tuple[str, dict[str, str]]]:
    """``a,b(k=v,k2=v2)`` → ``[("a", {}), ("b", {"k": "v", "k2": "v2"})]``. Commas inside
    parentheses or brackets separate options, not passes. An empty pipeline, an empty step
    (``a,,b``), a step without a name, an empty or repeated option are errors: each would
    otherwise be silently ignored."""
    items: list[tuple[str, dict[str, str]]] = []
    if not text.strip():
        raise PassError("the pipeline is empty; name at least one pass, e.g. -p cleanup "
                        "(graphsurgery passes lists them)")
    depth = 0
    buf = ""
    parts = []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise PassError(f"pipeline {text!r}: unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    if depth:
        raise PassError(f"pipeline {text!r}: unbalanced '('")
    parts.append(buf)
    for i, part in enumerate(parts, 1):
        part = part.strip()
        if not part:
            raise PassError(f"pipeline {text!r}: step {i} of {len(parts)} is empty; remove the extra comma")
        if "(" in part:
            if not part.endswith(")"):
                raise PassError(f"pipeline step {part!r}: expected name(key=value,...)")
            name, inner = part[:-1].split("(", 1)
            if not name.strip():
                raise PassError(f"pipeline step {part!r}: the pass name is missing before '('")
            opts: dict[str, str] = {}
            if inner.strip():
                for kv in split_top(inner):
                    if not kv.strip():
                        raise PassError(f"pipeline step {part!r}: empty option; remove the extra comma")
                    if "=" not in kv:
                        raise PassError(f"pipeline step {part!r}: option {kv.strip()!r} is not key=value")
                    k, v = kv.split("=", 1)
                    k = k.strip()
                    if not k:
                        raise PassError(f"pipeline step {part!r}: option {kv.strip()!r} has no name before '='")
                    if k in opts:
                        raise PassError(f"pipeline step {part!r}: option {k!r} is given twice")
                    opts[k] = v.strip()
            items.append((name.strip(), opts))
        else:
            items.append((part, {}))
    return items


def split_top(text: str) -> list[str]:
    """``text`` cut at its commas outside brackets: the steps of a pipeline, or the options of one."""
    out, buf, depth = [], "", 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(buf)
            buf = ""
        else:
            buf += ch
    out.append(buf)
    return out


@dataclass
class PipelineResult:
    results: list[PassResult] = field(default_factory=list)
    verification: list[tuple[str, list]] = field(default_factory=list)
    model: Any = None
    #: what the checks could not tell (the input model does not load in onnxruntime, say)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.results)

    def seconds(self) -> list[tuple[str, float]]:
        """Each pass and the wall-clock seconds it took, in order (verification not included)."""
        return [(r.name, r.seconds) for r in self.results]

    def renamed(self) -> dict[str, str]:
        """Tensor renames the passes reported, composed in order: original name -> final name.
        ``{v: k for k, v in result.renamed().items()}`` is the ``name_map`` for comparing the
        pipeline's output with its input (:func:`graphsurgery.debug.compare`)."""
        total: dict[str, str] = {}
        for r in self.results:
            for old, new in r.details.get("renamed", {}).items():
                for k, v in total.items():
                    if v == old:
                        total[k] = new
                if old not in total.values():
                    total[old] = new
        return total

    def _repr_html_(self) -> str:
        from ..display import result_html
        return "".join(result_html(r) for r in self.results)

    def __repr__(self) -> str:
        changes = sum(len(r.changes) for r in self.results)
        return f"<PipelineResult {', '.join(r.name for r in self.results)}: {changes} change(s)>"

    def __str__(self) -> str:
        lines = [str(r) for r in self.results]
        for name, report in self.verification:
            lines.append(f"verified after {name}: " + "; ".join(str(d) for d in report))
        return "\n".join(lines)


class Pipeline:
    """Passes run in order. ``verify=True`` then runs onnxruntime on the model before and after
    every pass that changed something, comparing them (see :meth:`Pass.reference`), and raises
    :class:`graphsurgery.verify.VerificationError` naming the first pass whose outputs drift
    beyond ``rtol``/``atol`` plus the reference's own measured noise.

    Verification inputs come from what the pipeline knows: the last model's signature (the
    shapes ``set-shape``/``set-batch`` gave it), mapped back pass by pass (frozen inputs take
    their values, set-batch's batch is cut into samples); integer inputs the graph compares
    with constants take one of those. ``inputs`` (arrays by input name) replace generated ones
    and must fit: a name no model of the pipeline has, another dtype, rank or static dim is an
    :class:`graphsurgery.verify.InputMismatch`. When the input model does not run but a later
    one does (a pipeline that starts by repairing it), verification starts from the first model
    that runs and the report says so. Passes that change outputs on purpose
    (``changes_outputs``) have their drift reported, not failed.

    ``check_load`` (default: with ``verify``): when the input model loads in onnxruntime with
    its default optimizations, the result must too, else :class:`graphsurgery.verify.LoadFailure`
    names the pass after which it stops loading (checked in a child process, see
    :class:`graphsurgery.verify.LoadGuard`).

    The model given is edited in place (a ``ModelProto`` too: the result is the same object);
    pass ``model.copy()`` or a copy of the proto to keep the original."""

    def __init__(self, passes: Iterable[Pass], *, verify: bool = False, inputs: dict[str, np.ndarray] | None = None,
                 rtol: float = RTOL, atol: float = ATOL,
                 progress: Callable[[int, int, str], None] | None = None, check_load: bool | None = None):
        self.passes = list(passes)
        self.verify = verify
        self.check_load = check_load
        self.inputs = inputs
        self.rtol, self.atol = rtol, atol
        self.progress = progress

    @classmethod
    def from_text(cls, text: str, **kwargs: Any) -> Pipeline:
        from .registry import create

        return cls([create(name, **opts) for name, opts in parse(text)], **kwargs)

    def describe(self) -> str:
        return ",".join(p.describe() for p in self.passes)

    def run(self, model: Model | onnx.ModelProto) -> PipelineResult:
        wrapped = load(model) if isinstance(model, onnx.ModelProto) else model
        out = PipelineResult()
        check_load = self.verify if self.check_load is None else self.check_load
        snapshots = [wrapped.to_bytes()] if self.verify or check_load else []
        guard = None
        if check_load:
            from ..verify import LoadGuard

            guard = LoadGuard(snapshots[0], wrapped.base_dir)  # the input's check runs meanwhile
        total = len(self.passes) + (1 if self.verify else 0)
        for i, p in enumerate(self.passes):
            if self.progress:
                self.progress(i, total, p.describe())
            res = p.run(wrapped)
            out.results.append(res)
            if snapshots:
                snapshots.append(wrapped.to_bytes() if res.changed else snapshots[-1])
        if self.verify:
            if self.progress:
                self.progress(len(self.passes), total, "verifying")
            out.verification = _Verifier(self, snapshots, out.results, wrapped.base_dir).run()
        if guard is not None:
            changed = [i for i, r in enumerate(out.results) if r.changed]
            note = guard.check(snapshots[-1], [(self.passes[i].describe(), snapshots[i + 1]) for i in changed],
                               indices=changed)
            if note:
                out.notes.append(note)
        if self.progress:
            self.progress(total, total, "done")
        out.model = wrapped.proto if isinstance(model, onnx.ModelProto) else wrapped
        return out

    def __call__(self, model):
        return self.run(model).model


# a batch cut into samples multiplies the runs of every earlier check; this many samples suffice there
_MAX_FEEDS = 2
# sizes tried for dims nothing declares, until the input model runs: (batch, other dims, whether
# the batch is each input's first unknown dim rather than its axis 0, as in a state [2, ?, 128])
_GUESSES = [(2, 32, False), (1, 32, False), (1, 32, True), (1, 128, True), (1, 512, True), (1, 1, False),
            (2, 1, False)]


class _Verifier:
    """Checks every pass that changed something, after the pipeline ran (see :class:`Pipeline`)."""

    def __init__(self, pipeline: Pipeline, snapshots: list[bytes], results: list[PassResult], base_dir):
        self.pl = pipeline
        self.base_dir = base_dir
        # one step per pass that changed something: (pass, result, before bytes, after bytes)
        self.steps = [(p, r, snapshots[i], snapshots[i + 1])
                      for i, (p, r) in enumerate(zip(pipeline.passes, results, strict=True)) if r.changed]
        self.indices = [i for i, r in enumerate(results) if r.changed]  # each step's place in the pipeline
        self.models = [snapshots[0]] + [s[3] for s in self.steps]
        self._protos: dict[int, onnx.ModelProto] = {}
        self.unverifiable: dict[int, str] = {}  # step -> why it cannot be compared
        self._loaded: dict[int, Model] = {}

    def proto(self, k: int) -> onnx.ModelProto:
        if k not in self._protos:
            self._protos[k] = onnx.ModelProto.FromString(self.models[k])
        return self._protos[k]

    def model(self, k: int) -> Model:
        if k not in self._loaded:
            self._loaded[k] = load(self.models[k], base_dir=self.base_dir)
        return self._loaded[k]

    def run_(self, data: bytes, feeds: dict) -> dict:
        from ..runner import EXACT

        return EXACT.run(data, feeds, base_dir=self.base_dir)

    def runs(self, j: int, feeds: dict):
        """Run model ``j`` on ``feeds``; the RuntimeFailure when onnxruntime cannot, None when it
        can. Feeds that do not fit the model's declared signature are a verification error,
        never taken for a model that does not run."""
        from .. import verify as v

        problem = v.feeds_problem(self.proto(j), feeds)
        if problem:
            where = "the input model" if j == 0 else f"the model after {self.steps[j - 1][0].describe()}"
            raise v.VerificationError(f"cannot verify: the inputs derived for {where} do not fit it ({problem}); "
                                      "give inputs with --inputs", [])
        try:
            self.run_(self.models[j], feeds)
        except v.RuntimeFailure as exc:
            return exc
        return None

    def run(self) -> list[tuple[str, list]]:
        from .. import verify as v

        given = self._given()
        if not self.steps:
            return []
        k = len(self.steps)
        guesses = _GUESSES if self._guessing(k, given) else _GUESSES[:1]
        first_error = None
        chain = None
        for guess in guesses:
            candidate = self._chain(given, *guess)
            exc = self.runs(0, candidate[0][0])
            if exc is not None:
                first_error = first_error or exc
                continue
            chain, start = candidate, 0
            break
        if chain is None:  # the input model does not run: verify from the first model that does
            chain = self._chain(given, *guesses[0])
            start = None
            for j in range(1, k + 1):
                if self.runs(j, chain[j][0]) is None:
                    start = j
                    break
            if start is None:
                raise v.VerificationError(self._no_run_message(first_error, given), [])
        report: list[tuple[str, list]] = []
        for t, (p, *_) in enumerate(self.steps):
            if t < start:
                why = (f"the model before it does not run in onnxruntime ({first_error}); "
                       + ("verification starts from the model after this pass" if t == start - 1 else
                          "verification starts from a later model"))
                report.append((p.describe(), [v.OutputDiff("(not verified)", 0.0, 0.0, True, why)]))
                continue
            try:
                report.append((p.describe(), self._check(t, chain[t + 1])))
            except v.VerificationError as exc:
                exc.pass_index = self.indices[t]
                raise
        return report

    def _check(self, t: int, feeds_list: list[dict]) -> list:
        from .. import verify as v

        p, res, before, after = self.steps[t]
        if t in self.unverifiable:
            return [v.OutputDiff("(not verified)", 0.0, 0.0, True, self.unverifiable[t])]
        after_model = self.model(t + 1)
        merged: dict[str, v.OutputDiff] = {}
        computed = []
        for feeds in feeds_list:
            try:
                actual = p.outputs_after(after, after_model, feeds, res, self.run_)
            except v.RuntimeFailure as exc:
                raise v.VerificationError(f"pass {p.describe()} left a model that does not run: {exc}", []) from None
            try:
                expected = p.reference(before, after_model, feeds, res, self.run_)
            except v.NotVerifiable as exc:
                return [v.OutputDiff("(not verified)", 0.0, 0.0, True, str(exc))]
            except v.RuntimeFailure as exc:
                raise v.VerificationError(f"cannot verify pass {p.describe()}: the model before it does not run on "
                                          f"the inputs derived for it ({exc}); give inputs with --inputs", []) from None
            noise = p.reference_noise(before, after_model, feeds, res, self.run_, expected) if not p.changes_outputs \
                else {}
            computed.append((feeds, actual, expected, noise))
            _worst(merged, v.compare(expected, actual, rtol=self.pl.rtol, atol=self.pl.atol, noise=noise,
                                     on_purpose=p.changes_outputs))
        report = list(merged.values())
        bad = [d for d in report if not d.ok]
        if bad and not p.changes_outputs:  # before blaming the pass: how far is the reference from itself?
            report = self._recheck(t, computed, report)
            bad = [d for d in report if not d.ok]
        if bad:
            raise v.VerificationError(f"pass {p.describe()} changed the outputs beyond tolerance (rtol={self.pl.rtol}, "
                                      f"atol={self.pl.atol}): " + "; ".join(str(d) for d in bad), report)
        return report

    def _recheck(self, t: int, computed: list, report: list) -> list:
        """Compare again, the tolerance widened by the reference's own run-to-run noise: the
        reference computed a second time on one onnxruntime thread (another split of the work,
        which some kernels round differently). Only done when a check fails, so a pass is not
        blamed for what onnxruntime does on its own."""
        from .. import verify as v
        from ..runner import EXACT

        p, res, before, after = self.steps[t]
        after_model = self.model(t + 1)

        def one_thread(data, feeds):
            return EXACT.with_(threads=1).run(data, feeds, base_dir=self.base_dir)

        merged: dict[str, v.OutputDiff] = {}
        for feeds, actual, expected, noise in computed:
            try:
                again = p.reference(before, after_model, feeds, res, one_thread)
            except v.RuntimeFailure:
                return report
            noise = dict(noise)
            for name, e in expected.items():
                a2 = again.get(name)
                if a2 is None or a2.shape != e.shape or not np.issubdtype(e.dtype, np.number):
                    continue
                spread = np.nan_to_num(np.abs(a2.astype(np.float64) - e.astype(np.float64)), nan=0.0)
                noise[name] = max(noise.get(name, 0.0), float(spread.max(initial=0.0)))
            _worst(merged, v.compare(expected, actual, rtol=self.pl.rtol, atol=self.pl.atol, noise=noise))
        return list(merged.values())

    def _given(self) -> dict[str, np.ndarray]:
        """The arrays given, checked: each must name an input of some model of the pipeline and
        fit it; one given for an input a pass froze must hold the frozen value."""
        from .. import verify as v

        given, as_given = {}, {}
        for name, arr in (self.pl.inputs or {}).items():
            first = name
            for p, res, _, _ in self.steps:  # an input a pass renamed: given under its old name
                name = p.input_after(name, res)
            given[name] = np.asarray(arr)
            as_given[name] = repr(first) if first == name else f"{first!r} (renamed {name!r})"
        if not given:
            return {}
        k = len(self.steps)
        specs_final = {s.name: s for s in v.input_specs(self.proto(k))}
        for name, arr in list(given.items()):
            if name in specs_final:
                if v.mismatch(specs_final[name], arr):
                    given[name] = arr = self._into_batch(name, arr, specs_final[name])
                v.check_given(specs_final[name], arr, "the model after the pipeline", as_given[name])
                continue
            for j in range(k - 1, -1, -1):
                specs = {s.name: s for s in v.input_specs(self.proto(j))}
                if name in specs:
                    where = "the input model" if j == 0 else f"the model after {self.steps[j - 1][0].describe()}"
                    v.check_given(specs[name], arr, where, as_given[name])
                    after = self.model(j + 1)
                    if name in after.graph.initializers:
                        frozen = np.asarray(after.graph.initializer(name))
                        if not np.array_equal(frozen, arr.reshape(frozen.shape) if arr.size == frozen.size else arr):
                            raise v.InputMismatch(f"--inputs: array {name!r} holds {_short(arr)}, but "
                                                  f"{self.steps[j][0].describe()} fixed input {name!r} to "
                                                  f"{_short(frozen)}; give that value or leave {name!r} out")
                    break
            else:
                known = sorted({s.name for j in range(k + 1) for s in v.input_specs(self.proto(j))})
                raise v.InputMismatch(f"--inputs: array {name!r} names no input of the model; its inputs are "
                                      f"{', '.join(known) or 'none'}")
        return given

    def _into_batch(self, name: str, arr: np.ndarray, spec) -> np.ndarray:
        """An array given for the model before a pass that changed the input's shape (set-batch:
        a sample, or fewer than the new batch), fitted by that pass (:meth:`Pass.fit_given`);
        else ``arr`` unchanged (and refused)."""
        from .. import verify as v

        try:
            generated = v.make_inputs(self.proto(len(self.steps)))[name]
        except v.NotVerifiable:
            return arr
        for p, res, _, _ in self.steps:
            fitted = p.fit_given(name, arr, spec, res, generated)
            if fitted is not None:
                return fitted
        return arr

    def _guessing(self, k: int, given: dict) -> bool:
        from .. import verify as v

        return any(not isinstance(d, int) for s in v.input_specs(self.proto(k)) if s.name not in given
                   for d in (s.dims or []))

    def _chain(self, given: dict, batch: int, size: int, first_unknown: bool) -> list[list[dict]]:
        """Feeds for every model, last first: generated from the last model's signature (given
        arrays in place), then mapped back through each pass."""
        from .. import verify as v

        k = len(self.steps)
        self.unverifiable = {}
        chain: list[list[dict]] = [[] for _ in range(k + 1)]
        chain[k] = [self._generate(k, given, batch, size, first_unknown)]
        for t in range(k - 1, -1, -1):
            p, res = self.steps[t][0], self.steps[t][1]
            try:
                feeds = [f for after_feeds in chain[t + 1]
                         for f in p.feeds_before(after_feeds, self.proto(t), self.model(t + 1), res)]
            except v.NotVerifiable:
                feeds = [self._generate(t, given, batch, size, first_unknown)]
            else:
                reason = self._reshaped(t, feeds[0])
                if reason:
                    self.unverifiable[t] = reason
                    feeds = [self._generate(t, given, batch, size, first_unknown)]
            chain[t] = feeds[:_MAX_FEEDS]
        return chain

    def _reshaped(self, t: int, feeds: dict) -> str | None:
        """Why step ``t`` cannot be compared when the inputs it maps back do not fit the model
        before it in their dims only (same dtype and rank): set-shape gave an input other static
        dims, or set-batch cut a batch along an axis the model before declares otherwise. None
        when they fit; any other misfit is left for :meth:`runs` to report as an error."""
        from .. import verify as v

        after = {s.name: s for s in v.input_specs(self.proto(t + 1))}
        p = self.steps[t][0]
        for spec in v.input_specs(self.proto(t)):
            arr = feeds.get(spec.name)
            if not isinstance(arr, np.ndarray) or not v.mismatch(spec, arr) or arr.dtype != spec.dtype \
                    or spec.dims is None or arr.ndim != len(spec.dims):
                continue
            new = after.get(spec.name)
            if new is not None and new.dims is not None and new.dims != spec.dims:
                return (f"{p.describe()} changed input {spec.name!r} from {spec.type_text()} to "
                        f"{new.type_text()}; the model before it cannot take the new shape")
            return (f"the inputs {p.describe()} maps back do not fit the model before it (input {spec.name!r} would "
                    f"get shape {list(arr.shape)} but takes {spec.type_text()})")
        return None

    def _generate(self, k: int, given: dict, batch: int, size: int, first_unknown: bool) -> dict:
        from .. import verify as v

        proto = self.proto(k)
        feeds = v.make_inputs(proto, batch=batch, size=size, known=v.symbols_in(proto, given),
                              batch_first_unknown=first_unknown)
        feeds.update({n: a for n, a in given.items() if n in feeds})
        return feeds

    def _no_run_message(self, error, given: dict) -> str:
        from .. import verify as v

        specs = v.input_specs(self.proto(0))
        how = ", ".join(s.text() for s in specs)
        source = "the inputs given" if given else "inputs generated from its signature"
        return (f"cannot verify: the input model does not run in onnxruntime on {source} ({error}), nor does any "
                f"model after it; give real inputs with --inputs X.npz (numpy.savez) holding {how}")


def _worst(merged: dict, diffs: list) -> None:
    """Keep, per output, the worst of several comparisons (a failure, else the largest drift)."""
    for d in diffs:
        old = merged.get(d.name)
        if old is None or (old.ok and not d.ok) or (old.ok == d.ok and d.max_abs > old.max_abs):
            merged[d.name] = d


def _short(arr: np.ndarray) -> str:
    return str(arr.tolist()) if arr.size <= 8 else f"<{arr.dtype} {list(arr.shape)}>"


def run(model, pipeline: str | Iterable[Pass], **kwargs: Any):
    """Run a pipeline (text or passes) on a Model or ModelProto; returns the same kind."""
    p = Pipeline.from_text(pipeline, **kwargs) if isinstance(pipeline, str) else Pipeline(pipeline, **kwargs)
    return p(model)
