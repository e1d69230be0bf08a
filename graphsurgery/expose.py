"""Expose tensors as graph outputs, subgraph tensors included: what ``debug-outputs`` does,
and what capturing intermediate tensors (:mod:`graphsurgery.capture`) builds on. Below both
the passes and the debugging tools, so neither needs the other."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import numpy as np
import onnx

from . import shapes
from .core.graph import Graph
from .core.model import Model
from .ops import is_default_domain


def expose(model: Model, chosen: list[tuple[Graph, str]], skip: Callable[[str], None] = lambda line: None
           ) -> tuple[dict[str, str], list[str]]:
    """Make each ``(graph, tensor)`` of ``chosen`` a graph output, threading tensors out of
    If/Loop/Scan bodies level by level (see :class:`graphsurgery.passes.debug_outputs.DebugOutputs`).
    Returns the graph output that carries each tensor (also for tensors exposed already) and
    the outputs added; ``skip`` hears about each tensor that cannot be carried, and why."""
    types = _Flat(shapes.infer(model))
    main = model.graph
    before = set(main.output_names)
    existing = set(before)
    exposed = _Exposed()
    work: dict[int, tuple[Graph, list[str]]] = {}
    taken = []
    outputs = {}
    for g, name in chosen:
        already = exposed.carrier(g, name)
        if already is not None and already != name:  # exposed by an earlier run, or by the model
            outputs[name] = already
            continue
        why = _cannot_carry(model, types, g, name)
        if why:
            skip(f"{name!r} in {g.describe()}: {why}")
            continue
        taken.append(name)
        work.setdefault(id(g), (g, []))[1].append(name)
    carrier: dict[str, str] = {}  # tensor -> the tensor one level up that carries it
    while work:
        key = max(work, key=lambda k: _depth(work[k][0]))  # deepest first: each level once
        g, names = work.pop(key)
        if g.parent is None:
            for n in names:
                if n not in existing:
                    elem, dims = _type_of(types, g, n)
                    if dims is None:  # a graph output needs a rank: carry it in an optional
                        wrap = g.make_node("Optional", [n], [g.unique_name(f"{n}__debug")],
                                           name=g.unique_name(f"{n}__debug", kind="node"))
                        wrap.proto.doc_string = _CARRIER_DOC
                        opt = onnx.helper.make_optional_type_proto(
                            onnx.helper.make_tensor_type_proto(elem, None))
                        main.proto.output.append(onnx.helper.make_value_info(wrap.outputs[0], opt))
                        carrier[n] = wrap.outputs[0]
                        existing.add(wrap.outputs[0])
                    else:
                        main.add_output(n, elem, dims)
                    existing.add(n)
            continue
        for n, o in _thread(model, g, names, types).items():
            carrier[n] = o
            types.extra[o] = _carried_type(model, g, types.of(g, n))
            work.setdefault(id(g.parent), (g.parent, []))[1].append(o)
    for n in taken:
        o = n
        while o in carrier:
            o = carrier[o]
        if o in existing and o not in before:
            outputs[n] = o
    added = [o for o in main.output_names if o not in before]
    return outputs, added


def choose(model: Model, *, names: list[str] | None = None, op_types: list[str] | None = None,
           pattern: str | None = None, first: int | None = None, subgraphs: bool = True) -> list[tuple[Graph, str]]:
    """The node outputs to expose, as ``(graph, tensor)``: all of them, or those named, of
    nodes of ``op_types``, of nodes whose name matches ``pattern``, or of the first ``first``
    nodes of the main graph; in subgraphs too with ``subgraphs``. A name no node computes is a
    :class:`graphsurgery.NotFoundError`."""
    names = set(names or [])
    types_f = set(op_types or [])
    everything = not (names or types_f or pattern or first)
    graphs = [g for g in model.graphs() if not g.is_function and (subgraphs or g.parent is None)]
    chosen = []
    for g in graphs:
        outs = set(g.output_names) if g.parent is None else set()  # a branch output is still worth a carrier
        for i, node in enumerate(g.nodes):
            if node.proto.doc_string in (_CARRIER_DOC, _FILLER_DOC):
                continue  # this pass's own carriers: exposed with what they carry
            take = (everything or node.op_type in types_f
                    or (pattern is not None and fnmatch.fnmatchcase(node.name, pattern))
                    or (first is not None and g.parent is None and i < first))
            for t in node.outputs:
                if t and t not in outs and (take or t in names):
                    chosen.append((g, t))
    missing = names - {t for _, t in chosen} - set(model.graph.output_names)
    if missing:
        from .errors import not_found
        every = [t for g in graphs for n in g.nodes for t in n.outputs if t]
        raise not_found("tensor", sorted(missing)[0], every, "the model's node outputs")
    return chosen


class _Flat:
    """Types by (graph, name), plus the carrier tensors this pass creates (unique names)."""

    def __init__(self, scoped: shapes.Types):
        self.scoped = scoped
        self.extra: dict[str, onnx.TypeProto] = {}

    def of(self, g: Graph, name: str) -> onnx.TypeProto | None:
        return self.extra.get(name) or self.scoped.get(g, name)


def _depth(g: Graph) -> int:
    d = 0
    while g.parent is not None:
        g, d = g.parent, d + 1
    return d


_CARRIER_DOC = "debug-outputs: carries a tensor out of this graph"
_FILLER_DOC = "debug-outputs: stands in for a tensor of the other branch, which did not run"


def _type_of(types: _Flat, g: Graph, name: str):
    t = types.of(g, name)
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.elem_type:
        return None
    return t.tensor_type.elem_type, shapes.dims(t)


def _cannot_carry(model: Model, types: _Flat, g: Graph, name: str) -> str | None:
    """Why ``name`` (a tensor of ``g``) cannot become a graph output with a type the checker
    accepts and a value onnxruntime can return, or None when it can."""
    t = types.of(g, name)
    if t is None:
        return "its type is unknown"
    if not t.HasField("tensor_type"):
        kind = (t.WhichOneof("value") or "value").replace("_type", "")
        return f"it is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a tensor"
    if not t.tensor_type.elem_type:
        return "its element type is unknown"
    if shapes.dims(t) is None and not 15 <= (model.opset("") or 0) < 28:
        # Optional (opset 15) carries a tensor of any rank; onnxruntime has no kernel for the
        # Optional of opset 28 yet, so there it would stop the model from loading
        return (f"its rank is unknown, and a graph output needs one (carried in an Optional from opset 15 "
                f"to 27; this model has opset {model.opset('')})")
    level, cur, through_if = g, t, False
    while level.parent is not None:
        node = level.owner
        if node.op_type not in ("If", "Loop", "Scan") or not is_default_domain(node.domain):
            return f"inside {node.op_type} {node.name!r}, which cannot carry extra outputs"
        listed = len(node.outputs) + (1 if node.op_type == "Loop" else 0)
        if listed != len(level.output_names):
            return (f"{node.op_type} {node.name!r} lists {len(node.outputs)} output(s) for {len(level.output_names)} "
                    f"of {level.describe()}, so an extra one cannot be matched to it")
        if node.op_type == "If":
            through_if = True  # from then on empty whenever the branch did not run
        elif through_if or not all(isinstance(d, int) for d in shapes.dims(cur) or [None]):
            return (f"its shape inside {node.op_type} {node.name!r} is not known to be the same in every "
                    "iteration, which a scan output needs")
        cur = _carried_type(model, level, cur)
        level = level.parent
    return None


def _carried_type(model: Model, g: Graph, t: onnx.TypeProto) -> onnx.TypeProto:
    """The type of a tensor of subgraph ``g`` once threaded out through the node holding ``g``:
    through an If, the rank with unknown dims (the branch that did not run gives an empty
    tensor); through a Loop or Scan, one more leading axis (two for Scan-8, whose outputs also
    have a batch axis)."""
    dims = shapes.dims(t)
    op = g.owner.op_type
    if dims is None:  # only through an If (a scan output needs a static shape)
        return onnx.helper.make_tensor_type_proto(t.tensor_type.elem_type, None)
    if op == "If":
        new = [None] * len(dims)
    elif op == "Scan" and (model.opset("") or 0) < 9:
        new = [None, None, *dims]
    else:
        new = [None, *dims]
    return onnx.helper.make_tensor_type_proto(t.tensor_type.elem_type, new)


def _output_index(node, g: Graph, i: int) -> int | None:
    """The output of ``node`` that returns body/branch output ``i`` of ``g`` from every run of
    ``g`` (None for a Loop's condition and for loop-carried state, which return the last value
    only)."""
    op = node.op_type
    if op == "If":
        return i
    if op == "Loop":
        carried = len(node.inputs) - 2
        return i - 1 if i > carried else None
    if op == "Scan":
        state = len(g.input_names) - int(node.attrs.get("num_scan_inputs", 0))
        return i if i >= state else None
    return None


class _Exposed:
    """Which tensors of a subgraph are exposed already, each with the graph output carrying it:
    a branch output of an If this pass threaded out (one branch returning a stand-in), a scan
    output of a Loop or Scan, whose carrier is a graph output level by level."""

    def __init__(self):
        self._maps: dict[int, dict[str, str]] = {}

    def carrier(self, g: Graph, name: str) -> str | None:
        return self._map(g).get(name)

    def _map(self, g: Graph) -> dict[str, str]:
        key = id(g)
        if key in self._maps:
            return self._maps[key]
        if g.parent is None:
            found = {o: o for o in g.output_names}
            for o in g.output_names:
                prod = g.producer(o)
                if prod is not None and prod.proto.doc_string == _CARRIER_DOC:
                    found.setdefault(prod.inputs[0], o)
        else:
            up = self._map(g.parent)
            node = g.owner
            outs = list(node.outputs)
            found = {}
            branches = list(node.subgraphs().values()) if node.op_type == "If" else []
            for i, o in enumerate(g.output_names):
                k = _output_index(node, g, i) if node.op_type in ("If", "Loop", "Scan") else None
                if k is None or k >= len(outs) or not outs[k] or outs[k] not in up:
                    continue
                if branches and not any(_made_here(b, i) for b in branches):
                    continue  # the model's own merged If output: the value of whichever branch ran
                found[o] = up[outs[k]]
                prod = g.producer(o)
                if prod is not None and prod.proto.doc_string == _CARRIER_DOC:
                    found.setdefault(prod.inputs[0], up[outs[k]])
        self._maps[key] = found
        return found


def _made_here(branch: Graph, i: int) -> bool:
    names = branch.output_names
    if i >= len(names):
        return False
    prod = branch.producer(names[i])
    return prod is not None and prod.proto.doc_string in (_CARRIER_DOC, _FILLER_DOC)


def _thread(model: Model, g: Graph, names: list[str], types: _Flat) -> dict[str, str]:
    """Make ``names`` (tensors of subgraph ``g``) outputs of ``g`` and of the node holding it;
    returns each name's carrier in the enclosing graph. Callers checked with
    :func:`_cannot_carry` that this is possible."""
    node, parent = g.owner, g.parent
    op = node.op_type
    out: dict[str, str] = {}
    for n in names:
        elem, dims = _type_of(types, g, n)
        exposed = n
        if n in g.output_names:  # already returned (merged, or last value only): its own carrier
            ident = g.make_node("Identity", [n], [g.unique_name(f"{n}__debug")],
                                name=g.unique_name(f"{n}__debug", kind="node"))
            ident.proto.doc_string = _CARRIER_DOC
            exposed = ident.outputs[0]
        # a scalar threaded out of an If is empty (shape [0]) when its branch did not run: its
        # branch outputs declare no shape, which onnxruntime would otherwise enforce
        scalar_if = op == "If" and not dims  # (or of unknown rank)
        g.add_output(exposed, elem, None if scalar_if else [d if isinstance(d, int) else None for d in dims])
        if op == "If":
            other_key = "else_branch" if g.attr_name == "then_branch" else "then_branch"
            other = node.subgraphs()[other_key]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
            # no elements, so a value from the branch that did not run cannot be mistaken for
            # one computed; a scalar gets shape [0], as a scalar cannot be empty
            filler = np.zeros((0,) * max(len(dims or ()), 1), dtype)
            empty = other.make_node("Constant", [], 1, name=other.unique_name(f"{n}__empty", kind="node"),
                                    value=filler)
            empty.proto.doc_string = _FILLER_DOC
            other.add_output(empty.outputs[0], elem, None if scalar_if else list(filler.shape))
        elif op == "Scan":
            for key in ("scan_output_axes", "scan_output_directions"):
                if key in node.attrs:
                    node.attrs[key] = list(node.attrs[key]) + [0]
        index = _output_index(node, g, len(g.output_names) - 1)
        assert len(node.proto.output) == index, "_cannot_carry checks the node lists every output"
        out[n] = parent.add_node_output(node, parent.unique_name(f"{n}__{op.lower()}"))
    return out
