"""instancenorm-epsilon: set epsilon on InstanceNormalization nodes."""

from __future__ import annotations

import fnmatch

from ..core.attributes import AttributeRef
from ..core.model import Model
from .base import Option, Pass, PassError, PassResult

DEFAULT = 1e-5  # the operator's default epsilon


class InstanceNormEpsilon(Pass):
    """Set ``epsilon`` on InstanceNormalization nodes: all of them, those whose name matches
    ``pattern`` (shell-style, e.g. ``*/in1*``), or only those whose epsilon is below ``below``
    (TensorRT's parser clamps small values, changing results). Reports each node's old and
    new value."""

    name = "instancenorm-epsilon"
    changes_outputs = True  # its purpose: --verify reports the drift, it does not fail on it
    options = {
        "epsilon": Option(float, help="the new epsilon", required=True),
        "pattern": Option(str, None, "only nodes whose name matches this shell pattern"),
        "below": Option(float, None, "only nodes whose current epsilon is below this value"),
    }

    def apply(self, model: Model, result: PassResult) -> None:
        eps = self.opts["epsilon"]
        if not eps > 0:
            raise PassError(f"instancenorm-epsilon: epsilon must be positive, got {eps}")
        pattern, below = self.opts["pattern"], self.opts["below"]
        stored = _f32(eps)  # the attribute holds a float32
        todo = []  # (node, old value): everything is decided before anything changes
        for node in model.find_nodes("InstanceNormalization"):
            if pattern and not fnmatch.fnmatchcase(node.name, pattern):
                continue
            old = node.attrs.get("epsilon")
            if isinstance(old, AttributeRef):
                raise PassError(f"instancenorm-epsilon: the epsilon of node {node.name!r} ({node.graph.describe()}) "
                                f"is the function's attribute {str(old)!r}, whose value is not known here; "
                                "set it where the function is called, or exclude the node with pattern")
            present = old is not None
            if not present:
                old = DEFAULT
            if below is not None and not old < below:
                continue
            # a float read from the attribute is a float32 already; anything else is converted
            if present and (old if type(old) is float else _f32(old)) == stored:
                continue  # already so
            todo.append((node, old))
        changed = {}
        new = f"{eps:g}"
        for node, old in todo:
            node.attrs["epsilon"] = eps
            name = node.name
            changed[name] = (old, eps)
            result.note(f"InstanceNormalization {name!r}: epsilon {old:g} -> {new}")
        result.details["epsilon"] = changed


def _f32(x: float) -> float:
    import numpy as np

    return float(np.float32(x))
