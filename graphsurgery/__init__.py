"""graphsurgery: lossless editing of ONNX models, and the repairs deployment needs.

    import graphsurgery as gs
    model = gs.load("model.onnx")
    for node in model.find_nodes("InstanceNormalization"):
        node.attrs["epsilon"] = 1e-3
    model.save("fixed.onnx")

The ``onnx.ModelProto`` stays the single source of truth: whatever you do not touch is
written back exactly as it was read.

Importing the package is cheap: each public name (and onnx, numpy behind it) is imported the
first time it is used.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    EditError,
    ExternalDataError,
    FixRefused,
    GraphSurgeryError,
    InputMismatch,
    InvalidModelError,
    LoadFailure,
    ManyError,
    ModelLoadError,
    NotFoundError,
    NotVerifiable,
    PassError,
    RuntimeFailure,
    SaveError,
    UsageError,
    VerificationError,
)

if TYPE_CHECKING:
    from .core import Graph, Model, Node, Use, Value, load
    from .fix import fix
    from .optimize import optimize
    from .session import Session

# what graphsurgery.display draws, through the core's hooks
_DISPLAYED = ("model", "graph", "node", "neighbourhood", "result")


def _register_display() -> None:
    """The core's objects draw through :mod:`graphsurgery.display` (``_repr_html_``,
    ``Graph.neighbourhood``); it is imported the first time one is drawn, not by every command."""
    from .core import hooks

    def first(kind):
        def render(*args):
            from . import display

            display.register()  # its renderers replace these stand-ins
            return hooks.render(kind, *args)
        return render

    for kind in _DISPLAYED:
        hooks.register_renderer(kind, first(kind))


_register_display()


def _register_interop() -> None:
    """``Model.to_networkx``, ``to_graphsurgeon`` and ``from_graphsurgeon`` go through the core's
    hooks to :mod:`graphsurgery.interop`, a layer above it, imported when first used."""
    from .core import hooks

    def networkx(graph, recursive):
        from .interop import to_networkx
        return to_networkx(graph, recursive=recursive)

    def to_graphsurgeon(model):
        from .interop import to_graphsurgeon
        return to_graphsurgeon(model)

    def from_graphsurgeon(gs_graph):
        from .interop import from_graphsurgeon
        return from_graphsurgeon(gs_graph)

    hooks.register_renderer("networkx", networkx)
    hooks.register_renderer("graphsurgeon", to_graphsurgeon)
    hooks.register_renderer("from-graphsurgeon", from_graphsurgeon)


_register_interop()

# public name -> the module that defines it, imported on first use
_LAZY = {
    "Graph": ".core", "Model": ".core", "Node": ".core", "Use": ".core", "Value": ".core", "load": ".core",
    "fix": ".fix", "optimize": ".optimize", "Session": ".session",
}
# submodules named like the function they hold: the package attribute is the function
_SHADOWED = frozenset({"fix", "optimize"})


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is not None:
        value = getattr(import_module(where, __name__), name)
        globals()[name] = value
        return value
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


class _Package(types.ModuleType):
    """Importing ``graphsurgery.fix`` (the module) binds it on the package; the public name
    ``graphsurgery.fix`` stays the function, as it was before the package imported lazily."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("graphsurgery")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__all__ = [
    "BackendError",
    "ManyError",
    "EditError",
    "ExternalDataError",
    "FixRefused",
    "Graph",
    "GraphSurgeryError",
    "InputMismatch",
    "InvalidModelError",
    "LoadFailure",
    "Model",
    "ModelLoadError",
    "Node",
    "NotFoundError",
    "NotVerifiable",
    "PassError",
    "RuntimeFailure",
    "SaveError",
    "Session",
    "UsageError",
    "Use",
    "Value",
    "VerificationError",
    "fix",
    "load",
    "optimize",
]
