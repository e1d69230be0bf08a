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


def not_found(kind: str, name: str, candidates: Iterable[str], where: str = "") -> NotFoundError:
    """Build a :class:`NotFoundError` that suggests close matches for a misspelt name."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    msg = f"no {kind} named {name!r}{(' in ' + where) if where else ''}"
    if close:
        msg += "; did you mean " + ", ".join(repr(c) for c in close) + "?"
    return NotFoundError(msg)
