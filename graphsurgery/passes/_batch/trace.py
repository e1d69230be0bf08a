"""The trace: a walk over the graph that records, for each tensor, the axis that carries the batch."""

from __future__ import annotations

import numpy as np
import onnx

from ... import shapes
from ...ops import is_default_domain
from ..base import PassError
from .common import (
    _BATCH_FIRST,
    _BIG,
    _ELEMENTWISE,
    _MERGE_SAFE,
    _REDUCE,
    _SMALL_TYPES,
    B1,
    B2,
    BATCH,
    MIXED,
    _attr,
    _constant_value,
    _label,
    _Lost,
    _norm_clamp,
    _show_dims,
    _Unknown,
)
from .op_rules import _OpRules
from .patches import _Patch
from .protos import _batch_axes, captured
from .rows import _RowRules
from .shape_rules import _ShapeRules
from .values import _arith, _evaluate, _multiples, _Val


class _Scope:
    """Types and constants of one graph proto, falling back to the enclosing scope."""

    def __init__(self, proto: onnx.GraphProto, other: onnx.GraphProto | None, parent: _Scope | None, graph=None):
        self.proto, self.parent, self.other_proto = proto, parent, other
        self.graph = graph  # the model's graph this proto is a probe copy of (same nodes, in order)
        self._paired: dict[int, object] | None = None
        self.types = shapes.declared_types(proto)
        self.types2 = shapes.declared_types(other) if other is not None else {}
        self.consts: dict[str, np.ndarray] = {}
        overridable = {i.name for i in proto.input}
        for t in proto.initializer:
            if t.data_type in _SMALL_TYPES and np.prod(t.dims) <= 64 and t.name not in overridable:
                self.consts[t.name] = onnx.numpy_helper.to_array(t)
        for n in proto.node:
            if n.op_type == "Constant" and is_default_domain(n.domain) and n.output:
                value = _constant_value(n)
                if value is not None:
                    self.consts[n.output[0]] = value

    def lookup(self, table: str, name: str):
        s = self
        while s is not None:
            value = getattr(s, table).get(name)
            if value is not None:
                return value
            s = s.parent
        return None

    def node_of(self, node: onnx.NodeProto):
        """The model's node that ``node`` of this probe copy is (shape inference keeps the nodes
        and their order), for what the core's scope index knows of it."""
        if self._paired is None:
            protos = list(self.proto.node)  # held, so the ids stay theirs
            nodes = self.graph.nodes_in_file_order()
            if len(protos) != len(nodes):
                raise PassError(f"set-batch: the probe of {self.graph.describe()} has {len(protos)} nodes, the graph "
                                f"{len(nodes)}; this is a bug in set-batch, please report it")
            self._paired = {id(p): (p, n) for p, n in zip(protos, nodes, strict=True)}
        return self._paired[id(node)][1]

    def dims(self, name: str, second: bool = False):
        return shapes.dims(self.lookup("types2" if second else "types", name))



class _Trace(_OpRules, _ShapeRules, _RowRules):
    def __init__(self, model_proto: onnx.ModelProto, other: onnx.ModelProto, old, opset: int, graph=None):
        self.model, self.other, self.old, self.opset = model_proto, other, old, opset
        self.graph = graph  # the main graph of the model both probes were copied from
        self.source: tuple[str, int] | None = None  # an input and axis that carry the batch
        self.limit = _BIG  # a Slice end at or past this keeps every sample: the new size, or any size
        self.axis: dict[tuple[int, str], int] = {}   # (scope id, name) -> batch axis
        self.tag: dict[tuple[int, str], str] = {}    # which input's batch it is
        self.vals: dict[tuple[int, str], _Val] = {}
        self.ranks: dict[tuple[int, str], int] = {}   # ranks shape inference lost
        self.parent_of: dict[str, str] = {}           # union-find over input names
        self.patches: list[_Patch] = []
        self.scopes: dict[int, _Scope] = {}
        self.batched_names: dict[str, int] = {}       # every tensor name -> axis (for value_info)
        # (scope id, name) -> f: the batch axis holds batch x f, the batch outermost (a Reshape
        # merged each sample's f leading rows into it, [B, S, D] -> [B*S, D])
        self.merged: dict[tuple[int, str], int] = {}
        self.merged_names: set[str] = set()
        # (scope id, name) -> (stride, bound): row numbers (see rows.py); name -> n: values in [0, n)
        self.rows: dict[tuple[int, str], tuple] = {}
        self.bounds: dict[tuple[int, str], tuple] = {}
        # (scope id, name) -> per element of a glue value: the monomial k where it is batch x k
        self.multiples: dict[tuple[int, str], list] = {}
        self.merging, self.merging_set = None, False

    # ---- union-find: inputs whose batches met ------------------------------------------------
    def find(self, name: str) -> str:
        while self.parent_of.get(name, name) != name:
            name = self.parent_of[name]
        return name

    def union(self, tags) -> str:
        tags = [self.find(t) for t in tags]
        for t in tags[1:]:
            self.parent_of[t] = tags[0]
        return tags[0]

    # ---- facts, by scope ---------------------------------------------------------------------
    def _get(self, table: dict, scope: _Scope, name: str):
        s = scope
        while s is not None:
            v = table.get((id(s), name))
            if v is not None:
                return v
            s = s.parent
        return None

    def ax(self, scope, name):
        return self._get(self.axis, scope, name) if name else None

    def val(self, scope, name) -> _Val | None:
        if not name:
            return None
        v = self._get(self.vals, scope, name)
        if v is not None:
            return v
        c = scope.lookup("consts", name)
        if c is not None:
            return _Val.of(c)
        return None

    def set_axis(self, scope, name, axis, tag, merged=None):
        self.axis[(id(scope), name)] = axis
        if merged is not None and (not isinstance(merged, int) or merged > 1):
            self.merged[(id(scope), name)] = merged
            self.merged_names.add(name)
        self.tag[(id(scope), name)] = tag
        self.batched_names[name] = axis

    # ---- the walk ----------------------------------------------------------------------------
    def run(self, targets) -> None:
        main = self.main = _Scope(self.model.graph, self.other.graph, None, self.graph)
        self.scopes[id(main)] = main
        for name, axis in targets:
            self.set_axis(main, name, axis, name)
        self.walk(main)
        try:
            self.no_rows_out(main, main.proto, "graph output")
        except _Unknown as exc:
            raise PassError(f"set-batch: {exc}; nothing was changed") from None

    def walk(self, scope: _Scope) -> None:
        for node in scope.proto.node:
            try:
                self.step(scope, node)
            except _Lost as exc:
                raise PassError(f"set-batch: node {_label(node)} loses the batch: {exc}. Changing "
                                "the batch would give a model that runs with wrong results; "
                                "nothing was changed") from None
            except _Unknown as exc:
                raise PassError(f"set-batch: cannot follow the batch through node {_label(node)}: "
                                f"{exc}; nothing was changed") from None
            except (IndexError, TypeError, ValueError, KeyError) as exc:  # a malformed node: no proof
                raise PassError(f"set-batch: cannot follow the batch through node {_label(node)}: "
                                f"{type(exc).__name__}: {exc}; nothing was changed") from None

    def step(self, scope: _Scope, node: onnx.NodeProto) -> None:
        self._step(scope, node)
        self.note_ranks(scope, node)

    def _step(self, scope: _Scope, node: onnx.NodeProto) -> None:
        ins = list(node.input)
        axes = [self.ax(scope, x) for x in ins]
        vals = [self.val(scope, x) for x in ins]
        batched = [i for i, a in enumerate(axes) if a is not None]
        dep_vals = [i for i, v in enumerate(vals) if v is not None and v.batchy]
        rows_in = [i for i, x in enumerate(ins) if x and self.rows_of(scope, x) is not None]
        if rows_in and node.op_type not in ("Shape", "Size"):
            self.rows_step(scope, node, ins, axes, vals, rows_in)
            return
        if not is_default_domain(node.domain):
            if batched or dep_vals:
                found = self.fallback(scope, node, batched)
                tags = [self.tag_of(scope, ins[i]) for i in batched]
                tag = self.union(tags) if tags else (self.source[0] if self.source else None)
                if any(self.merged_of(scope, ins[i]) for i in batched):
                    raise _Unknown("the batch of its input is merged with other dims")
                for name, axis in found.items():
                    if axis is not None:
                        if tag is None:
                            raise _Unknown("its output depends on the batch size only through a computed value")
                        self.set_axis(scope, name, axis, tag)
            return
        op = node.op_type
        if op in ("If", "Loop", "Scan"):
            self.control_flow(scope, node, batched)
            return
        hard_coded = (op == "ConstantOfShape" and self.old is not None and scope.parent is None and ins
                      and vals[0] is not None and vals[0].elems[:1] == [self.old]
                      and scope.lookup("consts", ins[0]) is not None)
        if not batched and not dep_vals and not hard_coded:
            self.values(scope, node, vals)
            return
        tags = [self.tag_of(scope, ins[i]) for i in batched]
        tag = self.union(tags) if tags else (self.source[0] if self.source else None)
        merges = {self.merged_of(scope, ins[i]) for i in batched}
        merged = None
        if batched and merges != {None} and op not in ("Shape", "Size"):
            if len(merges) > 1:
                raise _Unknown("its inputs carry the batch merged with other dims in different ways")
            merged = merges.pop()
            if op not in _MERGE_SAFE:
                raise _Unknown(f"the batch of {ins[batched[0]]!r} is merged with other dims into its axis "
                               f"{axes[batched[0]]} (batch x {merged}), which set-batch follows only through "
                               "row-wise ops and a Reshape that splits it back")
        self.merging, self.merging_set = None, False
        out_axes = self.rule(scope, node, ins, axes, vals, batched, dep_vals)
        if op == "Reshape" or self.merging_set:  # the rule decided what its output merges
            merged, self.merging = self.merging, None
        for name, axis in out_axes.items():
            if axis is not None:
                if tag is None:
                    raise _Unknown("its output depends on the batch size only through a computed value")
                self.set_axis(scope, name, axis, tag, merged)

    def merged_of(self, scope, name):
        return self._get(self.merged, scope, name)

    def tag_of(self, scope, name):
        return self._get(self.tag, scope, name)

    def rank(self, scope, name):
        d = scope.dims(name)
        if d is not None:
            return len(d)
        return self._get(self.ranks, scope, name)

    def dims_or_rank(self, scope, name):
        d = scope.dims(name)
        if d is None and self.rank(scope, name) is not None:
            d = [None] * self.rank(scope, name)
        return d

    def note_ranks(self, scope, node) -> None:
        """Ranks shape inference lost (after a Reshape to a computed shape), from the op."""
        op = node.op_type
        outs = [o for o in node.output if o]
        if not outs or all(scope.dims(o) is not None for o in outs):
            return
        ranks = [self.rank(scope, x) if x else None for x in node.input]
        r0 = ranks[0] if ranks else None
        r = None
        if op in _ELEMENTWISE or op in _BATCH_FIRST or op in ("Softmax", "LogSoftmax", "LayerNormalization",
                                                              "BatchNormalization", "Split", "Slice", "Pad",
                                                              "Concat", "CumSum", "Resize", "Tile"):
            known = [x for x in ranks if x is not None]
            r = max(known) if known and (op in _ELEMENTWISE or None not in ranks[:1]) else None
        elif op == "Transpose" or op == "Flatten":
            r = r0 if op == "Transpose" else 2
        elif op in ("MatMul",) and None not in ranks[:2]:
            r = max(ranks[:2])
        elif op == "Gemm":
            r = 2
        elif op == "Reshape" and len(node.input) > 1:
            t = self.val(scope, node.input[1])
            r = len(t.elems) if t is not None else None
        elif op in ("Squeeze", "Unsqueeze") and r0 is not None:
            axes = _attr(node, "axes")
            if axes is None and len(node.input) > 1:
                v = self.val(scope, node.input[1])
                axes = v.elems if v is not None else None
            if axes is not None:
                r = r0 - len(axes) if op == "Squeeze" else r0 + len(axes)
        elif op == "Gather" and None not in ranks[:2]:
            r = ranks[0] - 1 + ranks[1]
        elif op in _REDUCE or op in ("ArgMax", "ArgMin"):
            r = r0 if _attr(node, "keepdims", 1) else None
        if r is not None:
            for o in outs[:1] if op != "Split" else outs:
                self.ranks[(id(scope), o)] = r

    def need_rank(self, scope, name, node) -> int:
        r = self.rank(scope, name)
        if r is None:
            raise _Unknown(f"the rank of {name!r} is not known")
        return r


    def fallback(self, scope, node, batched) -> dict:
        """No rule: believe shape inference at the two probe sizes."""
        out = {}
        for o in node.output:
            if not o:
                continue
            d1, d2 = scope.dims(o), scope.dims(o, second=True)
            if d1 is None or d2 is None or None in d1 or None in d2:
                raise _Unknown("shape inference does not know its output shape")
            found = _batch_axes(d1, d2)
            merged = [i for i, (a, b) in enumerate(zip(d1, d2, strict=False))
                      if isinstance(a, int) and isinstance(b, int) and a % B1 == 0 and b % B2 == 0
                      and a // B1 == b // B2 > 1 and all(x == 1 for x in d1[:i])]  # batch outermost
            if not found and merged and batched:
                raise _Unknown(f"it merges the batch with other dims into axis {merged[0]} of {o!r} "
                               f"({d1[merged[0]]} = {B1} x {d1[merged[0]] // B1} with batch {B1}), which set-batch "
                               "does not follow")
            if len(found) > 1:
                raise _Unknown(f"the batch shows on several axes of {o!r}")
            out[o] = found[0] if found else None
        if batched and not any(v is not None for v in out.values()):
            unnamed = [o for o in out if any(isinstance(x, str) and x.startswith("unk__") for x in scope.dims(o))]
            if unnamed:  # a dim inference could not name may hold the batch (merged with others)
                raise _Unknown(f"shape inference cannot name the dims of {unnamed[0]!r} "
                               f"({_show_dims(scope.dims(unnamed[0]))}), so where the batch goes is not known")
            shown = ", ".join(f"{o} {scope.dims(o)}" for o in out)
            src = node.input[batched[0]]
            raise _Lost(f"with batch {B1} its input {src!r} is {scope.dims(src)} but its output is {shown}")
        return out

    def broadcast(self, scope, node, idx, axes, limit=None) -> int:
        ins = node.input
        if limit is not None:
            extra = [i for i in idx[limit:] if axes[i] is not None]
            if extra:
                raise _Unknown(f"its parameter {ins[extra[0]]!r} carries the batch")
            idx = idx[:limit]
        carried = [i for i in idx if axes[i] is not None]
        others = [i for i in idx if axes[i] is None]
        if len(carried) == 1 and all(self.rank(scope, ins[i]) == 0 for i in others):
            return axes[carried[0]]  # one tensor and scalars: the batch stays where it is, whatever the rank
        ranks = [self.need_rank(scope, ins[i], node) for i in idx]
        R = max(ranks)
        pos = {R - r + axes[i] for i, r in zip(idx, ranks, strict=True) if axes[i] is not None}
        if len(pos) > 1:
            raise _Unknown("the batches of its inputs meet on different axes")
        p = pos.pop()
        for i, r in zip(idx, ranks, strict=True):
            if axes[i] is not None or p < R - r:
                continue
            d = scope.dims(ins[i])[p - (R - r)]
            if d == 1:
                continue
            if isinstance(d, int):
                raise _Lost(f"its input {ins[i]!r} has a fixed {d} where the others have the batch (axis {p})")
            d1, d2 = scope.dims(node.output[0]), scope.dims(node.output[0], second=True)
            if d1 is None or d2 is None or len(d1) <= p or d1[p] != B1 or d2[p] != B2:
                raise _Unknown(f"input {ins[i]!r} has {d!r} where the others have the batch (axis {p})")
        return p


    # ---- control flow ------------------------------------------------------------------------
    def control_flow(self, scope, node, batched) -> None:
        cond_val = self.val(scope, node.input[0]) if node.input else None
        subs = [(a.name, a.g) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
        twin = self._other_node(scope, node)
        other = {a.name: a.g for a in twin.attribute if a.type == onnx.AttributeProto.GRAPH} if twin is not None else {}
        held = scope.node_of(node)
        outer = captured(held)
        reads_batch = bool(batched) or any(self.ax(scope, n) is not None or
                                           (self.val(scope, n) is not None and self.val(scope, n).batchy)
                                           for n in outer)
        if node.op_type != "If":
            if reads_batch:
                raise _Unknown(f"the batch flows into its {node.op_type} body, which set-batch cannot follow")
            return
        if not reads_batch:
            return
        if any(self.rows_of(scope, n) is not None for n in outer):
            raise _Unknown("its branches read row numbers of the batch, which set-batch does not follow into them")
        if batched or (cond_val is not None and cond_val.batchy):
            raise _Unknown("which branch runs depends on the batch")
        if cond_val is not None and len(cond_val.elems) == 1 and isinstance(cond_val.elems[0], (int, bool)):
            taken = "then_branch" if cond_val.elems[0] else "else_branch"  # the condition is a constant
            subs = [(name, g) for name, g in subs if name == taken]
        results = []
        for name, g in subs:
            sub = _Scope(g, other.get(name), scope, held.subgraphs()[name])
            self.scopes[id(sub)] = sub
            self.walk(sub)
            self.no_rows_out(sub, g, f"its branch {name} returns")
            results.append([(self.ax(sub, o.name), self.tag_of(sub, o.name), self.rank(sub, o.name))
                            for o in g.output])
            merged_out = next((o.name for o in g.output if self.merged_of(sub, o.name)), None)
            if merged_out:
                raise _Unknown(f"its branch {name} returns {merged_out!r} with the batch merged with other dims, "
                               "which set-batch does not follow out of an If")
        for i, o in enumerate(node.output):
            ranks = {r[i][2] for r in results if i < len(r)}
            if len(ranks) == 1 and None not in ranks and o and scope.dims(o) is None:
                self.ranks[(id(scope), o)] = ranks.pop()
            got = {r[i][0] for r in results if i < len(r)}
            if len(got) > 1:
                raise _Unknown(f"its branches give output {o!r} the batch on different axes, and which one runs "
                               "is not known; fix the input shapes and fold the If first (set-shape, "
                               "fold-constants, remove-if)")
            a = got.pop() if got else None
            if a is not None and o:
                tags = [r[i][1] for r in results if r[i][1] is not None]
                self.set_axis(scope, o, a, self.union(tags))

    def _other_node(self, scope, node):
        """The same node in the second probe (same structure, same positions)."""
        proto2 = scope.other_proto
        if proto2 is None or len(proto2.node) != len(scope.proto.node):
            return None
        for i, n in enumerate(scope.proto.node):
            if n is node:
                return proto2.node[i]
        return None



    # ---- values of shape glue ----------------------------------------------------------------
    def values(self, scope, node, vals) -> None:
        """Record the elements of small integer outputs computed from known elements."""
        self.range_bound(scope, node, vals)
        self.pass_bound(scope, node)
        op = node.op_type
        out = node.output[0] if node.output else ""
        if not out:
            return
        res = None
        try:
            res = _evaluate(node, vals)
            if res is None:
                res = self._value(scope, node, vals)
        except (IndexError, TypeError, ValueError, KeyError, OverflowError):
            res = None
        if res is None and any(v is not None and v.batchy for v in vals):
            res = _Val([MIXED], True)
            if op not in _ELEMENTWISE:
                batchy = next(node.input[i] for i, v in enumerate(vals) if v is not None and v.batchy)
                raise _Unknown(f"input {batchy!r} "
                               "is computed from the batch size")
        if res is not None:
            self.vals[(id(scope), out)] = res
            if MIXED in res.elems:
                mults = _multiples(node, vals, [self._get(self.multiples, scope, x) if x else None for x in node.input])
                if mults is not None and len(mults) == len(res.elems) and any(x is not None for x in mults):
                    self.multiples[(id(scope), out)] = mults

    def _value(self, scope, node, vals) -> _Val | None:
        op = node.op_type
        ins = node.input
        if op == "Shape":
            d = self.dims_or_rank(scope, ins[0])  # dims inference lost are still not the batch
            if d is None:
                return None
            b = self.ax(scope, ins[0])
            mark = MIXED if self.merged_of(scope, ins[0]) else BATCH  # batch x f is not the batch
            elems = [mark if i == b else (x if x is not None else None) for i, x in enumerate(d)]
            r = len(elems)
            start = _norm_clamp(_attr(node, "start", 0), r)
            end = _norm_clamp(_attr(node, "end", r), r)
            return _Val(elems[start:end])
        if op == "Size":
            if self.ax(scope, ins[0]) is not None:
                return _Val([MIXED], True)
            v, d = vals[0], scope.dims(ins[0])
            if v is not None and not v.scalar and (v.array is None or v.array.ndim == 1):
                return _Val([len(v.elems)], True)  # the size of a shape: a rank
            if d is not None and all(isinstance(x, int) for x in d):
                return _Val([int(np.prod(d))], True)
            return None
        if op in ("Cast", "Identity", "CastLike") and vals[0] is not None:
            return _Val(vals[0].elems, vals[0].scalar)
        if op == "Gather" and vals[0] is not None and vals[1] is not None and not vals[1].batchy:
            idx = vals[1].elems
            return _Val([vals[0].elems[int(i)] for i in idx], vals[1].scalar)
        if op == "Unsqueeze" and vals[0] is not None:
            return _Val(vals[0].elems, False)
        if op == "Squeeze" and vals[0] is not None:
            return _Val(vals[0].elems, len(vals[0].elems) == 1)
        if op == "Reshape" and vals[0] is not None and vals[1] is not None and len(vals[1].elems) <= 1:
            return _Val(vals[0].elems, len(vals[1].elems) == 0)
        if op == "Concat" and all(v is not None for v in vals):
            return _Val([e for v in vals for e in v.elems])
        if op == "Slice" and vals[0] is not None and all(v is not None for v in vals[1:]):
            if len(vals) > 3 and vals[3].elems not in ([0], [-1]):
                return None
            s, e = vals[1].elems[0], vals[2].elems[0]
            st = vals[4].elems[0] if len(vals) > 4 else 1
            if not all(isinstance(x, int) for x in (s, e, st)):
                return None
            return _Val(vals[0].elems[s:e:st])
        if op == "Where" and len(vals) == 3 and all(v is not None for v in vals):
            c, a, b = vals
            n = max(len(c.elems), len(a.elems), len(b.elems))
            if any(len(v.elems) not in (1, n) for v in vals) or any(not isinstance(e, int) for e in c.elems):
                return None
            return _Val([(a.elems[i % len(a.elems)] if c.elems[i % len(c.elems)] else b.elems[i % len(b.elems)])
                         for i in range(n)], all(v.scalar for v in vals))
        if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Equal") and len(vals) == 2 \
                and all(v is not None for v in vals):
            a, b = vals
            n = max(len(a.elems), len(b.elems))
            if len(a.elems) not in (1, n) or len(b.elems) not in (1, n):
                return None
            out = []
            for i in range(n):
                x, y = a.elems[i % len(a.elems)], b.elems[i % len(b.elems)]
                out.append(_arith(op, x, y))
            return _Val(out, a.scalar and b.scalar)
        return None
