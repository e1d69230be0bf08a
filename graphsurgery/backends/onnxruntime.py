"""Lint for onnxruntime: the model must load in the onnxruntime installed here.

What onnxruntime takes is measured, not transcribed: the newest default-domain opset it
loads is probed once with a one-node model, and the model itself is loaded (CPU, no
optimizer) to catch what only loading shows."""

from __future__ import annotations

import logging
from functools import lru_cache

from ..ops import DEFAULT_DOMAINS
from . import BackendFinding

log = logging.getLogger("graphsurgery")

_DOMAINS = (*DEFAULT_DOMAINS, "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc",
            "ai.onnx.preview.training", "com.microsoft.experimental", "org.pytorch.aten")


def _ort():
    from ..errors import GraphSurgeryError
    from ..runner import import_onnxruntime

    try:
        return import_onnxruntime()
    except GraphSurgeryError:
        from . import BackendError

        raise BackendError("linting for onnxruntime needs onnxruntime: pip install 'graphsurgery[ort]'") from None


@lru_cache(maxsize=1)
def max_opset() -> int:
    """The newest default-domain opset the installed onnxruntime loads."""
    import onnx
    from onnx import TensorProto, helper

    ort = _ort()
    for k in range(onnx.defs.onnx_opset_version() + 2, 6, -1):
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", k)], ir_version=8)
        try:
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - onnxruntime raises its own untyped errors: not loadable
            log.debug("onnxruntime does not load opset %d", k)
            continue
        return k
    return 7


def describe() -> str:
    return f"onnxruntime {_ort().__version__} installed here (loads default-domain opsets up to {max_opset()})"


def lint(model) -> list[BackendFinding]:
    ort = _ort()
    found = []
    top = max_opset()
    opset = model.opset("")
    if opset is not None and opset > top:
        found.append(BackendFinding("ort-opset", "model", f"default-domain opset {opset} is newer than onnxruntime "
                                    f"{ort.__version__} loads (up to {top})", f"convert-opset(version={top})",
                                    severity="error", auto=True))
    for domain in sorted(d for d in model.opsets if d not in _DOMAINS):
        found.append(BackendFinding("ort-custom-domain", f"opset {domain!r}", f"onnxruntime has no kernels for "
                                    f"domain {domain!r} unless a custom-op library registers them", None,
                                    severity="warning"))
    if found and found[0].code == "ort-opset":
        return found  # loading would only repeat it
    import os

    import onnx

    from .. import serialization

    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in serialization.iter_model_tensors(model.proto))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    if external and model.base_dir is not None:  # a session from bytes is told where the data lives
        so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                    os.path.realpath(model.base_dir))
    try:
        ort.InferenceSession(model.to_bytes(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are untyped; each is the finding
        text = " ".join(str(exc).split())
        found.append(BackendFinding("ort-load", "model", f"onnxruntime {ort.__version__} does not load it: "
                                    f"{text[:300]}", None, severity="error"))
    return found
