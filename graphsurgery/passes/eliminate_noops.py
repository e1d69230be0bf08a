"""eliminate-noops: remove nodes that compute nothing, and merge duplicate computations."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from .. import shapes
from ..core.model import Model
from ..ops import is_nondeterministic
from ..rewrite import ANY, Alias, Const, Op, Rule
from .base import PassResult, RulePass


def _axes(value, rank=None) -> list[int]:
    return sorted(int(a) % rank if rank else int(a) for a in np.asarray(value).reshape(-1))


def rules(types: shapes.Types) -> list[Rule]:
    """The no-op rules. Each takes the shape facts it needs from ``types``."""

    def static(g, name):
        return shapes.static_shape(types.get(g, name))

    def same_cast(m, g):
        t = types.get(g, m["x"])
        have = t.tensor_type.elem_type if t is not None and t.HasField("tensor_type") else 0
        return have == m.root.attrs["to"] or "the input's element type differs or is unknown"

    def reshape_noop(m, g):
        shape = static(g, m["x"])
        if shape is None:
            return "the input's shape is unknown"
        target = [int(v) for v in m["shape"].reshape(-1)]
        if m.root.attrs.get("allowzero", 0) == 0:
            target = [shape[i] if v == 0 and i < len(shape) else v for i, v in enumerate(target)]
        if -1 in target:
            known = int(np.prod([v for v in target if v != -1]))
            target = [int(np.prod(shape)) // known if v == -1 else v for v in target] if known else target
        return list(shape) == target or "the target shape differs from the input's"

    def expand_noop(m, g):
        shape = static(g, m["x"])
        if shape is None:
            return "the input's shape is unknown"
        try:
            out = np.broadcast_shapes(tuple(shape), tuple(int(v) for v in m["shape"].reshape(-1)))
        except ValueError:
            return "the shapes do not broadcast"
        return tuple(out) == tuple(shape) or "Expand grows the tensor"

    def dropout_inference(m, g):
        outs = m.root.outputs
        if len(outs) > 1 and outs[1] and g.is_used(outs[1]):
            return "its mask output is read"
        ins = m.root.inputs
        if len(ins) > 2 and ins[2]:
            t = g.tensor(ins[2])
            if not t.is_constant or bool(np.asarray(t.numpy()).reshape(-1)[0]):
                return "training_mode is not a constant false"
        return True

    def same_axes(m, g):
        return _axes(m["a"]) == _axes(m["b"]) or "different axes"

    alias_x = lambda m, g: Alias(m["x"])  # noqa: E731
    return [
        Rule("identity", Op("Identity", ["x"]), alias_x),
        Rule("dropout", Op("Dropout", ["x", ANY, ANY], min_inputs=1), alias_x, dropout_inference),
        Rule("cast-same-type", Op("Cast", ["x"]), alias_x, same_cast),
        Rule("reshape-same-shape", Op("Reshape", ["x", Const("shape")]), alias_x, reshape_noop),
        Rule("transpose-identity", Op("Transpose", ["x"], attrs={"perm": lambda p: p is not None and list(p) == list(
            range(len(p)))}), alias_x),
        Rule("expand-same-shape", Op("Expand", ["x", Const("shape")]), alias_x, expand_noop),
        Rule("pad-zero", Op("Pad", ["x", Const("pads", lambda v: not np.any(v)), ANY, ANY], min_inputs=2), alias_x),
        Rule("unsqueeze-squeeze", Op("Unsqueeze", [Op("Squeeze", ["x", Const("a")], name="sq"), Const("b")]),
             alias_x, same_axes),
        Rule("squeeze-unsqueeze", Op("Squeeze", [Op("Unsqueeze", ["x", Const("a")], name="unsq"), Const("b")]),
             alias_x, same_axes),
    ]


# initializers up to this size (serialized) are compared by their bytes, larger ones by a digest
# first (the bytes are compared when digests match), so no copy of the weights is kept
_KEYED_BY_BYTES = 4096
# the roots of the rules whose conditions read inferred shapes
_SHAPE_ROOTS = frozenset({"Cast", "Reshape", "Expand"})


class EliminateNoops(RulePass):
    """Remove nodes that change nothing: Identity; Dropout in inference (mask unread);
    Cast to the same type; Reshape, Transpose or Expand that leave the tensor as it is; Pad by
    zero; Unsqueeze of a Squeeze (or the reverse) on the same axes. Then merge duplicates:
    nodes computing the same op on the same inputs with the same attributes, and initializers
    holding the same value (common subexpression elimination). A node whose output is a graph
    output is removed only when its input can take the output's name."""

    name = "eliminate-noops"

    near_misses = "never"
    count_key = "removed"

    def rules(self, model: Model) -> list[Rule]:
        # only the Cast, Reshape and Expand rules ask for shapes; inference costs a pass over the model
        asks = any(p.op_type in _SHAPE_ROOTS for g in model.graphs() for p in g.proto.node)
        return rules(shapes.infer(model) if asks else shapes.Types({}))

    def change_line(self, site) -> str:
        return f"{site.rule}: removed {site.node!r}"

    def after(self, model: Model, result: PassResult, rewritten) -> None:
        merged = _cse(model)
        for line in merged:
            result.note(line)
        result.details["merged"] = len(merged)


def _cse(model: Model) -> list[str]:
    lines = []
    for g in list(model.graphs()):
        if g.is_function:
            continue
        interface = set(g.input_names) | set(g.output_names)  # merging neither changes: fixed here
        # identical initializers (not graph inputs): keep the first
        inits = sorted((name, t) for name, t in g.initializers.items() if name not in interface)
        shapes_seen = Counter((t.data_type, tuple(t.dims)) for _, t in inits)
        seen_init: dict[tuple, str] = {}
        duplicates = []
        for name, t in inits:
            shape = (t.data_type, tuple(t.dims))
            if shapes_seen[shape] < 2:
                continue  # no other initializer has its type and shape: it duplicates nothing
            data = _without_name(t)
            small = len(data) <= _KEYED_BY_BYTES
            key = (shape, data if small else hashlib.blake2b(data, digest_size=16).digest())
            first = seen_init.get(key)
            if first is None:
                seen_init[key] = name
            elif g.is_used(name) and (small or _without_name(g.initializer_proto(first)) == data):
                g.rewire(name, first)
                duplicates.append(name)
                lines.append(f"initializer {name!r} is a duplicate of {first!r}")
        g.remove_initializers(duplicates)
        seen: dict[tuple, object] = {}
        outputs = set(g.output_names)
        for node in g.nodes:
            if node.has_subgraphs() or is_nondeterministic(node.op_type):
                continue
            key = (node.domain, node.op_type, node.inputs,
                   tuple(sorted(a.SerializeToString() for a in node.proto.attribute)), len(node.outputs))
            first = seen.get(key)
            if first is None:
                seen[key] = node
                continue
            if any(o in outputs for o in node.outputs if o):
                continue
            for mine, theirs in zip(node.outputs, first.outputs, strict=True):
                if mine and theirs:
                    g.rewire(mine, theirs, outputs=True)
            if not any(g.is_used(o) for o in node.outputs if o):
                g.remove_node(node)
                lines.append(f"{node.op_type} {node.name!r} duplicates {first.name!r}")
    return lines


def _without_name(t) -> bytes:
    """The tensor's serialized bytes with its name left out (and nothing else)."""
    import onnx

    anonymous = onnx.TensorProto()
    anonymous.CopyFrom(t)
    anonymous.ClearField("name")
    return anonymous.SerializeToString()
