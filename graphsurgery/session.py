"""A repair session for notebooks: apply passes or edits, see what each step changed, undo."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from .core.model import Model, load


@dataclass
class Change:
    """One step of a session: what it was, what the passes said, the structural diff, and,
    when the session has inputs, how far each output moved."""

    label: str
    results: list = field(default_factory=list)
    diff: Any = None
    drift: list | None = None

    def __str__(self) -> str:
        lines = [f"step: {self.label}"] + [str(r) for r in self.results] + [str(self.diff)]
        if self.drift is not None:
            lines.append("outputs: " + "; ".join(str(d) for d in self.drift))
        return "\n".join(lines)

    def __repr__(self) -> str:
        d = self.diff
        return (f"<Change {self.label}: nodes +{len(d.nodes_added)} -{len(d.nodes_removed)} ~{len(d.nodes_changed)}>"
                if d is not None else f"<Change {self.label}>")

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = [f"<div><b>{esc(self.label)}</b>"]
        parts += [r._repr_html_() for r in self.results]
        if self.diff is not None:
            ops = ", ".join(f"{esc(op)} {a}&rarr;{b}" for op, (a, b) in self.diff.ops.items())
            parts.append(f"<p>ops: {ops or 'unchanged'}; nodes +{len(self.diff.nodes_added)} "
                         f"-{len(self.diff.nodes_removed)} ~{len(self.diff.nodes_changed)}</p>")
        if self.drift is not None:
            parts.append("<p>outputs: " + "; ".join(esc(str(d)) for d in self.drift) + "</p>")
        return "".join(parts) + "</div>"


def _feeds(proto: onnx.ModelProto, given: dict, where: str) -> dict:
    """Inputs for ``proto``: the given arrays, each checked against the input it names and never
    replaced, generated ones for the inputs not given (:func:`graphsurgery.verify.fit_inputs`)."""
    from . import verify

    return verify.fit_inputs(proto, given, where=where, source="session inputs",
                             hint=" (or set session.inputs = None); the step was undone")


class Session:
    """Edit a model step by step, with undo.

    ``session.apply("remove-if")`` runs passes and returns a :class:`Change`; ``with
    session.edit("rewire"):`` wraps hand edits through the API (undone as a whole, and rolled
    back if the block raises); ``session.undo()`` returns to the model as it was before the last
    step. ``session.model`` stays the same object throughout. Each step keeps a serialized copy
    of the model before it (external weights stay on disk and are not copied).
    """

    def __init__(self, model: Any, inputs: dict[str, np.ndarray] | None = None):
        self.model: Model = model if isinstance(model, Model) else load(model)
        if inputs:
            from .verify import InputMismatch

            names = {vi.name for vi in self.model.proto.graph.input}
            stray = sorted(set(inputs) - names)
            if stray:  # an input a later step removes (frozen) is one the model has now
                raise InputMismatch(f"session inputs: array {stray[0]!r} names no input of the model (its inputs "
                                    f"are {', '.join(sorted(names)) or 'none'})")
        self.inputs = inputs
        self._history: list[tuple[str, bytes, str | None]] = []

    @property
    def history(self) -> list[str]:
        return [label for label, _, _ in self._history]

    def apply(self, step, *, verify: bool = False) -> Change:
        from .passes import Pass, Pipeline

        if isinstance(step, str):
            pipeline = Pipeline.from_text(step, verify=verify, inputs=self.inputs)
        elif isinstance(step, Pass):
            pipeline = Pipeline([step], verify=verify, inputs=self.inputs)
        else:
            pipeline = step
        label = pipeline.describe()
        before = self._snapshot(label)
        try:
            result = pipeline.run(self.model)
            return self._change(label, before, result.results)
        except BaseException:
            self._restore(self._history.pop())
            raise

    @contextlib.contextmanager
    def edit(self, label: str = "edit") -> Iterator[Model]:
        before = self._snapshot(label)
        try:
            yield self.model
            self.last_change = self._change(label, before, [])
        except BaseException:
            self._restore(self._history.pop())
            raise

    def undo(self) -> str:
        """Return to the model before the last step; returns that step's label."""
        if not self._history:
            from .errors import GraphSurgeryError
            raise GraphSurgeryError("nothing to undo")
        entry = self._history.pop()
        self._restore(entry)
        return entry[0]

    def _snapshot(self, label: str) -> bytes:
        data = self.model.to_bytes()
        self._history.append((label, data, self.model.base_dir))
        return data

    def _restore(self, entry) -> None:
        _, data, base_dir = entry
        proto = self.model.proto
        proto.CopyFrom(onnx.ModelProto.FromString(data))
        source = self.model.source_path
        Model.__init__(self.model, proto, base_dir=base_dir, source_path=source)

    def _change(self, label: str, before: bytes, results: list) -> Change:
        from .diff import diff

        change = Change(label, results, diff(load(before, base_dir=self.model.base_dir), self.model))
        if self.inputs is not None:
            from . import verify
            from .runner import EXACT

            # meaning, not onnxruntime's optimizer: on If-heavy models (silero_vad with its rate frozen)
            # onnxruntime's own If-inlining crashes the process
            proto_before = onnx.ModelProto.FromString(before)
            feeds_before = _feeds(proto_before, self.inputs, "the model before this step")
            feeds_after = _feeds(self.model.proto, self.inputs, "the model after this step")
            try:
                old = EXACT.run(before, feeds_before, base_dir=self.model.base_dir)
                new = EXACT.run(self.model.to_bytes(), feeds_after, base_dir=self.model.base_dir)
                change.drift = verify.compare(old, new)
            except verify.RuntimeFailure as exc:
                change.drift = [verify.OutputDiff("(run)", float("nan"), float("nan"), False, str(exc)[:200])]
        return change

    def _repr_html_(self) -> str:
        steps = "".join(f"<li>{html.escape(s)}</li>" for s in self.history)
        return f"<div><b>repair session</b>, {len(self.history)} step(s)<ol>{steps}</ol></div>" + \
            self.model._repr_html_()
