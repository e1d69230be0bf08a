"""``Model.check()``: onnx's checker plus graphsurgery's own invariants, with named culprits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from .errors import GraphSurgeryError, InvalidModelError, ModelLoadError
from .serialization import TWO_GB, validate_header

if TYPE_CHECKING:
    from .graph import Graph
    from .model import Model


def problems(model: Model, *, onnx_checker: bool = True, full: bool = True) -> list[str]:
    """Every problem found, one line each; an empty list means the model is sound."""
    found: list[str] = []
    try:
        validate_header(model.proto, "the model")
    except ModelLoadError as exc:
        found.append(str(exc))
    for g in [model.graph, *model.functions.values()]:
        _graph_problems(g, found)
    if onnx_checker and not found:
        found.extend(_onnx_checker(model, full))
    return found


def _graph_problems(g: Graph, found: list[str]) -> None:
    try:
        g._ensure()
    except InvalidModelError as exc:
        found.append(str(exc))
        return
    where = g.describe()
    for n in g._nodes:
        for name in n.proto.input:
            if name and g._resolve(name) is None:
                found.append(f"node {n.name!r} ({n.op_type}) in {where} reads {name!r}, which nothing defines "
                             "(dangling input)")
        for name in n.proto.output:
            if name and g.parent is not None and g.parent._resolve(name) is not None:
                found.append(f"node {n.name!r} in {where} redefines {name!r} from an enclosing scope")
    for name in g.output_names:
        if name and g._resolve(name) is None:
            found.append(f"output {name!r} of {where} has no producer")
    for name in g._inputs:
        if name in g._producer:
            found.append(f"{name!r} is both an input of {where} and the output of node {g._producer[name].name!r}")
    for name in g._inits:
        if name in g._producer:
            found.append(f"{name!r} is both an initializer of {where} and the output of node "
                         f"{g._producer[name].name!r}")
    try:
        g.toposort()
    except InvalidModelError as exc:
        found.append(str(exc))
    for sub in g.subgraphs():
        _graph_problems(sub, found)


def _onnx_checker(model: Model, full: bool) -> list[str]:
    proto = model.proto
    if proto.ByteSize() >= TWO_GB:
        return []  # onnx's checker cannot take a proto this size in memory; our own checks ran
    try:
        onnx.checker.check_model(proto, full_check=full)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()
        return [f"onnx checker: {first[0] if first else exc}"]
    except onnx.shape_inference.InferenceError as exc:
        return [f"onnx shape inference: {str(exc).strip().splitlines()[0]}"]
    return []


def check(model: Model, *, onnx_checker: bool = True, full: bool = True) -> None:
    found = problems(model, onnx_checker=onnx_checker, full=full)
    if found:
        head = found[0] if len(found) == 1 else f"{len(found)} problems, first: {found[0]}"
        raise InvalidModelError(head, found)


__all__ = ["check", "problems", "GraphSurgeryError"]
