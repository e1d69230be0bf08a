"""Lint for OpenVINO's ONNX frontend: operators its published table lists with no supported
version (``openvino_ops.json``, from openvinotoolkit/openvino's
``src/frontends/onnx/docs/supported_ops.md``), and opsets beyond what the table defines.

An operator the table does not list is reported as unknown to it, never as unsupported."""

from __future__ import annotations

from ..ops import is_default_domain
from . import BackendFinding, support_data
from .common import where


def describe() -> str:
    d = support_data("openvino")
    s = d["source"]
    return f"OpenVINO ONNX frontend, supported_ops.md of {s['repository']} {s['commit'][:12]}"


def lint(model) -> list[BackendFinding]:
    data = support_data("openvino")
    ops = data["ops"]
    found = []
    for node in model.find_nodes():
        if not is_default_domain(node.domain):
            found.append(BackendFinding("ov-custom-op", where(node), f"{node.domain}::{node.op_type} is outside the "
                                        "default domain; this table does not cover it (not checked)", None,
                                        severity="info"))
            continue
        row = ops.get(node.op_type)
        if row is None:
            found.append(BackendFinding("ov-unlisted", where(node), f"{node.op_type} is not in OpenVINO's ONNX "
                                        "frontend table; it may not convert", None, severity="warning"))
        elif not row["supported"]:
            found.append(BackendFinding("ov-unsupported-op", where(node), f"OpenVINO's ONNX frontend lists "
                                        f"{node.op_type} with no supported version", None, severity="error",
                                        source=row["row"]))
        elif row.get("limitation"):
            found.append(BackendFinding("ov-limitation", where(node), f"{node.op_type}: {row['limitation']}", None,
                                        severity="warning", source=row["row"]))
    return found
