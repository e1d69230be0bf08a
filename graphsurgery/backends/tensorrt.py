"""Lint against TensorRT's ONNX parser, from the operator matrix onnx-tensorrt publishes.

An op is unsupported only where the matrix says ``N``; an op the matrix does not list is
reported as unknown to it. Each restriction checked here is a sentence of the matrix, cited
in the finding; sentences that cannot be checked from the file alone are not reported."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, defs, helper

from .. import shapes
from ..ops import is_default_domain
from . import BackendFinding
from .common import behind, where

# ONNX element types under the matrix's names
_TYPE = {TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
         TensorProto.DOUBLE: "DOUBLE", TensorProto.INT32: "INT32", TensorProto.INT64: "INT64",
         TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8", TensorProto.BOOL: "BOOL", TensorProto.INT4: "INT4",
         TensorProto.FLOAT4E2M1: "FP4"}
for _n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0"):
    if hasattr(TensorProto, _n):
        _TYPE[getattr(TensorProto, _n)] = "FP8"


def _type_name(elem: int) -> str:
    return _TYPE.get(elem) or TensorProto.DataType.Name(elem)


class _Ctx:
    def __init__(self, model, data: dict, given_shapes: bool):
        self.model = model
        self.data = data
        self.version = data["tensorrt_version"]
        self.types = shapes.infer(model)
        self.given_shapes = given_shapes
        self.found: list[BackendFinding] = []

    def add(self, node, code, message, *, severity="error", fix=None, auto=False, source=None):
        self.found.append(BackendFinding(code, where(node), message, fix, severity=severity, auto=auto,
                                         source=source))

    def elem(self, graph, name: str) -> int | None:
        t = self.types.get(graph, name) or graph.tensor(name).type
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.elem_type:
            return None
        return t.tensor_type.elem_type

    def type_of(self, graph, name: str):
        return self.types.get(graph, name) or graph.tensor(name).type


def lint(model, data: dict, *, legacy: bool = False, given_shapes: bool = False) -> list[BackendFinding]:
    ctx = _Ctx(model, data, given_shapes)
    lo, hi = data["opset_range"]
    opset = model.opset("")
    trt = f"TensorRT {ctx.version}"
    if opset is not None and not lo <= opset <= hi:
        target = hi if opset > hi else lo
        ctx.found.append(BackendFinding(
            "trt-opset", "model", f"default-domain opset {opset} is outside {trt}'s range {lo}-{hi}",
            f"convert-opset(version={target})", severity="error", auto=True,
            source=f"TensorRT {ctx.version} supports operators in the inclusive range of opset {lo} to opset {hi}"))
    ops = data["ops"]
    for node in model.find_nodes():
        if not is_default_domain(node.domain):
            ctx.add(node, "trt-custom-op", f"{node.domain}::{node.op_type} is not an ONNX operator; {trt} "
                    "parses it only through a plugin registered under that name", severity="warning")
            continue
        row = ops.get(node.op_type)
        if row is None:
            ctx.add(node, "trt-unlisted", f"{node.op_type} is not in {trt}'s operator matrix (neither supported "
                    "nor unsupported there); the parser may reject it", severity="warning")
            continue
        if not row["supported"]:
            note = f" ({row['note']})" if row.get("note") else ""
            ctx.add(node, "trt-unsupported-op", f"{trt}'s parser does not support {node.op_type}{note}",
                    source=row["row"])
            continue
        schema = _schema(node.op_type, opset)
        _dtypes(ctx, node, row, schema)
        for r in row.get("restrictions", []):
            if r.get("check"):
                _restriction(ctx, node, row, r, schema)
    if legacy:
        _legacy_int64(ctx)
    return ctx.found


def _schema(op: str, opset: int | None):
    try:
        return defs.get_schema(op, opset or defs.onnx_opset_version(), "")
    except defs.SchemaError:
        return None


def _given(node, schema, names: list[str], outputs: bool = False):
    """``(name, tensor)`` for each of the schema's input (or output) ``names`` the node gives;
    one the schema does not know, the node leaves out, or gives as "" is skipped."""
    if schema is None:
        return
    formal = [f.name for f in (schema.outputs if outputs else schema.inputs)]
    actual = node.outputs if outputs else node.inputs
    for name in names:
        if name in formal:
            i = formal.index(name)
            if i < len(actual) and actual[i]:
                yield name, actual[i]


def _dtypes(ctx: _Ctx, node, row: dict, schema) -> None:
    """The tensors bound to the op's main type parameter (that of its first input) must have a
    type the row lists; Cast/CastLike also their output."""
    if schema is None:
        return
    formal_in, formal_out = list(schema.inputs), list(schema.outputs)
    if not formal_in:
        return
    main = formal_in[0].type_str
    allowed = set(row["types"])
    if formal_out and not _can_be(schema, main, allowed):
        # the row lists types the first input can never have (a window's integer size): it
        # describes the output
        main = formal_out[0].type_str
    checked = []
    for i, name in enumerate(node.inputs):
        f = formal_in[min(i, len(formal_in) - 1)]
        if name and f.type_str == main:
            checked.append(name)
    for j, name in enumerate(node.outputs):
        if not name or j >= len(formal_out):
            continue
        if formal_out[j].type_str == main or (node.op_type in ("Cast", "CastLike") and j == 0):
            checked.append(name)
    bad: dict[str, list[str]] = {}
    for name in checked:
        elem = ctx.elem(node.graph, name)
        if elem is None:
            continue
        tn = _type_name(elem)
        if tn not in allowed:
            bad.setdefault(tn, []).append(name)
    for tn, names in bad.items():
        listed = ", ".join(row["types"])
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        if tn == "DOUBLE":
            ctx.add(node, "trt-dtype", f"{shown} {'is' if len(names) == 1 else 'are'} DOUBLE; TensorRT {ctx.version} "
                    f"casts DOUBLE down to FLOAT, clamping to +-FLT_MAX (the row lists {listed})",
                    severity="warning", source=ctx.data["notes"][0] if ctx.data["notes"] else row["row"])
            continue
        if tn == "UINT8" and node.op_type in ("QuantizeLinear", "DequantizeLinear") and all(
                node.graph.tensor(n).is_constant for n in names):
            ctx.add(node, "trt-dtype", f"{shown} {'is' if len(names) == 1 else 'are'} UINT8 constant(s); the row "
                    f"lists {listed}, but the 10.10 changelog says UINT8 constants of QuantizeLinear and "
                    "DequantizeLinear are imported", severity="warning", source=row["row"])
            continue
        want = " where the row lists INT32" if tn == "INT64" and "INT32" in allowed else ""
        ctx.add(node, "trt-dtype", f"{shown} {'is' if len(names) == 1 else 'are'} {tn}{want}; TensorRT "
                f"{ctx.version} supports {node.op_type} on {listed} only", source=row["row"])


_ONNX_TYPE = {"float": "FP32", "float16": "FP16", "bfloat16": "BF16", "double": "DOUBLE", "int32": "INT32",
              "int64": "INT64", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}


def _can_be(schema, type_str: str, names: set[str]) -> bool:
    """Whether a formal parameter of type ``type_str`` may have one of the matrix's ``names``."""
    for c in schema.type_constraints:
        if c.type_param_str == type_str:
            return any(_ONNX_TYPE.get(t[len("tensor("):-1]) in names for t in c.allowed_type_strs)
    return _ONNX_TYPE.get(type_str[len("tensor("):-1] if type_str.startswith("tensor(") else "") in names


def _attr(node, schema, name: str):
    if name in node.attrs:
        v = node.attrs[name]
        return v.decode() if isinstance(v, bytes) else v
    if schema is not None and name in schema.attributes:
        a = schema.attributes[name].default_value
        if a is not None and a.type:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return None


def _restriction(ctx: _Ctx, node, row: dict, r: dict, schema) -> None:
    check, text, g = r["check"], r["text"], node.graph
    say = f"{node.op_type}: the matrix says \"{text}\""

    def add(why: str, **kw):
        ctx.add(node, "trt-restriction", f"{why}; {say}", source=row["row"], **kw)

    if check == "spatial-rank":
        ks = node.attrs.get("kernel_shape")
        n = len(ks) if ks is not None else None
        if n is None and node.inputs:
            t = ctx.type_of(g, node.inputs[0])
            rank = shapes.rank(t)
            n = rank - 2 if rank else None
        if n is not None and n not in r["in"]:
            add(f"it pools over {n} spatial dimension(s)")
    elif check == "attr-all-ones":
        d = node.attrs.get(r["attr"])
        if d is not None and any(int(x) != 1 for x in d):
            add(f"{r['attr']} = {list(d)}")
    elif check == "attr-absent":
        present = [a for a in r["attrs"] if a in node.attrs]
        if present:
            add(f"it has attribute(s) {', '.join(present)}")
    elif check == "attr-equals":
        v = _attr(node, schema, r["attr"])
        if v is not None and v != r["value"]:
            add(f"{r['attr']} = {v!r}")
    elif check == "attr-in":
        v = _attr(node, schema, r["attr"])
        if v is not None and v not in r["values"]:
            add(f"{r['attr']} = {v!r}")
    elif check == "output-absent":
        for name, t in _given(node, schema, r["outputs"], outputs=True):
            add(f"output {name} ({t!r}) is produced")
    elif check == "input-absent":
        for name, t in _given(node, schema, r["inputs"]):
            add(f"input {name} ({t!r}) is given")
    elif check in ("constant-input", "zero-input", "input-below"):
        for name, t in _given(node, schema, r["inputs"]):
            v = g.tensor(t)
            if not v.is_constant:
                kind = behind(g, t)
                # an input that must be constant is an error; one whose value is checked, unknown until folded
                sev = "error" if check == "constant-input" else "warning"
                later = "" if check == "constant-input" else ", so this cannot be checked until it is folded"
                if kind == "const":
                    add(f"input {name} ({t!r}) is computed from constants, not stored as one{later}",
                        fix="fold-constants", auto=True, severity=sev)
                elif kind == "shape":
                    add(f"input {name} ({t!r}) is computed from input shapes{later}",
                        fix="set-shape(...),fold-constants", auto=ctx.given_shapes, severity=sev)
                elif check == "constant-input":
                    add(f"input {name} ({t!r}) is only known at run time")
                else:
                    add(f"input {name} ({t!r}) is only known at run time, so this cannot be checked offline",
                        severity="warning")
                continue
            value = np.asarray(v.numpy())
            if check == "zero-input" and np.any(value != 0):
                add(f"input {name} ({t!r}) is not all zeros")
            elif check == "input-below" and value.size and np.any(value >= r["limit"]):
                add(f"input {name} ({t!r}) is {value.ravel().tolist()[:4]}")
            elif check == "constant-input" and "value" in r and value.size and bool(value.ravel()[0]) != r["value"]:
                add(f"input {name} ({t!r}) is {bool(value.ravel()[0])}")
    elif check in ("static-input", "input-rank", "input-dtype"):
        for name, tensor in _given(node, schema, r["inputs"]):
            t = ctx.type_of(g, tensor)
            if check == "static-input":
                d = shapes.dims(t)
                if d is not None and not all(isinstance(x, int) and x > 0 for x in d):
                    add(f"input {name} has shape {d}", fix="set-shape(...),fold-constants", auto=ctx.given_shapes)
            elif check == "input-rank":
                rank = shapes.rank(t)
                if rank is not None and rank != r["rank"]:
                    add(f"input {name} has rank {rank}")
            else:
                elem = ctx.elem(g, tensor)
                if elem is not None and _type_name(elem) != r["dtype"]:
                    add(f"input {name} is {_type_name(elem)}")
    elif check == "bidirectional-activations":
        acts = node.attrs.get("activations")
        if _attr(node, schema, "direction") == "bidirectional" and acts:
            acts = [a.decode() if isinstance(a, bytes) else a for a in acts]
            half = len(acts) // 2
            if acts[:half] != acts[half:]:
                add(f"activations {acts} differ between the directions")
    elif check == "if-branch-rank":
        _if_ranks(ctx, node, add)


def _if_ranks(ctx: _Ctx, node, add) -> None:
    subs = node.subgraphs()
    then_g, else_g = subs.get("then_branch"), subs.get("else_branch")
    if then_g is None or else_g is None:
        return
    for k, (a, b) in enumerate(zip(then_g.output_names, else_g.output_names, strict=False)):
        ra, rb = shapes.rank(ctx.type_of(then_g, a)), shapes.rank(ctx.type_of(else_g, b))
        if ra is not None and rb is not None and ra != rb:
            cond = node.inputs[0] if node.inputs else ""
            kind = behind(node.graph, cond) if cond else "value"
            fix = {"const": "fold-constants,remove-if", "shape": "set-shape(...),fold-constants,remove-if",
                   "value": "freeze-inputs(NAME=VALUE),fold-constants,remove-if"}[kind]
            add(f"output {k} has rank {ra} in the then branch and {rb} in the else branch; an If whose condition "
                "folds to a constant is inlined", fix=fix,
                auto=kind == "const" or (kind == "shape" and ctx.given_shapes))
            return


def _legacy_int64(ctx: _Ctx) -> None:
    """Parsers before TensorRT 9.0 cast INT64 to INT32, clamping: an INT64 constant outside the
    INT32 range silently changes (Slice starts/ends aside, where clamping keeps the meaning)."""
    hist = next((h for h in ctx.data.get("history", []) if h["id"] == "int64-cast-to-int32"), None)
    if hist is None:
        return
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    for g in ctx.model.graphs():
        for name, t in g.initializers.items():
            if t.data_type != TensorProto.INT64 or g.tensor(name).is_graph_input:
                continue
            readers = g.consumers(name)
            if readers and all(n.op_type == "Slice" and name in n.inputs[1:3] for n in readers):
                continue
            value = g.initializer(name)
            if value.size and (value.min() < lo or value.max() > hi):
                ctx.found.append(BackendFinding(
                    "trt-int64", f"initializer {name!r} in {g.describe()}",
                    f"INT64 values outside the INT32 range (min {value.min()}, max {value.max()}); TensorRT before "
                    f"{hist['before']} casts INT64 to INT32, clamping them", None, severity="error",
                    source=hist["text"]))

