"""debug-outputs: expose intermediate tensors as graph outputs, subgraph tensors included."""

from __future__ import annotations

import fnmatch

import numpy as np
import onnx

from .. import shapes
from ..graph import Graph
from ..model import Model
from .base import Option, Pass, PassResult, parse_bool, parse_list


class DebugOutputs(Pass):
    """Add intermediate tensors to the graph outputs, after the existing ones (which stay as
    they are): all node outputs by default, or those chosen by ``names`` (``a;b``), ``op_types``
    (``Conv;Relu``), ``pattern`` (shell pattern on node names) or ``first`` (outputs of the first
    N nodes of the main graph, in topological order). Element types and shapes come from shape
    inference; a tensor whose type is unknown is reported and skipped.

    Tensors inside If/Loop/Scan bodies are threaded out through the enclosing node, level by
    level: an extra branch output for If (the other branch returns an empty tensor of the same
    element type), an extra scan output for Loop and Scan (one slice per iteration).
    ``details["outputs"]`` maps each chosen tensor to the graph output that carries it.
    """

    name = "debug-outputs"
    options = {
        "names": Option(parse_list, None, "tensor names, separated by ';'"),
        "op_types": Option(parse_list, None, "outputs of nodes of these op types, separated by ';'"),
        "pattern": Option(str, None, "outputs of nodes whose name matches this shell pattern"),
        "first": Option(int, None, "outputs of the first N nodes of the main graph"),
        "subgraphs": Option(parse_bool, True, "include tensors inside If/Loop/Scan bodies"),
    }

    def apply(self, model: Model, result: PassResult) -> None:
        types = _Flat(shapes.infer(model))
        main = model.graph
        before = set(main.output_names)
        existing = set(before)
        work: dict[int, tuple[Graph, list[str]]] = {}
        chosen = []
        for g, name in self._choose(model):
            t = _type_of(types, g, name)
            if t is None or (g.parent is not None and t[1] is None):
                result.skip(f"{name!r} in {g.describe()}: element type or rank unknown")
                continue
            chosen.append(name)
            work.setdefault(id(g), (g, []))[1].append(name)
        carrier: dict[str, str] = {}  # tensor -> the tensor one level up that carries it
        while work:
            key = max(work, key=lambda k: _depth(work[k][0]))  # deepest first: each level once
            g, names = work.pop(key)
            if g.parent is None:
                for n in names:
                    if n not in existing:
                        elem, dims = _type_of(types, g, n)
                        main.add_output(n, elem, dims if dims is not None else None)
                        existing.add(n)
                continue
            for n, o in _thread(g, names, types, result).items():
                carrier[n] = o
                types.extra[o] = _loosen(types.of(g, n), extra_axis=g.owner.op_type != "If")
                work.setdefault(id(g.parent), (g.parent, []))[1].append(o)
        outputs = {}
        for n in chosen:
            o = n
            while o in carrier:
                o = carrier[o]
            if o in existing and o not in before:
                outputs[n] = o
        added = [o for o in main.output_names if o not in before]
        result.details["outputs"] = outputs
        if added:
            result.note(f"added {len(added)} graph output(s)")

    def _choose(self, model: Model) -> list[tuple[Graph, str]]:
        o = self.opts
        names = set(o["names"] or [])
        types_f = set(o["op_types"] or [])
        pattern = o["pattern"]
        everything = not (names or types_f or pattern or o["first"])
        graphs = [g for g in model.graphs() if not g.is_function and (o["subgraphs"] or g.parent is None)]
        chosen = []
        for g in graphs:
            outs = set(g.output_names) if g.parent is None else set()  # a branch output is still worth a carrier
            for i, node in enumerate(g.nodes):
                take = (everything or node.op_type in types_f
                        or (pattern is not None and fnmatch.fnmatchcase(node.name, pattern))
                        or (o["first"] is not None and g.parent is None and i < o["first"]))
                for t in node.outputs:
                    if t and t not in outs and (take or t in names):
                        chosen.append((g, t))
        missing = names - {t for _, t in chosen} - set(model.graph.output_names)
        if missing:
            from ..errors import not_found
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


def _type_of(types: _Flat, g: Graph, name: str):
    t = types.of(g, name)
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.elem_type:
        return None
    return t.tensor_type.elem_type, shapes.dims(t)


def _loosen(t: onnx.TypeProto, extra_axis: bool) -> onnx.TypeProto:
    """The type of a value once threaded through an If (dims may differ by branch) or a
    Loop/Scan (one more leading axis): the element type and rank, with unknown dims."""
    rank = len(t.tensor_type.shape.dim) + (1 if extra_axis else 0)
    return onnx.helper.make_tensor_type_proto(t.tensor_type.elem_type, [None] * rank)


def _thread(g: Graph, names: list[str], types: _Flat, result: PassResult) -> dict[str, str]:
    """Make ``names`` (tensors of subgraph ``g``) outputs of ``g`` and of the node holding it;
    returns each name's carrier in the enclosing graph."""
    node, parent = g.owner, g.parent
    op = node.op_type
    out: dict[str, str] = {}
    if op not in ("If", "Loop", "Scan") or node.domain not in ("", "ai.onnx"):
        for n in names:
            result.skip(f"{n!r}: inside {node.op_type} {node.name!r}, which cannot carry extra outputs")
        return out
    for n in names:
        elem, dims = _type_of(types, g, n)
        exposed = n
        if n in g.output_names:  # already returned (merged with the other branch): give it its own carrier
            exposed = g.make_node("Identity", [n], [g.unique_name(f"{n}__debug")],
                                  name=g.unique_name(f"{n}__debug", kind="node")).outputs[0]
        g.add_output(exposed, elem, [d if isinstance(d, int) else None for d in dims])
        if op == "If":
            other_key = "else_branch" if g.attr_name == "then_branch" else "then_branch"
            other = node.subgraphs()[other_key]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
            # the same rank, no elements (a scalar cannot be empty: it reads 0)
            filler = np.zeros((0,) * len(dims), dtype)
            empty = other.make_node("Constant", [], 1, name=other.unique_name(f"{n}__empty", kind="node"),
                                    value=filler)
            other.add_output(empty.outputs[0], elem, list(filler.shape))
        elif op == "Scan":
            for key in ("scan_output_axes", "scan_output_directions"):
                if key in node.attrs:
                    node.attrs[key] = list(node.attrs[key]) + [0]
        carrier = parent.add_node_output(node, parent.unique_name(f"{n}__{op.lower()}"))
        out[n] = carrier
    return out
