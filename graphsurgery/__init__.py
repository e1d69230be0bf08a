"""graphsurgery: lossless editing of ONNX models, and the repairs deployment needs.

    import graphsurgery as gs
    model = gs.load("model.onnx")
    for node in model.find_nodes("InstanceNormalization"):
        node.attrs["epsilon"] = 1e-3
    model.save("fixed.onnx")

The ``onnx.ModelProto`` stays the single source of truth: whatever you do not touch is
written back exactly as it was read.
"""

from . import display
from .core import Graph, Model, Node, Use, Value, load
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
from .fix import fix  # the function, not the module: bound after the submodule is
from .optimize import optimize
from .session import Session

display.register()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("graphsurgery")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _version()

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
