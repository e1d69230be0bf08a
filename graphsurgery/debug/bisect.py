"""Bisect a pipeline: which pass changed the outputs, and which node it rewrote did it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.model import Model, load
from ..verify import ATOL, RTOL
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


def bisect_pipeline(model: Any, pipeline, inputs: dict[str, np.ndarray] | None = None, *, rtol: float = RTOL,
                    atol: float = ATOL) -> BisectResult:
    """Run ``pipeline`` (text or passes) on a copy of ``model`` and verify it exactly as
    ``--verify`` does (:class:`graphsurgery.passes.Pipeline` with ``verify=True``: the same
    inputs, mapped through each pass, the same tolerances and reference-noise allowance); for
    the first pass whose output model disagrees with its input model, compare the two models
    tensor by tensor to name the node. Given ``inputs`` that do not fit are an error, as there."""
    from .. import verify as v
    from ..passes.pipeline import Pipeline
    from .compare import compare

    source = load(model) if not isinstance(model, Model) else model
    passes = Pipeline.from_text(pipeline).passes if isinstance(pipeline, str) else list(pipeline)
    try:
        Pipeline(passes, verify=True, inputs=inputs, rtol=rtol, atol=atol).run(source.copy())
    except v.VerificationError as exc:
        if exc.pass_index is None:  # no pass to blame (no model of the pipeline runs): say so
            raise
        i = exc.pass_index
        out = BisectResult(pass_name=passes[i].describe(), pass_index=i, output_diffs=exc.report)
        previous = source.copy()
        for p in passes[:i]:
            p.run(previous)
        subject = previous.copy()
        passes[i].run(subject)
        if previous.graph.input_names == subject.graph.input_names:
            feeds = v.fit_inputs(subject.proto, inputs)
            out.report = compare(subject, previous, feeds, backend="ort-noopt", rtol=rtol, atol=atol)
            out.culprit = out.report.culprit
        return out
    return BisectResult()
