"""A pattern rewriter: rules as data, matched on the editing API, replaced atomically.

    from graphsurgery.rewrite import Op, Const, Rule, rewrite

    double_neg = Rule("double-neg", Op("Neg", [Op("Neg", ["x"], name="inner")], name="outer"),
                      build=lambda m, g: Alias(m["x"]))
    rewrite(model, [double_neg])

A pattern is a tree of :class:`Op` whose leaves are variable names (any tensor, bound by
name: the same name twice must be the same tensor), :class:`Const` (a constant, with an
optional predicate on its value) or :data:`ANY`. Inner ops must be read only by the match
(so replacing them is safe), and ``commutative`` ops also match with their two inputs
swapped. A rule's ``condition`` returns True or the reason it does not apply; ``build``
returns the nodes that replace the match (they must produce the root's outputs) or an
:class:`Alias` when the root's output is simply another tensor. When a rule matches
nowhere, :func:`rewrite` reports the nearest near-miss and why it failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import onnx

from .core.graph import Graph
from .core.model import Model
from .core.node import Node
from .ops import DEFAULT_DOMAINS


class _AnyInput:
    def __repr__(self) -> str:
        return "ANY"


ANY = _AnyInput()  # any tensor, or an omitted optional input


@dataclass
class Const:
    """A constant input (initializer or Constant node), bound by ``name`` to its value."""

    name: str
    where: Callable[[np.ndarray], bool] | None = None


@dataclass
class Op:
    op_type: str
    inputs: list = field(default_factory=list)
    name: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)  # value, or a predicate on the value
    domain: str = ""
    commutative: bool = False
    min_inputs: int | None = None  # trailing optional inputs may be absent (default: all required)
    exclusive: bool = True  # an inner op must be read only by the match (False: it may be shared)


@dataclass
class Alias:
    """The root's output is this existing tensor: readers are rewired to it."""

    tensor: str


@dataclass
class Match:
    root: Node
    nodes: dict[str, Node] = field(default_factory=dict)
    tensors: dict[str, str] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, key: str):
        """A constant's value, a variable's tensor name, or a named node, by binding name."""
        if key in self.consts:
            return self.consts[key]
        if key in self.tensors:
            return self.tensors[key]
        return self.nodes[key]


@dataclass
class Rule:
    name: str
    pattern: Op
    build: Callable[[Match, Graph], Any]
    condition: Callable[[Match, Graph], Any] | None = None
    doc: str = ""


class MissKind(Enum):
    """Why a pattern did not match a node."""

    OP_TYPE = "another op type or domain"
    ATTRIBUTE = "an attribute does not fit"
    INPUT_COUNT = "another number of inputs"
    INPUT_OMITTED = "an input the pattern needs is omitted"
    NOT_SAME_TENSOR = "a variable bound to two tensors"
    NOT_SAME_NODE = "a named op bound to two nodes"
    NOT_CONSTANT = "an input is not a constant"
    CONSTANT_REJECTED = "a constant does not fit the rule"
    NOT_PRODUCED_HERE = "an input is not computed by the op the pattern wants"
    SHARED = "the shape fits, but an inner node is also read elsewhere"
    CONDITION = "the pattern fits, but the rule's condition does not hold"


@dataclass
class MatchFailure(Exception):
    """A failed match: its ``kind``, how many ops deep into the pattern it happened, and a
    ``reason`` naming the node or tensor. The nearest miss of a rule is the one reported: a
    failed condition (the whole pattern fitted) beats any structural miss; among those the
    deeper wins, an inner node that is also read elsewhere counting one level deeper (its op
    fitted)."""

    kind: MissKind
    depth: int
    reason: str

    @property
    def nearness(self) -> tuple[bool, int]:
        return (self.kind is MissKind.CONDITION, self.depth + (self.kind is MissKind.SHARED))

    def __str__(self) -> str:
        return self.reason


def match(pattern: Op, node: Node) -> Match:
    """Match ``pattern`` rooted at ``node``; raises :class:`MatchFailure` otherwise."""
    m = Match(root=node)
    _match_op(pattern, node, m, 0, root=True)
    return m


def _match_op(p: Op, node: Node, m: Match, depth: int, root: bool = False) -> int:
    label = node.name or node.op_type
    if node.op_type != p.op_type or node.domain not in ((p.domain,) if p.domain else DEFAULT_DOMAINS):
        raise MatchFailure(MissKind.OP_TYPE, depth, f"node {label!r} is {node.op_type}, not {p.op_type}")
    for key, want in p.attrs.items():
        have = node.attrs.get(key)
        ok = want(have) if callable(want) else have == want
        if not ok:
            raise MatchFailure(MissKind.ATTRIBUTE, depth, f"node {label!r}: attribute {key}={have!r} does not fit")
    ins = list(node.inputs)
    needed = p.min_inputs if p.min_inputs is not None else len(p.inputs)
    if len(ins) < needed or len(ins) > len(p.inputs):
        raise MatchFailure(MissKind.INPUT_COUNT, depth,
                           f"node {label!r} has {len(ins)} inputs; the pattern takes {needed}-{len(p.inputs)}")
    if p.name:
        m.nodes[p.name] = node
    orders = [list(range(len(p.inputs)))]
    if p.commutative and len(p.inputs) == 2:
        orders.append([1, 0])
    best: MatchFailure | None = None
    for order in orders:
        trial = Match(root=m.root, nodes=dict(m.nodes), tensors=dict(m.tensors), consts=dict(m.consts))
        try:
            deepest = depth
            for i, pi in enumerate(order):
                sub = p.inputs[pi]
                tensor = ins[i] if i < len(ins) else ""
                deepest = max(deepest, _match_input(sub, tensor, node, trial, depth + 1))
            m.nodes, m.tensors, m.consts = trial.nodes, trial.tensors, trial.consts
            return deepest
        except MatchFailure as miss:
            if best is None or miss.nearness > best.nearness:
                best = miss
    raise best  # type: ignore[misc]


def _match_input(sub, tensor: str, reader: Node, m: Match, depth: int) -> int:
    g = reader.graph
    if sub is ANY:
        return depth
    if not tensor:
        raise MatchFailure(MissKind.INPUT_OMITTED, depth,
                           f"node {reader.name!r}: an input the pattern needs is omitted")
    if isinstance(sub, str):
        if sub in m.tensors and m.tensors[sub] != tensor:
            raise MatchFailure(MissKind.NOT_SAME_TENSOR, depth,
                               f"{sub!r} must be the same tensor in both places ({m.tensors[sub]!r}, {tensor!r})")
        m.tensors[sub] = tensor
        return depth
    if isinstance(sub, Const):
        t = g.tensor(tensor)
        if not t.is_constant:
            raise MatchFailure(MissKind.NOT_CONSTANT, depth,
                               f"node {reader.name!r}: input {tensor!r} is not a constant")
        value = np.asarray(t.numpy())
        if sub.where is not None and not sub.where(value):
            raise MatchFailure(MissKind.CONSTANT_REJECTED, depth,
                               f"node {reader.name!r}: constant {tensor!r} does not fit the rule")
        m.consts[sub.name] = value
        m.tensors[sub.name] = tensor
        return depth
    producer = g.producer(tensor)
    if producer is None or producer.graph is not g:
        raise MatchFailure(MissKind.NOT_PRODUCED_HERE, depth,
                           f"input {tensor!r} of node {reader.name!r} is not computed by a {sub.op_type} here")
    if producer.op_type != sub.op_type:
        raise MatchFailure(MissKind.NOT_PRODUCED_HERE, depth,
                           f"input {tensor!r} of node {reader.name!r} comes from {producer.op_type}, not {sub.op_type}")
    if sub.exclusive and (len(g.consumers(tensor)) != 1 or tensor in g.output_names):
        raise MatchFailure(MissKind.SHARED, depth,
                           f"{tensor!r} is also read elsewhere, so {producer.name!r} cannot be rewritten away")
    if sub.name and sub.name in m.nodes and m.nodes[sub.name] is not producer:
        raise MatchFailure(MissKind.NOT_SAME_NODE, depth, f"{sub.name!r} must be the same node in both places")
    return _match_op(sub, producer, m, depth)


@dataclass(frozen=True)
class Site:
    """Where a rule was applied: the rule, the root node's name (else its op type), its graph."""

    rule: str
    node: str
    graph: str


@dataclass
class RewriteResult:
    applied: list[tuple[str, str]] = field(default_factory=list)  # (rule, root node)
    sites: list[Site] = field(default_factory=list)               # the same, with the graph
    near_misses: dict[str, str] = field(default_factory=dict)     # rule -> why its nearest candidate failed
    misses: dict[str, MatchFailure] = field(default_factory=dict)  # rule -> its nearest failed match


def rewrite(model: Model | Graph, rules: list[Rule], *, max_rounds: int = 10) -> RewriteResult:
    """Apply ``rules`` in every graph until none matches (at most ``max_rounds`` sweeps)."""
    out = RewriteResult()
    graphs = list(model.graphs()) if isinstance(model, Model) else [model]
    best_miss: dict[str, MatchFailure] = {}
    for _ in range(max_rounds):
        changed = False
        for g in graphs:
            for node in g.nodes:
                if not node.alive:
                    continue  # removed by an earlier rewrite in this sweep
                for rule in rules:
                    if node.op_type != rule.pattern.op_type:
                        continue
                    try:
                        m = match(rule.pattern, node)
                    except MatchFailure as miss:
                        _keep_nearest(best_miss, rule.name, miss)
                        continue
                    if rule.condition is not None:
                        verdict = rule.condition(m, g)
                        if verdict is not True:
                            reason = verdict if isinstance(verdict, str) else "its condition does not hold"
                            _keep_nearest(best_miss, rule.name, MatchFailure(
                                MissKind.CONDITION, 0, f"node {node.name!r}: {reason}"), latest=True)
                            continue
                    if _apply(g, m, rule.build(m, g)):
                        out.applied.append((rule.name, node.name or node.op_type))
                        out.sites.append(Site(rule.name, node.name or node.op_type, g.describe()))
                        changed = True
                        break
        if not changed:
            break
        graphs = list(model.graphs()) if isinstance(model, Model) else graphs
    applied = {r for r, _ in out.applied}
    out.misses = {name: miss for name, miss in best_miss.items() if name not in applied}
    out.near_misses = {name: miss.reason for name, miss in out.misses.items()}
    return out


def _keep_nearest(best: dict[str, MatchFailure], rule: str, miss: MatchFailure, latest: bool = False) -> None:
    """Keep ``miss`` as the rule's nearest unless a nearer one is known (``latest``: or an
    equally near one)."""
    old = best.get(rule)
    if old is None or miss.nearness > old.nearness or (latest and miss.nearness == old.nearness):
        best[rule] = miss


def _apply(g: Graph, m: Match, replacement) -> bool:
    root = m.root
    inner = [n for n in m.nodes.values() if n is not root]
    if replacement is None:
        return False
    if isinstance(replacement, Alias):
        out = root.outputs[0]
        if out in g.output_names:
            producer = g.producer(replacement.tensor)
            if producer is None or producer.graph is not g or replacement.tensor in g.output_names or \
                    len(g.consumers(replacement.tensor)) != 1:
                return False  # cannot alias a graph output onto this tensor without changing the interface
            g.detach_nodes([root])
            g.rename(replacement.tensor, out)
        else:
            g.rewire(out, replacement.tensor, outputs=True)
            g.detach_nodes([root])
    else:
        protos, inits = replacement if isinstance(replacement, tuple) else (replacement, [])
        g.replace_node(root, protos, initializers=inits)
    # the interior goes as a whole, except nodes something outside it still reads (shared ones)
    doomed = {id(n.proto): n for n in inner if n.alive}
    changed = True
    while changed:
        changed = False
        for key, n in list(doomed.items()):
            for o in n.outputs:
                if not o:
                    continue
                outside = [c for c in g.consumers(o) if id(c.proto) not in doomed]
                if outside or o in g.output_names:
                    del doomed[key]
                    changed = True
                    break
    if doomed:
        g.remove_nodes(list(doomed.values()))
    return True


def optional_const(g, node, i: int):
    """The value of ``node``'s optional input ``i``: None when omitted, the reason when it is
    not a constant."""
    if len(node.inputs) <= i or not node.inputs[i]:
        return None
    t = g.tensor(node.inputs[i])
    if not t.is_constant:
        return f"its input {i} ({node.inputs[i]!r}) is computed, not a constant"
    return np.asarray(t.numpy())


def const_init(g: Graph, base: str, value: np.ndarray) -> onnx.TensorProto:
    """A new initializer proto with a fresh name, for replacements."""
    from . import tensors

    return tensors.from_numpy(np.ascontiguousarray(value), g.unique_name(base))
