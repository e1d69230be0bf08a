"""freeze-inputs: a graph input becomes a constant (``freeze-inputs(sr=16000)``)."""

from __future__ import annotations

import ast

import numpy as np

from ..model import Model
from .base import Pass, PassError, PassResult


def parse_value(text):
    """``16000`` → 16000, ``0.5`` → 0.5, ``[1,2]`` → [1, 2], ``true`` → True; arrays pass through."""
    if not isinstance(text, str):
        return text
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text.strip().replace(";", ","))
    except (ValueError, SyntaxError):
        raise PassError(f"freeze-inputs: cannot read value {text!r}; give a number, a bool or a [list]") from None


class FreezeInputs(Pass):
    """Replace graph inputs by constants: ``freeze-inputs(sr=16000)``. The value takes the
    input's element type; its shape is the input's when that is static, else the value's own.
    Freezing an input that is already a constant with that value changes nothing."""

    name = "freeze-inputs"
    free_options = True

    def apply(self, model: Model, result: PassResult) -> None:
        g = model.graph
        if not self.opts:
            raise PassError("freeze-inputs needs at least one NAME=VALUE, e.g. freeze-inputs(sr=16000)")
        values = {}
        for name, raw in self.opts.items():
            value = parse_value(raw)
            if name not in g.input_names:
                if name in g.initializers and np.array_equal(g.initializer(name), np.asarray(value)):
                    continue  # frozen already
                from ..errors import not_found
                raise not_found("graph input", name, g.input_names, "the model")
            t = g.tensor(name)
            dtype = t.dtype
            if dtype is None:
                raise PassError(f"freeze-inputs: the element type of input {name!r} is unknown")
            arr = np.asarray(value, dtype=dtype)
            shape = t.shape
            if shape is not None and all(isinstance(d, int) for d in shape):
                if arr.size != int(np.prod(shape, dtype=np.int64)):
                    raise PassError(f"freeze-inputs: input {name!r} has shape {shape}; value {value!r} has "
                                    f"{arr.size} element(s)")
                arr = arr.reshape(shape)
            elif shape is not None and arr.ndim != len(shape):
                raise PassError(f"freeze-inputs: input {name!r} has rank {len(shape)}; value {value!r} has rank "
                                f"{arr.ndim}")
            values[name] = arr
        if values:
            g.replace_with_constants(values)
            for name, arr in values.items():
                result.note(f"input {name!r} frozen to {arr.tolist() if arr.size <= 8 else f'<{arr.dtype} {list(arr.shape)}>'}")
                result.details.setdefault("frozen", {})[name] = arr.tolist() if arr.size <= 64 else list(arr.shape)


__all__ = ["FreezeInputs", "parse_value"]
