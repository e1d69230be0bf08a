"""What a deployment backend will refuse or silently change in a model, found offline.

``lint_for(model, "tensorrt")`` lists, per node, what TensorRT's ONNX parser will not take
(from the operator matrix onnx-tensorrt publishes, shipped as ``tensorrt_ops.json``), what it
computes differently, and what graphsurgery's deployment lint already finds, each with the
pass that fixes it (``fix``) or ``None`` when no pass does. ``graphsurgery.fix`` applies them.

Severities: ``error`` — the backend will not parse or build it, or its result is wrong as
written; ``warning`` — it may not, or it costs (a conditional layer, a value TensorRT casts
down); ``info`` — worth knowing, nothing fails. Only errors make ``fix`` refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ..errors import BackendError
from ..lint import Finding

BACKENDS = ("tensorrt", "onnxruntime", "openvino")
SEVERITIES = ("error", "warning", "info")


@dataclass
class BackendFinding(Finding):
    severity: str = "error"
    #: True when ``fix`` needs no value from the user (``remove-if``, not ``set-shape(x=DIMS)``)
    auto: bool = False
    #: the support data's own words this finding rests on (a matrix row, a release note)
    source: str | None = None

    def __str__(self) -> str:
        fix = f"fix: {self.fix}" if self.fix else "no pass fixes this"
        return f"{self.severity}: [{self.code}] {self.where}: {self.message} ({fix})"


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        import difflib

        close = difflib.get_close_matches(name, BACKENDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BackendError(f"no backend named {name!r}; {hint}backends: {', '.join(BACKENDS)}")
    return name


@cache
def support_data(name: str) -> dict[str, Any]:
    """The support data shipped for ``name`` (``tensorrt``, ``openvino``), as a dict."""
    try:
        text = resources.files(__package__).joinpath(f"{name}_ops.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BackendError(f"no support data for backend {name!r} in this installation") from None
    return json.loads(text)


def lint_for(model, backend: str, *, legacy: bool = False, given_shapes: bool = False,
             frozen: tuple[str, ...] = ()) -> list[BackendFinding]:
    """Every finding for ``backend``: errors first, then warnings, then info, each in model order.

    ``legacy`` (tensorrt) adds what parsers before TensorRT 10 did differently (the
    InstanceNormalization epsilon clamp, INT64 cast to INT32 before 9.0). ``given_shapes`` and
    ``frozen`` say which user values ``fix`` has (``--set-shape``, ``--freeze``): findings whose
    fix needs only those become automatic."""
    check_backend(backend)
    from . import common

    found = common.generic(model, backend, legacy=legacy, given_shapes=given_shapes, frozen=frozen)
    if backend == "tensorrt":
        from . import tensorrt

        found += tensorrt.lint(model, support_data("tensorrt"), legacy=legacy, given_shapes=given_shapes)
    elif backend == "onnxruntime":
        from . import onnxruntime

        found += onnxruntime.lint(model)
    else:
        from . import openvino

        found += openvino.lint(model)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(found, key=lambda f: order[f.severity])  # stable: model order within a severity


def describe(backend: str) -> str:
    """One line naming the support data a backend lints against."""
    check_backend(backend)
    if backend == "tensorrt":
        d = support_data("tensorrt")
        s = d["source"]
        return (f"TensorRT {d['tensorrt_version']} ONNX parser, operator matrix of {s['repository']} "
                f"{s['commit'][:12]} ({s['release_date']}), opsets {d['opset_range'][0]}-{d['opset_range'][1]}")
    if backend == "onnxruntime":
        from .onnxruntime import describe as ort_describe

        return ort_describe()
    from .openvino import describe as ov_describe

    return ov_describe()
