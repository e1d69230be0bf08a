"""The elements of small integer tensors the trace follows (shapes and the glue computed from them)."""

from __future__ import annotations

import numpy as np
import onnx

from .common import _INT_TYPES, BATCH, MIXED, _attr, _norm


class _Val:
    """The elements of a small integer tensor (a shape, an index, a size)."""

    __slots__ = ("elems", "scalar", "array")

    def __init__(self, elems, scalar=False, array=None):
        self.elems, self.scalar = list(elems), scalar
        if array is None and all(isinstance(e, int) and not isinstance(e, bool) for e in self.elems):
            array = np.array(self.elems[0] if scalar and self.elems else self.elems, np.int64)
        self.array = array

    @classmethod
    def of(cls, array) -> _Val:
        array = np.asarray(array)
        return cls(array.reshape(-1).tolist(), array.ndim == 0, array)

    @property
    def batchy(self) -> bool:
        return any(e in (BATCH, MIXED) for e in self.elems)


def _evaluate(node: onnx.NodeProto, vals) -> _Val | None:
    """Compute a small batch-free glue node from fully known inputs (numpy, a few ops)."""
    op = node.op_type
    if op not in _FOLDABLE or not node.input or len(node.output) != 1:
        return None
    xs = [None if not name else (v.array if v is not None and v.array is not None else False)
          for name, v in zip(node.input, vals, strict=True)]
    if any(x is False for x in xs) or xs[0] is None:
        return None
    a = xs[0]
    if op in _BINARY:
        out = _BINARY[op](a, xs[1])
    elif op in ("Cast", "Identity", "Neg", "Abs", "Not"):
        out = {"Cast": lambda v: v, "Identity": lambda v: v, "Neg": np.negative, "Abs": np.abs,
               "Not": np.logical_not}[op](a)
        if op == "Cast" and _attr(node, "to") not in _INT_TYPES:
            return None
    elif op == "Where":
        out = np.where(a.astype(bool), xs[1], xs[2])
    elif op == "Reshape":
        shape = [a.shape[i] if (d == 0 and not _attr(node, "allowzero", 0)) else d for i, d in enumerate(xs[1])]
        out = a.reshape(shape)
    elif op == "Transpose":
        out = np.transpose(a, _attr(node, "perm"))
    elif op == "Concat":
        out = np.concatenate([x for x in xs if x is not None], axis=_attr(node, "axis", 0))
    elif op == "Unsqueeze":
        axes = _attr(node, "axes") if _attr(node, "axes") is not None else xs[1].tolist()
        out = np.expand_dims(a, tuple(_norm(x, a.ndim + len(axes)) for x in axes))
    elif op == "Squeeze":
        axes = _attr(node, "axes") if _attr(node, "axes") is not None else (
            xs[1].tolist() if len(xs) > 1 and xs[1] is not None else None)
        out = np.squeeze(a, None if axes is None else tuple(_norm(x, a.ndim) for x in axes))
    elif op == "Gather":
        out = np.take(a, xs[1], axis=_attr(node, "axis", 0))
    elif op == "Slice":
        starts, ends = xs[1].tolist(), xs[2].tolist()
        axes = xs[3].tolist() if len(xs) > 3 and xs[3] is not None else list(range(len(starts)))
        steps = xs[4].tolist() if len(xs) > 4 and xs[4] is not None else [1] * len(starts)
        index = [slice(None)] * a.ndim
        for ax, st, en, sp in zip(axes, starts, ends, steps, strict=True):
            index[_norm(ax, a.ndim)] = slice(st, en, sp)  # numpy clamps out-of-range ends as ONNX does
        out = a[tuple(index)]
    elif op == "ConstantOfShape":
        fill = _attr(node, "value")
        fill = onnx.numpy_helper.to_array(fill).reshape(-1)[0] if fill is not None else 0
        if int(np.prod(a)) > 64:
            return None
        out = np.full(a.tolist(), fill)
    elif op == "Range":
        out = np.arange(a, xs[1], xs[2])
    elif op == "Expand":
        out = a * np.ones(xs[1].tolist(), a.dtype)
    else:
        return None
    out = np.asarray(out)
    return _Val.of(out) if out.size <= 64 else None


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum, "Min": np.minimum,
           "Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
           "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
           "Div": lambda x, y: np.trunc(x / y).astype(np.result_type(x, y))
           if np.issubdtype(np.result_type(x, y), np.integer) else x / y}
_FOLDABLE = set(_BINARY) | {"Cast", "Identity", "Neg", "Abs", "Not", "Where", "Reshape", "Transpose", "Concat",
                            "Unsqueeze", "Squeeze", "Gather", "Slice", "ConstantOfShape", "Range", "Expand"}


def _arith(op, x, y):
    """One element of integer glue arithmetic."""
    if op == "Mul" and x == 1:
        return y
    if op in ("Mul", "Div") and y == 1:
        return x
    if op == "Add" and x == 0:
        return y
    if op in ("Add", "Sub") and y == 0:
        return x
    if op == "Equal" and BATCH in (x, y) and any(isinstance(v, int) and v <= 0 for v in (x, y)):
        return 0  # a batch size is never 0 or -1
    if op == "Equal" and any(isinstance(v, str) and v != MIXED for v in (x, y)) and \
            any(isinstance(v, int) and v < 0 for v in (x, y)):
        return 0  # a dim is never negative
    if BATCH in (x, y) or MIXED in (x, y):
        return MIXED
    if isinstance(x, int) and isinstance(y, int):
        if op == "Div":
            return int(x / y) if y else None
        return {"Add": x + y, "Sub": x - y, "Mul": x * y, "Max": max(x, y), "Min": min(x, y),
                "Equal": int(x == y)}[op]
    if op == "Equal" and isinstance(x, str) and x == y:
        return 1
    return None



def _same_product(a, b) -> bool:
    """Whether two lists of dims (numbers and names) surely multiply to the same number."""
    def factors(xs):
        n, names = 1, []
        for x in xs:
            if isinstance(x, int) and x > 0:
                n *= x
            elif isinstance(x, str) and x not in (BATCH, MIXED):
                names.append(x)
            else:
                return None
        return n, sorted(names)
    fa, fb = factors(a), factors(b)
    return fa is not None and fa == fb


# ---- products of dims: how many rows of a merged batch belong to one sample ------------------
#
# A merged batch holds batch x f rows on one axis. f is a number, or a product of numbers and dim
# names (``seq`` x 4): a monomial ``(number, sorted names)``, written as a plain int when it has
# no names. Names inference made up (``unk__N``) are not trusted to stand for one value.

def _mono(dims) -> tuple[int, tuple[str, ...]] | None:
    """The product of ``dims`` (numbers >= 1 and dim names) as a monomial; None if one is unknown."""
    n, names = 1, []
    for x in dims:
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1:
            n *= int(x)
        elif isinstance(x, str) and x not in (BATCH, MIXED) and not x.startswith("unk__"):
            names.append(x)
        else:
            return None
    return n, tuple(sorted(names))


def _as_mono(f) -> tuple[int, tuple[str, ...]]:
    return (f, ()) if isinstance(f, int) else f


def _factor(mono):
    """A monomial as a merge factor: an int when it has no names."""
    return mono[0] if not mono[1] else mono


def _mono_mul(a, b):
    return a[0] * b[0], tuple(sorted(a[1] + b[1]))


def _mono_div(a, b):
    """``a / b`` when it is exact (b's number divides a's, b's names are among a's), else None."""
    if b[0] == 0 or a[0] % b[0]:
        return None
    names = list(a[1])
    for x in b[1]:
        if x not in names:
            return None
        names.remove(x)
    return a[0] // b[0], tuple(names)


def _show_factor(f) -> str:
    m = _as_mono(f)
    return " x ".join(([str(m[0])] if m[0] != 1 or not m[1] else []) + list(m[1]))


def _multiples(node, vals, known) -> list | None:
    """Which elements of a glue node's output are the batch times a known product (a monomial),
    element by element (None where not known): ``Mul(batch, heads)`` is batch x heads. ``known``
    gives the same for each input (None for an input with none). The element itself stays
    ``MIXED`` in the values: only a Reshape target reads these, everything else refuses it."""
    op = node.op_type

    def of(i):
        v = vals[i]
        if v is None:
            return None
        m = known[i]
        return [m[j] if m is not None and m[j] is not None else ((1, ()) if e == BATCH else None)
                for j, e in enumerate(v.elems)]

    if op == "Mul" and len(vals) == 2 and all(v is not None for v in vals):
        a, b = of(0), of(1)
        n = max(len(a), len(b))
        if len(a) not in (1, n) or len(b) not in (1, n):
            return None
        out = []
        for j in range(n):
            ma, mb = a[j % len(a)], b[j % len(b)]
            ea, eb = vals[0].elems[j % len(a)], vals[1].elems[j % len(b)]
            ka, kb = _mono([eb]) if ma is not None else None, _mono([ea]) if mb is not None else None
            out.append(_mono_mul(ma, ka) if ka is not None else _mono_mul(mb, kb) if kb is not None else None)
        return out
    if op in ("Cast", "Identity", "Unsqueeze", "Squeeze") or (op == "Reshape" and vals[0] is not None
                                                            and vals[1] is not None and len(vals[1].elems) <= 1):
        return of(0)
    if op == "Concat" and all(v is not None for v in vals):
        parts = [of(i) for i in range(len(vals))]
        return [x for p in parts for x in p]
    return None
