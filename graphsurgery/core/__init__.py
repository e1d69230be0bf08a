"""The core: a model, its graphs, nodes, tensors and attributes over the live protos, and the
scope index every other module asks (who defines a name, who reads it, what a subgraph
captures, which node holds it, topological ranks, fresh names).

Nothing here imports the layers above it (display, summaries, lint, diff, interop, passes).
The names below are imported on first use, so that ``core.hooks`` costs nothing more.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attributes import AttributeRef, Attributes
    from .graph import Graph
    from .model import Model, load
    from .names import NameAuthority
    from .node import Node, check_is_node
    from .scope import Scope, Use
    from .values import Value

_LAZY = {
    "AttributeRef": ".attributes", "Attributes": ".attributes", "Graph": ".graph", "Model": ".model",
    "load": ".model", "NameAuthority": ".names", "Node": ".node", "check_is_node": ".node", "Scope": ".scope",
    "Use": ".scope", "Value": ".values",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["AttributeRef", "Attributes", "Graph", "Model", "NameAuthority", "Node", "Scope", "Use", "Value",
           "check_is_node", "load"]
