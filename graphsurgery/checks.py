"""``Model.check()``: onnx's checker plus graphsurgery's own invariants, with named culprits."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, NamedTuple

import onnx

from . import tensors
from .checker import NOT_UTF8, PendingCheck, start_check
from .errors import GraphSurgeryError, InvalidModelError, ModelLoadError
from .serialization import TWO_GB, iter_model_tensors, validate_header, validate_text

if TYPE_CHECKING:
    from .core.graph import Graph
    from .core.model import Model


class Verified(NamedTuple):
    """A state of the model that passed the full :func:`check`: the fingerprint of its bytes,
    the folder its external data was checked in, and what :func:`scan` measured of it."""

    digest: bytes
    base_dir: str | None
    depth: int
    has_external: bool


def fingerprint(data: bytes) -> bytes:
    """A digest of the serialized model: equal digests, equal models."""
    return hashlib.sha256(data).digest()


def review(model: Model, *, known: Verified | None = None, data: bytes | None = None, ordered: bool = False,
           onnx_checker: bool = True, full: bool = True) -> tuple[list[str], Verified | None]:
    """What :func:`problems` finds, and the :class:`Verified` state to remember when the full
    check passed, without checking the very same bytes twice.

    ``known`` is the state that last passed; ``data`` the model serialized, if the caller has
    it. The fingerprint covers the whole proto, so whatever changed it (this library's verbs,
    or code editing ``model.proto`` directly) makes the check run again in full. What lies
    outside the proto, the external data files, is checked every time. ``ordered``: the graphs
    were just put in order (as a save does), so one ordered :func:`scan` finds their invariants.
    """
    if known is not None:
        if data is None:
            data = model.proto.SerializeToString()
        if known.base_dir == model.base_dir and known.digest == fingerprint(data):
            return (_external_problems(model) if known.has_external else []), known
    found, data, scanned = _problems(model, onnx_checker, full, scan(model) if ordered else None, data)
    if found or not (onnx_checker and full):
        return found, None
    if scanned is None:
        scanned = scan(model)
    return [], Verified(fingerprint(data), model.base_dir, scanned.depth, scanned.has_external)


def _external_problems(model: Model) -> list[str]:
    found = []
    for t in iter_model_tensors(model.proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            bad = tensors.problem(t, model.base_dir)
            if bad is not None:
                found.append(bad)
    return found


def problems(model: Model, *, onnx_checker: bool = True, full: bool = True,
             scanned: ScanResult | None = None) -> list[str]:
    """Every problem found, one line each; an empty list means the model is sound.

    ``scanned``, a :func:`scan` of the model as it is (in order), finds the graphs' invariants
    in one ordered pass; the index is built to name them only when it saw one (it notices
    "read before defined" where the index names a cycle).
    """
    return _problems(model, onnx_checker, full, scanned, None)[0]


def _problems(model: Model, onnx_checker: bool, full: bool, scanned: ScanResult | None,
              data: bytes | None) -> tuple[list[str], bytes | None, ScanResult | None]:
    """:func:`problems`, plus the bytes the checker was given and the scan, when made."""
    found: list[str] = []
    pending = None
    if onnx_checker and scanned is not None and scanned.problem is None and data is not None:
        # the bytes are final: onnx's checker starts now, in its child, while the rest is checked
        # here; the child checks the text too (a second parse costs memory: there, not here)
        pending = _start_onnx_checker(data, model.base_dir, full, scanned.has_external, text=True)
    try:
        try:
            validate_header(model.proto, "the model")
            if pending is None:
                if data is None:
                    data = model.proto.SerializeToString()
                validate_text(model.proto, "the model", data)
        except ModelLoadError as exc:
            return [str(exc)], data, scanned  # nothing else can be read safely
        if scanned is None or scanned.problem is not None:
            for g in [model.graph, *model.functions.values()]:
                try:
                    _graph_problems(g, found)
                except GraphSurgeryError as exc:
                    found.append(str(exc))
            if scanned is not None and not found:
                found.append(scanned.problem)
            data = None  # (building the index may have put nodes in order)
        base_dir = model.base_dir
        for t in (scanned.tensors if scanned is not None and scanned.problem is None
                  else iter_model_tensors(model.proto)):
            bad = tensors.problem(t, base_dir)
            if bad is not None:
                found.append(bad)
        if pending is not None and (found or not onnx_checker):
            pending.cancel()
            pending = None
        if pending is not None or (onnx_checker and not found):
            if pending is None:
                if scanned is None:
                    scanned = scan(model)
                if data is None:
                    data = model.proto.SerializeToString()
                pending = _start_onnx_checker(data, model.base_dir, full, scanned.has_external)
            if pending is not None:
                verdict = pending.result()
                pending = None
                if verdict == [NOT_UTF8]:
                    try:
                        validate_text(model.proto, "the model", data)
                    except ModelLoadError as exc:
                        return [str(exc)], data, scanned
                found.extend(verdict)
    finally:
        if pending is not None:
            pending.cancel()
    return found, data, scanned


def _graph_problems(g: Graph, found: list[str]) -> None:
    try:
        nodes = g.nodes_in_file_order()
    except InvalidModelError as exc:
        found.append(str(exc))
        return
    where = g.describe()
    for n in nodes:
        for name in n.proto.input:
            if name and g.resolve(name) is None:
                found.append(f"node {n.name!r} ({n.op_type}) in {where} reads {name!r}, which nothing defines "
                             "(dangling input)")
        for name in n.proto.output:
            if name and g.parent is not None and g.parent.resolve(name) is not None:
                found.append(f"node {n.name!r} in {where} redefines {name!r} from an enclosing scope")
    for name in g.output_names:
        if name and g.resolve(name) is None:
            found.append(f"output {name!r} of {where} has no producer")
    for name in g.input_names:
        if g.producer(name) is not None:
            found.append(f"{name!r} is both an input of {where} and the output of node {g.producer(name).name!r}")
    for name in g.initializers:
        if g.producer(name) is not None:
            found.append(f"{name!r} is both an initializer of {where} and the output of node "
                         f"{g.producer(name).name!r}")
    try:
        g.toposort()
    except InvalidModelError as exc:
        found.append(str(exc))
    for sub in g.subgraphs():
        _graph_problems(sub, found)


def _start_onnx_checker(data: bytes, base_dir: str | None, full: bool, external: bool,
                        text: bool = False) -> PendingCheck | None:
    if len(data) >= TWO_GB and not external:
        return None  # onnx's checker cannot take a proto this size in memory; our own checks ran
    return start_check(data, base_dir if external else None, full, text)


def check(model: Model, *, onnx_checker: bool = True, full: bool = True) -> None:
    found = problems(model, onnx_checker=onnx_checker, full=full)
    if found:
        head = found[0] if len(found) == 1 else f"{len(found)} problems, first: {found[0]}"
        raise InvalidModelError(head, found)


class ScanResult:
    """What one ordered pass over every graph found."""

    __slots__ = ("depth", "has_external", "problem", "tensors")

    def __init__(self) -> None:
        self.problem: str | None = None
        self.depth = 0
        self.has_external = False
        self.tensors: list[onnx.TensorProto] = []  # every tensor held in the model, in no particular order


def scan(model: Model) -> ScanResult:
    """One pass over every graph in file order, cheap enough to run at every save.

    Finds the first name read before it is defined (dangling input, or nodes out of
    order), the first name defined twice, outputs nothing defines; and measures subgraph
    nesting depth and whether any tensor keeps its data externally.
    """
    res = ScanResult()
    _scan(model.proto.graph, [], "main graph", 0, res)
    for f in model.proto.functions:
        _scan(f, [], f"function {f.domain}::{f.name}", 0, res)
    return res


def _scan(g, outer: list[set[str]], where: str, level: int, res: ScanResult) -> None:
    external = onnx.TensorProto.EXTERNAL
    GRAPH, GRAPHS = onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS
    TENSOR, TENSORS = onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS
    found = res.tensors
    res.depth = max(res.depth, level)
    if isinstance(g, onnx.FunctionProto):
        local = set(g.input)
        outputs = list(g.output)
    else:
        inputs = {vi.name for vi in g.input}
        local = set(inputs)
        initializers = list(g.initializer)
        found.extend(initializers)
        for t in initializers:
            name = t.name
            if name in local and name not in inputs:  # (an initializer may also be an input)
                res.problem = res.problem or f"initializer {name!r} appears twice in {where}"
            local.add(name)
            if t.data_location == external:
                res.has_external = True
        for sp in g.sparse_initializer:
            local.add(sp.values.name)
            found += (sp.values, sp.indices)
        if outer:
            for name in local:
                if name and any(name in s for s in outer):
                    res.problem = res.problem or f"{where} redefines {name!r} from an enclosing scope"
        outputs = [vi.name for vi in g.output]
    scopes = [*outer, local]
    for p in g.node:
        for name in p.input:
            if name not in local and name and not any(name in s for s in outer):
                res.problem = res.problem or (f"node {p.name!r} ({p.op_type}) in {where} reads {name!r} before "
                                              "anything defines it")
        for name in p.output:
            if name in local:
                if name:
                    res.problem = res.problem or f"{name!r} is defined twice in {where} (node {p.name!r})"
            elif outer and name and any(name in s for s in outer):
                res.problem = res.problem or (f"node {p.name!r} in {where} redefines {name!r} from an "
                                              "enclosing scope")
            else:
                local.add(name)
        if p.attribute:
            for a in p.attribute:
                t = a.type
                if t == TENSOR:
                    found.append(a.t)
                    if a.t.data_location == external:
                        res.has_external = True
                elif t == GRAPH:
                    _scan(a.g, scopes, f"{where} › node {p.name!r}.{a.name}", level + 1, res)
                elif t == GRAPHS:
                    for sub in a.graphs:
                        _scan(sub, scopes, f"{where} › node {p.name!r}.{a.name}", level + 1, res)
                elif t == TENSORS:
                    found.extend(a.tensors)
                    if any(x.data_location == external for x in a.tensors):
                        res.has_external = True
    local.discard("")
    for name in outputs:
        if name and name not in local and not any(name in s for s in outer):
            res.problem = res.problem or f"output {name!r} of {where} has no producer"


__all__ = ["Verified", "check", "problems", "review", "scan"]
