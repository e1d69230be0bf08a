"""Bisect a pipeline: which pass changed the outputs, and which node it rewrote did it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import Model, load
from .report import Report


@dataclass
class BisectResult:
    """``pass_name`` is the first pass whose output model disagrees with its input model (None
    when none does); ``culprit`` the node of the rewritten model where they part, with the
    tensor-by-tensor ``report`` behind it."""

    pass_name: str | None = None
    pass_index: int | None = None
    culprit: str | None = None
    output_diffs: list = field(default_factory=list)
    report: Report | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.pass_name, "pass_index": self.pass_index, "culprit": self.culprit,
                "outputs": [vars(d) for d in self.output_diffs],
                "report": self.report.to_dict() if self.report else None}

    def __str__(self) -> str:
        if self.pass_name is None:
            return "no pass changed the outputs beyond tolerance"
        lines = [f"pass {self.pass_name} (step {self.pass_index + 1}) changed the outputs: "
                 + "; ".join(str(d) for d in self.output_diffs if not d.ok)]
        if self.culprit:
            lines.append(f"node {self.culprit!r} is where the model before and after it part")
        return "\n".join(lines)


def bisect_pipeline(model: Any, pipeline, inputs: dict[str, np.ndarray] | None = None, *, rtol: float = 1e-4,
                    atol: float = 1e-5) -> BisectResult:
    """Run ``pipeline`` (text or passes) on a copy of ``model`` pass by pass, compare each pass's
    output model with its input model (as ``--verify`` does), and for the first that drifts,
    compare the two models tensor by tensor to name the node."""
    from ..passes.pipeline import Pipeline, check_pass
    from .. import verify as v
    from .compare import compare

    subject = (load(model) if not isinstance(model, Model) else model).copy()
    passes = Pipeline.from_text(pipeline).passes if isinstance(pipeline, str) else list(pipeline)
    before = subject.to_bytes()
    for i, p in enumerate(passes):
        res = p.run(subject)
        after = subject.to_bytes()
        if res.changed:
            diffs = check_pass(p, res, before, after, subject, inputs, rtol=rtol, atol=atol)
            if any(not d.ok for d in diffs):
                out = BisectResult(pass_name=p.describe(), pass_index=i, output_diffs=diffs)
                previous = load(before)
                if [i.name for i in previous.proto.graph.input] == [i.name for i in subject.proto.graph.input]:
                    feeds = v.fit_inputs(subject.proto, inputs)
                    out.report = compare(subject, previous, feeds, backend="ort-noopt", rtol=rtol, atol=atol)
                    out.culprit = out.report.culprit
                return out
        before = after
    return BisectResult()
