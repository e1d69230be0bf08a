"""Where the batch goes through ops that move elements: reshapes, squeezes, gathers, slices, concat, expand, pad."""

from __future__ import annotations

import numpy as np

from .common import _BIG, B1, B2, BATCH, MIXED, _attr, _Lost, _norm, _show_dims, _Unknown
from .patches import _ConstantOfShapeBatch, _GatherNDRow, _ReshapeTarget, _ReshapeTargetFree, _ReshapeTargetFromInput
from .values import _as_mono, _factor, _mono, _mono_div, _mono_mul, _same_product, _show_factor


class _ShapeRules:
    """The rules of the trace for ops that move elements (mixed into the trace)."""

    def reshape(self, scope, node, ins, axes, vals) -> int | None:
        b = axes[0]
        if len(ins) < 2 or axes[1] is not None:
            raise _Unknown("its target carries the batch")
        t = vals[1]
        if b is None:
            if t is not None and t.batchy:
                raise _Unknown("its target is computed from the batch size but its data has no batch")
            self.values(scope, node, vals)
            return None
        d = self.dims_or_rank(scope, ins[0])
        if d is None:
            raise _Unknown(f"the shape of {ins[0]!r} is not known")
        if any(x != 1 for x in d[:b]):
            raise _Unknown(f"the batch is axis {b} of {ins[0]!r}, behind dims other than 1")
        allowzero = _attr(node, "allowzero", 0)
        m = self.merged_of(scope, ins[0])
        if t is not None:
            elems = list(t.elems)
            if not allowzero:
                elems = [((MIXED if m else BATCH) if i == b else (d[i] if i < len(d) else None)) if e == 0 else e
                         for i, e in enumerate(elems)]
            const = scope.lookup("consts", ins[1]) if scope.parent is None else None
            if m and (const is None or not isinstance(m, int)):
                k = self.reshape_glue(scope, node, ins, b, d, m, elems)
                if k is None:
                    raise _Unknown(f"it reshapes {ins[0]!r} {_show_dims(d)} (batch merged x{_show_factor(m)}) to "
                                   f"{_show_dims(elems)}, which set-batch cannot line up with the batch")
                return k
            if m or (self.old is not None and const is not None and elems and elems[0] != self.old
                     and all(isinstance(e, int) and (e >= 1 or e == -1) for e in elems) and elems.count(-1) <= 1):
                k = self.reshape_merged(scope, node, ins, b, d, m or 1, elems, const)
                if k is not None:
                    return k
            if (BATCH not in elems and self.old is not None and b == 0 and elems and elems[0] == self.old
                    and scope.parent is None and scope.lookup("consts", ins[1]) is not None):
                kind = _ReshapeTargetFromInput if allowzero else _ReshapeTarget
                self.patches.append(kind(node.name, ins[1], np.asarray(scope.lookup("consts", ins[1]))))
                elems[0] = BATCH
            if MIXED in elems and not m:
                k = self.reshape_glue(scope, node, ins, b, d, None, elems)
                if k is not None:
                    return k
            if MIXED in elems or elems.count(BATCH) > 1:
                raise _Unknown("its target combines the batch size with other dims")
            per_sample = d[b + 1:]
            if BATCH in elems:
                k = elems.index(BATCH)
                if any(e != 1 for e in elems[:k]):
                    raise _Unknown("its target puts dims other than 1 before the batch")
                return k
            if elems and elems[0] == -1 and _same_product(elems[1:], per_sample):
                return 0
            k = self.reshape_glue(scope, node, ins, b, d, None, elems)
            if k is not None:
                return k
        return self.fallback(scope, node, [0])[node.output[0]]

    def reshape_glue(self, scope, node, ins, b, d, m, elems) -> int | None:
        """A Reshape whose target dims are known as numbers, dim names and the batch (constants
        or Shape glue) that merges the batch, outermost, with the dims after it, or splits a
        merged batch back: the target has only 1s before an entry k that is the batch (the
        dims after it hold each sample's elements) or -1 (the batch times what the dims after
        it leave of each sample). None when it is not such a target."""
        per_sample = _mono(d[b + 1:])
        # entries that hold the batch: BATCH, or MIXED known as batch x g (Mul(batch, heads))
        mults = self._get(self.multiples, scope, ins[1]) if MIXED in elems else None
        factors = {i: ((1, ()) if e == BATCH else mults[i] if mults is not None and i < len(mults) else None)
                   for i, e in enumerate(elems) if e in (BATCH, MIXED)}
        if per_sample is None or None in factors.values() or len(factors) + elems.count(-1) != 1:
            return None
        total = _mono_mul(_as_mono(m or 1), per_sample)
        k = next(iter(factors)) if factors else elems.index(-1)
        rest = _mono(elems[k + 1:])
        if rest is None or any(e != 1 for e in elems[:k]):
            return None
        if k in factors:  # batch x g rows, each holding what the dims after it hold
            f = factors[k] if _mono_mul(factors[k], rest) == total else None
        else:
            f = _mono_div(total, rest)
        if f is None:
            return None
        self.merging, self.merging_set = (None if f == (1, ()) else _factor(f)), True
        return k

    def reshape_merged(self, scope, node, ins, b, d, m, elems, const) -> int:
        """A Reshape to a constant target that merges the batch with the dims after it, or splits
        a merged batch back: per sample, P elements (m rows of the merged axis times the dims
        after it) lie together, the batch outermost. The target keeps that when it has only 1s
        before an axis k of old batch x f, and the dims after k hold P / f elements per sample.
        The target's entry k becomes -1 (the batch, times f, at run time)."""
        rest = d[b + 1:]
        if const is None or self.old is None:
            raise _Unknown(f"it reshapes {ins[0]!r}, whose batch is merged with other dims, to a target that is "
                           "not a constant")
        if any(not isinstance(x, int) or x < 1 for x in rest) or elems.count(-1) > 1 or \
                any(not isinstance(e, int) or (e < 1 and e != -1) for e in elems):
            raise _Unknown(f"it reshapes {ins[0]!r} {_show_dims(d)} (batch merged x{m}) to "
                           f"{_show_dims(elems)}, which set-batch cannot line up with the batch")
        per_sample = m * int(np.prod(rest, dtype=np.int64))
        for k, e in enumerate(elems):
            after = elems[k + 1:]
            if e == -1:  # the batch, times what the dims after it leave of each sample
                size = int(np.prod(after, dtype=np.int64))
                if per_sample % size == 0:
                    self.merging = per_sample // size
                    return k
                break
            if -1 in after:
                break
            if e % self.old == 0:
                f = e // self.old
                after = int(np.prod(elems[k + 1:], dtype=np.int64))
                if f * after == per_sample:
                    self.patches.append(_ReshapeTargetFree(node.name, ins[1], np.asarray(const), k))
                    self.merging = f
                    return k
            if e != 1:
                break
        if m == 1:
            return None  # not a merge: the rules for a plain batch decide
        raise _Unknown(f"it reshapes {ins[0]!r} {_show_dims(d)} (batch merged x{m}) to {_show_dims(elems)}, "
                       "which mixes samples or does not keep each sample's elements together")

    def flatten(self, scope, node, ins, axes) -> int:
        if self.merged_of(scope, ins[0]):
            raise _Unknown(f"it flattens {ins[0]!r}, whose batch is merged with other dims")
        b = axes[0]
        d = self.dims_or_rank(scope, ins[0])
        if d is None:
            raise _Unknown(f"the shape of {ins[0]!r} is not known")
        f = _norm(_attr(node, "axis", 1), len(d))
        if b < f and all(x == 1 for i, x in enumerate(d[:f]) if i != b):
            return 0
        if b >= f and all(x == 1 for x in d[:f]) and all(x == 1 for x in d[f:b]):
            return 1
        per_sample = _mono(d[b + 1:f]) if b < f and all(x == 1 for x in d[:b]) else None
        if per_sample is not None:  # the batch, outermost, merged with the known dims after it
            self.merging, self.merging_set = _factor(per_sample), True
            return 0
        raise _Unknown(f"it merges the batch axis {b} with other dims ({_show_dims(d)}, axis={f}), which set-batch "
                       "does not follow")

    def squeeze(self, scope, node, ins, axes, vals) -> int | None:
        b = axes[0]
        if b is None:
            self.values(scope, node, vals)
            return None
        given = _attr(node, "axes")
        if given is None and len(ins) > 1 and ins[1]:
            v = vals[1]
            if v is None or any(not isinstance(e, int) for e in v.elems):
                raise _Unknown("its axes are not constants")
            given = v.elems
        r = self.rank(scope, ins[0])
        if r is None and (given is None or any(a < 0 for a in given)):
            r = self.need_rank(scope, ins[0], node)  # negative axes need the rank: refuses
        if node.op_type == "Squeeze":
            if given is None:
                raise _Lost("it squeezes every dim of size 1, the batch too when it is 1")
            given = [_norm(a, r) if a < 0 else a for a in given]
            if b in given:
                raise _Lost(f"it squeezes the batch axis {b}")
            return b - sum(1 for a in given if a < b)
        inserted = sorted(_norm(a, r + len(given)) if a < 0 else a for a in given)
        position, kept = 0, -1
        while True:  # the b-th position that is not an inserted one
            if position not in inserted:
                kept += 1
                if kept == b:
                    return position
            position += 1

    def gather(self, scope, node, ins, axes, vals) -> int | None:
        bd, bi = axes[0], axes[1]
        if bd is None and bi is None:
            self.values(scope, node, vals)
            return None
        rd = self.need_rank(scope, ins[0], node)
        axis = _norm(_attr(node, "axis", 0), rd)
        if bd is not None and bi is not None:
            raise _Unknown("both its data and its indices carry the batch")
        if vals[1] is not None and vals[1].batchy:
            raise _Unknown("its indices are computed from the batch size")
        if bd is not None:
            if axis == bd:
                raise _Lost(f"it picks along the batch axis {bd}")
            ri = self.need_rank(scope, ins[1], node)
            return bd if bd < axis else bd - 1 + ri
        return axis + bi

    def gather_nd(self, scope, node, ins, axes, vals) -> int:
        """GatherND(data, indices[..., k]): the batch passes where the indices do not index it
        (data axes past the k indexed ones, or batch_dims the indices share). Constant indices
        that hard-code row 0 of a batch of 1 are rewritten to let each sample read its own row."""
        bd, bi = axes[0], axes[1]
        batch_dims = _attr(node, "batch_dims", 0)
        if bi is not None:
            if bd == 0 and bi == 0 and batch_dims >= 1:
                return 0  # each sample's indices index its own data
            raise _Unknown("its indices carry the batch")
        if vals[1] is not None and vals[1].batchy:
            raise _Unknown("its indices are computed from the batch size")
        di = scope.dims(ins[1])
        if not di or not isinstance(di[-1], int):
            raise _Unknown(f"the shape of its indices {ins[1]!r} is not known")
        k, ri = di[-1], len(di)
        if bd < batch_dims:
            raise _Unknown("its batch_dims take the batch of its data, but its indices have no batch")
        if bd >= batch_dims + k:
            return ri - 1 + bd - batch_dims - k
        const = scope.lookup("consts", ins[1]) if scope.parent is None else None
        if (const is not None and self.old == 1 and bd == 0 and batch_dims == 0 and k == 2 and const.ndim >= 2
                and const.shape[0] == 1 and np.isin(const[..., 0], (0, -1)).all()):
            self.patches.append(_GatherNDRow(node.name, ins[1], np.asarray(const)))
            return 0
        raise _Lost(f"its indices {ins[1]!r} pick along the batch axis {bd}")

    def gather_elements(self, scope, node, ins, axes) -> int:
        bd, bi = axes[0], axes[1]
        r = self.need_rank(scope, ins[0], node)
        axis = _norm(_attr(node, "axis", 0), r)
        if bd is not None and bd == bi and axis != bd:
            return bd
        if bd is None and bi == axis:
            return bi
        raise _Unknown("its data and indices do not carry the batch on the same axis")

    def slice(self, scope, node, ins, axes, vals) -> int | None:
        b = axes[0]
        if any(a is not None for a in axes[1:]):
            raise _Unknown("its starts/ends carry the batch")
        if b is None:
            if any(v is not None and v.batchy for v in vals[1:]):
                raise _Unknown("it slices by the batch size a tensor that has no batch")
            self.values(scope, node, vals)
            return None
        r = self.need_rank(scope, ins[0], node)
        if self.opset < 10:
            starts, ends = _attr(node, "starts"), _attr(node, "ends")
            ax = _attr(node, "axes") or list(range(len(starts)))
            steps = [1] * len(starts)
        else:
            def get(i, default=None):
                if len(ins) <= i or not ins[i]:
                    return default
                v = vals[i]
                if v is None:
                    raise _Unknown(f"its input {ins[i]!r} is not known")
                return v.elems
            starts, ends = get(1), get(2)
            ax = get(3, list(range(len(starts))))
            steps = get(4, [1] * len(starts))
        if any(not isinstance(a, int) for a in ax):
            raise _Unknown("its axes are not constants")
        for a, s, e, st in zip(ax, starts, ends, steps, strict=False):
            if _norm(a, r) != b:
                continue
            limit = _BIG if self.merged_of(scope, ins[0]) else self.limit  # batch x f rows: only 'to the end'
            full = st == 1 and s == 0 and (e == BATCH or (isinstance(e, int) and e >= limit))
            if not full:
                raise _Lost(f"it slices the batch axis {b}")
        return b

    def concat(self, scope, node, ins, axes, vals) -> int | None:
        present = [i for i in range(len(ins)) if ins[i]]
        b = {axes[i] for i in present}
        if b == {None}:
            self.values(scope, node, vals)
            return None
        if None in b or len(b) > 1:
            raise _Unknown("its inputs do not all carry the batch on the same axis")
        b = b.pop()
        r = self.need_rank(scope, ins[present[0]], node)
        if _norm(_attr(node, "axis", 0), r) == b:
            raise _Lost(f"it joins along the batch axis {b}")
        return b

    def expand(self, scope, node, ins, axes, vals) -> int | None:
        op = node.op_type
        shape_idx = 0 if op == "ConstantOfShape" else 1
        if axes[shape_idx] is not None:
            raise _Unknown("its shape input carries the batch")
        v = vals[shape_idx]
        x_axis = None if op == "ConstantOfShape" else axes[0]
        if v is None:
            if x_axis is None:
                self.values(scope, node, vals)
                return None
            if op == "Expand" and ins[1] in {i.name for i in self.model.graph.input}:
                # a shape given at run time may hold the old batch: inference cannot know
                raise _Unknown(f"its shape is the graph input {ins[1]!r}, which may hold the old batch")
            return self.fallback(scope, node, [0])[node.output[0]]
        elems = list(v.elems)
        if op == "ConstantOfShape" and BATCH not in elems and self.old is not None and elems and \
                elems[0] == self.old and scope.parent is None and scope.lookup("consts", ins[0]) is not None:
            self.patches.append(_ConstantOfShapeBatch(node.name, ins[0], np.asarray(scope.lookup("consts", ins[0])),
                                                      self.source))
            elems[0] = BATCH
        if MIXED in elems or elems.count(BATCH) > 1:
            raise _Unknown("its shape combines the batch size with other dims")
        if op == "Tile":
            if x_axis is None:
                if BATCH in elems:
                    raise _Unknown("it repeats by the batch size")
                return None
            if elems[x_axis] != 1:
                raise _Lost(f"it repeats along the batch axis {x_axis}")
            return x_axis
        if op == "ConstantOfShape":
            return elems.index(BATCH) if BATCH in elems else None
        r = self.need_rank(scope, ins[0], node)
        R = max(r, len(elems))
        if x_axis is None:
            if BATCH in elems:
                return R - len(elems) + elems.index(BATCH)
            return None
        p = R - r + x_axis
        q = p - (R - len(elems))
        if q >= 0:
            e = elems[q]
            if e not in (1, BATCH):
                if isinstance(e, int):
                    raise _Lost(f"it expands the batch axis to a fixed {e}")
                d1, d2 = scope.dims(node.output[0]), scope.dims(node.output[0], second=True)
                if d1 is None or d2 is None or d1[p] != B1 or d2[p] != B2:
                    raise _Unknown(f"it expands the batch axis to {e!r}")
        if BATCH in elems and R - len(elems) + elems.index(BATCH) != p:
            raise _Unknown("it expands another axis by the batch size")
        return p

    def pad(self, scope, node, ins, axes, vals) -> int | None:
        b = axes[0]
        if b is None or any(a is not None for a in axes[1:]):
            raise _Unknown("only its data may carry the batch")
        r = self.need_rank(scope, ins[0], node)
        pads = _attr(node, "pads") if self.opset < 11 else (vals[1].elems if vals[1] is not None else None)
        pad_axes = list(range(r))
        if self.opset >= 18 and len(ins) > 3 and ins[3]:
            if vals[3] is None:
                raise _Unknown("its axes are not constants")
            pad_axes = [_norm(a, r) for a in vals[3].elems]
        if pads is None:
            return self.fallback(scope, node, [0])[node.output[0]]
        n = len(pad_axes)
        if b in pad_axes:
            i = pad_axes.index(b)
            if pads[i] != 0 or pads[i + n] != 0:
                raise _Lost(f"it pads the batch axis {b}")
        return b

