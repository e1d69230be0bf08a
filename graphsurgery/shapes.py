"""Shape facts about a model, from onnx's shape inference, without touching the model."""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Iterator, MutableMapping

import onnx

log = logging.getLogger("graphsurgery")


class Types:
    """Inferred tensor types, per scope: sibling subgraphs may reuse a name for different
    tensors, so a name is looked up in its own graph, then in the enclosing ones."""

    def __init__(self, by_graph: dict):
        self._by_graph = by_graph

    def get(self, graph, name: str) -> onnx.TypeProto | None:
        g = graph
        while g is not None:
            t = self._by_graph.get(g, {}).get(name)
            if t is not None:
                return t
            g = g.parent
        return None


def infer(model) -> Types:
    """Types of every tensor onnx can infer, in every graph of ``model`` (a graphsurgery Model).

    Runs on a serialized copy (the model is not modified) with data propagation, so shapes
    computed by ``Shape``/``Gather``/``Concat`` chains are known too. Inference errors (custom
    ops, inconsistent value_info) degrade to what is recorded in the model.
    """
    source = _without_weights(model.proto)
    cleared = _pins_unknown_dims(source.graph)
    if cleared:
        # onnx's inference keeps a declared unknown dim even where it could now compute it (after
        # folding made a shape constant): infer without value_info, then fill in from it below
        if source is model.proto:
            source = onnx.ModelProto()
            source.CopyFrom(model.proto)
        _clear_value_info(source.graph)
    inferred = _onnx_infer(source)
    if inferred is None:
        inferred = model.proto
    else:  # contrib operators onnx does not know: their documented output shapes, then infer again
        for _ in range(_CONTRIB_ROUNDS):
            if not _contrib_facts(inferred.graph, {}):
                break
            again = _onnx_infer(inferred)
            if again is None:
                break
            inferred = again
    by_graph: dict = {}
    _pair(model.graph, inferred.graph, by_graph)
    if cleared:
        for g in by_graph:
            _fill_from_declared(by_graph[g], g.proto)
    return Types(by_graph)


class LazyTypes:
    """:class:`Types` inferred on the first lookup, not before: a rule pass whose rules rarely
    reach a shape question does not pay for inference on every run."""

    def __init__(self, model):
        self._model = model
        self._types: Types | None = None

    def get(self, graph, name: str) -> onnx.TypeProto | None:
        if self._types is None:
            self._types = infer(self._model)
        return self._types.get(graph, name)


def _subgraph_protos(graph: onnx.GraphProto):
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield a.g
            elif a.type == onnx.AttributeProto.GRAPHS:
                yield from a.graphs


def _pins_unknown_dims(graph: onnx.GraphProto) -> bool:
    """True when a value_info entry (in ``graph`` or a subgraph) declares a dim that is not a number."""
    for vi in graph.value_info:
        t = vi.type
        if t.HasField("tensor_type") and t.tensor_type.HasField("shape") and any(
                not d.HasField("dim_value") for d in t.tensor_type.shape.dim):
            return True
    return any(_pins_unknown_dims(sub) for sub in _subgraph_protos(graph))


def _clear_value_info(graph: onnx.GraphProto) -> None:
    """Drop the value_info entries inference can redo: those of outputs of ops with no schema
    (custom ops) stay, since only they tell what follows them."""
    unknown = {o for n in graph.node if not onnx.defs.has(n.op_type, n.domain) for o in n.output}
    keep = [vi for vi in graph.value_info if vi.name in unknown]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    for sub in _subgraph_protos(graph):
        _clear_value_info(sub)


def _fill_from_declared(types: dict, graph: onnx.GraphProto) -> None:
    """Where inference without the value_info knows less than the value_info declares (a custom
    op's output, a dim it cannot compute), the declared type or dim stands."""
    for vi in graph.value_info:
        if not vi.HasField("type"):
            continue
        have = types.get(vi.name)
        if have is None:
            types[vi.name] = vi.type
            continue
        old, new = dims(vi.type), dims(have)
        if old is None or new is None or len(old) != len(new) or not have.HasField("tensor_type") \
                or have.tensor_type.elem_type != vi.type.tensor_type.elem_type:
            continue
        merged = _merge(old, new, {})
        if merged != new:
            entry = onnx.TypeProto()
            entry.CopyFrom(have)
            _write(entry.tensor_type.shape, merged)
            types[vi.name] = entry


def _onnx_infer(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnx's shape inference on a copy of ``proto``; None when it fails."""
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        log.debug("shape inference failed: %s", exc)
        return None


# ---------------------------------------------------------------- contrib operators
#: rounds of (contrib rules, onnx inference): one per contrib operator in a chain is enough
_CONTRIB_ROUNDS = 4


def _rnn_directions(node: onnx.NodeProto) -> int | None:
    direction = next((a.s for a in node.attribute if a.name == "direction"), b"forward")
    return {b"forward": 1, b"reverse": 1, b"bidirectional": 2}.get(direction)


def _dynamic_quantize_lstm(node: onnx.NodeProto, type_of) -> list:
    """onnxruntime's ``com.microsoft::DynamicQuantizeLSTM``, as its operator schema documents
    it: X is ``[seq_length, batch_size, input_size]`` (there is no layout attribute), Y is
    ``[seq_length, num_directions, batch_size, hidden_size]``, Y_h and Y_c are
    ``[num_directions, batch_size, hidden_size]``, all of X's element type; num_directions is 2
    for ``direction=bidirectional`` and 1 for forward or reverse; hidden_size is the attribute
    (else dim 1 of R, ``[num_directions, hidden_size, 4*hidden_size]``). onnxruntime checks
    these shapes when it runs the node, so a model that runs has them."""
    x = dims(type_of(node.input[0])) if node.input and node.input[0] else None
    t = type_of(node.input[0]) if node.input else None
    directions = _rnn_directions(node)
    if x is None or len(x) != 3 or directions is None or t is None:
        return []
    elem = t.tensor_type.elem_type
    hidden = next((a.i for a in node.attribute if a.name == "hidden_size"), None)
    if hidden is None and len(node.input) > 2 and node.input[2]:
        r = dims(type_of(node.input[2]))
        hidden = r[1] if r is not None and len(r) == 3 and isinstance(r[1], int) else None
    if not elem or (hidden is not None and hidden <= 0):
        return []
    seq, batch = x[0], x[1]
    return [(elem, [seq, directions, batch, hidden]), (elem, [directions, batch, hidden]),
            (elem, [directions, batch, hidden])]


#: output shapes of contrib operators whose documented contract fixes them: (domain, op) ->
#: function(node, type_of) giving ``(elem_type, dims)`` per output (dims: int, name or None)
CONTRIB_SHAPES = {
    ("com.microsoft", "DynamicQuantizeLSTM"): _dynamic_quantize_lstm,
}


def _contrib_facts(graph: onnx.GraphProto, outer: dict) -> int:
    """Write into ``graph`` (an inferred copy: its value_info, or its declared outputs) the
    output types of the contrib nodes :data:`CONTRIB_SHAPES` knows, where they say more than
    what is declared; in subgraphs too. Returns how many types were written. A rule's dim
    never replaces a different known one (the model would contradict itself: nothing is
    written for that value); names onnx made up for unknown dims are not copied."""
    types = ChainMap({}, declared_types(graph), outer)  # what is written here stays here
    written = 0
    for node in graph.node:
        rule = CONTRIB_SHAPES.get((node.domain, node.op_type))
        if rule is not None:
            for name, fact in zip(node.output, rule(node, types.get), strict=False):
                if name and _write_fact(graph, name, fact, types.get(name)):
                    types[name] = _declared_type(graph, name)
                    written += 1
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                written += _contrib_facts(sub, types)
    return written


def _declared_type(graph: onnx.GraphProto, name: str) -> onnx.TypeProto | None:
    for field in (graph.value_info, graph.output):
        for vi in field:
            if vi.name == name:
                return vi.type
    return None


def _write_fact(graph: onnx.GraphProto, name: str, fact, have: onnx.TypeProto | None) -> bool:
    elem, new = fact
    old = dims(have)
    if have is not None and have.HasField("tensor_type") and have.tensor_type.elem_type not in (0, elem):
        return False
    if old is not None and len(old) != len(new):
        return False
    merged = []
    for i, d in enumerate(new):
        if isinstance(d, str) and _is_generated(d):
            d = None
        was = old[i] if old is not None else None
        if isinstance(was, int) and isinstance(d, int) and was != d:
            return False
        merged.append(was if isinstance(was, int) or (was is not None and not isinstance(d, int)) else d)
    if old == merged and have is not None and have.tensor_type.elem_type == elem:
        return False
    vi = next((v for v in graph.value_info if v.name == name), None)
    if vi is None:
        vi = next((v for v in graph.output if v.name == name), None)
    if vi is None:
        vi = graph.value_info.add()
        vi.name = name
    vi.type.CopyFrom(onnx.helper.make_tensor_type_proto(elem, merged))
    return True


# initializers shape inference never reads the values of: floating-point ones beyond a few
# elements (Resize scales, Range bounds are small), any beyond many (shape-like inputs hold one
# number per axis or per split)
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16, onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128})
_FLOAT_ELEMENTS, _ANY_ELEMENTS = 16, 4096


def _without_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto``, or a copy whose main-graph weights are stubs (name, type, dims; the data marked
    external), for shape inference: it reads weights' types, not their values, and copying
    megabytes of them to C++ and back cost more than inferring (the result is the same)."""
    inits = proto.graph.initializer
    heavy = [i for i, t in enumerate(inits) if t.data_location != onnx.TensorProto.EXTERNAL and (
        (n := _elements(t)) > _ANY_ELEMENTS or (n > _FLOAT_ELEMENTS and t.data_type in _FLOAT_TYPES))]
    if not heavy:
        return proto
    light = onnx.ModelProto()
    for fd, value in proto.ListFields():
        if fd.name != "graph":
            copy_field(light, fd, value)
    for fd, value in proto.graph.ListFields():
        if fd.name != "initializer":
            copy_field(light.graph, fd, value)
    heavy_set = set(heavy)
    for i, t in enumerate(inits):
        if i not in heavy_set:
            light.graph.initializer.add().CopyFrom(t)
            continue
        stub = light.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                           data_location=onnx.TensorProto.EXTERNAL)
        stub.external_data.add(key="location", value="(not loaded)")
    return light


def _elements(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def copy_field(target, fd, value) -> None:
    """Set field ``fd`` of message ``target`` to ``value``, as read from ``ListFields()``."""
    if fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED:
        getattr(target, fd.name).extend(value)
    elif fd.type == fd.TYPE_MESSAGE:
        getattr(target, fd.name).CopyFrom(value)
    else:
        setattr(target, fd.name, value)


def declared_types(proto: onnx.GraphProto) -> DeclaredTypes:
    """The types one graph declares (inputs, outputs, value_info, initializers), by name."""
    types: dict[str, onnx.TypeProto] = {}
    for field in (proto.input, proto.output, proto.value_info):
        for vi in field:
            if vi.HasField("type") and vi.name not in types:
                types[vi.name] = vi.type
    return DeclaredTypes(types, proto.initializer)


class DeclaredTypes(MutableMapping):
    """:func:`declared_types`' answer: a mapping of names to TypeProtos whose initializer entries
    are made when first asked for (a graph with thousands of weights and a question about a
    few of them used to build a TypeProto for every weight, on every call)."""

    __slots__ = ("_types", "_inits")

    def __init__(self, types: dict[str, onnx.TypeProto], initializers) -> None:
        self._types = types
        # initializers whose names nothing above declares, by name (the first of a name wins)
        inits: dict[str, onnx.TensorProto] = {}
        for t in initializers:
            if t.name not in types:
                inits.setdefault(t.name, t)
        self._inits = inits

    def __getitem__(self, name: str) -> onnx.TypeProto:
        t = self._types.get(name)
        if t is not None:
            return t
        init = self._inits.pop(name, None)
        if init is None:
            raise KeyError(name)
        t = self._types[name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
        return t

    def get(self, name: str, default=None):
        t = self._types.get(name)
        if t is not None or name not in self._inits:
            return t if t is not None else default
        return self[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types or name in self._inits

    def __setitem__(self, name: str, value: onnx.TypeProto) -> None:
        self._inits.pop(name, None)
        self._types[name] = value

    def __delitem__(self, name: str) -> None:
        if self._inits.pop(name, None) is None:
            del self._types[name]

    def __iter__(self) -> Iterator[str]:
        yield from list(self._types)
        yield from list(self._inits)

    def __len__(self) -> int:
        return len(self._types) + len(self._inits)


def _pair(g, proto: onnx.GraphProto, by_graph: dict) -> None:
    """Record ``proto``'s types for our graph ``g``, and recurse into subgraphs in step (shape
    inference keeps node order, so the i-th node of one is the i-th node of the other)."""
    by_graph[g] = declared_types(proto)
    if len(proto.node) != len(g.proto.node):
        return
    for node, inferred_node in zip(g.nodes_in_file_order(), proto.node, strict=True):
        if not node.has_subgraphs():
            continue
        subs = node.subgraphs()
        for a in inferred_node.attribute:
            if a.type == onnx.AttributeProto.GRAPH and a.name in subs:
                _pair(subs[a.name], a.g, by_graph)
            elif a.type == onnx.AttributeProto.GRAPHS and a.name in subs:
                for sub, ga in zip(subs[a.name], a.graphs, strict=False):
                    _pair(sub, ga, by_graph)


def static_shape(t: onnx.TypeProto | None) -> tuple[int, ...] | None:
    """The shape when every dim is a known number, else None."""
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in t.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(d.dim_value)
    return tuple(dims)


def rank(t: onnx.TypeProto | None) -> int | None:
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return len(t.tensor_type.shape.dim)


def dims(t: onnx.TypeProto | None) -> list[int | str | None] | None:
    """Dims as ints, symbolic names, or None for unknown; None when the rank is unknown."""
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim]


def _is_generated(name: str) -> bool:
    """Names onnx's shape inference makes up for dims it cannot name."""
    return name.startswith("unk__")


def refresh_declared(model, forced: dict | None = None) -> list[str]:
    """Bring the declared shapes (graph outputs, ``value_info`` in every graph) in line with
    the current input shapes, after a pass changed them; returns one line per change.

    Shapes are inferred afresh on a copy whose declared outputs and value_info are cleared, so
    old records cannot pin old dims. A declared dim takes the inferred dim when that is a number
    or a real name; where inference cannot tell, the declared dim stands. ``forced`` maps a tensor name to ``{axis: dim}`` for dims the
    caller knows better (set-batch knows where the batch went). A value_info entry takes the
    inferred shape, or is dropped when its rank cannot be inferred.
    """
    forced = forced or {}
    probe = model.copy()
    for g in probe.graphs():
        if g.is_function:
            continue
        for vi in g.proto.output:
            vi.type.tensor_type.ClearField("shape")
        del g.proto.value_info[:]
    types = infer(probe)
    notes: list[str] = []
    for g, pg in zip(model.graphs(), probe.graphs(), strict=True):
        if g.is_function:
            continue
        outputs = g.proto.output if g.parent is None else []
        for vi in outputs:
            if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
                continue
            old = dims(vi.type)
            new = _merge(old, dims(types.get(pg, vi.name)), forced.get(vi.name, {}))
            if new != old:
                _write(vi.type.tensor_type.shape, new)
                notes.append(f"output {vi.name!r}: shape {_show(old)} -> {_show(new)}")
        keep = []
        dropped = 0
        for vi in g.proto.value_info:
            inferred = dims(types.get(pg, vi.name))
            old = dims(vi.type)
            fix = forced.get(vi.name, {})
            if old is not None and ((inferred is not None and len(inferred) == len(old))
                                    or (fix and max(fix) < len(old))):
                new = _merge(old, inferred, fix)
            elif inferred is not None:
                new = [None if isinstance(d, str) and _is_generated(d) else d for d in inferred]
            else:
                dropped += 1
                continue
            entry = onnx.ValueInfoProto()
            entry.CopyFrom(vi)
            _write(entry.type.tensor_type.shape, new)
            keep.append(entry)
        if dropped or any(a.SerializeToString() != b.SerializeToString() for a, b in zip(keep, g.proto.value_info)):
            del g.proto.value_info[:]
            g.proto.value_info.extend(keep)
            if dropped:
                notes.append(f"dropped {dropped} value_info entr{'y' if dropped == 1 else 'ies'} whose shape cannot be "
                             "inferred any more")
    return notes


def _merge(old, inferred, fix) -> list:
    if old is None:
        return old
    out = []
    for i, d in enumerate(old):
        if i in fix:
            out.append(fix[i])
            continue
        got = inferred[i] if inferred is not None and len(inferred) == len(old) else None
        if isinstance(got, int) or (isinstance(got, str) and not _is_generated(got)):
            out.append(got)
        else:
            out.append(d)  # inference cannot tell: the declared dim stands
    return out


def _write(shape: onnx.TensorShapeProto, values) -> None:
    shape.ClearField("dim")
    for v in values:
        d = shape.dim.add()
        if isinstance(v, int):
            d.dim_value = v
        elif isinstance(v, str):
            d.dim_param = v


def _show(values) -> str:
    return "[" + ", ".join("?" if v is None else str(v) for v in values) + "]"
