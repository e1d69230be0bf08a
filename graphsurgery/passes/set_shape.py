"""set-shape: fix the shape of graph inputs (``set-shape(input=1x512)``)."""

from __future__ import annotations

import re

from ..model import Model
from .base import Pass, PassError, PassResult


def parse_dims(text) -> list[int | str]:
    """``1x512`` → [1, 512]; ``Nx3x224x224`` keeps ``N`` symbolic; ``seq_max;3`` for names that
    contain an ``x``; a list passes through."""
    if isinstance(text, (list, tuple)):
        return list(text)
    text = str(text).replace("×", "x")
    if ";" in text:
        parts = text.split(";")
    elif re.fullmatch(r"[\d\sxX]+", text):  # all numbers: 1X3x224x224 reads too
        parts = re.split("[xX]", text)
    else:  # symbolic names keep their case: Nx3x224x224
        parts = text.split("x")
    out: list[int | str] = []
    for part in parts:
        part = part.strip()
        if not part:
            raise PassError(f"set-shape: cannot read dims {text!r}; write them like 1x3x224x224")
        out.append(int(part) if part.isdigit() else part)
    return out


class SetShape(Pass):
    """Set the dims of graph inputs: ``set-shape(input=1x512,state=2x1x128)``. Dims are numbers
    or symbolic names. Stale ``value_info`` entries (shapes recorded for the old input shapes)
    are dropped, so later passes re-infer shapes from the new ones."""

    name = "set-shape"
    free_options = True

    def apply(self, model: Model, result: PassResult) -> None:
        g = model.graph
        if not self.opts:
            raise PassError("set-shape needs NAME=DIMS, e.g. set-shape(input=1x512)")
        changed = False
        for name, text in self.opts.items():
            dims = parse_dims(text)
            vi = g.value_info(name) if name in g.input_names else None
            if vi is None:
                from ..errors import not_found
                raise not_found("graph input", name, g.input_names, "the model")
            tt = vi.type.tensor_type
            old = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim] \
                if tt.HasField("shape") else None
            if old is not None and len(old) != len(dims):
                raise PassError(f"set-shape: input {name!r} has rank {len(old)} ({old}); {text!r} gives "
                                f"rank {len(dims)}")
            if old == dims:
                continue
            tt.shape.ClearField("dim")
            for d in dims:
                dim = tt.shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                else:
                    dim.dim_param = d
            changed = True
            result.note(f"input {name!r}: shape {old} -> {dims}")
        if changed:
            removed = _drop_value_info(model)
            if removed:
                result.note(f"dropped {removed} value_info entries recorded for the old shapes")


def _drop_value_info(model: Model) -> int:
    count = 0
    for g in model.graphs():
        if not g.is_function and len(g.proto.value_info):
            count += len(g.proto.value_info)
            del g.proto.value_info[:]
    return count
