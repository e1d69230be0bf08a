"""Where the batch goes through each operator: the dispatch, and the rules of ops that compute along axes."""

from __future__ import annotations

from .common import _BATCH_FIRST, _DATA_SIZED, _ELEMENTWISE, _REDUCE, BATCH, _attr, _Lost, _norm, _show_dims, _Unknown
from .values import _Val


class _OpRules:
    """The rules of the trace, by operator (mixed into the trace)."""

    # ---- the rules ---------------------------------------------------------------------------
    def rule(self, scope, node, ins, axes, vals, batched, dep_vals) -> dict:
        op = node.op_type
        outs = [o for o in node.output]
        first = axes[0] if axes else None
        if op in ("Shape", "Size"):
            self.values(scope, node, vals)
            return {}
        if op in _DATA_SIZED:
            raise _Lost("how many elements it returns depends on the data of every sample together")
        if op == "DynamicQuantizeLinear":
            raise _Lost("its scale and zero point are computed over the whole tensor, every sample together")
        if dep_vals and op not in ("Reshape", "Expand", "ConstantOfShape", "Slice", "Concat", "Gather", "Unsqueeze",
                                   "Squeeze", "Cast", "Identity", "Tile", "Pad", "Resize", "Range") \
                                   and op not in _ELEMENTWISE:
            raise _Unknown(f"input {ins[dep_vals[0]]!r} is computed from the batch size")
        if op in _ELEMENTWISE:
            if not batched:  # glue arithmetic on the batch size
                self.values(scope, node, vals)
                return {}
            if op == "Dropout" and len(ins) > 2 and ins[2] and self.val(scope, ins[2]) != _Val([0], True):
                pass  # training_mode only scales; shapes follow the input
            axis = self.broadcast(scope, node, [i for i in range(len(ins)) if ins[i]], axes, limit=(
                1 if op in ("QuantizeLinear", "DequantizeLinear", "Clip", "Dropout", "CastLike") else None))
            return {o: axis for o in outs if o}
        if op in ("MaxPool", "MaxUnpool") and (op == "MaxUnpool" or (len(outs) > 1 and outs[1])):
            raise _Lost("its indices count elements across the whole tensor, every sample together")
        if op == "EyeLike":
            raise _Lost("its ones sit where the row (a position in the batch) meets the column")
        if op in ("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"):
            if _attr(node, "reduction", b"mean") not in (b"none", "none"):
                raise _Lost("it reduces the loss over every sample together")
            if first != 0 or (len(ins) > 1 and axes[1] not in (0, None)):
                raise _Unknown("the batch must be axis 0 of its scores and labels")
            return {o: 0 for o in outs if o}
        if op == "Trilu":
            r = self.need_rank(scope, ins[0], node)
            if batched != [0]:
                raise _Unknown("only its data may carry the batch")
            if first >= r - 2:
                raise _Lost(f"it keeps a triangle of its last two axes, and the batch is axis {first}")
            return {outs[0]: first}
        if op in ("ScatterElements", "Scatter"):
            r = self.need_rank(scope, ins[0], node)
            if len({axes[i] for i in range(3)}) != 1:
                raise _Unknown("its data, indices and updates do not all carry the batch on the same axis")
            if _norm(_attr(node, "axis", 0), r) == first:
                raise _Lost(f"it writes along the batch axis {first}")
            return {outs[0]: first}
        if op == "ScatterND":
            raise _Unknown("where its indices write is not followed")
        if op in _BATCH_FIRST or op == "BatchNormalization" or op == "Resize" or op == "Upsample":
            if batched != [0] or first != 0:
                raise _Unknown("the batch must be axis 0 of its first input and nowhere else")
            if op == "BatchNormalization" and _attr(node, "training_mode", 0):
                raise _Lost("in training mode it normalizes over the batch")
            if op in ("Resize", "Upsample"):
                self.check_resize(scope, node, vals)
            return {outs[0]: 0}
        if op in ("Softmax", "LogSoftmax", "Hardmax", "LpNormalization", "LayerNormalization", "RMSNormalization",
                  "MeanVarianceNormalization", "CumSum", "CumProd", "TopK", "ArgMax", "ArgMin") or op in _REDUCE:
            return self.along_axis(scope, node, ins, axes, vals, batched)
        if op == "Transpose":
            r = self.need_rank(scope, ins[0], node)
            perm = _attr(node, "perm") or list(range(r))[::-1]
            return {outs[0]: list(perm).index(first)}
        if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
            return {outs[0]: self.matmul(scope, node, ins, axes)}
        if op == "Reshape":
            return {outs[0]: self.reshape(scope, node, ins, axes, vals)}
        if op == "Flatten":
            return {outs[0]: self.flatten(scope, node, ins, axes)}
        if op in ("Squeeze", "Unsqueeze"):
            return {outs[0]: self.squeeze(scope, node, ins, axes, vals)}
        if op == "Gather":
            return {outs[0]: self.gather(scope, node, ins, axes, vals)}
        if op == "GatherND":
            return {outs[0]: self.gather_nd(scope, node, ins, axes, vals)}
        if op == "GatherElements":
            return {outs[0]: self.gather_elements(scope, node, ins, axes)}
        if op == "Slice":
            return {outs[0]: self.slice(scope, node, ins, axes, vals)}
        if op == "Concat":
            return {outs[0]: self.concat(scope, node, ins, axes, vals)}
        if op == "Split":
            r = self.need_rank(scope, ins[0], node)
            if batched != [0]:
                raise _Unknown("only its data input may carry the batch")
            if _norm(_attr(node, "axis", 0), r) == first:
                raise _Lost(f"it splits along the batch axis {first}")
            return {o: first for o in outs if o}
        if op in ("Expand", "ConstantOfShape", "Tile"):
            return {outs[0]: self.expand(scope, node, ins, axes, vals)}
        if op == "Pad":
            return {outs[0]: self.pad(scope, node, ins, axes, vals)}
        if op in ("LSTM", "GRU", "RNN"):
            return self.rnn(scope, node, ins, axes)
        if op == "OneHot":
            if batched != [0]:
                raise _Unknown("only its indices may carry the batch")
            r = self.need_rank(scope, ins[0], node)
            axis = _norm(_attr(node, "axis", -1), r + 1)
            return {outs[0]: first if first < axis else first + 1}
        if op == "ReverseSequence":
            return {outs[0]: self.reverse_sequence(scope, node, ins, axes)}
        if op == "Range":
            if batched:
                raise _Unknown("its start, limit or delta carries the batch")
            return {outs[0]: self.range_rows(scope, node, vals)}
        return self.fallback(scope, node, batched)


    def along_axis(self, scope, node, ins, axes, vals, batched) -> dict:
        op = node.op_type
        if batched != [0]:
            raise _Unknown("only its data input may carry the batch")
        b = axes[0]
        r = self.need_rank(scope, ins[0], node)
        outs = [o for o in node.output if o]
        if op in ("Softmax", "LogSoftmax", "Hardmax"):
            axis = _norm(_attr(node, "axis", -1 if self.opset >= 13 else 1), r)
            if b == axis or (self.opset < 13 and b >= axis):
                raise _Lost(f"it normalizes across the batch axis {b}")
            return {o: b for o in outs}
        if op in ("LayerNormalization", "RMSNormalization"):
            axis = _norm(_attr(node, "axis", -1), r)
            if b >= axis:
                raise _Lost(f"it normalizes over axes {axis}.. which include the batch axis {b}")
            return {o: b for o in outs}
        if op == "LpNormalization":
            if _norm(_attr(node, "axis", -1), r) == b:
                raise _Lost(f"it normalizes across the batch axis {b}")
            return {o: b for o in outs}
        if op == "MeanVarianceNormalization":
            if b in [_norm(a, r) for a in _attr(node, "axes", [0, 2, 3])]:
                raise _Lost(f"it normalizes over the batch axis {b}")
            return {o: b for o in outs}
        if op in ("CumSum", "CumProd"):
            v = vals[1]
            if v is None or v.batchy or v.elems[0] is None or isinstance(v.elems[0], str):
                raise _Unknown("its axis is not a constant")
            if _norm(int(v.elems[0]), r) == b:
                raise _Lost(f"it sums along the batch axis {b}")
            return {o: b for o in outs}
        if op == "TopK":
            if _norm(_attr(node, "axis", -1), r) == b:
                raise _Lost(f"it picks along the batch axis {b}")
            return {o: b for o in outs}
        keep = _attr(node, "keepdims", 1)
        if op in ("ArgMax", "ArgMin"):
            red = [_norm(_attr(node, "axis", 0), r)]
        else:
            attr_axes = _attr(node, "axes")
            if attr_axes is not None:
                red = [_norm(a, r) for a in attr_axes]
            elif len(ins) > 1 and ins[1]:
                v = vals[1]
                if v is None or v.batchy or any(not isinstance(e, int) for e in v.elems):
                    raise _Unknown("its axes are not constants")
                red = [_norm(a, r) for a in v.elems]
            else:
                red = [] if _attr(node, "noop_with_empty_axes", 0) else list(range(r))
        if b in red:
            raise _Lost(f"it reduces over the batch axis {b}")
        return {o: b if keep else b - sum(1 for a in red if a < b) for o in outs}

    def matmul(self, scope, node, ins, axes) -> int:
        op = node.op_type
        if op == "Gemm":
            if axes[0] is None or any(a is not None for a in axes[1:]):
                raise _Unknown("only its first input may carry the batch")
            if axes[0] != (1 if _attr(node, "transA", 0) else 0):
                raise _Lost("the batch is on the axis it contracts")
            return 0
        if op == "QLinearMatMul":
            a_idx, b_idx = 0, 3
        else:
            a_idx, b_idx = 0, 1
        if any(a is not None for i, a in enumerate(axes) if i not in (a_idx, b_idx)):
            raise _Unknown("a parameter carries the batch")
        ra, rb = self.need_rank(scope, ins[a_idx], node), self.need_rank(scope, ins[b_idx], node)
        if ra < 2 or rb < 2:
            if (axes[a_idx] is not None and ra == 1) or (axes[b_idx] is not None and rb == 1):
                raise _Lost("the batch is on the axis it contracts")
        R = max(ra, rb)
        pos = set()
        aa, ab = axes[a_idx], axes[b_idx]
        if aa is not None:
            if aa == ra - 1:
                raise _Lost("the batch is on the axis it contracts")
            pos.add(R - 2 if aa == ra - 2 else R - ra + aa)
        if ab is not None:
            if ab == rb - 2:
                raise _Lost("the batch is on the axis it contracts")
            pos.add(R - 1 if ab == rb - 1 else R - rb + ab)
        if len(pos) != 1:
            raise _Unknown("the batches of its inputs meet on different axes")
        p = pos.pop()
        if p < R - 2:  # a broadcast dim: the other operand must not have a fixed size there
            for i, r, a in ((a_idx, ra, aa), (b_idx, rb, ab)):
                if a is None and p >= R - r:
                    d = scope.dims(ins[i])[p - (R - r)]
                    if d != 1:
                        raise _Unknown(f"input {ins[i]!r} has {d!r} where the other has the batch")
        return p


    def reverse_sequence(self, scope, node, ins, axes) -> int:
        """ReverseSequence(input, sequence_lens): the batch is ``batch_axis`` of the input and
        the only axis of sequence_lens, one length per sample; both must carry it."""
        batch_axis, time_axis = _attr(node, "batch_axis", 1), _attr(node, "time_axis", 0)
        if axes[0] is not None and axes[0] == time_axis:
            raise _Lost(f"it reverses along axis {time_axis} of {ins[0]!r} (its time_axis), taken for the batch; "
                        f"its batch_axis is {batch_axis}: name that axis with inputs=INPUT:AXIS")
        if axes[0] != batch_axis or axes[1] != 0:
            raise _Unknown(f"the batch must be axis {batch_axis} (batch_axis) of {ins[0]!r} and axis 0 of its "
                           f"sequence_lens {ins[1]!r}, one length per sample")
        return batch_axis

    def rnn(self, scope, node, ins, axes) -> dict:
        layout = _attr(node, "layout", 0)
        want = {0: 0 if layout else 1, 4: 0, 5: 0 if layout else 1, 6: 0 if layout else 1}
        if axes[0] is not None and axes[0] == (1 if layout else 0):
            raise _Lost(f"it runs its recurrence along the batch axis {axes[0]} of {node.input[0]!r}: each sample "
                        "would start from the state the one before it left")
        for i, a in enumerate(axes):
            if a is not None and want.get(i) != a:
                raise _Unknown(f"input {node.input[i]!r} carries the batch on axis {a}, not the batch axis of "
                               f"{node.op_type}")
        if axes[0] is None:
            raise _Unknown("its initial state carries the batch but its sequence does not")
        for i in (5, 6):  # [directions, batch, hidden]: a state without the batch would not fit
            if len(ins) > i and ins[i] and axes[i] is None:
                d = self.dims_or_rank(scope, ins[i])
                if d is None or len(d) != 3 or d[1] != 1 or self.rank(scope, ins[0]) is None:
                    raise _Unknown(f"its initial state {ins[i]!r} does not carry the batch of its sequence")
                raise _Unknown(f"its initial state {ins[i]!r} {_show_dims(d)} has a batch of 1 that set-batch "
                               "cannot follow; give the state as an input with the batch")
        outs = list(node.output)
        res = {}
        for i, o in enumerate(outs):
            if o:
                res[o] = (0 if layout else 2) if i == 0 else (0 if layout else 1)
        return res

    def check_resize(self, scope, node, vals) -> None:
        if node.op_type == "Upsample" or self.opset < 11:
            v = vals[1] if len(vals) > 1 else None
            scales = _attr(node, "scales") or (v.elems if v is not None else None)
        else:
            v = vals[2] if len(vals) > 2 and node.input[2] else None
            scales = v.elems if v is not None and v.elems else None
            s = vals[3] if len(vals) > 3 and node.input[3] else None
            if scales is None and s is not None:
                ax = _attr(node, "axes")
                if ax is not None and 0 not in ax:
                    return
                if s.elems and s.elems[0] == BATCH:
                    return
                raise _Unknown("its sizes do not keep the batch")
        if scales is None or not scales or scales[0] != 1:
            raise _Unknown("its scales do not keep the batch")

