"""``Model.check()``: onnx's checker plus graphsurgery's own invariants, with named culprits."""

from __future__ import annotations

import json
import os
import signal
import warnings
from typing import TYPE_CHECKING

import onnx

from . import tensors
from .errors import GraphSurgeryError, InvalidModelError, ModelLoadError
from .serialization import TWO_GB, _create_temp, iter_model_tensors, validate_header, validate_text

if TYPE_CHECKING:
    from .core.graph import Graph
    from .core.model import Model


def problems(model: Model, *, onnx_checker: bool = True, full: bool = True,
             scanned: ScanResult | None = None) -> list[str]:
    """Every problem found, one line each; an empty list means the model is sound.

    ``scanned`` (from :meth:`Model.save`, its :func:`scan` of the model just sorted) leaves
    out what a save already knows: text was validated at load, and protobuf refuses text that
    is not UTF-8 on every assignment since;
    the graphs' invariants are found by save's one ordered pass (:func:`scan`), which sees
    the same problems in a model it has just sorted, without building the index.
    """
    found: list[str] = []
    try:
        validate_header(model.proto, "the model")
        if scanned is None:
            validate_text(model.proto, "the model")
    except ModelLoadError as exc:
        return [str(exc)]  # nothing else can be read safely
    if scanned is None or scanned.problem is not None:
        # the index names what the one ordered pass only notices (a cycle, not "read before defined")
        for g in [model.graph, *model.functions.values()]:
            try:
                _graph_problems(g, found)
            except GraphSurgeryError as exc:
                found.append(str(exc))
        if scanned is not None and not found:
            found.append(scanned.problem)
    for t in iter_model_tensors(model.proto):
        bad = tensors.problem(t, model.base_dir)
        if bad is not None:
            found.append(bad)
    if onnx_checker and not found:
        external = scanned.has_external if scanned is not None else scan(model).has_external
        found.extend(_onnx_checker(model, full, external))
    return found


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


def _onnx_checker(model: Model, full: bool, external: bool) -> list[str]:
    proto = model.proto
    if proto.ByteSize() >= TWO_GB and not external:
        return []  # onnx's checker cannot take a proto this size in memory; our own checks ran
    return _isolated(lambda: _run_onnx_checker(model, proto, external, full))


def _run_onnx_checker(model: Model, proto, external: bool, full: bool) -> list[str]:
    try:
        if external and model.base_dir is not None:
            # onnx's checker finds external data only relative to a model path, so give it one
            # beside the data, for the length of the check.
            try:
                fd, tmp = _create_temp(model.base_dir, "graphsurgery-check.onnx")
            except OSError:  # a read-only folder: check the model itself (external files were resolved above)
                onnx.checker.check_model(proto, full_check=full)
            else:
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(proto.SerializeToString())
                    onnx.checker.check_model(tmp, full_check=full)
                finally:
                    os.unlink(tmp)
        else:
            onnx.checker.check_model(proto, full_check=full)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()
        return [f"onnx checker: {first[0] if first else exc}"]
    except onnx.shape_inference.InferenceError as exc:
        return [f"onnx shape inference: {str(exc).strip().splitlines()[0]}"]
    except Exception as exc:  # noqa: BLE001 - onnx's C++ code raises whatever it meets; it is a finding
        first = str(exc).strip().splitlines()
        return [f"onnx checker failed on this model ({type(exc).__name__}: {first[0] if first else ''})"]
    return []


def _isolated(run) -> list[str]:
    """Run ``run()`` (onnx's checker) in a forked child where the platform allows it.

    onnx's C++ checker and shape inference abort or crash the whole process on some damaged
    models; in a child, a crash becomes a reported problem instead of taking the caller down.
    Forking costs a few milliseconds: the child shares the parent's memory, model included.
    """
    if not hasattr(os, "fork"):
        return run()
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (forking a process that has threads)
        pid = os.fork()
    if pid == 0:  # the child: report, and leave without running any of the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            import faulthandler

            faulthandler.disable()  # a crash here is the parent's to report, not a dump on stderr
            data = json.dumps(run()).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    try:
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return [f"onnx checker crashed ({name}) on this model; it is damaged in a way onnx does not report"]
    try:
        return list(json.loads(b"".join(chunks)))
    except ValueError:
        return ["onnx checker stopped without a verdict on this model"]


def check(model: Model, *, onnx_checker: bool = True, full: bool = True) -> None:
    found = problems(model, onnx_checker=onnx_checker, full=full)
    if found:
        head = found[0] if len(found) == 1 else f"{len(found)} problems, first: {found[0]}"
        raise InvalidModelError(head, found)


class ScanResult:
    """What one ordered pass over every graph found."""

    __slots__ = ("problem", "depth", "has_external")

    def __init__(self) -> None:
        self.problem: str | None = None
        self.depth = 0
        self.has_external = False


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
    if level > res.depth:
        res.depth = level
    if isinstance(g, onnx.FunctionProto):
        local = set(g.input)
        outputs = list(g.output)
    else:
        inputs = {vi.name for vi in g.input}
        local = set(inputs)
        for t in g.initializer:
            if t.name in local and t.name not in inputs:  # (an initializer may also be an input)
                res.problem = res.problem or f"initializer {t.name!r} appears twice in {where}"
            local.add(t.name)
            if t.data_location == external:
                res.has_external = True
        for sp in g.sparse_initializer:
            local.add(sp.values.name)
        if outer:
            for name in local:
                if name and any(name in s for s in outer):
                    res.problem = res.problem or f"{where} redefines {name!r} from an enclosing scope"
        outputs = [vi.name for vi in g.output]
    scopes = [*outer, local]
    for p in g.node:
        for name in p.input:
            if name and name not in local and not any(name in s for s in outer):
                res.problem = res.problem or (f"node {p.name!r} ({p.op_type}) in {where} reads {name!r} before "
                                              "anything defines it")
        for name in p.output:
            if name:
                if name in local:
                    res.problem = res.problem or f"{name!r} is defined twice in {where} (node {p.name!r})"
                elif outer and any(name in s for s in outer):
                    res.problem = res.problem or (f"node {p.name!r} in {where} redefines {name!r} from an "
                                                  "enclosing scope")
                local.add(name)
        if p.attribute:
            for a in p.attribute:
                t = a.type
                if t == GRAPH:
                    _scan(a.g, scopes, f"{where} › node {p.name!r}.{a.name}", level + 1, res)
                elif t == GRAPHS:
                    for sub in a.graphs:
                        _scan(sub, scopes, f"{where} › node {p.name!r}.{a.name}", level + 1, res)
                elif t == TENSOR:
                    if a.t.data_location == external:
                        res.has_external = True
                elif t == TENSORS:
                    if any(x.data_location == external for x in a.tensors):
                        res.has_external = True
    for name in outputs:
        if name and name not in local and not any(name in s for s in outer):
            res.problem = res.problem or f"output {name!r} of {where} has no producer"


__all__ = ["check", "problems", "scan"]
