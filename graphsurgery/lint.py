"""Deployment lint: what will trouble a backend, and which pass fixes it."""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass
from typing import Any

from .core.model import Model
from .ops import is_default_domain

# Older onnx-tensorrt parsers (TensorRT 7.0 and before) clamped InstanceNormalization epsilon
# to at least 1e-4, silently changing results of models exported with PyTorch's 1e-5.
TRT_EPSILON_CLAMP = 1e-4


@dataclass
class Finding:
    code: str
    where: str
    message: str
    fix: str | None  # a pipeline step that repairs it, when there is one

    def __str__(self) -> str:
        return f"[{self.code}] {self.where}: {self.message}" + (f" (fix: {self.fix})" if self.fix else "")


def lint(model: Model, *, epsilon_floor: float = TRT_EPSILON_CLAMP) -> list[Finding]:
    """Every finding, in a stable order: model-level first, then by node. The findings for one
    backend, each with its severity, come from :func:`graphsurgery.backends.lint_for`, which
    builds on these."""
    found: list[Finding] = []
    g = model.graph
    inits = set(g.initializers)
    for name in g.input_names:
        if name in inits:
            continue
        dims = g.tensor(name).shape
        if dims and (dims[0] is None or (isinstance(dims[0], str) and dims[0].startswith("unk__"))):
            found.append(Finding("batch-dim", f"input {name!r}",
                                 f"the batch dimension is {'unnamed' if dims[0] is None else repr(dims[0])}",
                                 "set-batch(size=N)"))
    counts = collections.Counter(n.name for gr in model.graphs() for n in gr.nodes if n.name)
    dups = sorted(name for name, c in counts.items() if c > 1)
    if dups:
        found.append(Finding("duplicate-names", "model", f"{len(dups)} node name(s) used more than once "
                             f"({', '.join(repr(d) for d in dups[:3])}{', ...' if len(dups) > 3 else ''}); "
                             "tools that look nodes up by name get the wrong one", None))
    verdicts = None
    shape_glue = 0
    constants = 0
    for node in model.find_nodes():
        gr = node.graph
        where = f"node {node.name!r} in {gr.describe()}"
        op = node.op_type
        if not is_default_domain(node.domain):
            continue
        if op == "If" and node.inputs and node.inputs[0]:
            cond = gr.tensor(node.inputs[0])
            if cond.is_constant:
                found.append(Finding("constant-if", where, "the condition is a constant", "remove-if"))
            else:
                values, shaped = _graph_inputs_behind(gr, node.inputs[0])
                if values:
                    found.append(Finding("input-if", where, f"the condition depends on the value of graph input(s) "
                                         f"{', '.join(map(repr, values))}; if they are settings, freeze them",
                                         f"freeze-inputs({values[0]}=VALUE),remove-if"))
                elif shaped:
                    found.append(Finding("shape-if", where, f"the condition depends on the shape of graph input(s) "
                                         f"{', '.join(map(repr, shaped))}; with static shapes it folds away",
                                         f"set-shape({shaped[0]}=DIMS),remove-if"))
        elif op == "PRelu":
            if verdicts is None:
                from .passes.fix_prelu_slope import classify  # the pass's own reading of the graph
                verdicts = {id(v.node.proto): v for v in classify(model)}
            v = verdicts.get(id(node.proto))
            if v is not None and v.verdict == "channel" and v.dims[-1] != v.length:
                found.append(Finding("prelu-slope", where, f"slope [{v.length}] broadcasts against the "
                                     f"last axis of a {v.dims} input, not the channels; onnxruntime fails with "
                                     "'Attempting to broadcast an axis by a dimension other than 1'",
                                     "fix-prelu-slope"))
            elif v is not None and v.verdict == "channel":
                found.append(Finding("prelu-slope", where, f"{v.why}: as written it scales the last axis",
                                     "fix-prelu-slope"))
            elif v is not None and v.verdict == "ambiguous":
                found.append(Finding("prelu-slope-ambiguous", where, f"{v.why}; nothing in the graph says which is "
                                     "meant; as written it scales the last axis (if per channel was meant, fix-prelu-slope(axis=1))",
                                     "fix-prelu-slope(axis=1)"))
            found.append(Finding("prelu", where, "PRelu: some backends and NPU toolchains reject it",
                                 "prelu-to-relu"))
        elif op == "InstanceNormalization":
            eps = node.attrs.get("epsilon", 1e-5)
            if _f32(eps) < _f32(epsilon_floor):  # as stored and as the parser compares: float32
                found.append(Finding("instancenorm-epsilon", where,
                                     f"epsilon {eps:g} is below {epsilon_floor:g}; older TensorRT ONNX parsers clamp it "
                                     "to 1e-4, silently changing results",
                                     f"instancenorm-epsilon(epsilon={epsilon_floor:g})"))
        elif op in ("Shape", "Size"):
            shape_glue += 1
        elif op == "Constant":
            constants += 1
    if shape_glue:
        found.append(Finding("shape-glue", "model", f"{shape_glue} Shape/Size node(s): shape arithmetic that folds "
                             "away once input shapes are static", "set-shape(...),fold-constants"))
    if constants:
        found.append(Finding("constant-nodes", "model", f"{constants} Constant node(s) that can be initializers",
                             "fold-constants"))
    return found


def _graph_inputs_behind(g, name: str, limit: int = 500) -> tuple[list[str], list[str]]:
    """Graph inputs whose values the tensor ``name`` is computed from, and those whose shapes
    only (through Shape/Size) it is computed from; searching at most ``limit`` tensors."""
    root = g
    while root.parent is not None:
        root = root.parent
    inputs = set(root.input_names) - set(root.initializers)
    values, shaped = set(), set()
    stack, seen = [(name, False)], set()
    while stack and len(seen) < limit:
        t, via_shape = stack.pop()
        if (t, via_shape) in seen:
            continue
        seen.add((t, via_shape))
        if t in inputs:
            (shaped if via_shape else values).add(t)
            continue
        p = g.producer(t)
        if p is not None:
            through = via_shape or p.op_type in ("Shape", "Size")
            stack.extend((x, through) for x in p.inputs if x)
    return sorted(values), sorted(shaped - values)


def _f32(x: float) -> float:
    import numpy as np

    return float(np.float32(x))


def as_dicts(findings: list[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]
