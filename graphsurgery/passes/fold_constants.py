"""fold-constants: compute what does not depend on the model's inputs, once, ahead of time."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .. import shapes, tensors
from ..core.graph import Graph
from ..core.model import Model
from ..errors import EditError
from ..ops import DEFAULT_DOMAINS, if_branch_taken, is_nondeterministic
from .base import Option, Pass, PassResult, parse_bool, parse_list

_STANDARD = DEFAULT_DOMAINS
_MAX_ROUNDS = 8


class FoldConstants(Pass):
    """Evaluate nodes whose inputs are all constant, and ``Shape``/``Size`` of tensors whose
    shape is static, replacing them by initializers; in every graph, subgraphs included.

    Constant nodes become initializers (``constant_nodes=false`` keeps them). Never folds
    nodes with random results, custom-domain nodes or nodes holding subgraphs
    (``remove-if`` handles constant-condition ``If``), and never a value that is not a tensor
    (sequences, optionals: an initializer is a tensor). Inside a subgraph, a folded value the
    subgraph returns becomes a Constant node, not an initializer (onnx does not type a
    subgraph output that is an initializer of that subgraph).

    Size rule: folding never makes the file larger. Folds that share values or constant
    inputs form a group; a group is kept only when what it materialises (values that nodes
    left in place still read) is no larger than what dies with it (its nodes, and constants
    nothing else reads), give or take ``grow_bytes`` (default 0). So ``Transpose(W)`` of a
    weight that a Gather still reads stays a Transpose, and Tile/Expand/ConstantOfShape of
    small constants stay unless what reads them folds too. Independently, no single result
    above ``max_bytes`` that is larger than its inputs is computed. Every refusal is reported.

    In the branches ``keep_shape_operands_in`` names, values read as shape operands (Pad's
    pads, Reshape's shape, ...) and what they are computed from stay computed, so the branch's
    shapes stay as unknown as in the model given (``optimize`` uses it for a branch that cannot
    run for the shapes set, which would no longer type-check); everything else there folds.
    The pass runs to a fixed point: a second run changes nothing.
    """

    name = "fold-constants"
    options = {
        "max_bytes": Option(int, 1 << 20, "largest result computed, unless it is no larger than its inputs"),
        "grow_bytes": Option(int, 0, "results up to this size are folded even when they grow the model"),
        "shapes": Option(parse_bool, True, "fold Shape/Size of tensors with a static shape"),
        "constant_nodes": Option(parse_bool, True, "turn Constant nodes into initializers"),
        "compute_nothing_in": Option(parse_list, [], "branches (NODE.then_branch;NODE.else_branch) where only "
                                                      "Constant nodes become initializers: a branch that cannot "
                                                      "run for the shapes set keeps shapes that type-check"),
        "keep_shape_operands_in": Option(parse_list, [], "branches where the values read as shape operands (Pad's "
                                                          "pads, Reshape's shape, ...) and what they are computed "
                                                          "from stay computed: shapes stay as unknown as given"),
    }

    def apply(self, model: Model, result: PassResult) -> None:
        folded = 0
        skipped: dict[str, None] = {}  # each refusal once, however many rounds saw it
        for _ in range(_MAX_ROUNDS):  # folding can make more shapes static: repeat to a fixed point
            graphs = [g for g in model.graphs() if not (g.is_function or g.model is None)]  # parents first
            visible: dict[Graph, _Constants] = {}  # each graph's constants, updated as it folds
            for g in graphs:
                visible[g] = _visible_constants(g, visible)
            # shape inference costs a pass over the whole model: only when a fact it gives is asked
            may = {g: _may_fold(g, visible[g]) for g in graphs}
            types = shapes.infer(model) if self.opts["shapes"] and any(may.values()) else None
            changes = len(result.changes)
            skips: list[str] = []
            for g in graphs:
                if not _is_dead(g):  # asked now: folding the enclosing graph may have fixed a condition
                    # a subgraph is asked again: folding its enclosing graph may have made more of it constant
                    may_fold = may[g] or (g.parent is not None and _may_fold(g, visible[g]))
                    folded += self._fold_graph(model, g, types, result, visible[g], may_fold, skips,
                                               _inside(g, self.opts["compute_nothing_in"]),
                                               _inside(g, self.opts["keep_shape_operands_in"]))
            skipped.update(dict.fromkeys(skips))
            if len(result.changes) == changes:
                break
        for line in skipped:
            result.skip(line)
        result.details["folded"] = folded

    def _fold_graph(self, model: Model, g: Graph, types, result: PassResult, consts: _Constants, may_fold: bool,
                    skips: list[str], constants_only: bool = False, keep_shape_operands: bool = False) -> int:
        # What a subgraph returns is left as it is: onnx gives no type to a subgraph output that
        # is an initializer of that subgraph (the checker then rejects the model), and a static
        # value there lets runtimes check, at load, readers of the enclosing node that only
        # ever saw an unknown shape (onnxruntime then refuses models that ran before).
        returned = set(g.output_names) if g.parent is not None else set()
        # shape operands kept computed (Constant nodes aside): their readers' shapes stay unknown
        kept = shape_operands(g) if keep_shape_operands else set()
        values: dict[str, np.ndarray] = {}
        doomed = []
        folded: list[tuple] = []  # (node, its outputs' values), in order
        for node in g.nodes if may_fold else g.find_nodes("Constant"):  # nothing else can fold
            p = node.proto
            if p.domain not in _STANDARD or is_nondeterministic(p.op_type) or node.has_subgraphs():
                continue
            if returned.intersection(p.output):
                continue  # see above
            if p.op_type == "Constant":
                if self.opts["constant_nodes"] and p.output and p.output[0] in consts:
                    values[p.output[0]] = consts[p.output[0]]
                    doomed.append(node)
                continue
            if kept.intersection(p.output):
                continue  # see above
            outs = None if constants_only else self._evaluate(g, node, consts, types, model, skips)
            if outs is None:
                continue
            consts.update(outs)
            folded.append((node, outs))
        for node, outs in self._within_size(g, folded, consts, skips):
            values.update(outs)
            doomed.append(node)
        if not doomed:
            if not (constants_only or keep_shape_operands):
                self._reshape_targets(g, types, result)
            return 0
        gone = {id(n.proto) for n in doomed}  # a value only they read is not kept
        needed = {name: v for name, v in values.items()
                  if g.output_refs(name) or any(id(r.proto) not in gone for r in g.consumers(name))}
        read = dict.fromkeys(x for n in doomed for x in n.inputs if x)
        g.replace_with_constants(needed, doomed)
        # the size rule counted constants only folded nodes read as gone: make it so
        unread: dict[int, tuple] = {}
        for x in read:
            owner = g.resolve(x)
            if owner is not None and owner.initializer_proto(x) is not None and x not in owner.input_names \
                    and not owner.is_used(x):
                unread.setdefault(id(owner), (owner, []))[1].append(x)
        for owner, names in unread.values():
            owner.remove_initializers(names)
        dropped = sum(len(names) for _, names in unread.values())
        if not (constants_only or keep_shape_operands):
            self._reshape_targets(g, types, result)
        consts_moved = sum(1 for n in doomed if n.op_type == "Constant")
        for node in doomed:
            if node.op_type != "Constant":
                result.note(f"folded {node.op_type} {node.name!r} in {g.describe()}")
        if consts_moved:
            result.note(f"turned {consts_moved} Constant node(s) into initializers in {g.describe()}")
        if dropped:
            result.note(f"removed {dropped} initializer(s) only folded nodes read in {g.describe()}")
        return len(doomed) - consts_moved

    def _reshape_targets(self, g, types, result) -> None:
        """``Reshape(y, Concat(...))`` whose target parts are constants or ``Unsqueeze(Gather(
        Shape(x), k))`` with dim k of x equal to dim k of y: a constant target, copying those dims
        with 0 (allowzero=0), so the glue goes and the batch stays dynamic."""
        if types is None:
            return
        for node in g.find_nodes("Reshape"):
            if node.attrs.get("allowzero", 0) or len(node.inputs) < 2:
                continue
            concat = g.producer(node.inputs[1])
            if concat is None or concat.op_type != "Concat" or concat.attrs.get("axis", 0) != 0:
                continue
            data_dims = shapes.dims(types.get(g, node.inputs[0]))
            parts = []
            for part in concat.inputs:
                t = g.tensor(part)
                if t.is_constant:
                    parts.append(np.asarray(t.numpy()).reshape(-1).astype(np.int64))
                    continue
                k = _copied_dim(g, part, types)
                if k is None or data_dims is None or k >= len(data_dims):
                    parts = None
                    break
                position = sum(len(x) for x in parts)
                src = _dims_of_shape_output(g, g.producer(g.producer(part).inputs[0]).inputs[0], types)
                if position != k or src is None or data_dims[k] is None or src[k] != data_dims[k]:
                    parts = None
                    break
                parts.append(np.array([0], np.int64))
            if parts is None:
                continue
            target = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            name = g.unique_name(f"{node.name or 'reshape'}_target")
            g.set_initializer(name, target)
            node.set_input(1, name)
            _remove_dead(g, concat)  # the glue goes, so the new target does not grow the file
            result.note(f"Reshape {node.name!r}: target {target.tolist()} (0 copies the input's dim), glue gone")

    def _gather_static_dims(self, g, node, consts, types):
        """``Gather(Shape(x), i)`` where those dims of x are static: the dims, as a constant."""
        if node.attrs.get("axis", 0) != 0:
            return None
        dims = _dims_of_shape_output(g, node.inputs[0], types)
        if dims is None:
            return None
        idx = np.asarray(consts[node.inputs[1]])
        picked = [dims[int(i)] for i in idx.reshape(-1)] if all(-len(dims) <= int(i) < len(dims)
                                                                for i in idx.reshape(-1)) else None
        if picked is None or not all(isinstance(d, int) for d in picked):
            return None
        return {node.outputs[0]: np.array(picked, np.int64).reshape(idx.shape)}

    def _evaluate(self, g, node, consts, types, model, skips):
        p = node.proto
        ins = [x for x in p.input]
        if p.op_type in ("Shape", "Size") and ins and ins[0] not in consts:
            shape = shapes.static_shape(types.get(g, ins[0])) if types is not None else None
            if shape is None:
                return None
            if p.op_type == "Size":
                return {p.output[0]: np.array(int(np.prod(shape, dtype=np.int64)), np.int64)}
            start = node.attrs.get("start", 0)
            end = node.attrs.get("end", None)
            return {p.output[0]: np.array(shape[slice(start, end)], np.int64)}
        if p.op_type == "Gather" and len(ins) == 2 and ins[0] not in consts and ins[1] in consts:
            folded = self._gather_static_dims(g, node, consts, types)
            if folded is not None:
                return folded
        if any(x and x not in consts for x in ins):
            return None
        if types is not None and not all(_is_tensor_type(types.get(g, o)) for o in p.output if o):
            return None  # a sequence, optional or map: it cannot be an initializer
        inputs = [consts[x] if x else None for x in ins]
        try:
            outs = _run_node(p, inputs, model)
        except Exception as exc:  # the reference evaluator raises many kinds; report, do not fold
            skips.append(f"{p.op_type} {p.name!r}: could not evaluate ({type(exc).__name__}: {str(exc)[:120]})")
            return None
        if not all(_is_tensor_value(v) for v in outs):
            return None  # the evaluator returned a sequence, an optional or None: not a tensor
        outs = [np.asarray(v) for v in outs]
        out_bytes = sum(v.nbytes for v in outs)
        in_bytes = sum(x.nbytes for x in inputs if x is not None)
        limit = self.opts["max_bytes"]
        if out_bytes > limit and out_bytes > in_bytes:  # Tile, Expand, ConstantOfShape: not worth holding
            skips.append(f"{p.op_type} {p.name!r}: result of {out_bytes:,} bytes would grow the model "
                         f"(inputs {in_bytes:,} bytes; max_bytes={limit:,})")
            return None
        return {name: v for name, v in zip(p.output, outs, strict=False) if name}

    def _within_size(self, g: Graph, folded: list, consts: _Constants, skips: list[str]) -> list:
        """The folds to keep so that the file does not grow.

        Folds that share values or constant inputs form a group. A group's growth is what it
        materialises (values read by nodes that stay, however nested, or returned) minus what
        dies with it (constants read by nothing but the group, and the group's nodes). While a
        group would grow the model by more than ``grow_bytes``, its largest materialised result
        is not folded, nor anything computed from it. Values not folded leave ``consts``."""
        allowance = self.opts["grow_bytes"]
        while True:
            members = {id(n.proto) for n, _ in folded}
            maker = {name: id(n.proto) for n, outs in folded for name in outs}
            root = {k: k for k in members}

            def find(k):
                while root[k] != k:
                    root[k] = root[root[k]]
                    k = root[k]
                return k

            first_reader: dict[str, int] = {}
            for n, _ in folded:
                for x in dict.fromkeys(i for i in n.inputs if i):
                    other = maker.get(x, first_reader.setdefault(x, id(n.proto)) if x in consts else None)
                    if other is not None:
                        root[find(id(n.proto))] = find(other)
            growth: dict[int, int] = {}
            largest: dict[int, tuple] = {}
            for n, outs in folded:
                k = find(id(n.proto))
                growth[k] = growth.get(k, 0) - _stored_bytes(n.proto)
                for name, v in outs.items():
                    if g.output_refs(name) or any(id(r.proto) not in members for r in g.consumers(name)):
                        growth[k] += _tensor_bytes(name, v)
                        if v.nbytes > largest.get(k, (-1,))[0]:
                            largest[k] = (v.nbytes, n, name)
            for x, k in first_reader.items():
                owner = g.resolve(x)
                if x in maker or owner is None or owner.output_refs(x):
                    continue
                if all(id(r.proto) in members for r in owner.consumers(x)):
                    made_by = owner.producer(x)  # a Constant node, or an initializer
                    stored = made_by.proto if made_by is not None else owner.initializer_proto(x)
                    growth[find(k)] -= _stored_bytes(stored) if stored is not None else np.asarray(consts[x]).nbytes
            bad = [k for k, v in growth.items() if v > allowance and k in largest]  # in model order
            if not bad:
                return folded
            dropped: set[str] = set()
            for k in bad:
                size, n, name = largest[k]
                skips.append(f"{n.op_type} {n.name!r}: not folded, it would grow the model by {growth[k]:,} bytes "
                             f"(a {size:,}-byte result {name!r}; what it is computed from stays or is smaller; "
                             f"grow_bytes={allowance:,})")
                dropped.update(o for o in n.outputs if o)
            kept = []
            for n, outs in folded:  # in order: what reads a dropped value is dropped too
                if dropped.intersection(outs) or dropped.intersection(n.inputs):
                    dropped.update(outs)
                else:
                    kept.append((n, outs))
            for name in dropped:
                consts.pop(name, None)
            folded = kept


def _remove_dead(g, start) -> None:
    """Remove ``start`` if nothing reads its outputs any more, then what only it read, and so
    on up: nodes, and initializers of ``g`` (never graph inputs or outputs)."""
    stack = [start]
    unread: set[str] = set()
    while stack:
        n = stack.pop()
        if not n.alive or any(o and g.is_used(o) for o in n.outputs):
            continue
        inputs = [x for x in dict.fromkeys(n.inputs) if x]
        g.remove_node(n)
        for x in inputs:
            producer = g.producer(x)
            if producer is not None:
                stack.append(producer)
            elif g.initializer_proto(x) is not None and x not in g.input_names and not g.is_used(x):
                unread.add(x)
    g.remove_initializers(unread)


def _stored_bytes(proto) -> int:
    """What a node or initializer takes in the file: the message and its field header."""
    size = proto.ByteSize()
    return size + 1 + (size.bit_length() + 6) // 7


def _tensor_bytes(name: str, value: np.ndarray) -> int:
    """What ``value`` would take in the file as initializer ``name`` (exact when small)."""
    if value.nbytes <= 4096:
        return _stored_bytes(tensors.from_numpy(value, name))
    return value.nbytes + len(name.encode()) + 11 * value.ndim + 16


def _is_tensor_type(t: onnx.TypeProto | None) -> bool:
    """True unless inference says the value is a sequence, optional or map (unknown counts as tensor)."""
    return t is None or t.WhichOneof("value") in (None, "tensor_type")


def _is_tensor_value(v) -> bool:
    if v is None or isinstance(v, (list, tuple, dict)):
        return False
    a = np.asarray(v)
    return a.dtype != object or all(isinstance(x, (str, bytes)) for x in a.reshape(-1))


def _copied_dim(g: Graph, tensor: str, types) -> int | None:
    """k when ``tensor`` is ``Unsqueeze(Gather(Shape(x), k), [0])``: one dim of x, as a 1-D tensor."""
    unsq = g.producer(tensor)
    if unsq is None or unsq.op_type != "Unsqueeze":
        return None
    axes = unsq.attrs.get("axes")
    if axes is None and len(unsq.inputs) > 1 and g.tensor(unsq.inputs[1]).is_constant:
        axes = np.asarray(g.tensor(unsq.inputs[1]).numpy()).reshape(-1).tolist()
    if axes != [0]:
        return None
    gather = g.producer(unsq.inputs[0])
    if gather is None or gather.op_type != "Gather" or gather.attrs.get("axis", 0) != 0:
        return None
    shape_node = g.producer(gather.inputs[0])
    if shape_node is None or shape_node.op_type != "Shape" or shape_node.attrs.get("start", 0) != 0:
        return None
    idx = g.tensor(gather.inputs[1])
    if not idx.is_constant or np.asarray(idx.numpy()).size != 1:
        return None
    return int(np.asarray(idx.numpy()).reshape(-1)[0])


def _dims_of_shape_output(g: Graph, tensor: str, types) -> list | None:
    """When ``tensor`` is ``Shape(x)`` (with start/end), the dims it holds: ints or symbols."""
    p = g.producer(tensor)
    if p is None or p.op_type != "Shape" or types is None:
        return None
    dims = shapes.dims(types.get(g, p.inputs[0]))
    if dims is None:
        return None
    return dims[slice(p.attrs.get("start", 0), p.attrs.get("end", None))]


#: inputs that set the shape of an operator's result, by operator
SHAPE_OPERANDS = {"Pad": (1,), "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
                  "Resize": (2, 3), "Upsample": (1,)}


def shape_operands(g: Graph) -> set[str]:
    """Names read by ``g``'s nodes as operands that set a result's shape (:data:`SHAPE_OPERANDS`),
    and every value of ``g`` they are computed from."""
    out: set[str] = set()
    todo = [node.inputs[i] for node in g.nodes if node.domain in _STANDARD
            for i in SHAPE_OPERANDS.get(node.op_type, ()) if i < len(node.inputs) and node.inputs[i]]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        producer = g.producer(name)
        if producer is not None and producer.op_type not in ("Shape", "Size"):  # their input's values do not count
            todo.extend(x for x in producer.inputs if x)
    return out


def _inside(g: Graph, branches: list[str]) -> bool:
    """Whether ``g`` is one of ``branches`` (``NODE.ATTRIBUTE``) or nested in one."""
    while branches and g.parent is not None:
        if f"{g.owner.name}.{g.attr_name}" in branches:
            return True
        g = g.parent
    return False


def _is_dead(g: Graph) -> bool:
    """True for a branch that a constant If condition never takes (at any enclosing level).

    Folding there is wasted work, and worse: static shapes can make a dead branch invalid
    (it would fail if it ran), which runtimes reject when they load the model."""
    while g.parent is not None:
        owner = g.owner
        if owner.op_type == "If" and owner.domain in _STANDARD and owner.inputs and owner.inputs[0]:
            t = g.parent.tensor(owner.inputs[0])
            if t.is_constant:
                taken = if_branch_taken(t.numpy())
                if taken is not None and g.attr_name != taken:
                    return True
        g = g.parent
    return False


class _Constants:
    """The constant values one graph can see: its own, then its enclosing graph's (looked up,
    not copied, so a subgraph costs what it holds). An initializer is decoded when a fold
    first reads it: most are weights no fold ever reads."""

    def __init__(self, parent: _Constants | None):
        self.parent = parent
        self.own: dict[str, object] = {}  # name -> array, or (graph, name) of an undecoded initializer

    def _level(self, name: str) -> _Constants | None:
        c = self
        while c is not None:
            if name in c.own:
                return c
            c = c.parent
        return None

    def __contains__(self, name: str) -> bool:
        return name in self.own or (self.parent is not None and name in self.parent)

    def __getitem__(self, name: str) -> np.ndarray:
        level = self._level(name)
        if level is None:
            raise KeyError(name)
        value = level.own[name]
        if isinstance(value, tuple):
            g, _ = value
            value = level.own[name] = g.initializer(name)
        return value

    def update(self, values: dict[str, np.ndarray]) -> None:
        self.own.update(values)

    def pop(self, name: str, default=None):
        """Forget a value this graph computed (the enclosing graphs' stay)."""
        return self.own.pop(name, default)


def _visible_constants(g: Graph, visible: dict) -> _Constants:
    """Values of initializers and Constant outputs that ``g`` can see: what its enclosing graph
    can see (from ``visible`` when that graph is being folded too), then its own."""
    parent = g.parent
    consts = _Constants(visible[parent] if parent in visible else (
        _visible_constants(parent, visible) if parent is not None else None))
    own = consts.own
    inputs = set(g.input_names)
    for name in g.initializers:
        if name not in inputs:  # an initializer that is also an input can be overridden
            own[name] = (g, name)
    for n in g.find_nodes("Constant"):
        if n.domain in _STANDARD and n.outputs and n.outputs[0]:
            try:
                own[n.outputs[0]] = g.tensor(n.outputs[0]).numpy()
            except EditError:  # a form numpy() does not decode (sparse_value): leave it alone
                continue
    return consts


# ops whose folding reads shape facts even when their inputs are not all constant
_SHAPE_OPS = frozenset({"Shape", "Size", "Gather", "Reshape"})


def _may_fold(g: Graph, consts: _Constants) -> bool:
    """Whether some node of ``g`` other than a Constant may fold: an op in ``_SHAPE_OPS``, or a
    node whose inputs are all constant. When none may, nothing in ``g`` folds: no shape fact is
    asked for, no node but the Constants needs a look."""
    known = consts.own.__contains__ if consts.parent is None else consts.__contains__
    for p in g.proto.node:
        op = p.op_type
        if op in _SHAPE_OPS:
            return True
        if op == "Constant":
            continue
        for x in p.input:
            if x and not known(x):
                break
        else:
            return True
    return False


def _run_node(proto: onnx.NodeProto, inputs: list, model: Model) -> list:
    from onnx.reference import ReferenceEvaluator

    if proto.op_type == "GatherElements" and len(inputs) == 2:  # onnx's reference fails on [1, N] inputs
        data, index = np.asarray(inputs[0]), np.asarray(inputs[1])
        axis = next((a.i for a in proto.attribute if a.name == "axis"), 0)
        if data.ndim == index.ndim and data.ndim and -data.ndim <= axis < data.ndim:
            axis %= data.ndim
            if np.all((index >= -data.shape[axis]) & (index < data.shape[axis])):
                return [np.take_along_axis(data, np.where(index < 0, index + data.shape[axis], index), axis)]

    node = onnx.NodeProto()
    node.CopyFrom(proto)
    names = [f"in{i}" if x else "" for i, x in enumerate(proto.input)]
    del node.input[:]
    node.input.extend(names)
    outs = [f"out{i}" if x else "" for i, x in enumerate(proto.output)]
    del node.output[:]
    node.output.extend(outs)
    feeds = {n: np.asarray(v) for n, v in zip(names, inputs, strict=True) if n}
    graph = helper.make_graph(
        [node], "fold", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                         for n, v in feeds.items()],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outs if o])
    m = helper.make_model(graph, opset_imports=list(model.proto.opset_import), ir_version=model.proto.ir_version)
    ref = ReferenceEvaluator(m)
    return ref.run(None, feeds)
