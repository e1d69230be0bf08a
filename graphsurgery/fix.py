"""``fix``: make a model fit a backend with the passes its lint findings name, verified.

    import graphsurgery as gs
    fixed, report = gs.fix(model, backend="tensorrt")
    print(report)

The passes come from the findings (``graphsurgery.backends.lint_for``): each finding whose fix
needs no value from the user is applied (``remove-if`` on a constant condition,
``fix-prelu-slope``, ``fold-constants`` for inputs TensorRT wants constant, ``convert-opset``);
``set_shape`` and ``freeze`` supply the values the others need. The result is verified against
the input as ``run --verify`` does (:class:`graphsurgery.passes.Pipeline`), then linted again.
Errors that remain (what no pass fixes) make ``fix`` raise :class:`FixRefused` listing them,
the given model untouched, unless ``partial=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx

from .backends import BackendFinding, check_backend, describe, lint_for
from .core.model import Model, load
from .errors import FixRefused, GraphSurgeryError
from .tolerances import ATOL, RTOL

#: passes in the order fix runs them; each runs only when a finding (or a user value) asks for it
# (fix-prelu-slope early: a model it repairs does not run before it, so what follows is verified)
_ORDER = ("freeze-inputs", "set-shape", "fix-prelu-slope", "convert-opset", "fold-constants", "remove-if",
          "instancenorm-epsilon", "cleanup")
_ROUNDS = 3


@dataclass
class FixReport:
    backend: str
    support: str
    before: list[BackendFinding]
    after: list[BackendFinding] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # PassResult per pass run
    verification: list[tuple[str, list]] = field(default_factory=list)

    @property
    def remaining(self) -> list[BackendFinding]:
        """Errors left after the fix: what no pass (or no value given) fixes."""
        return [f for f in self.after if f.severity == "error"]

    @property
    def fixed(self) -> list[BackendFinding]:
        """Findings before that are gone after."""
        left = {(f.code, f.where, f.message) for f in self.after}
        return [f for f in self.before if (f.code, f.where, f.message) not in left]

    @property
    def ok(self) -> bool:
        return not self.remaining

    def summary(self) -> str:
        def err(fs):
            return sum(f.severity == "error" for f in fs)

        return (f"{self.backend}: {err(self.before)} error(s) before, {err(self.after)} after; "
                f"{len(self.fixed)} finding(s) fixed" + (f" by {'; '.join(self.pipelines)}" if self.pipelines else
                                                        " (no pass needed)"))

    def __str__(self) -> str:
        lines = [self.summary()]
        for name, report in self.verification:
            lines.append(f"verified after {name}: " + "; ".join(str(d) for d in report))
        lines += [f"  {f}" for f in self.after]
        return "\n".join(lines)



def fix(model: Model | onnx.ModelProto, backend: str = "tensorrt", *, set_shape: dict[str, str] | None = None,
        freeze: dict[str, str] | None = None, legacy: bool = False, verify: bool = True,
        inputs: dict | None = None, rtol: float = RTOL, atol: float = ATOL,
        partial: bool = False) -> tuple[Model | onnx.ModelProto, FixReport]:
    """Fix ``model`` for ``backend``; returns the fixed copy (same kind as given) and the report.

    Raises :class:`FixRefused` when errors remain (unless ``partial``),
    :class:`graphsurgery.verify.VerificationError` when a pass changed the outputs, and
    :class:`graphsurgery.passes.PassError` when a pass refused. ``model`` is never modified."""
    from .passes import Pipeline, create

    check_backend(backend)
    given = load(model) if isinstance(model, onnx.ModelProto) else model
    if not isinstance(given, Model):
        raise GraphSurgeryError(f"fix takes a graphsurgery Model or an onnx.ModelProto, not {type(model).__name__}")
    work = given.copy()
    opts = {"legacy": legacy, "given_shapes": bool(set_shape), "frozen": tuple(freeze or ())}
    found = lint_for(work, backend, **opts)
    report = FixReport(backend, describe(backend), found)
    first = True
    for _ in range(_ROUNDS):
        steps = _plan(found, set_shape if first else None, freeze if first else None)
        if not steps:
            break
        pipeline = Pipeline([create(name, **o) for name, o in steps], verify=verify, inputs=inputs if first else None,
                            rtol=rtol, atol=atol)
        report.pipelines.append(pipeline.describe())
        result = pipeline.run(work)
        report.results += result.results
        report.verification += result.verification
        first = False
        found = lint_for(work, backend, **opts)
        if not result.changed:
            break
    report.after = found
    if report.remaining and not partial:
        raise FixRefused(report)
    return (work.proto if isinstance(model, onnx.ModelProto) else work), report


def _plan(found: list[BackendFinding], set_shape: dict | None, freeze: dict | None) -> list[tuple[str, dict]]:
    """The passes the automatic findings name (with the user's values), in a fixed order."""
    wanted: dict[str, dict] = {}
    if freeze:
        wanted["freeze-inputs"] = dict(freeze)
    if set_shape:
        wanted["set-shape"] = dict(set_shape)
    for f in found:
        if not f.auto or not f.fix:
            continue
        for name, o in _steps(f.fix):
            if name in ("freeze-inputs", "set-shape") or name not in _ORDER:
                continue  # those two only with values the user gave, above
            wanted.setdefault(name, o)
            if name == "remove-if":  # a condition is constant once folded
                wanted.setdefault("fold-constants", {})
    if wanted and ("freeze-inputs" in wanted or "set-shape" in wanted):
        wanted.setdefault("fold-constants", {})
        wanted.setdefault("remove-if", {})
    if wanted:
        wanted.setdefault("cleanup", {})
    return [(n, wanted[n]) for n in _ORDER if n in wanted]


def _steps(text: str) -> list[tuple[str, dict]]:
    """``a,b(k=v)`` -> [("a", {}), ("b", {"k": "v"})]; a step with a placeholder for the user's
    value (``set-shape(...)``, ``freeze-inputs(NAME=VALUE)``) comes without options."""
    from .passes.base import PassError
    from .passes.pipeline import parse, split_top

    out = []
    for step in split_top(text):
        try:
            out += parse(step)
        except PassError:
            out.append((step.split("(", 1)[0].strip(), {}))
    return out
