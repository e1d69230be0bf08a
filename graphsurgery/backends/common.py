"""The deployment lint's findings, weighed for one backend, and helpers the backends share."""

from __future__ import annotations

from ..lint import TRT_EPSILON_CLAMP, lint
from . import BackendFinding


def generic(model, backend: str, *, legacy: bool, given_shapes: bool, frozen: tuple[str, ...]) -> list[BackendFinding]:
    out = []
    for f in lint(model):
        kw = {"code": f.code, "where": f.where, "message": f.message, "fix": f.fix}
        if f.code == "prelu-slope":  # wrong as written on every backend (onnxruntime fails outright)
            out.append(BackendFinding(**kw, severity="error", auto=True))
        elif f.code == "prelu-slope-ambiguous":
            out.append(BackendFinding(**kw, severity="warning"))
        elif f.code == "prelu":
            continue  # all three backends take PRelu (TensorRT's matrix: PRelu | Y)
        elif f.code == "constant-if":
            if backend == "tensorrt":
                out.append(BackendFinding(**{**kw, "message": "the condition is a constant; TensorRT would build "
                                             "both branches as a conditional layer"}, severity="warning", auto=True))
            else:
                out.append(BackendFinding(**kw, severity="info"))
        elif f.code in ("input-if", "shape-if"):
            # TensorRT parses If (matrix: If | Y); the branches become a conditional layer.
            needed = f.fix.split("(", 1)[1].split("=", 1)[0] if f.fix and "(" in f.fix else ""
            auto = (f.code == "input-if" and needed in frozen) or (f.code == "shape-if" and given_shapes)
            sev = "warning" if backend == "tensorrt" else "info"
            out.append(BackendFinding(**kw, severity=sev, auto=auto))
        elif f.code == "instancenorm-epsilon":
            if backend != "tensorrt":
                continue
            fix = f"instancenorm-epsilon(below={TRT_EPSILON_CLAMP:g},epsilon={TRT_EPSILON_CLAMP:g})"
            if legacy:
                out.append(BackendFinding(**{**kw, "fix": fix}, severity="error", auto=True,
                                          source="history: instancenorm-epsilon-clamp"))
            else:
                msg = (f.message.replace("older TensorRT ONNX parsers clamp", "TensorRT parsers before 10.0 "
                       "clamp") + "; TensorRT 10 computes it as written")
                out.append(BackendFinding(**{**kw, "message": msg, "fix": fix}, severity="info",
                                          source="history: instancenorm-epsilon-clamp"))
        elif f.code == "constant-nodes":  # no backend needs it: fix folds only what a backend wants constant
            out.append(BackendFinding(**kw, severity="info"))
        elif f.code == "shape-glue":
            out.append(BackendFinding(**kw, severity="info", auto=given_shapes))
        else:  # batch-dim, duplicate-names, and what the lint learns later
            out.append(BackendFinding(**kw, severity="info"))
    return out


def where(node) -> str:
    return f"node {node.name!r} in {node.graph.describe()}"


def behind(graph, name: str, limit: int = 2000) -> str:
    """What the value of tensor ``name`` depends on: ``"const"`` (constants only: folds),
    ``"shape"`` (also the shapes of graph inputs: folds once they are static) or ``"value"``
    (the values of inputs, or of a subgraph's own inputs: known only at run time)."""
    worst = "const"
    stack, seen = [(graph, name, False)], set()
    while stack:
        if len(seen) > limit:
            return "value"
        g, t, via_shape = stack.pop()
        if (id(g), t, via_shape) in seen or not t:
            continue
        seen.add((id(g), t, via_shape))
        v = g.tensor(t)
        if v.is_constant:
            continue
        p = v.producer
        if p is None:  # a graph input (of the model, or of a subgraph: a loop variable)
            if not via_shape or v.graph.parent is not None:
                return "value"
            worst = "shape"
            continue
        if p.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                         "Bernoulli") or p.subgraphs():
            return "value"
        through = via_shape or p.op_type in ("Shape", "Size")
        stack.extend((v.graph, x, through) for x in p.inputs if x)
    return worst
