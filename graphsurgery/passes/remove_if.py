"""remove-if: inline every If whose condition is a constant, keeping the branch taken."""

from __future__ import annotations

import onnx
from onnx import helper

from ..core.graph import Graph, Node
from ..core.model import Model
from ..ops import if_branch_taken, is_default_domain
from .base import Option, Pass, PassError, PassResult, parse_bool, parse_list
from .fold_constants import FoldConstants


class RemoveIf(Pass):
    """Replace each ``If`` whose condition is constant by the nodes of the branch it takes, at
    any nesting depth, and report which branch was kept.

    Branch initializers move to the enclosing graph; branch names that would collide there are
    renamed; the If's output names are kept, so readers and graph outputs stay connected (a
    branch that returns an outer value or its own initializer gets an Identity). With
    ``fold`` (the default) constants are folded between rounds, so conditions computed from
    static shapes (``Shape → Gather → Equal``) resolve too.
    ``keep_shape_operands_in`` is passed to that folding (see ``fold-constants``).
    """

    name = "remove-if"
    options = {"fold": Option(parse_bool, True, "fold constants between rounds so more conditions resolve"),
               "keep_shape_operands_in": Option(parse_list, [], "branches where the folding between rounds leaves "
                                                                "shape operands computed (see fold-constants)")}

    def apply(self, model: Model, result: PassResult) -> None:
        kept: list[dict[str, str]] = []
        renamed: dict[str, str] = {}
        origin: dict[str, str] = {}  # the other way round: a name after inlining -> the branch tensor
        while True:
            inlined = 0
            for g in list(model.graphs()):
                if g.is_function or g.model is None:
                    continue
                types: list[onnx.ValueInfoProto] = []  # what the inlined branches knew of their tensors
                for node in g.find_nodes("If"):
                    if not node.alive or not is_default_domain(node.domain):
                        continue
                    branch = _taken_branch(g, node, result)
                    if branch is None:
                        continue
                    where = g.describe()
                    moved = _inline(g, node, branch, renamed, origin, types)
                    kept.append({"node": node.name, "graph": where, "kept": branch})
                    result.note(f"If {node.name!r} in {where}: kept {branch} ({moved} node(s) inlined)")
                    inlined += 1
                if types:
                    _keep_types(g, types)
                if inlined:
                    break  # graphs changed: walk them afresh
            if inlined:
                continue
            if not self.opts["fold"] or not model.find_nodes("If"):
                break
            # fold only what conditions may need
            folding = FoldConstants(constant_nodes=False,
                                    keep_shape_operands_in=self.opts["keep_shape_operands_in"]).run(model)
            if not folding.changed:
                break
            result.note(f"folded {folding.details.get('folded', 0)} constant node(s) to resolve conditions")
        result.details["branches"] = kept
        result.details["renamed"] = renamed  # branch tensor -> its name after inlining
        for node in model.find_nodes("If"):
            result.skip(f"If {node.name!r} in {node.graph.describe()}: condition {node.inputs[0]!r} is not constant")


def _taken_branch(g: Graph, node: Node, result: PassResult) -> str | None:
    cond = node.inputs[0] if node.inputs else ""
    if not cond:
        return None
    t = g.tensor(cond)
    if not t.is_constant:
        return None
    value = t.numpy()
    taken = if_branch_taken(value)
    if taken is None:
        result.skip(f"If {node.name!r}: condition {cond!r} has {value.size} elements, not one")
    return taken


def _inline(g: Graph, node: Node, key: str, renamed: dict[str, str], origin: dict[str, str],
            types: list[onnx.ValueInfoProto]) -> int:
    """Inline ``node``'s branch ``key`` into ``g``; ``renamed`` and its inverse ``origin`` record
    the branch tensors that change name, ``types`` gets the branch's value_info (renamed), for
    :func:`_keep_types`."""
    branch: Graph = node.subgraphs()[key]
    if len(branch.proto.sparse_initializer):
        raise PassError(f"If {node.name!r}: the {key} holds sparse initializers, which remove-if does not move; "
                        "convert them to dense first")
    # 1. branch-level names that would clash once they live in g's scope: visible there, or
    # defined under another node of g (the If's own subgraphs go with it)
    taken = g.taken_check(exclude=node)
    defined = branch.defined_names()  # an If branch has no inputs: its nodes and initializers
    for name in sorted([n for n in defined if taken(n)]):
        new = g.unique_name(name)
        branch.rename(name, new)
        _note_rename(renamed, origin, name, new)
    # 2. copies of the branch's nodes and initializers; outputs take the If's output names
    outs = list(node.outputs)
    b_outs = branch.output_names
    rename: dict[str, str] = {}
    identities = []
    seen: set[str] = set()
    for o, b in zip(outs, b_outs, strict=False):
        if not o:
            continue
        if branch.defines(b) and branch.producer(b) is not None and b not in seen and b not in branch.input_names:
            rename[b] = o
            _note_rename(renamed, origin, origin.get(b, b), o)
        elif not branch.has_initializer(b) and o not in g.output_names and g.resolve(b) is not None:
            g.rewire(o, b, outputs=True)  # an outer value: its readers read it directly
        else:  # a branch initializer, a graph output, or returned twice: alias it
            identities.append(helper.make_node("Identity", [b], [o], name=g.unique_name(f"{node.name}_{key}_out",
                                                                                     kind="node")))
        seen.add(b)
    nodes = []
    for n in branch.nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(n.proto)
        _rename_in_node(copy, rename)
        nodes.append(copy)
    inits = []
    for t in branch.initializers.values():
        copy = onnx.TensorProto()
        copy.CopyFrom(t)
        inits.append(copy)
    g.replace_node(node, nodes + identities, initializers=inits)
    # 3. what the branch knew about its tensors' types, kept once the graph's Ifs are done
    if not g.is_function:
        for vi in branch.proto.value_info:
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(vi)
            copy.name = rename.get(vi.name, vi.name)
            types.append(copy)
    return len(nodes)


def _keep_types(g: Graph, types: list[onnx.ValueInfoProto]) -> None:
    """Add to ``g``'s value_info the entries of ``types`` whose names it has none for (the first
    of a name wins). Once per graph and round: reading ``g.proto`` puts its nodes in order."""
    field = g.proto.value_info
    known = {vi.name for vi in field}
    for vi in types:
        if vi.name not in known:
            known.add(vi.name)
            field.add().CopyFrom(vi)


def _note_rename(renamed: dict[str, str], origin: dict[str, str], name: str, new: str) -> None:
    """Record that branch tensor ``name`` is now called ``new`` (in constant time: the inverse
    map answers "which branch tensor is this name?" without a scan)."""
    old = renamed.get(name)
    if old is not None and origin.get(old) == name:
        del origin[old]
    renamed[name] = new
    origin.setdefault(new, name)


def _rename_in_node(node: onnx.NodeProto, mapping: dict[str, str]) -> None:
    """Apply ``mapping`` to a node's inputs and outputs and, recursively, to what its
    subgraphs read (names are unique model-wide, so no scope can shadow them)."""
    if not mapping:
        return
    for field in (node.input, node.output):
        for i, name in enumerate(field):
            if name in mapping:
                field[i] = mapping[name]
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs) \
            if a.type == onnx.AttributeProto.GRAPHS else []
        for sub in graphs:
            for n in sub.node:
                _rename_in_node(n, mapping)
            for vi in sub.output:
                if vi.name in mapping:
                    vi.name = mapping[vi.name]
