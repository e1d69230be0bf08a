"""The one way graphsurgery runs a model in onnxruntime.

Verification, repair sessions, convert-opset's check and the debugging tools all run models
through :class:`Runner`, so they agree on session options, providers, thread count and how
external data is found. ``onnxruntime`` is imported here and nowhere else, and only when a
model is run.

Two settings matter for comparing models:

- :data:`EXACT` (the default): onnxruntime's graph optimizer off and constant weights not
  pre-packed. Pre-packing (LSTM, Conv, MatMul) picks other kernels and changes the last bits
  of results, and the optimizer rewrites the graph (its If-inlining crashes on some models):
  with both off, two models that compute the same thing give the same outputs, so a check
  compares meaning, not onnxruntime's rounding.
- :data:`DEPLOYED`: onnxruntime as an application runs it, optimizer and pre-packing on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import onnx

from .errors import GraphSurgeryError, RuntimeFailure


@dataclass(frozen=True)
class Runner:
    """How to run a model in onnxruntime: ``optimize`` (graph optimizations), ``prepack``
    (pre-packing of constant weights), ``threads`` (intra-op threads; None: onnxruntime's
    choice) and ``providers``. A model with external data reads it from ``base_dir`` after the
    same containment checks as :func:`graphsurgery.load` (no link, no ``..``, no file outside
    the folder); nothing is written to disk."""

    optimize: bool = False
    prepack: bool = False
    threads: int | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def with_(self, **changes) -> Runner:
        """This runner with some settings changed, e.g. ``EXACT.with_(threads=1)``."""
        return replace(self, **changes)

    def session_options(self, ort):
        """The ``onnxruntime.SessionOptions`` for these settings (``ort``: the imported module)."""
        so = ort.SessionOptions()
        so.log_severity_level = 4  # failures are reported by us, as exceptions
        if not self.optimize:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if not self.prepack:
            so.add_session_config_entry("session.disable_prepacking", "1")
        if self.threads is not None:
            so.intra_op_num_threads = self.threads
        return so

    def run(self, model: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray], *,
            base_dir: str | None = None) -> dict:
        """Outputs of ``model`` by name (a sequence output is a list, an absent optional None).
        Feeds the model has no input for are left out. Raises :class:`RuntimeFailure` when
        onnxruntime cannot load or run the model."""
        ort = import_onnxruntime()
        proto = model if isinstance(model, onnx.ModelProto) else None
        data = model if isinstance(model, bytes) else model.SerializeToString()
        so = self.session_options(ort)
        if _check_external(proto if proto is not None else onnx.ModelProto.FromString(data), base_dir):
            so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                        os.path.realpath(base_dir))
        try:
            sess = ort.InferenceSession(data, so, providers=list(self.providers))
            names = [o.name for o in sess.get_outputs()]
            wanted = {i.name for i in sess.get_inputs()}
            values = sess.run(None, {k: v for k, v in feeds.items() if k in wanted})
        except GraphSurgeryError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeFailure(f"onnxruntime cannot run the model: {first}") from None
        return dict(zip(names, values, strict=True))


#: meaning, not onnxruntime's rounding: what every check that compares two models uses
EXACT = Runner()
#: as an application runs it: optimizer and weight pre-packing on
DEPLOYED = Runner(optimize=True, prepack=True)


def available() -> bool:
    """Whether onnxruntime can be imported."""
    try:
        import_onnxruntime()
    except GraphSurgeryError:
        return False
    return True


def import_onnxruntime():
    """The ``onnxruntime`` module, or a :class:`GraphSurgeryError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise GraphSurgeryError("running a model needs onnxruntime: pip install 'graphsurgery[ort]' "
                                "(or onnxruntime-gpu)") from None
    return onnxruntime


def _tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of the model: initializers, tensor attributes, sparse tensors, at any depth."""
    def graph(g):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
        yield from nodes(g.node)

    def nodes(ns):
        for n in ns:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield a.sparse_tensor.values
                    yield a.sparse_tensor.indices
                if a.HasField("g"):
                    yield from graph(a.g)
                for sub in a.graphs:
                    yield from graph(sub)

    yield from graph(proto.graph)
    for f in proto.functions:
        yield from nodes(f.node)


def _check_external(proto: onnx.ModelProto, base_dir: str | None) -> bool:
    """Validate every external data reference as loading does; True when there are any."""
    from . import external_data

    found = False
    for t in _tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            external_data.resolve(t, base_dir)  # raises ExternalDataError naming the tensor and file
            found = True
    return found
