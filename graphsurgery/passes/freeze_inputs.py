"""freeze-inputs: a graph input becomes a constant (``freeze-inputs(sr=16000)``)."""

from __future__ import annotations

import ast

import numpy as np

from ..core.model import Model
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
    Freezing an input that is already a constant with that value (NaN included) changes nothing.
    In IR < 4 models, where every initializer must also be a graph input, the input stays listed
    with the constant's shape. Refuses, changing nothing, when the frozen model would fail the
    checker (e.g. a value the operators reading it reject)."""

    name = "freeze-inputs"
    free_options = True
    free_help = "NAME=VALUE for each graph input to freeze: a number, true/false, or a [list]"

    def apply(self, model: Model, result: PassResult) -> None:
        g = model.graph
        if not self.opts:
            raise PassError("freeze-inputs needs at least one NAME=VALUE, e.g. freeze-inputs(sr=16000)")
        # IR < 4: every initializer must also be listed as a graph input, so a frozen input stays
        # listed (with the constant's static shape) and its initializer holds the value.
        keep_listed = model.ir_version < 4
        values = {}
        for name, raw in self.opts.items():
            value = parse_value(raw)
            inits = g.initializers
            if name not in g.input_names and name not in inits:
                from ..errors import not_found
                raise not_found("graph input", name, g.input_names, "the model")
            arr = self._value_for(g, name, raw, value)
            frozen = name in inits and (keep_listed or name not in g.input_names)
            if frozen and _same_value(g.initializer(name), arr):
                continue  # frozen already, to this value
            if name not in g.input_names:
                raise PassError(f"freeze-inputs: {name!r} is a constant of the model already (value "
                                f"{_show(g.initializer(name))}), not a graph input; it cannot be frozen to "
                                f"{_show(arr)}")
            values[name] = arr
        if not values:
            return
        trial = model.copy()
        _freeze(trial.graph, values, keep_listed)
        found = trial.problems()
        if found and not model.problems():
            names = ", ".join(repr(n) for n in values)
            raise PassError(f"freeze-inputs: freezing {names} makes the model invalid ({found[0]}); "
                            "the model was left as it was")
        _freeze(g, values, keep_listed)
        for name, arr in values.items():
            result.note(f"input {name!r} frozen to {_show(arr)}")
            result.details.setdefault("frozen", {})[name] = arr.tolist() if arr.size <= 64 else list(arr.shape)

    @staticmethod
    def _value_for(g, name: str, raw, value) -> np.ndarray:
        """``value`` as an array of the input's element type and shape, or a PassError."""
        t = g.tensor(name)
        vtype = t.type
        if vtype is not None and not vtype.HasField("tensor_type"):
            kind = vtype.WhichOneof("value") or "untyped"
            kind = kind.replace("_type", "")
            article = "an" if kind[0] in "aeiou" else "a"
            raise PassError(f"freeze-inputs: input {name!r} is {article} {kind}, not a tensor; "
                            "only tensor inputs can be frozen")
        dtype = t.dtype
        if dtype is None:
            raise PassError(f"freeze-inputs: the element type of input {name!r} is unknown; give the input a "
                            "type (e.g. with set-shape) before freezing it")
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
                arr = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as exc:
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
        return arr


def _freeze(g, values: dict[str, np.ndarray], keep_listed: bool) -> None:
    if not keep_listed:
        g.replace_with_constants(values)
        return
    for name, arr in values.items():
        g.set_initializer(name, arr)
        for vi in g.proto.input:
            if vi.name == name:  # the listed input now declares exactly the constant's shape
                shape = vi.type.tensor_type.shape
                shape.Clear()
                for d in arr.shape:
                    shape.dim.add().dim_value = d
                vi.type.tensor_type.shape.CopyFrom(shape)


def _same_value(current: np.ndarray, wanted: np.ndarray) -> bool:
    """Equal dtype, shape and elements, NaN equal to NaN (and -0.0 distinct from 0.0: the bytes)."""
    current, wanted = np.asarray(current), np.asarray(wanted)
    if current.dtype != wanted.dtype or current.shape != wanted.shape:
        return False
    if current.dtype == object:  # strings: compare the values, not the object pointers
        return current.tolist() == wanted.tolist()
    return current.tobytes() == wanted.tobytes()


def _show(arr: np.ndarray):
    return arr.tolist() if arr.size <= 8 else f"<{arr.dtype} {list(arr.shape)}>"


__all__ = ["FreezeInputs", "parse_value"]
