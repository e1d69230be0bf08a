"""cleanup: remove what feeds no output."""

from __future__ import annotations

from ..core.model import Model
from .base import Pass, PassResult


class Cleanup(Pass):
    """Remove nodes that feed no graph output, initializers nobody reads and value_info of
    tensors that no longer exist, in every graph. Graph inputs are the model's interface and
    stay, even when unused."""

    name = "cleanup"

    def apply(self, model: Model, result: PassResult) -> None:
        counts = model.remove_unused()
        for fn in model.functions.values():
            fn_counts = fn.remove_unused(initializers=False)
            for k, v in fn_counts.items():
                counts[k] += v
        result.details.update(counts)
        for what, n in counts.items():
            if n:
                result.note(f"removed {n} unused {what.replace('_', ' ')}")
