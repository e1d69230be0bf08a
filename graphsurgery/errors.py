"""The one exception hierarchy of graphsurgery.

Every error the library raises on purpose derives from :class:`GraphSurgeryError`.
Messages say what is wrong, where (node, tensor or file), and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GraphSurgeryError(Exception):
    """Base class of every error graphsurgery raises."""


class ModelLoadError(GraphSurgeryError):
    """A file or byte string is not a readable ONNX model."""


class ExternalDataError(GraphSurgeryError):
    """External tensor data is missing, unsafe, or does not fit its tensor."""


class InvalidModelError(GraphSurgeryError):
    """The model breaks an ONNX or graphsurgery invariant.

    ``problems`` lists every problem found, one human-readable line each.
    """

    def __init__(self, message: str, problems: Iterable[str] = ()):
        self.problems = list(problems)
        super().__init__(message)


class NotFoundError(GraphSurgeryError, KeyError):
    """A node, tensor, attribute or initializer name does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class EditError(GraphSurgeryError):
    """An edit was refused because it would break the graph; nothing was changed."""


class SaveError(GraphSurgeryError):
    """The model cannot be written as asked; nothing was written."""


class PassError(GraphSurgeryError):
    """A pass refused to act: the model cannot be transformed correctly as asked."""


class UsageError(GraphSurgeryError):
    """The command line itself is wrong (unknown option, missing argument, bad value)."""


class NotVerifiable(GraphSurgeryError):
    """A pass's result cannot be compared with the model before it (the reason says why)."""


class VerificationError(GraphSurgeryError):
    """Outputs drifted beyond tolerance. ``report`` holds the per-output differences
    (:class:`graphsurgery.verify.OutputDiff`); ``pass_index`` is the position in the pipeline
    of the pass blamed (None when no pass is)."""

    def __init__(self, message: str, report: list | None = None, pass_index: int | None = None):
        self.report = list(report or [])
        self.pass_index = pass_index
        super().__init__(message)


class LoadFailure(VerificationError):
    """The result of a pipeline does not load in onnxruntime (with its default optimizations)
    although the model given to it did; ``pass_index`` names the pass after which it stopped
    loading, when that was found."""


class InputMismatch(GraphSurgeryError):
    """Inputs given for verification do not fit the model (name, dtype or rank)."""


class RuntimeFailure(GraphSurgeryError):
    """onnxruntime refused to load or run a model."""


class BackendError(GraphSurgeryError):
    """An unknown backend, or support data that cannot be read."""


class ManyError(GraphSurgeryError):
    """The set of models or the output folder cannot be used as given."""


class FixRefused(GraphSurgeryError):
    """Errors remain that no pass fixes: nothing was changed. ``report`` says which."""

    def __init__(self, report):
        self.report = report
        n = len(report.remaining)
        needs = sum(1 for f in report.remaining if f.fix)
        why = (f"{needs} need a value only you can give (--set-shape, --freeze), {n - needs} no pass fixes" if needs
               else "no pass fixes them")
        super().__init__(f"cannot make the model fit {report.backend}: {n} error(s) remain, {why}"
                         + (f" (passes {'; '.join(report.pipelines)} ran and were verified)" if report.pipelines
                            else "") + "; nothing written (--partial writes what could be fixed)")


def did_you_mean(name: str, candidates: Iterable[str], *, n: int = 3) -> str:
    """``"; did you mean 'a', 'b'?"`` for the candidates close to a misspelt ``name``, else ``""``:
    the one spelling of the suggestion every "no such name" message appends."""
    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)
    return ("; did you mean " + ", ".join(repr(c) for c in close) + "?") if close else ""


def not_found(kind: str, name: str, candidates: Iterable[str], where: str = "") -> NotFoundError:
    """Build a :class:`NotFoundError` that suggests close matches for a misspelt name."""
    where_text = (" in " + where) if where else ""
    return NotFoundError(f"no {kind} named {name!r}{where_text}{did_you_mean(name, candidates)}")
