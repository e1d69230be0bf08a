"""set-shape: fix the shape of graph inputs (``set-shape(input=1x512)``)."""

from __future__ import annotations

import re

from .. import shapes
from ..core.model import Model
from .base import Pass, PassError, PassResult

#: the largest dim set-shape and set-batch accept: beyond it a number is a typo, not a shape
MAX_DIM = 2**31 - 1
_NUMBER = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_dim(text: str, what: str) -> int | str:
    """One dim: a positive number (ASCII digits, at most ``MAX_DIM``) or a symbolic name (an
    identifier). Anything else is a PassError naming ``what``."""
    part = str(text).strip()
    if _NUMBER.fullmatch(part):
        value = int(part)
        if not 1 <= value <= MAX_DIM:
            raise PassError(f"{what}: dim {part} is out of range; a dim is a number from 1 to {MAX_DIM} "
                            "or a name")
        return value
    if _NAME.fullmatch(part):
        return part
    raise PassError(f"{what}: {part!r} is not a dim; a dim is a positive number or a name made of letters, "
                    "digits and '_' (not starting with a digit)")


def parse_dims(text, what: str = "set-shape") -> list[int | str]:
    """``1x512`` → [1, 512]; ``Nx3x224x224`` keeps ``N`` symbolic; ``seq_max;3`` for names that
    contain an ``x``; a list passes through (each dim checked)."""
    if isinstance(text, (list, tuple)):
        parts = [str(p) for p in text]
    else:
        text = str(text).replace("×", "x")
        if "=" in text:
            raise PassError(f"{what}: cannot read dims {text!r}: give one NAME=DIMS per input, separated by ',' "
                            "(set-shape(input=1x512,state=2x1x128)); ';' separates the dims of one input")
        if ";" in text:
            parts = text.split(";")
        elif re.fullmatch(r"[\d\sxX]+", text):  # all numbers: 1X3x224x224 reads too
            parts = re.split("[xX]", text)
        else:  # symbolic names keep their case: Nx3x224x224
            parts = text.split("x")
    if not parts or any(not p.strip() for p in parts):
        raise PassError(f"{what}: cannot read dims {text!r}; write them like 1x3x224x224 (or N;3;224;224)")
    return [parse_dim(p, what) for p in parts]


class SetShape(Pass):
    """Set the dims of graph inputs: ``set-shape(input=1x512,state=2x1x128)``. Dims are positive
    numbers or symbolic names (identifiers); ``;`` separates dims when a name contains an ``x``
    (``max_x;3;224;224``). A dim the model fixes to a number stays a number: making it symbolic
    is a claim the pass cannot prove (``set-batch(size=N)`` does it for the batch, with proof).
    Afterwards the declared graph outputs and ``value_info`` are re-inferred from the new input
    shapes; entries whose shape can no longer be inferred are dropped."""

    name = "set-shape"
    free_options = True
    free_help = "NAME=DIMS for each graph input, e.g. input=1x3x224x224 (dims: numbers or names)"

    def apply(self, model: Model, result: PassResult) -> None:
        g = model.graph
        if not self.opts:
            raise PassError("set-shape needs NAME=DIMS, e.g. set-shape(input=1x512)")
        plan = []
        for name, text in self.opts.items():
            dims = parse_dims(text, f"set-shape {name}")
            vi = g.value_info(name) if name in g.input_names else None
            if vi is None:
                from ..errors import not_found
                raise not_found("graph input", name, g.input_names, "the model")
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                raise PassError(f"set-shape: input {name!r} is not a tensor; it has no shape to set")
            old = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim] \
                if tt.HasField("shape") else None
            if old is not None and len(old) != len(dims):
                raise PassError(f"set-shape: input {name!r} has rank {len(old)} ({old}); {text!r} gives "
                                f"rank {len(dims)}")
            for axis, (a, b) in enumerate(zip(old or [], dims)):
                if isinstance(a, int) and isinstance(b, str):
                    raise PassError(f"set-shape: dim {axis} of input {name!r} is fixed at {a}; set-shape cannot make "
                                    f"it symbolic ({b!r}): the model may depend on it. For the batch use "
                                    f"set-batch(size={b})")
            plan.append((name, tt, old, dims))
        changed = False
        for name, tt, old, dims in plan:
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
            for line in shapes.refresh_declared(model):
                result.note(line)
