"""Pipelines: passes in order, from Python or from text like ``freeze-inputs(sr=16000),remove-if``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..model import Model, load
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
                for kv in _split_top(inner):
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


def _split_top(text: str) -> list[str]:
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

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.results)

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
        return f"<PipelineResult {', '.join(r.name for r in self.results)}: {sum(len(r.changes) for r in self.results)} change(s)>"

    def __str__(self) -> str:
        lines = [str(r) for r in self.results]
        for name, report in self.verification:
            lines.append(f"verified after {name}: " + "; ".join(str(d) for d in report))
        return "\n".join(lines)


class Pipeline:
    """Passes run in order. ``verify=True`` runs onnxruntime around every pass that changed
    something, comparing the model after it with the model before it (see
    :meth:`Pass.reference`), and stops with :class:`graphsurgery.verify.VerificationError`
    naming the first pass whose outputs drift beyond ``rtol``/``atol``. ``inputs`` are used
    where they fit the model's signature; other inputs are generated from it."""

    def __init__(self, passes: Iterable[Pass], *, verify: bool = False, inputs: dict[str, np.ndarray] | None = None,
                 rtol: float = 1e-5, atol: float = 1e-6,
                 progress: Callable[[int, int, str], None] | None = None):
        self.passes = list(passes)
        self.verify = verify
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
        from .. import verify as v

        wrapped = load(model) if isinstance(model, onnx.ModelProto) else model
        out = PipelineResult()
        before = None
        if self.verify:
            before = wrapped.to_bytes()
            try:
                v.run(before, v.fit_inputs(wrapped.proto, self.inputs), optimize=False, prepack=False,
                      base_dir=wrapped.base_dir)
            except v.RuntimeFailure as exc:
                raise v.VerificationError(f"cannot verify: the input model does not run ({exc}); there is no "
                                          "baseline to compare with. Run without verification, or repair the "
                                          "model first", []) from None
        for i, p in enumerate(self.passes):
            if self.progress:
                self.progress(i, len(self.passes), p.describe())
            res = p.run(wrapped)
            out.results.append(res)
            if self.verify:
                after = wrapped.to_bytes()
                if res.changed:
                    report = self._check(p, res, before, after, wrapped)
                    out.verification.append((p.describe(), report))
                before = after
        if self.progress:
            self.progress(len(self.passes), len(self.passes), "done")
        out.model = wrapped.proto if isinstance(model, onnx.ModelProto) else wrapped
        return out

    def _check(self, p: Pass, res: PassResult, before: bytes, after: bytes, model: Model) -> list:
        """Outputs after ``p`` against what the model before it gives; raises on drift."""
        from .. import verify as v

        report = check_pass(p, res, before, after, model, self.inputs, rtol=self.rtol, atol=self.atol)
        bad = [d for d in report if not d.ok]
        if bad:
            raise v.VerificationError(f"pass {p.describe()} changed the outputs beyond tolerance (rtol={self.rtol}, "
                                      f"atol={self.atol}): " + "; ".join(str(d) for d in bad), report)
        return report

    def __call__(self, model):
        return self.run(model).model


def check_pass(p: Pass, res: PassResult, before: bytes, after: bytes, model: Model,
               inputs: dict[str, np.ndarray] | None, *, rtol: float, atol: float) -> list:
    """Per-output differences between the model after pass ``p`` (``after``, also ``model``) and
    the reference the pass computes from the model before it. onnxruntime runs without its
    optimizer and without weight pre-packing: this checks meaning, not onnxruntime's rounding."""
    from .. import verify as v

    def run_(data, feeds):
        return v.run(data, feeds, optimize=False, prepack=False, base_dir=model.base_dir)

    feeds = v.fit_inputs(model.proto, inputs)
    try:
        actual = run_(after, feeds)
    except v.RuntimeFailure as exc:
        raise v.VerificationError(f"pass {p.describe()} left a model that does not run: {exc}", []) from None
    try:
        expected = p.reference(before, model, feeds, res, run_)
    except v.NotVerifiable as exc:
        return [v.OutputDiff("(not verified)", 0.0, 0.0, True, str(exc))]
    return v.compare(expected, actual, rtol=rtol, atol=atol)


def run(model, pipeline: str | Iterable[Pass], **kwargs: Any):
    """Run a pipeline (text or passes) on a Model or ModelProto; returns the same kind."""
    p = Pipeline.from_text(pipeline, **kwargs) if isinstance(pipeline, str) else Pipeline(pipeline, **kwargs)
    return p(model)
