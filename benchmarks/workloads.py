"""The benchmark's edits, written idiomatically once per tool.

Every function takes a source model path and a destination path, does the whole job (load,
edit, save) and returns nothing; the driver (run.py) times it in a fresh process. A tool's
import happens outside the function, so it is not timed.

- ``structural_<tool>(src, dst, w)``: replace every node of ``w.op`` by the nodes of
  ``w.recipe``, make every reader of the old output read the new last node's output, drop the
  old node, set ``w.attr`` on every node of its op type, remove what is unused, sort
  topologically, save.
- ``attribute_<tool>(src, dst, a)``: set one attribute on every node of one op type, save.
- ``pipeline_graphsurgery(src, dst, text)``: a graphsurgery pass pipeline, load to save.

A recipe is tool-neutral: a list of ``(op_type, inputs)`` where an input is ``"in0"``/``"in1"``
(the replaced node's inputs), ``"const"`` (one scalar initializer ``w.const`` added once) or
``"#k"`` (the output of the recipe's k-th node).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class Structural:
    op: str
    recipe: tuple[tuple[str, tuple[str, ...]], ...]
    const: tuple[str, float] | None = None
    attr: tuple[str, str, Any] | None = None  # (op type, attribute, value) set on every such node


@dataclass(frozen=True)
class Attribute:
    op: str
    name: str
    value: Any


# PRelu(x, slope) = Relu(x) - slope * Relu(-x), exactly
PRELU = Structural("PRelu", (("Relu", ("in0",)), ("Neg", ("in0",)), ("Relu", ("#1",)), ("Mul", ("#2", "in1")),
                             ("Sub", ("#0", "#3"))), attr=("InstanceNormalization", "epsilon", 1e-3))
# LeakyRelu(x, alpha=0.01) = Max(x, 0.01 * x), exactly
LEAKY_RELU = Structural("LeakyRelu", (("Mul", ("in0", "const")), ("Max", ("in0", "#0"))),
                        const=("leaky_alpha", 0.01))
# Relu(x) = Max(x, 0); the Softmax axis is set too (to the value it has)
RELU_MAX = Structural("Relu", (("Max", ("in0", "const")),), const=("relu_zero", 0.0),
                      attr=("Softmax", "axis", -1))


def _external_location(src: str, dst: str) -> str | None:
    """Where a tool that must be told writes external data: only for models that have it."""
    return os.path.basename(dst) + ".data" if os.path.exists(src + ".data") else None


def _onnx_save(m: onnx.ModelProto, src: str, dst: str) -> None:
    loc = _external_location(src, dst)
    if loc:
        onnx.save(m, dst, save_as_external_data=True, location=loc)
    else:
        onnx.save(m, dst)


def _attr_proto(name: str, value: Any) -> onnx.AttributeProto:
    return helper.make_attribute(name, value)


# =====================================================================
# raw protobuf: onnx.helper, a reader map built by hand, onnx.save
# =====================================================================
def _raw_set_attr(nodes, op: str, name: str, value: Any) -> None:
    for n in nodes:
        if n.op_type == op:
            for a in n.attribute:
                if a.name == name:
                    a.CopyFrom(_attr_proto(name, value))
                    break
            else:
                n.attribute.append(_attr_proto(name, value))


def attribute_raw(src: str, dst: str, a: Attribute) -> None:
    m = onnx.load(src)
    _raw_set_attr(m.graph.node, a.op, a.name, a.value)
    _onnx_save(m, src, dst)


def _raw_subgraph_nodes(n: onnx.NodeProto):
    """The nodes inside ``n``'s subgraphs (If/Loop/Scan bodies), at any depth."""
    for a in n.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs):
            for inner in sub.node:
                yield inner
                yield from _raw_subgraph_nodes(inner)


def _raw_reads(n: onnx.NodeProto) -> set[str]:
    """Names a node reads, including those its subgraphs read from the enclosing scope (names
    the subgraphs define themselves are included too; they are never this scope's outputs)."""
    names = {x for x in n.input if x}
    for inner in _raw_subgraph_nodes(n):
        names.update(x for x in inner.input if x)
    return names


def structural_raw(src: str, dst: str, w: Structural) -> None:
    m = onnx.load(src)
    g = m.graph
    readers = defaultdict(list)  # name -> [(node, input index)], readers inside subgraphs included
    for n in g.node:
        for reader in (n, *_raw_subgraph_nodes(n)):
            for i, name in enumerate(reader.input):
                if name:
                    readers[name].append((reader, i))
    if w.const:
        g.initializer.append(numpy_helper.from_array(np.array(w.const[1], np.float32), w.const[0]))
    nodes = []
    for n in g.node:
        if n.op_type != w.op:
            nodes.append(n)
            continue
        outs = []
        for k, (op, refs) in enumerate(w.recipe):
            ins = [n.input[int(r[2:])] if r.startswith("in") else w.const[0] if r == "const" else outs[int(r[1:])]
                   for r in refs]
            outs.append(f"{n.output[0]}_{k}")
            nodes.append(helper.make_node(op, ins, [outs[-1]], name=f"{n.name}_{k}"))
        old, new = n.output[0], outs[-1]
        for reader, i in readers.pop(old, ()):
            reader.input[i] = new
        for o in g.output:
            if o.name == old:
                o.name = new
    if w.attr:
        _raw_set_attr(nodes, *w.attr)
    # remove unused: walk back from the outputs
    producer = {o: n for n in nodes for o in n.output if o}
    live, stack, seen = set(), [o.name for o in g.output], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        p = producer.get(name)
        if p is not None and id(p) not in live:
            live.add(id(p))
            stack.extend(_raw_reads(p))
    nodes = [n for n in nodes if id(n) in live]
    read = {x for n in nodes for x in _raw_reads(n)} | {o.name for o in g.output}
    inits = [t for t in g.initializer if t.name in read]
    # topological sort (Kahn), keeping the current order where it is valid
    index = {id(n): i for i, n in enumerate(nodes)}
    users = [[] for _ in nodes]
    indeg = [0] * len(nodes)
    for i, n in enumerate(nodes):
        for x in _raw_reads(n):
            p = producer.get(x)
            if p is not None and p is not n:
                users[index[id(p)]].append(i)
                indeg[i] += 1
    ready = [i for i in range(len(nodes)) if indeg[i] == 0][::-1]
    order = []
    while ready:
        i = ready.pop()
        order.append(nodes[i])
        for u in reversed(users[i]):
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    del g.node[:]
    g.node.extend(order)
    if len(inits) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(inits)
    _onnx_save(m, src, dst)


# =====================================================================
# graphsurgery: its public editing API
# =====================================================================
def attribute_graphsurgery(src: str, dst: str, a: Attribute) -> None:
    import graphsurgery as gs

    m = gs.load(src)
    for n in m.find_nodes(a.op):
        n.attrs[a.name] = a.value
    m.save(dst)


def structural_graphsurgery(src: str, dst: str, w: Structural) -> None:
    import graphsurgery as gs

    m = gs.load(src)
    g = m.graph
    if w.const:
        g.set_initializer(w.const[0], np.float32(w.const[1]))
    for node in g.find_nodes(w.op):
        outs = []
        for op, refs in w.recipe:
            ins = [node.inputs[int(r[2:])] if r.startswith("in") else w.const[0] if r == "const"
                   else outs[int(r[1:])] for r in refs]
            outs.append(g.make_node(op, ins).outputs[0])
        g.rewire(node.outputs[0], outs[-1], outputs=True)
        g.remove_node(node)
    if w.attr:
        for n in g.find_nodes(w.attr[0]):
            n.attrs[w.attr[1]] = w.attr[2]
    g.remove_unused()
    g.toposort()
    m.save(dst)


def pipeline_graphsurgery(src: str, dst: str, text: str) -> None:
    import graphsurgery as gs
    from graphsurgery.passes import Pipeline

    m = gs.load(src)
    Pipeline.from_text(text).run(m)
    m.save(dst)


# =====================================================================
# onnx-graphsurgeon: import_onnx, Nodes and Variables, cleanup().toposort(), export_onnx
# =====================================================================
def attribute_onnx_graphsurgeon(src: str, dst: str, a: Attribute) -> None:
    import onnx_graphsurgeon as ogs

    g = ogs.import_onnx(onnx.load(src))
    for n in g.nodes:
        if n.op == a.op:
            n.attrs[a.name] = a.value
    _onnx_save(ogs.export_onnx(g), src, dst)


def structural_onnx_graphsurgeon(src: str, dst: str, w: Structural) -> None:
    import onnx_graphsurgeon as ogs

    g = ogs.import_onnx(onnx.load(src))
    const = ogs.Constant(w.const[0], np.array(w.const[1], np.float32)) if w.const else None
    for node in [n for n in g.nodes if n.op == w.op]:
        outs = []
        for k, (op, refs) in enumerate(w.recipe):
            ins = [node.inputs[int(r[2:])] if r.startswith("in") else const if r == "const" else outs[int(r[1:])]
                   for r in refs]
            outs.append(ogs.Variable(f"{node.outputs[0].name}_{k}"))
            g.nodes.append(ogs.Node(op, name=f"{node.name}_{k}", inputs=ins, outputs=[outs[-1]]))
        old, new = node.outputs[0], outs[-1]
        for reader in list(old.outputs):
            for i, t in enumerate(reader.inputs):
                if t is old:
                    reader.inputs[i] = new
        g.outputs = [new if t is old else t for t in g.outputs]
        node.inputs.clear()
        node.outputs.clear()
    if w.attr:
        for n in g.nodes:
            if n.op == w.attr[0]:
                n.attrs[w.attr[1]] = w.attr[2]
    g.cleanup().toposort()
    _onnx_save(ogs.export_onnx(g), src, dst)


# =====================================================================
# onnx-ir: onnx_ir.load, ir.node, replace_all_uses_with, graph.remove, sort(), onnx_ir.save
# =====================================================================
def _ir_attr(ir, name: str, value: Any):
    return ir.AttrInt64(name, value) if isinstance(value, int) else ir.AttrFloat32(name, value)


def attribute_onnx_ir(src: str, dst: str, a: Attribute) -> None:
    import onnx_ir as ir

    m = ir.load(src)
    for n in m.graph:
        if n.op_type == a.op:
            n.attributes[a.name] = _ir_attr(ir, a.name, a.value)
    ir.save(m, dst, external_data=_external_location(src, dst))


def structural_onnx_ir(src: str, dst: str, w: Structural) -> None:
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    m = ir.load(src)
    g = m.graph
    const = None
    if w.const:
        const = ir.val(w.const[0], const_value=ir.tensor(np.array(w.const[1], np.float32), name=w.const[0]))
        g.register_initializer(const)
    for node in [n for n in g if n.op_type == w.op]:
        new = []
        for k, (op, refs) in enumerate(w.recipe):
            ins = [node.inputs[int(r[2:])] if r.startswith("in") else const if r == "const"
                   else new[int(r[1:])].outputs[0] for r in refs]
            new.append(ir.node(op, ins, name=f"{node.name}_{k}"))
            new[-1].outputs[0].name = f"{node.outputs[0].name}_{k}"
        g.insert_before(node, new)
        node.outputs[0].replace_all_uses_with(new[-1].outputs[0], replace_graph_outputs=True)
        g.remove(node, safe=True)
    if w.attr:
        for n in g:
            if n.op_type == w.attr[0]:
                n.attributes[w.attr[1]] = _ir_attr(ir, w.attr[1], w.attr[2])
    RemoveUnusedNodesPass()(m)
    g.sort()
    ir.save(m, dst, external_data=_external_location(src, dst))


TOOLS = ("raw", "graphsurgery", "onnx-graphsurgeon", "onnx-ir")


def structural(tool: str):
    return globals()["structural_" + tool.replace("-", "_")]


def attribute(tool: str):
    return globals()["attribute_" + tool.replace("-", "_")]


# the edits the driver names on its command line
SPECS: dict[str, Structural | Attribute] = {
    "prelu": PRELU,
    "leaky-relu": LEAKY_RELU,
    "relu-max": RELU_MAX,
    "instancenorm-epsilon": Attribute("InstanceNormalization", "epsilon", 1e-3),
    "leaky-relu-alpha": Attribute("LeakyRelu", "alpha", 0.02),
    "softmax-axis": Attribute("Softmax", "axis", -1),
}
PIPELINE = "fold-constants,remove-if,eliminate-noops,cleanup"


def run(kind: str, tool: str, src: str, dst: str, spec: str) -> None:
    """One job: ``kind`` is structural, attribute or pipeline."""
    if kind == "pipeline":
        pipeline_graphsurgery(src, dst, spec)
    else:
        (structural if kind == "structural" else attribute)(tool)(src, dst, SPECS[spec])
