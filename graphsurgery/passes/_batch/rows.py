"""Row numbers: ``Range(0, batch)`` and what is computed from it, followed to the Gather they index.

A tensor of row numbers holds, at position i of its batch axis, ``i * stride + u``, where ``u``
is the same for every sample and lies in ``[0, bound)``: ``Range(0, batch, 1)`` has stride 1 and
u = 0. Such a tensor is not the same per sample (sample i sees i, a single run sees 0), so it
may only flow into a Gather that reads a batch merged with ``stride`` rows per sample: there
sample i reads row ``i * stride + u`` of the merged axis, row u of its own rows, exactly what a
single run reads. PyTorch exports index an attention mask this way
(``mask.flatten()[arange(batch)[:, None] * seq + arange(seq)]``). Every other use is refused.
"""

from __future__ import annotations

import onnx

from ...ops import is_default_domain
from .common import _INT_TYPES, B1, B2, BATCH, _attr, _norm, _Unknown
from .values import _as_mono, _factor, _mono, _mono_mul, _show_factor

_ONE = (1, ())
# ops a tensor of row numbers passes through as row numbers
_ROW_OPS = {"Unsqueeze", "Squeeze", "Identity", "Cast", "Mul", "Add", "Gather"}


class _RowRules:
    """Row numbers in the trace (mixed into the trace); ``self.rows[(scope id, name)]`` is
    ``(stride, bound)``, both monomials, and ``self.bounds[(scope id, name)]`` the bound n of a
    batch-free index tensor whose values lie in ``[0, n)`` (``Range(0, n, 1)``)."""

    def rows_of(self, scope, name):
        return self._get(self.rows, scope, name) if name else None

    def bound_of(self, scope, name):
        return self._get(self.bounds, scope, name) if name else None

    def range_rows(self, scope, node, vals) -> int:
        """Range(0, batch, 1): the row numbers of the batch, on axis 0."""
        start, limit, delta = (vals + [None] * 3)[:3]
        if (start is None or limit is None or delta is None or start.elems != [0] or delta.elems != [1]
                or limit.elems != [BATCH]):
            raise _Unknown("it makes a sequence from the batch size that is not the row numbers 0 .. batch-1")
        self.rows[(id(scope), node.output[0])] = (_ONE, _ONE)
        self.fix_dims(scope, node.output[0], lambda get, batch: [batch])
        return 0

    def range_bound(self, scope, node, vals) -> None:
        """Range(0, n, 1) with n a number or a dim name: its values lie in [0, n)."""
        if node.op_type != "Range" or len(vals) < 3 or any(v is None for v in vals[:3]):
            return
        start, limit, delta = vals[:3]
        n = _mono(limit.elems) if len(limit.elems) == 1 else None
        if start.elems == [0] and delta.elems == [1] and n is not None:
            self.bounds[(id(scope), node.output[0])] = n
            self.fix_dims(scope, node.output[0], lambda get, batch: list(limit.elems))

    def pass_bound(self, scope, node) -> None:
        """Ops that keep every value of a batch-free index tensor keep its bound."""
        if node.op_type in ("Unsqueeze", "Squeeze", "Identity", "Reshape") or (
                node.op_type == "Cast" and _attr(node, "to") in _INT_TYPES):
            b = self.bound_of(scope, node.input[0]) if node.input else None
            if b is not None and node.output and node.output[0]:
                self.bounds[(id(scope), node.output[0])] = b
                if node.op_type != "Reshape":
                    self.fix_dims(scope, node.output[0], lambda get, batch: _moved(node, get, self.val(scope, (
                        list(node.input) + [""])[1])))

    def rows_step(self, scope, node, ins, axes, vals, rows_in) -> None:
        """A node that reads row numbers: it keeps them row numbers, or is the Gather they index."""
        op = node.op_type
        name = ins[rows_in[0]]
        if op not in _ROW_OPS or not is_default_domain(node.domain):
            raise _Unknown(f"its input {name!r} holds each sample's position in the batch, which set-batch "
                           "follows only into a Gather over a batch merged with other dims")
        tags = [self.tag_of(scope, ins[i]) for i, a in enumerate(axes) if a is not None]
        tag = self.union(tags) if tags else self.source[0]
        out = node.output[0]
        if op == "Gather":
            self.set_axis(scope, out, self.gather_rows(scope, node, ins, axes), tag)
            axis = _norm(_attr(node, "axis", 0), self.need_rank(scope, ins[0], node))
            self.fix_dims(scope, out, lambda get, batch: None if get(ins[0]) is None or get(ins[1]) is None else
                          get(ins[0])[:axis] + get(ins[1]) + get(ins[0])[axis + 1:])
            return
        if any(self.merged_of(scope, ins[i]) for i, a in enumerate(axes) if a is not None):
            raise _Unknown("it combines row numbers with a batch merged with other dims")
        stride, bound = self.rows_of(scope, name)
        if op not in ("Mul", "Add") and rows_in != [0]:
            raise _Unknown(f"its input {name!r} holds each sample's position in the batch, which set-batch "
                           "follows only as the data of this op")
        if op in ("Unsqueeze", "Squeeze"):
            axis = self.squeeze(scope, node, ins, axes, vals)
        elif op == "Cast" and _attr(node, "to") not in _INT_TYPES:
            raise _Unknown(f"it casts the row numbers {name!r} to a type other than an integer")
        elif op in ("Cast", "Identity"):
            axis = axes[0]
        else:  # Mul, Add: row numbers and one operand without the batch
            if len(rows_in) != 1 or len([a for a in axes if a is not None]) != 1:
                raise _Unknown(f"it combines the row numbers {name!r} with another tensor that carries the batch")
            other = ins[1 - rows_in[0]]
            if op == "Mul":
                v = vals[1 - rows_in[0]]
                k = _mono(v.elems) if v is not None and len(v.elems) == 1 else None
                if k is None:
                    raise _Unknown(f"it scales the row numbers {name!r} by {other!r}, which is not a known size")
                stride, bound = _mono_mul(stride, k), (bound if bound == _ONE else _mono_mul(bound, k))
            else:
                b = self.bound_of(scope, other)
                if bound != _ONE or b is None:
                    raise _Unknown(f"it adds {other!r} to the row numbers {name!r}, and set-batch cannot show the "
                                   "sum stays within each sample's rows")
                bound = b
            axis = self.broadcast(scope, node, [0, 1], axes)
        self.set_axis(scope, out, axis, tag)
        self.rows[(id(scope), out)] = (stride, bound)
        if op in ("Mul", "Add"):
            self.fix_dims(scope, out, lambda get, batch: _broadcast(get(ins[0]), get(ins[1])))
        else:
            self.fix_dims(scope, out, lambda get, batch: _moved(node, get, vals[1] if len(vals) > 1 else None))

    def gather_rows(self, scope, node, ins, axes) -> int:
        """Gather(data, row numbers) along data's merged batch: each sample reads its own rows
        when the row numbers step by the rows per sample and stay below it."""
        if len(ins) < 2 or self.rows_of(scope, ins[0]) is not None or self.rows_of(scope, ins[1]) is None:
            raise _Unknown("it gathers from row numbers")
        bd, bi = axes[0], axes[1]
        r = self.need_rank(scope, ins[0], node)
        axis = _norm(_attr(node, "axis", 0), r)
        m = self.merged_of(scope, ins[0])
        if bd != axis or not m:
            raise _Unknown(f"its indices {ins[1]!r} hold each sample's position in the batch, but it does not "
                           f"gather from a batch merged with other dims on axis {axis}")
        d = self.dims_or_rank(scope, ins[0])
        if d is None or any(x != 1 for x in d[:axis]):
            raise _Unknown(f"the batch is axis {axis} of {ins[0]!r}, behind dims other than 1")
        stride, bound = self.rows_of(scope, ins[1])
        f = _as_mono(m)
        if stride != f or bound not in (f, _ONE):
            raise _Unknown(f"its indices {ins[1]!r} step {_show_factor(_factor(stride))} rows per sample (below "
                           f"{_show_factor(_factor(bound))}) over a batch merged with {_show_factor(m)} rows per "
                           "sample, so a sample may read another sample's rows")
        return axis + bi

    def no_rows_out(self, scope, proto: onnx.GraphProto, where: str) -> None:
        """Row numbers must not leave a graph: they differ from what single runs give."""
        for o in proto.output:
            if self.rows_of(scope, o.name) is not None:
                raise _Unknown(f"{where} {o.name!r} holds each sample's position in the batch, which differs "
                               "from what a single run gives")

    def fix_dims(self, scope, name, compute) -> None:
        """Set the dims of ``name`` in both probes where shape inference left some unnamed (it
        does not know a Range's length, and loses every dim computed from one): ``compute(get,
        batch)`` gives them from the dims of other tensors (``get``), the probe's batch ``batch``."""
        news = [compute(lambda n, s=second: scope.dims(n, second=s), batch)
                for second, batch in ((False, B1), (True, B2))]
        if any(d is None or any(x is None or (isinstance(x, str) and x.startswith("unk__")) for x in d)
               for d in news):
            return
        for second, table, new in ((False, "types", news[0]), (True, "types2", news[1])):
            old = scope.dims(name, second=second)
            if old is not None and (len(old) != len(new) or any(
                    a is not None and not (isinstance(a, str) and a.startswith("unk__")) and a != b
                    for a, b in zip(old, new, strict=True))):
                raise _Unknown(f"shape inference gives {name!r} the dims {old}, where set-batch finds {new}")
            t = scope.lookup(table, name)
            elem = t.tensor_type.elem_type if t is not None and t.HasField("tensor_type") else onnx.TensorProto.INT64
            getattr(scope, table)[name] = onnx.helper.make_tensor_type_proto(elem, new)


def _moved(node, get, axes_val) -> list | None:
    """The dims of the output of Unsqueeze, Squeeze, Identity or Cast, from its input's."""
    d = get(node.input[0])
    if d is None or node.op_type in ("Identity", "Cast"):
        return d
    axes = _attr(node, "axes")
    if axes is None:
        if axes_val is None or any(not isinstance(a, int) for a in axes_val.elems):
            return None
        axes = axes_val.elems
    if node.op_type == "Squeeze":
        drop = {_norm(a, len(d)) for a in axes}
        return [x for i, x in enumerate(d) if i not in drop]
    out = list(d)
    for a in sorted(_norm(a, len(d) + len(axes)) for a in axes):
        out.insert(a, 1)
    return out


def _broadcast(a, b) -> list | None:
    """Numpy broadcasting of two lists of dims; None where it cannot tell."""
    if a is None or b is None:
        return None
    r = max(len(a), len(b))
    a, b = [1] * (r - len(a)) + list(a), [1] * (r - len(b)) + list(b)
    out = []
    for x, y in zip(a, b, strict=True):
        if x == 1 or x == y:
            out.append(y)
        elif y == 1:
            out.append(x)
        else:
            return None
    return out
