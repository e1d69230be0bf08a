"""The checks behind ``Model.check()`` and every save: onnx's checker plus graphsurgery's own
invariants, with named culprits.

This module reads protos, never the :class:`~graphsurgery.Model`: the model hands it the proto,
the folder of its external data, the state that last passed, and a function that names the
problems its scope index finds (asked only when the quick ordered :func:`scan` saw one, or
when the graphs are not known to be in order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

import onnx

from . import tensors
from .checker import NOT_UTF8, PendingCheck, StartedHalf, start_check, start_inference
from .errors import InvalidModelError, ModelLoadError
from .serialization import TWO_GB, iter_model_tensors, too_deep, validate_header
from .text import validate_text

# what the model's scope index finds in its graphs (dangling inputs, cycles...), one line each
IndexProblems = Callable[[], list[str]]
# work done while onnx's checker runs: given the scan (or what is assumed of it) and the very bytes
# being checked
Meanwhile = Callable[["ScanResult", bytes], None]
# the key that names an external tensor's data file, as serialized (StringStringEntryProto.key)
_LOCATION_KEY = b"\x0a\x08location"


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


def review(proto: onnx.ModelProto, base_dir: str | None, index_problems: IndexProblems, *,
           known: Verified | None = None, data: bytes | None = None, ordered: bool = False,
           onnx_checker: bool = True, full: bool = True,
           meanwhile: Meanwhile | None = None) -> tuple[list[str], Verified | None]:
    """What :func:`problems` finds, and the :class:`Verified` state to remember when the full
    check passed, without checking the very same bytes twice.

    ``known`` is the state that last passed; ``data`` the model serialized, if the caller has
    it. The fingerprint covers the whole proto, so whatever changed it (this library's verbs,
    or code editing the proto directly) makes the check run again in full. What lies outside
    the proto, the external data files, is checked every time. ``ordered``: the graphs were just
    put in order (as a save does), so one ordered :func:`scan` finds their invariants.
    ``meanwhile(scan, data)``: work to do while onnx's checker runs in its child on ``data`` (a
    save writes those bytes to its temporary file then). When the scan itself runs in the child
    (an ordered check with ``data``), ``meanwhile`` is first given what is assumed of it (no
    nesting too deep to save; external data if ``data`` names a data file); should the scan
    find otherwise, it is called again with the scan, and what the first call did or raised
    counts for nothing. An error it raises is the verdict once the scan found the graphs sound.
    Otherwise it is called once every other check has passed, never when one failed.
    """
    if known is not None:
        if data is None:
            data = proto.SerializeToString()
        if known.base_dir == base_dir and known.digest == fingerprint(data):
            found = _external_problems(proto, base_dir) if known.has_external else []
            if not found and meanwhile is not None:
                meanwhile(ScanResult.of(known), data)
            return found, known
    early = None
    if ordered and onnx_checker and full and data is not None and len(data) < TWO_GB:
        early = start_inference(data)  # the longer half of onnx's check needs the bytes only: it starts first
    try:
        if ordered and onnx_checker and data is not None and len(data) < TWO_GB:
            return _review_ordered(proto, base_dir, index_problems, data, full, meanwhile, early)
        digest: list[bytes] = []  # (taken while onnx's checker runs)
        found, data, scanned = _problems(proto, base_dir, index_problems, onnx_checker, full,
                                         scan(proto) if ordered else None, data, meanwhile,
                                         digest if onnx_checker and full else None, early)
    finally:
        if early is not None:
            early.cancel()  # (unless it was handed on)
    if found or not (onnx_checker and full):
        return found, None
    if scanned is None:
        scanned = scan(proto)
    return [], Verified(digest[0] if digest else fingerprint(data), base_dir, scanned.depth, scanned.has_external)


def _review_ordered(proto: onnx.ModelProto, base_dir: str | None, index_problems: IndexProblems, data: bytes,
                    full: bool, meanwhile: Meanwhile | None, early: StartedHalf | None
                    ) -> tuple[list[str], Verified | None]:
    """:func:`review` of graphs just put in order, serialized as ``data`` (what a save checks).

    Everything but the header runs in the child beside onnx's checker, on the forked memory:
    the :func:`scan`, then the tensors' data, the text, onnx's checker. Meanwhile this process
    writes, on what it assumes of the scan; the facts the child reports decide whether that
    write stands. A scan that finds a problem has the index name the culprits, as
    :func:`problems` does; a child that dies before reporting its facts has the scan made here.
    """
    try:
        validate_header(proto, "the model")
    except ModelLoadError as exc:
        return [str(exc)], None
    pending = start_check(data, base_dir, full, True, _own_checks(proto, base_dir), early)
    try:
        assumed = ScanResult()
        assumed.has_external = _LOCATION_KEY in data
        failed: Exception | None = None
        if meanwhile is not None:
            try:
                meanwhile(assumed, data)
            except Exception as exc:  # noqa: BLE001 - the verdict, unless the scan says otherwise
                failed = exc
        digest = fingerprint(data)
        verdict = pending.result()
    finally:
        pending.cancel()
    scanned = ScanResult.reported(pending.facts) or scan(proto)
    if scanned.problem is not None:
        return index_problems() or [scanned.problem], None
    if meanwhile is not None:
        if scanned.has_external != assumed.has_external or too_deep(scanned.depth):
            meanwhile(scanned, data)  # (what was written on the wrong assumption is dropped)
        elif failed is not None:
            raise failed
    if verdict == [NOT_UTF8]:
        try:
            validate_text(proto, "the model", data)
        except ModelLoadError as exc:
            return [str(exc)], None
    if verdict or not full:
        return verdict, None
    return [], Verified(digest, base_dir, scanned.depth, scanned.has_external)


def _own_checks(proto: onnx.ModelProto, base_dir: str | None):
    """graphsurgery's checks of an ordered model, as the checker's child runs them before
    onnx's: the scan's problem alone, or the tensors' data; the scan's facts; external data."""
    def first() -> tuple[list[str], list, bool]:
        scanned = scan(proto)
        facts = [scanned.problem, scanned.depth, scanned.has_external]
        if scanned.problem is not None:
            return [scanned.problem], facts, scanned.has_external
        return _tensor_problems(scanned.tensors, base_dir), facts, scanned.has_external
    return first


def _external_problems(proto: onnx.ModelProto, base_dir: str | None) -> list[str]:
    found = []
    for t in iter_model_tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            bad = tensors.problem(t, base_dir)
            if bad is not None:
                found.append(bad)
    return found


def problems(proto: onnx.ModelProto, base_dir: str | None, index_problems: IndexProblems, *,
             onnx_checker: bool = True, full: bool = True, scanned: ScanResult | None = None) -> list[str]:
    """Every problem found, one line each; an empty list means the model is sound.

    ``scanned``, a :func:`scan` of the model as it is (in order), finds the graphs' invariants
    in one ordered pass; ``index_problems`` is asked to name them only when it saw one (the
    index notices "read before defined" where it is a cycle), or when there is no scan.
    """
    return _problems(proto, base_dir, index_problems, onnx_checker, full, scanned, None, None, None, None)[0]


def _problems(proto: onnx.ModelProto, base_dir: str | None, index_problems: IndexProblems, onnx_checker: bool,
              full: bool, scanned: ScanResult | None, data: bytes | None,
              meanwhile: Meanwhile | None, digest: list[bytes] | None, early: StartedHalf | None,
              ) -> tuple[list[str], bytes | None, ScanResult | None]:
    """:func:`problems`, plus the bytes the checker was given and the scan, when made; the
    fingerprint of those bytes is put in ``digest`` (if given) while onnx's checker runs."""
    found: list[str] = []
    pending = None
    tensors_checked = False
    if onnx_checker and scanned is not None and scanned.problem is None and data is not None:
        # the bytes are final: onnx's checker starts now, in its child, while the rest is checked
        # here; the child checks the text too (a second parse costs memory: there, not here), and
        # first the tensors' data, as this process would have (it has the same protos, forked)
        pending = _start_onnx_checker(data, base_dir, full, scanned.has_external, text=True,
                                      first=lambda: (_tensor_problems(scanned.tensors, base_dir), None, True),
                                      inference=early)
        tensors_checked = pending is not None
    try:
        try:
            validate_header(proto, "the model")
            if pending is None:
                if data is None:
                    data = proto.SerializeToString()
                validate_text(proto, "the model", data)
        except ModelLoadError as exc:
            return [str(exc)], data, scanned  # nothing else can be read safely
        if scanned is None or scanned.problem is not None:
            found.extend(index_problems())
            if scanned is not None and not found:
                found.append(scanned.problem)
            data = None  # (building the index may have put nodes in order)
        if not tensors_checked:
            found += _tensor_problems(scanned.tensors if scanned is not None and scanned.problem is None
                                      else iter_model_tensors(proto), base_dir)
        if pending is not None and (found or not onnx_checker):
            pending.cancel()
            pending = None
        if found or not (onnx_checker or meanwhile):
            return found, data, scanned
        if scanned is None:
            scanned = scan(proto)
        if data is None:
            data = proto.SerializeToString()
        if pending is None and onnx_checker:
            pending = _start_onnx_checker(data, base_dir, full, scanned.has_external)
        if meanwhile is not None:
            meanwhile(scanned, data)
        if digest is not None:
            digest.append(fingerprint(data))
        if pending is not None:
            verdict = pending.result()
            pending = None
            if verdict == [NOT_UTF8]:
                try:
                    validate_text(proto, "the model", data)
                except ModelLoadError as exc:
                    return [str(exc)], data, scanned
            found.extend(verdict)
    finally:
        if pending is not None:
            pending.cancel()
    return found, data, scanned


def _tensor_problems(found_tensors, base_dir: str | None) -> list[str]:
    """Tensors whose data does not fit their element type and shape, or cannot be read."""
    found = []
    for t in found_tensors:
        bad = tensors.problem(t, base_dir)
        if bad is not None:
            found.append(bad)
    return found


def _start_onnx_checker(data: bytes, base_dir: str | None, full: bool, external: bool,
                        text: bool = False, first=None, inference: StartedHalf | None = None) -> PendingCheck | None:
    if len(data) >= TWO_GB and not external:
        return None  # onnx's checker cannot take a proto this size in memory; our own checks ran
    return start_check(data, base_dir if external else None, full, text, first, inference)


def check(proto: onnx.ModelProto, base_dir: str | None, index_problems: IndexProblems, *, onnx_checker: bool = True,
          full: bool = True) -> None:
    found = problems(proto, base_dir, index_problems, onnx_checker=onnx_checker, full=full)
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

    @classmethod
    def of(cls, known: Verified) -> ScanResult:
        """What a scan of the state ``known`` found (but its tensors, not kept)."""
        res = cls()
        res.depth, res.has_external = known.depth, known.has_external
        return res

    @classmethod
    def reported(cls, facts) -> ScanResult | None:
        """What the checker's child reported of its scan (see :func:`_own_checks`), its tensors
        left out; None when it reported nothing readable."""
        if not (isinstance(facts, list) and len(facts) == 3):
            return None
        problem, depth, external = facts
        if not (problem is None or isinstance(problem, str)) or type(depth) is not int or type(external) is not bool:
            return None
        res = cls()
        res.problem, res.depth, res.has_external = problem, depth, external
        return res


def scan(proto: onnx.ModelProto) -> ScanResult:
    """One pass over every graph in file order, cheap enough to run at every save.

    Finds the first name read before it is defined (dangling input, or nodes out of
    order), the first name defined twice, outputs nothing defines; and measures subgraph
    nesting depth and whether any tensor keeps its data externally.
    """
    res = ScanResult()
    _scan(proto.graph, [], "main graph", 0, res)
    for f in proto.functions:
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
