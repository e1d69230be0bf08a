"""Structural diff of two models: signature, opsets, nodes, attributes, initializers."""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from typing import Any

import onnx

from .core.model import Model, load


@dataclass
class ModelDiff:
    inputs: dict[str, list] = field(default_factory=dict)   # added / removed / changed
    outputs: dict[str, list] = field(default_factory=dict)
    opsets: dict[str, Any] = field(default_factory=dict)
    nodes_added: list[str] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    nodes_changed: list[str] = field(default_factory=list)
    initializers: dict[str, list] = field(default_factory=dict)
    ops: dict[str, tuple[int, int]] = field(default_factory=dict)  # op: (count in A, count in B)

    @property
    def empty(self) -> bool:
        return not (any(self.inputs.values()) or any(self.outputs.values()) or self.opsets or self.nodes_added
                    or self.nodes_removed or self.nodes_changed or any(self.initializers.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "outputs": self.outputs, "opsets": self.opsets,
                "nodes": {"added": self.nodes_added, "removed": self.nodes_removed, "changed": self.nodes_changed},
                "initializers": self.initializers, "ops": {k: list(v) for k, v in self.ops.items()}}

    def summary(self) -> list[str]:
        """A few lines of counts: what kinds of things changed, and how many."""
        if self.empty:
            return ["no structural difference"]
        lines = []
        for title, d in (("inputs", self.inputs), ("outputs", self.outputs), ("initializers", self.initializers)):
            counts = [f"{len(d.get(k, []))} {k}" + (f" ({_names(d[k])})" if title != "initializers" else "")
                      for k in ("added", "removed", "changed") if d.get(k)]
            if counts:
                lines.append(f"{title}: {', '.join(counts)}")
        if self.opsets:
            lines.append("opsets: " + ", ".join(f"{dom or 'ai.onnx'} {a} -> {b}" for dom, (a, b) in self.opsets.items()))
        counts = [f"{len(x)} {k}" for k, x in (("added", self.nodes_added), ("removed", self.nodes_removed),
                                               ("changed", self.nodes_changed)) if x]
        if counts:
            lines.append(f"nodes: {', '.join(counts)}")
        if self.ops:
            lines.append("ops: " + ", ".join(f"{op} {a}->{b}" for op, (a, b) in self.ops.items()))
        return lines

    def details(self) -> list[str]:
        """One line per changed input, output, initializer, opset and node."""
        lines = []
        for title, d in (("inputs", self.inputs), ("outputs", self.outputs), ("initializers", self.initializers)):
            for kind in ("added", "removed", "changed"):
                for item in d.get(kind, []):
                    lines.append(f"{title[:-1]} {kind}: {item}")
        for dom, (a, b) in self.opsets.items():
            lines.append(f"opset {dom or 'ai.onnx'}: {a} -> {b}")
        for n in self.nodes_removed:
            lines.append(f"- {n}")
        for n in self.nodes_added:
            lines.append(f"+ {n}")
        for n in self.nodes_changed:
            lines.append(f"~ {n}")
        return lines

    def format(self, details: bool = True) -> str:
        """The summary first; then, with ``details``, every change one per line."""
        lines = self.summary()
        if details and not self.empty:
            lines += [""] + self.details()
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format(details=True)

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"


def diff(a: Any, b: Any) -> ModelDiff:
    """What changed from model ``a`` to model ``b``, every graph included (subgraph nodes are
    listed with their graph). Nodes are matched by the tensors they produce."""
    ma = a if isinstance(a, Model) else load(a)
    mb = b if isinstance(b, Model) else load(b)
    out = ModelDiff()
    out.inputs = _io(ma.proto.graph.input, mb.proto.graph.input)
    out.outputs = _io(ma.proto.graph.output, mb.proto.graph.output)
    oa, ob = ma.opsets, mb.opsets
    out.opsets = {d: (oa.get(d), ob.get(d)) for d in sorted(set(oa) | set(ob)) if oa.get(d) != ob.get(d)}
    na, nb = _nodes(ma), _nodes(mb)
    for key in na.keys() - nb.keys():
        out.nodes_removed.append(_describe(na[key]))
    for key in nb.keys() - na.keys():
        out.nodes_added.append(_describe(nb[key]))
    for key in na.keys() & nb.keys():
        pa, pb = na[key][1], nb[key][1]
        changes = []
        if (pa.op_type, pa.domain) != (pb.op_type, pb.domain):
            changes.append(f"op {pa.op_type} -> {pb.op_type}")
        if list(pa.input) != list(pb.input):
            changes.append(f"inputs {list(pa.input)} -> {list(pb.input)}")
        attrs_a = {x.name: x.SerializeToString() for x in pa.attribute}
        attrs_b = {x.name: x.SerializeToString() for x in pb.attribute}
        for name in sorted(set(attrs_a) | set(attrs_b)):
            if attrs_a.get(name) != attrs_b.get(name):
                changes.append(f"attribute {name}: {_attr(pa, name)} -> {_attr(pb, name)}")
        if changes:
            out.nodes_changed.append(f"{_describe(nb[key])}: " + "; ".join(changes))
    for lst in (out.nodes_added, out.nodes_removed, out.nodes_changed):
        lst.sort()
    ia, ib = _inits(ma), _inits(mb)
    out.initializers = {
        "added": sorted(f"{k} {ib[k][0]}" for k in ib.keys() - ia.keys()),
        "removed": sorted(f"{k} {ia[k][0]}" for k in ia.keys() - ib.keys()),
        "changed": sorted(f"{k}: {ia[k][0]} -> {ib[k][0]}" + ("" if ia[k][0] != ib[k][0] else " (values)")
                          for k in ia.keys() & ib.keys() if ia[k] != ib[k])}
    ha, hb = ma.op_histogram(), mb.op_histogram()
    out.ops = {op: (ha.get(op, 0), hb.get(op, 0)) for op in sorted(set(ha) | set(hb)) if ha.get(op) != hb.get(op)}
    return out


def _names(items: list[str], limit: int = 5) -> str:
    """The tensor names of signature entries (``name type`` or ``name: a -> b``)."""
    names = [x.split(" ", 1)[0].rstrip(":") for x in items]
    return ", ".join(names[:limit]) + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def _io(a, b) -> dict[str, list]:
    da = {vi.name: _type(vi) for vi in a}
    db = {vi.name: _type(vi) for vi in b}
    return {"added": [f"{k} {db[k]}" for k in db if k not in da],
            "removed": [f"{k} {da[k]}" for k in da if k not in db],
            "changed": [f"{k}: {da[k]} -> {db[k]}" for k in da if k in db and da[k] != db[k]]}


def _type(vi: onnx.ValueInfoProto) -> str:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        return vi.type.WhichOneof("value") or "?"
    dt = onnx.TensorProto.DataType.Name(tt.elem_type).lower() if tt.elem_type else "?"
    if not tt.HasField("shape"):
        return dt
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    return f"{dt}[{','.join(dims)}]"


def _nodes(m: Model) -> dict:
    out = {}
    counter: collections.Counter = collections.Counter()
    for g in m.graphs():
        for n in g.nodes:
            key = tuple(n.proto.output) if any(n.proto.output) else (g.describe(), n.proto.op_type, n.proto.name)
            counter[key] += 1
            if counter[key] > 1:
                key = key + (counter[key],)
            out[key] = (g.describe(), n.proto)
    return out


def _describe(entry) -> str:
    where, p = entry
    label = f"{p.op_type} {p.name!r}" if p.name else p.op_type
    scope = "" if where == "main graph" else f" [{where}]"
    return f"{label} -> {', '.join(p.output)}{scope}"


def _attr(p: onnx.NodeProto, name: str) -> str:
    for a in p.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, (onnx.GraphProto, onnx.TensorProto)) or (isinstance(v, list) and v and isinstance(
                    v[0], (onnx.GraphProto, onnx.TensorProto))):
                return f"<{type(v).__name__}>"
            if isinstance(v, float):
                return f"{v:.6g}"
            text = repr(v.decode() if isinstance(v, bytes) else v)
            return text if len(text) < 60 else text[:57] + "..."
    return "(absent)"


def _inits(m: Model) -> dict[str, tuple[str, str]]:
    out = {}
    for g in m.graphs():
        if g.is_function:
            continue
        for name, t in g.initializers.items():
            digest = hashlib.sha1(t.SerializeToString()).hexdigest()
            out[name] = (f"{onnx.TensorProto.DataType.Name(t.data_type).lower()}{list(t.dims)}", digest)
    return out
