"""set-batch: change the batch size of a model, and make the whole model agree — or refuse."""

from __future__ import annotations

import itertools

import numpy as np
import onnx

from .. import shapes
from ..graph import Graph
from ..model import Model
from .base import Option, Pass, PassError, PassResult, parse_list
from .set_shape import parse_dim

# Two probe batch sizes: an axis carries the batch when it reads B1 in one probe and B2 in the
# other, which no constant dimension can do by accident.
B1, B2 = 11, 13
# at most this many ways of placing the batch in the inputs are tried
_MAX_TRIES = 16


class SetBatch(Pass):
    """Set the batch dimension of the model's inputs to a number or a symbolic name
    (``set-batch(size=4)``, ``set-batch(size=N)``), and make the rest of the model agree.

    Where the batch is in each input is found, not assumed: axis 0 when it is free (a name or
    unknown) or the model's batch number; otherwise the axis that meets the batch of the other
    inputs in the graph (silero's ``state[2, batch, 128]`` has it on axis 1). A fixed dim that
    is not the batch is never overwritten. ``inputs=x;state:1`` names inputs, and their axes.

    The pass then follows the batch through the graph, operator by operator: elementwise ops
    broadcast it, Conv/Pool keep it on axis 0, Transpose permutes it, MatMul keeps it on its
    batch dims, a Reshape whose target is computed from the input's own shape keeps it, Gather
    and Slice on other axes keep it, LSTM/GRU read it on axis 1 of X and of the initial state,
    both branches of an If must agree, ReverseSequence reads it on batch_axis and sequence_lens.
    A constant Reshape that merges the batch with the axes after it (the batch outermost, each
    sample's elements together: ``[1, 8, 32] -> [-1, 32]``) is followed through row-wise ops to
    the Reshape that splits it back, whose batch entry becomes -1. It refuses, naming the node and changing nothing, where
    samples would mix or the batch is dropped (a reduction, softmax, concat or slice over the
    batch axis, a Reshape to a fixed leading dim, NonZero/NonMaxSuppression), and where it
    cannot tell. Where a constant hard-codes the old batch and the trace proves it is the
    batch, it is patched: a ``Reshape`` target's leading old batch becomes ``0`` (copy the
    input's batch), a ``ConstantOfShape`` shape starting with the old batch takes it from the
    input at run time. Declared output dims and ``value_info`` are re-inferred afterwards.
    """

    name = "set-batch"
    options = {
        "size": Option(str, None, "the new batch: a number, or a name for a dynamic batch"),
        "inputs": Option(parse_list, None, "inputs to change, NAME or NAME:AXIS, separated by ';'"),
    }

    def apply(self, model: Model, result: PassResult) -> None:
        size_text = self.opts["size"]
        if size_text is None:
            raise PassError("set-batch needs size=N (a number) or size=NAME (dynamic)")
        size = parse_dim(size_text, "set-batch size")
        g = model.graph
        old, choices, named = self._candidates(g)
        # the batch is already this size: nothing hard-codes another batch to patch (what
        # hard-codes this one is this batch), and tracing again would only meet the new size
        # where other dims have it too. So a second run changes nothing.
        sure = [(choices[0][0], choices[0][1][0])] + [(n, a) for n, a in named.items() if a is not None]
        if all(_dim(g.value_info(n), a) == size for n, a in sure):
            result.skip(f"the batch is already {size} ({', '.join(f'{n}:{a}' for n, a in sure)})")
            return
        trace, targets = _find_batch(model, old, choices, named, size)
        olds = {(name, axis): _dim(g.value_info(name), axis) for name, axis in targets}
        if all(v == size for v in olds.values()) and not trace.patches:
            return  # already so
        _set_dims(g, targets, size)
        for patch in trace.patches:
            patch.apply(model)
            result.note(patch.describe())
        for name, axis in targets:
            result.note(f"input {name!r}: dim {axis} {_show(olds[(name, axis)])} -> {size}")
        main = trace.main
        output_axes = {o: ([trace.ax(main, o)] if trace.ax(main, o) is not None else []) for o in g.output_names}
        forced = {name: {axis: size} for name, axis in trace.batched_names.items() if name not in trace.merged_names}
        for line in shapes.refresh_declared(model, forced):
            result.note(line)
        result.details["old"] = old
        result.details["size"] = size
        result.details["inputs"] = [list(t) for t in targets]
        result.details["output_axes"] = output_axes

    def feeds_before(self, feeds, before, after, result):
        """One feed per sample: the batch axes sliced, as :meth:`reference` runs them."""
        return [f for s in _samples(feeds, result) for f in super(SetBatch, self).feeds_before(s, before, after, result)]

    def reference(self, before: bytes, after: Model, feeds: dict, result: PassResult, run) -> dict:
        """The model before the pass, run one sample at a time, stacked along the batch axes."""
        samples = _samples(feeds, result)
        if len(samples) == 1 and samples[0] is feeds:
            return super().reference(before, after, feeds, result, run)
        runs = [super(SetBatch, self).reference(before, after, s, result, run) for s in samples]
        stacked = {}
        for name in runs[0]:
            axes = result.details["output_axes"].get(name) or []
            stacked[name] = np.concatenate([r[name] for r in runs], axis=axes[0]) if axes else runs[0][name]
        return stacked

    def reference_noise(self, before, after, feeds, result, run, expected):
        """Where the model before the pass also takes the whole batch, how far its batched run
        is from its single runs: kernels that depend on the batch size round differently, and
        that is not this pass's doing."""
        from .. import verify

        if len(_samples(feeds, result)) < 2:
            return {}
        try:
            batched = super().reference(before, after, feeds, result, run)
        except verify.RuntimeFailure:
            return {}
        return {k: float(np.nan_to_num(np.abs(batched[k].astype(np.float64) - v.astype(np.float64)), nan=0.0).max(
                    initial=0.0))
                for k, v in expected.items() if k in batched and batched[k].shape == v.shape
                and np.issubdtype(v.dtype, np.number)}

    def _candidates(self, g: Graph):
        """The old batch (a number, or None when it is free) and, per input, the axes that may
        carry the batch: ``[(name, [axis, ...]), ...]``, the first input's choice sure."""
        inits = set(g.initializers)
        named: dict[str, int | None] = {}
        if self.opts["inputs"]:
            for item in self.opts["inputs"]:
                name, _, axis = item.partition(":")
                name = name.strip()
                if name not in g.input_names:
                    from ..errors import not_found
                    raise not_found("graph input", name, g.input_names, "the model")
                vi = g.value_info(name)
                rank = len(vi.type.tensor_type.shape.dim) if vi.type.tensor_type.HasField("shape") else None
                if axis.strip():
                    try:
                        a = int(axis)
                    except ValueError:
                        raise PassError(f"set-batch: inputs={item!r}: the axis must be a number") from None
                    if rank is None or not 0 <= a < rank:
                        raise PassError(f"set-batch: input {name!r} has rank {rank}; it has no axis {axis}")
                    named[name] = a
                else:
                    named[name] = None
            names = list(named)
        else:
            names = []
            for name in g.input_names:
                vi = g.value_info(name)
                if name in inits or vi is None or not vi.type.HasField("tensor_type") or \
                        not vi.type.tensor_type.HasField("shape"):
                    continue
                if len(vi.type.tensor_type.shape.dim) >= 1:
                    names.append(name)
        if not names:
            raise PassError("set-batch: no input has a rank to set a batch on")
        # a negative dim_value (some exporters write -1) is no size: it is free; 0 is a size (empty)
        dims = {n: [None if isinstance(x, int) and x < 0 else x for x in shapes.dims(g.value_info(n).type) or []]
                for n in names}
        for n in names:
            if not dims[n]:
                raise PassError(f"set-batch: input {n!r} has no dims to set a batch on")
        # the primary input: one named with an axis, else one whose axis 0 is free, else the first
        primary = next((n for n in names if named.get(n) is not None), None)
        if primary is None:
            primary = next((n for n in names if not isinstance(dims[n][0], int)), names[0])
        p_axis = named.get(primary) or 0
        batch_dim = dims[primary][p_axis]
        old = batch_dim if isinstance(batch_dim, int) else None
        choices = [(primary, [p_axis])]
        for n in names:
            if n == primary:
                continue
            if named.get(n) is not None:
                choices.append((n, [named[n]]))
                continue
            d = dims[n]
            if isinstance(batch_dim, str) and batch_dim in d:  # the same dim name: the same dim
                axes = [d.index(batch_dim)]
            elif (old is None and not isinstance(d[0], int)) or (old is not None and d[0] == old):
                axes = [0]
            else:
                axes = [i for i, x in enumerate(d) if (x == old if old is not None else not isinstance(x, int))]
            if not axes:
                if n in named:
                    raise PassError(f"set-batch: input {n!r} {_show_dims(d)} has no dim that can be the batch "
                                    f"({'free' if old is None else old}, as in {primary!r}); name its axis with "
                                    f"inputs={n}:AXIS or leave it out")
                continue  # a fixed input that cannot carry the batch: it stays as it is
            choices.append((n, axes))
        return old, choices, named


def _samples(feeds: dict, result: PassResult) -> list[dict]:
    """``feeds`` cut into single samples along the batch axes set-batch changed."""
    targets = [(n, a) for n, a in result.details.get("inputs") or [] if n in feeds]
    if not targets:
        return [feeds]
    count = feeds[targets[0][0]].shape[targets[0][1]]
    return [{**feeds, **{n: np.take(feeds[n], [i], axis=a) for n, a in targets}} for i in range(count)]


def _dim(vi, axis):
    d = vi.type.tensor_type.shape.dim[axis]
    return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)


def _set_one(dim, value) -> None:
    if isinstance(value, int):
        dim.ClearField("dim_param")
        dim.dim_value = value
    else:
        dim.ClearField("dim_value")
        dim.dim_param = value


def _set_dims(g: Graph, targets, value) -> None:
    for name, axis in targets:
        dims = g.value_info(name).type.tensor_type.shape.dim
        if axis >= len(dims):
            raise PassError(f"set-batch: input {name!r} has rank {len(dims)}; it has no axis {axis}")
        _set_one(dims[axis], value)


def _probe_copy(model: Model, targets, value: int) -> Model:
    """A copy with the batch set to ``value`` and nothing that would pin the old shapes:
    declared output dims and value_info are cleared, so inference derives every shape."""
    probe = model.copy()
    _set_dims(probe.graph, targets, value)
    for vi in probe.proto.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del probe.proto.graph.value_info[:]
    return probe


def _batch_axes(d1, d2) -> list[int]:
    if d1 is None or d2 is None or len(d1) != len(d2):
        return []
    return [i for i, (a, b) in enumerate(zip(d1, d2, strict=True)) if a == B1 and b == B2]




def _show(v) -> str:
    return "?" if v is None else str(v)


def _show_dims(d) -> str:
    return "[" + ", ".join(_show(x) for x in d) + "]"


def _find_batch(model: Model, old, choices, named, size):
    """Trace the batch with each way of placing it in the inputs (the first that works and
    where every input's batch meets the first input's); returns the trace and the targets."""
    primary = choices[0][0]
    first_error: PassError | None = None
    lonely: str | None = None

    def attempt(combo):
        nonlocal first_error, lonely
        targets = [(name, axis) for (name, _), axis in zip(choices, combo, strict=True) if axis is not None]
        try:
            trace = _trace(model, targets, old, size)
        except PassError as exc:
            if first_error is None:
                first_error = exc
            return None
        root = trace.find(primary)
        apart = [name for name, _ in targets if trace.find(name) != root and named.get(name) is None]
        if not apart:
            return trace, targets
        lonely = lonely or apart[0]
        return None

    for combo in itertools.islice(itertools.product(*[axes for _, axes in choices]), _MAX_TRIES):
        found = attempt(combo)
        if found:
            return found
    if lonely is None and old is not None:
        # Every placement failed in the trace. An input not named that only parameters of ops
        # which take the batch on their data alone read (ConvTranspose's weight [1, C_out, k, k]
        # beside x [1, C_in, h, w]) and whose candidate axis is the old batch's fixed size is a
        # parameter that happens to have that size: leave such inputs as they are, fewest first.
        optional = [i for i, (name, _) in enumerate(choices)
                    if i and named.get(name) is None and _only_a_parameter(model.graph, name)]
        tried = 0
        for k in range(1, len(optional) + 1):
            for out in itertools.combinations(optional, k):
                options = [[None] if i in out else axes for i, (_, axes) in enumerate(choices)]
                for combo in itertools.product(*options):
                    if tried >= _MAX_TRIES:
                        break
                    tried += 1
                    found = attempt(combo)
                    if found:
                        return found
    if first_error is not None and (lonely is None or all(len(a) == 1 for _, a in choices)):
        raise first_error
    axes = dict(choices)[lonely]
    raise PassError(f"set-batch: cannot find the batch axis of input {lonely!r}: with the batch on axis "
                    f"{' or '.join(map(str, axes))} it never meets the batch of {primary!r} in the graph. "
                    f"Name its axis with inputs={primary};{lonely}:AXIS, or leave it out with inputs={primary}; "
                    "nothing was changed")


# ops whose inputs after the first are parameters, never broadcast against the batch
_PARAMETER_OPS = {"Conv", "ConvTranspose", "ConvInteger", "BatchNormalization", "InstanceNormalization",
                  "LayerNormalization", "GroupNormalization"}


def _only_a_parameter(g: Graph, name: str) -> bool:
    readers = [n for n in g.proto.node if name in n.input]
    return bool(readers) and all(n.op_type in _PARAMETER_OPS and n.domain in ("", "ai.onnx")
                                 and list(n.input).index(name) >= 1 and name not in n.input[:1]
                                 for n in readers) and not any(
        name in _sub_reads(n) for n in g.proto.node)


def _sub_reads(node) -> set[str]:
    names: set[str] = set()
    for a in node.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for n in sub.node:
                names.update(n.input)
                names.update(_sub_reads(n))
    return names


def _trace(model: Model, targets, old, size) -> _Trace:
    probes = []
    for value in (B1, B2):
        probe = _probe_copy(model, targets, value)
        try:
            inferred = onnx.shape_inference.infer_shapes(probe.proto, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError):
            inferred = probe.proto
        probes.append(inferred)
    trace = _Trace(probes[0], probes[1], old, model.opset("") or 1)
    trace.source = targets[0]
    if isinstance(size, int):
        trace.limit = size
    trace.run(targets)
    return trace


class _Patch:
    def apply(self, model: Model) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class _ReshapeTarget(_Patch):
    """Reshape(x, [old, ...]) with x's axis 0 the batch: the leading entry becomes 0 (copy)."""

    def __init__(self, node_name: str, target_name: str, value: np.ndarray):
        self.node_name, self.target_name, self.value = node_name, target_name, value

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        new = self.value.copy()
        new[0] = 0
        readers = g.consumers(self.target_name)
        if g.tensor(self.target_name).is_initializer and len(readers) == 1:
            g.set_initializer(self.target_name, new)
        else:
            name = g.unique_name(f"{self.target_name}_batch")
            g.set_initializer(name, new)
            node.set_input(1, name)

    def describe(self) -> str:
        new = self.value.copy()
        new[0] = 0
        return (f"Reshape {self.node_name!r}: target {self.value.tolist()} -> {new.tolist()} "
                "(0 copies the batch from the input)")


def _batch_then(g: Graph, node_name: str, const_name: str, value: np.ndarray, source: str, axis: int) -> str:
    """A shape vector computed at run time: dim ``axis`` of ``source`` (the batch), then
    ``value[1:]``; the name of the tensor holding it."""
    batch = g.op.Shape(source, _name=g.unique_name(f"{node_name}/batch_shape", kind="node"), start=axis,
                       end=axis + 1)
    rest = g.unique_name(f"{const_name}_rest")
    g.set_initializer(rest, np.ascontiguousarray(value[1:]).astype(np.int64))
    return g.op.Concat(batch, rest, axis=0, _name=g.unique_name(f"{node_name}/batch_concat", kind="node"))


class _ReshapeTargetFromInput(_Patch):
    """Reshape(x, [old, ...], allowzero=1), x's axis 0 the batch: 0 would mean a zero dim, so
    the leading entry is read from x at run time."""

    def __init__(self, node_name: str, target_name: str, value: np.ndarray):
        self.node_name, self.target_name, self.value = node_name, target_name, value

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        node.set_input(1, _batch_then(g, self.node_name, self.target_name, self.value, node.inputs[0], 0))

    def describe(self) -> str:
        return (f"Reshape {self.node_name!r}: target {self.value.tolist()} takes its batch from its input at "
                "run time")


class _ReshapeTargetFree(_Patch):
    """Reshape(x, [.., old x f, ..]) where entry k holds the batch (times f): it becomes -1."""

    def __init__(self, node_name: str, target_name: str, value: np.ndarray, k: int):
        self.node_name, self.target_name, self.value, self.k = node_name, target_name, value, k

    def new(self) -> np.ndarray:
        new = np.array(self.value, copy=True)
        new[self.k] = -1
        return new

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        name = g.unique_name(f"{self.target_name}_batch")
        g.set_initializer(name, self.new())
        node.set_input(1, name)

    def describe(self) -> str:
        return (f"Reshape {self.node_name!r}: target {self.value.tolist()} -> {self.new().tolist()} "
                "(-1 takes the batch at run time)")


class _ConstantOfShapeBatch(_Patch):
    """ConstantOfShape([old, ...]): the leading entry is read from a batch input at run time."""

    def __init__(self, node_name: str, shape_name: str, value: np.ndarray, source: tuple[str, int] | None):
        self.node_name, self.shape_name, self.value, self.source = node_name, shape_name, value, source

    def apply(self, model: Model) -> None:
        g = model.graph
        node = g.node(self.node_name)
        node.set_input(0, _batch_then(g, self.node_name, self.shape_name, self.value, *self.source))

    def describe(self) -> str:
        return (f"ConstantOfShape {self.node_name!r}: shape {self.value.tolist()} takes its batch from input "
                f"{self.source[0]!r} at run time")


# ---- following the batch through the graph ---------------------------------------------------
#
# The trace walks the graph in order and records, for every tensor that depends on the batch,
# the one axis that carries it (``_Trace.axis``), and for small integer tensors (shapes and the
# glue computed from them) their elements (``_Trace.vals``): a number, a dim name, None (not
# known, but not the batch), ``BATCH`` (exactly the batch size) or ``MIXED`` (computed from the
# batch size some other way). Each operator has a rule saying where the batch goes; where
# samples would be mixed (a reduction, a softmax or a concat over the batch axis, ...) the
# trace stops with _Lost, where it cannot tell with _Unknown. Operators without a rule fall
# back on shape inference run at two probe batch sizes: the axis that reads B1 in one and B2
# in the other.

BATCH = "<batch>"
MIXED = "<mixed>"
_INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
              onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
# small constants the trace reads: integer glue, and float scales (Resize)
_SMALL_TYPES = _INT_TYPES | {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL}
_BIG = 10**9  # a Slice end at or past this keeps any batch (tf2onnx writes 1e9, PyTorch 2**63 - 1)

_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Mean", "Sum", "Where", "Equal", "Less",
    "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "BitwiseAnd", "BitwiseOr",
    "BitwiseXor", "PRelu", "Clip", "CastLike", "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Neg",
    "Abs", "Cast", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Softplus",
    "Softsign", "Sign", "Floor", "Ceil", "Round", "Reciprocal", "IsNaN", "IsInf", "Not", "Identity", "Sin",
    "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Mish",
    "ThresholdedRelu", "Shrink", "BitwiseNot", "Dropout", "QuantizeLinear", "DequantizeLinear",
}
# the batch must be axis 0 of the first input; the output keeps it there
_BATCH_FIRST = {
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "InstanceNormalization", "LRN", "DepthToSpace",
    "SpaceToDepth", "GroupNormalization", "MaxRoiPool",
}
# ops whose rule keeps the batch axis row by row: a batch merged with other dims passes as is
# (their rules refuse wherever they act along the batch axis)
_MERGE_SAFE = _ELEMENTWISE | {
    "Gemm", "MatMul", "Transpose", "Softmax", "LogSoftmax", "LayerNormalization", "Split", "Slice", "Gather",
    "Squeeze", "Unsqueeze", "Concat", "Reshape", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
}
_REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
# the number of elements of the output depends on the data of every sample
_DATA_SIZED = {"NonZero", "NonMaxSuppression", "Compress", "Unique", "StringSplit", "RegexFullMatch"}


class _Lost(Exception):
    """The node mixes samples or drops the batch."""


class _Unknown(Exception):
    """The trace cannot tell where the batch goes through the node."""


class _Scope:
    """Types and constants of one graph proto, falling back to the enclosing scope."""

    def __init__(self, proto: onnx.GraphProto, other: onnx.GraphProto | None, parent: _Scope | None):
        self.proto, self.parent, self.other_proto = proto, parent, other
        self.types = shapes.declared_types(proto)
        self.types2 = shapes.declared_types(other) if other is not None else {}
        self.consts: dict[str, np.ndarray] = {}
        overridable = {i.name for i in proto.input}
        for t in proto.initializer:
            if t.data_type in _SMALL_TYPES and np.prod(t.dims) <= 64 and t.name not in overridable:
                self.consts[t.name] = onnx.numpy_helper.to_array(t)
        for n in proto.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output:
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

    def dims(self, name: str, second: bool = False):
        return shapes.dims(self.lookup("types2" if second else "types", name))


def _constant_value(node: onnx.NodeProto):
    for a in node.attribute:
        if a.name == "value" and a.t.data_type in _SMALL_TYPES and np.prod(a.t.dims) <= 64:
            return onnx.numpy_helper.to_array(a.t)
        if a.name == "value_int":
            return np.array(a.i, np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), np.int64)
    return None


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


def _label(node: onnx.NodeProto) -> str:
    """``'name' (Op)``; a node without a name is named by its first output."""
    if node.name:
        return f"{node.name!r} ({node.op_type})"
    out = next((o for o in node.output if o), None)
    return f"({node.op_type}) making {out!r}" if out else f"({node.op_type}) without name or outputs"


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


class _Trace:
    def __init__(self, model_proto: onnx.ModelProto, other: onnx.ModelProto, old, opset: int):
        self.model, self.other, self.old, self.opset = model_proto, other, old, opset
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
        if merged is not None and merged > 1:
            self.merged[(id(scope), name)] = merged
            self.merged_names.add(name)
        self.tag[(id(scope), name)] = tag
        self.batched_names[name] = axis

    # ---- the walk ----------------------------------------------------------------------------
    def run(self, targets) -> None:
        main = self.main = _Scope(self.model.graph, self.other.graph, None)
        self.scopes[id(main)] = main
        for name, axis in targets:
            self.set_axis(main, name, axis, name)
        self.walk(main)

    def walk(self, scope: _Scope) -> None:
        for node in scope.proto.node:
            try:
                self.step(scope, node)
            except _Lost as exc:
                raise PassError(f"set-batch: node {_label(node)} loses the batch: {exc}. Changing "
                                "the batch would give a model that runs with wrong results; nothing was changed") from None
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
        if node.domain not in ("", "ai.onnx"):
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
        self.merging = None
        out_axes = self.rule(scope, node, ins, axes, vals, batched, dep_vals)
        if op == "Reshape":
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
                                   "Squeeze", "Cast", "Identity", "Tile", "Pad", "Resize") and op not in _ELEMENTWISE:
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
            raise _Unknown("it makes a sequence as long as the batch, so each sample would see its position")
        return self.fallback(scope, node, batched)

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
        return self.fallback(scope, node, [0])[node.output[0]]

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

    # ---- control flow ------------------------------------------------------------------------
    def control_flow(self, scope, node, batched) -> None:
        cond_val = self.val(scope, node.input[0]) if node.input else None
        subs = [(a.name, a.g) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
        twin = self._other_node(scope, node)
        other = {a.name: a.g for a in twin.attribute if a.type == onnx.AttributeProto.GRAPH} if twin is not None else {}
        outer = self.outer_reads(node)
        reads_batch = bool(batched) or any(self.ax(scope, n) is not None or
                                           (self.val(scope, n) is not None and self.val(scope, n).batchy)
                                           for n in outer)
        if node.op_type != "If":
            if reads_batch:
                raise _Unknown(f"the batch flows into its {node.op_type} body, which set-batch cannot follow")
            return
        if not reads_batch:
            return
        if batched or (cond_val is not None and cond_val.batchy):
            raise _Unknown("which branch runs depends on the batch")
        if cond_val is not None and len(cond_val.elems) == 1 and isinstance(cond_val.elems[0], (int, bool)):
            taken = "then_branch" if cond_val.elems[0] else "else_branch"  # the condition is a constant
            subs = [(name, g) for name, g in subs if name == taken]
        results = []
        for name, g in subs:
            sub = _Scope(g, other.get(name), scope)
            self.scopes[id(sub)] = sub
            self.walk(sub)
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

    def outer_reads(self, node) -> set[str]:
        names: set[str] = set()

        def visit(g: onnx.GraphProto, bound: set[str]):
            bound = bound | {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                for x in n.input:
                    if x and x not in bound:
                        names.add(x)
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        visit(a.g, bound)
                    elif a.type == onnx.AttributeProto.GRAPHS:
                        for sg in a.graphs:
                            visit(sg, bound)
                bound = bound | set(n.output)
            for o in g.output:
                if o.name not in bound:
                    names.add(o.name)

        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                visit(a.g, set())
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    visit(sg, set())
        return names

    # ---- values of shape glue ----------------------------------------------------------------
    def values(self, scope, node, vals) -> None:
        """Record the elements of small integer outputs computed from known elements."""
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
                raise _Unknown(f"input {next(node.input[i] for i, v in enumerate(vals) if v is not None and v.batchy)!r} "
                               "is computed from the batch size")
        if res is not None:
            self.vals[(id(scope), out)] = res

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
        if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Equal") and len(vals) == 2 and all(v is not None for v in vals):
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


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _norm_clamp(axis: int, rank: int) -> int:
    axis = axis + rank if axis < 0 else axis
    return min(max(axis, 0), rank)


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


__all__ = ["SetBatch"]
