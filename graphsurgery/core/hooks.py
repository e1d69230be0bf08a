"""Where the presentation layer plugs in: the core draws nothing itself.

A layer above the core (``graphsurgery.display``) registers a renderer per kind ("model",
"graph", "node", "neighbourhood"); ``_repr_html_`` and ``Graph.neighbourhood`` call it. The
top-level ``graphsurgery`` package registers the notebook displays when it is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import GraphSurgeryError

_RENDERERS: dict[str, Callable[..., Any]] = {}


def register_renderer(kind: str, render_fn: Callable[..., Any]) -> None:
    """Use ``render_fn(obj, *args)`` to draw objects of ``kind``."""
    _RENDERERS[kind] = render_fn


def render(kind: str, obj: Any, *args: Any) -> Any:
    fn = _RENDERERS.get(kind)
    if fn is None:
        raise GraphSurgeryError(f"nothing draws a {kind}: import graphsurgery (which registers its displays) first")
    return fn(obj, *args)


__all__ = ["register_renderer", "render"]
