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
        value = ast.literal_eval(text.strip().replace(";", ","))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not _numeric(value):
        raise PassError(f"freeze-inputs: cannot read value {text!r}; give a number, a bool or a [list] of them")
    return value


def _check_exact(name: str, raw, value, arr: np.ndarray) -> None:
    """Refuse a value the input's type would silently change: 0.5 into an int, 5 into a bool,
    1e40 into a float32 (inf)."""
    if isinstance(value, np.ndarray) or arr.dtype.kind not in "biuf":
        return
    ref = np.asarray(value, dtype=np.float64)
    kind = arr.dtype.kind
    if kind in "iu" and not np.array_equal(ref, np.trunc(ref)):
        why = "it is not a whole number"
    elif kind == "b" and not np.isin(ref, (0.0, 1.0)).all():
        why = "it is not true/false (or 1/0)"
    elif kind == "f" and not np.array_equal(np.isfinite(arr), np.isfinite(ref)):
        why = "it is out of range"
    else:
        return
    raise PassError(f"freeze-inputs: value {raw!r} does not fit input {name!r} of type {arr.dtype.name}: {why}")


def _numeric(value) -> bool:
    """A number, a bool, or a (nested) list or tuple of them: what can become a tensor."""
    if isinstance(value, (list, tuple)):
        return all(_numeric(v) for v in value)
    return isinstance(value, (bool, int, float)) and not isinstance(value, complex)


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
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
                    arr = np.asarray(value, dtype=dtype)
            except (ValueError, TypeError, OverflowError) as exc:
                raise PassError(f"freeze-inputs: value {raw!r} does not fit input {name!r} of type "
                                f"{np.dtype(dtype).name}: {exc}") from None
            _check_exact(name, raw, value, arr)
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
