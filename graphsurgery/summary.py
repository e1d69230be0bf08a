"""A model's vital statistics, as a plain dict (shared by the CLI and notebook displays)."""

from __future__ import annotations

import os
from typing import Any

import onnx

from . import external_data, serialization
from .core.model import Model


def _type_str(vi: onnx.ValueInfoProto) -> dict[str, Any]:
    t = vi.type
    if not t.HasField("tensor_type"):
        return {"name": vi.name, "type": t.WhichOneof("value") or "unknown", "shape": None}
    tt = t.tensor_type
    dtype = external_data.dtype_name(tt.elem_type).lower() if tt.elem_type else "unknown"
    shape = None
    if tt.HasField("shape"):
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    return {"name": vi.name, "type": dtype, "shape": shape}


def summarize(model: Model, *, check: bool = True) -> dict[str, Any]:
    proto = model.proto
    params = 0
    external_bytes = 0
    external_files: set[str] = set()
    for t in serialization.iter_model_tensors(proto):
        params += external_data.element_count(t)
        if external_data.is_external(t):
            length = external_data.expected_nbytes(t) or 0
            external_bytes += length
            for e in t.external_data:
                if e.key == "location":
                    external_files.add(e.value)
    out: dict[str, Any] = {
        "file": model.source_path,
        "file_bytes": os.path.getsize(model.source_path) if model.source_path else proto.ByteSize(),
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "opsets": {(d or "ai.onnx"): v for d, v in model.opsets.items()},
        "inputs": [_type_str(vi) for vi in proto.graph.input if vi.name not in model.graph.initializers],
        "outputs": [_type_str(vi) for vi in proto.graph.output],
        "nodes": sum(len(g.proto.node) for g in model.graphs()),
        "graphs": sum(1 for _ in model.graphs()),
        "functions": len(proto.functions),
        "parameters": params,
        "external_data": {"files": sorted(external_files), "bytes": external_bytes},
        "ops": model.op_histogram(),
    }
    if check:
        out["problems"] = model.problems()
        from .lint import as_dicts, lint

        out["lint"] = as_dicts(lint(model))
    return out


def format_text(s: dict[str, Any]) -> str:
    def shape(v):
        return "?" if v["shape"] is None else "[" + ", ".join(str(d) for d in v["shape"]) + "]"

    lines = [f"model      {s['file'] or '<in memory>'} ({s['file_bytes']:,} bytes)",
             f"ir/opsets  ir {s['ir_version']}; " + ", ".join(f"{d} {v}" for d, v in s["opsets"].items()),
             f"producer   {s['producer'] or '-'}",
             f"size       {s['nodes']:,} nodes in {s['graphs']} graph(s), {s['functions']} function(s), "
             f"{s['parameters']:,} parameters"]
    if s["external_data"]["files"]:
        lines.append(f"external   {s['external_data']['bytes']:,} bytes in {', '.join(s['external_data']['files'])}")
    lines.append("inputs")
    lines += [f"  {v['name']:<24} {v['type']:<8} {shape(v)}" for v in s["inputs"]]
    lines.append("outputs")
    lines += [f"  {v['name']:<24} {v['type']:<8} {shape(v)}" for v in s["outputs"]]
    lines.append("ops        " + ", ".join(f"{k} {v}" for k, v in s["ops"].items()))
    if s.get("lint"):
        lines.append(f"lint       {len(s['lint'])} finding(s) for deployment")
        for f in s["lint"]:
            fix = f" -> {f['fix']}" if f["fix"] else ""
            lines.append(f"  - [{f['code']}] {f['where']}: {f['message']}{fix}")
    if "problems" in s:
        if s["problems"]:
            lines.append(f"problems   {len(s['problems'])}")
            lines += [f"  - {p}" for p in s["problems"]]
        else:
            lines.append("problems   none found (onnx checker with shape inference, graphsurgery invariants)")
    return "\n".join(lines)
