"""instancenorm-epsilon: set epsilon on InstanceNormalization nodes."""

from __future__ import annotations

import fnmatch

from ..core.model import Model
from .base import Option, Pass, PassError, PassResult


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
        changed = {}
        for node in model.find_nodes("InstanceNormalization"):
            if self.opts["pattern"] and not fnmatch.fnmatchcase(node.name, self.opts["pattern"]):
                continue
            old = node.attrs.get("epsilon", 1e-5)  # the operator's default
            if self.opts["below"] is not None and not old < self.opts["below"]:
                continue
            if "epsilon" in node.attrs and _f32(old) == _f32(eps):
                continue  # already so (the attribute is stored as float32)
            node.attrs["epsilon"] = eps
            changed[node.name] = (old, eps)
            result.note(f"InstanceNormalization {node.name!r}: epsilon {old:g} -> {eps:g}")
        result.details["epsilon"] = changed


def _f32(x: float) -> float:
    import numpy as np

    return float(np.float32(x))
