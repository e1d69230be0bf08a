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

    def _session_args(self, ort, model: onnx.ModelProto | bytes, base_dir: str | None):
        proto = model if isinstance(model, onnx.ModelProto) else None
        data = model if isinstance(model, bytes) else model.SerializeToString()
        so = self.session_options(ort)
        if _check_external(proto if proto is not None else onnx.ModelProto.FromString(data), base_dir):
            so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                        os.path.realpath(base_dir))
        return data, so

    def run(self, model: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray], *,
            base_dir: str | None = None) -> dict:
        """Outputs of ``model`` by name (a sequence output is a list, an absent optional None).
        Feeds the model has no input for are left out. Raises :class:`RuntimeFailure` when
        onnxruntime cannot load or run the model."""
        ort = import_onnxruntime()
        data, so = self._session_args(ort, model, base_dir)
        try:
            sess = ort.InferenceSession(data, so, providers=list(self.providers))
            names = [o.name for o in sess.get_outputs()]
            wanted = {i.name for i in sess.get_inputs()}
            values = sess.run(None, {k: v for k, v in feeds.items() if k in wanted})
        except GraphSurgeryError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise RuntimeFailure(f"onnxruntime cannot run the model: {_first_line(exc)}") from None
        return dict(zip(names, values, strict=True))


    def load_error(self, model: onnx.ModelProto | bytes, *, base_dir: str | None = None) -> str | None:
        """Why onnxruntime refuses to create a session for ``model`` with these settings (the
        first line of its message), or None when it loads. In this process: see
        :func:`start_load` for the same check where a crash cannot take the caller down."""
        ort = import_onnxruntime()
        data, so = self._session_args(ort, model, base_dir)
        try:
            ort.InferenceSession(data, so, providers=list(self.providers))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            return _first_line(exc)
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


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


# ---------------------------------------------------------------- loading, in a child process
#: no session of any model takes this long to create; a child still at it is stopped
LOAD_TIME_LIMIT = 600.0

_LOAD_CHILD = ("import json, sys\n"
               "sys.path[:0] = json.loads(sys.argv[1])\n"
               "from graphsurgery.runner import _load_child_main\n"
               "_load_child_main()\n")


@dataclass(frozen=True)
class LoadVerdict:
    """What a load check found: ``loads`` (None: the check could not tell, see ``error``) and,
    when it does not load, ``error``: one line saying why (onnxruntime's message, the signal
    the child died of, or the time limit)."""

    loads: bool | None
    error: str = ""


class PendingLoad:
    """A load check running in a freshly started interpreter (onnxruntime's threads and locks
    are not copied into it, and a crash or hang there is reported, not suffered);
    :meth:`result` waits for its verdict."""

    def __init__(self, data: bytes, base_dir: str | None, runner: Runner, time_limit: float):
        import json
        import subprocess
        import sys
        import threading

        self.time_limit = time_limit
        self._verdict: LoadVerdict | None = None
        settings = {"optimize": runner.optimize, "prepack": runner.prepack, "threads": runner.threads,
                    "providers": list(runner.providers), "base_dir": base_dir}
        args = [sys.executable, "-c", _LOAD_CHILD, json.dumps([p for p in sys.path if isinstance(p, str)]),
                json.dumps(settings)]
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
        except OSError as exc:
            self._proc = None
            self._verdict = LoadVerdict(None, f"the load check could not be started ({exc.strerror or exc})")
            return
        self._out: list[bytes] = []
        self._thread = threading.Thread(target=self._talk, args=(data,), daemon=True)
        self._thread.start()

    def _talk(self, data: bytes) -> None:
        import subprocess

        try:
            out, _ = self._proc.communicate(data, timeout=self.time_limit)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            self._verdict = LoadVerdict(None, f"onnxruntime did not finish loading it within {self.time_limit:.0f} s")
            return
        except OSError:  # the child died before reading the model; its exit status says why
            self._proc.wait()
            out = b""
        self._out.append(out)

    def result(self) -> LoadVerdict:
        import json
        import signal

        if self._verdict is not None and self._proc is None:
            return self._verdict
        self._thread.join()
        if self._verdict is not None:
            return self._verdict
        code = self._proc.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return LoadVerdict(False, f"onnxruntime crashed ({name}) loading it")
        try:
            found = json.loads(b"".join(self._out))
        except ValueError:
            found = None
        if not isinstance(found, dict) or "error" not in found:
            return LoadVerdict(None, "the load check stopped without a verdict")
        if found.get("setup"):
            return LoadVerdict(None, str(found["error"]))
        return LoadVerdict(found["error"] is None, str(found["error"] or ""))


def start_load(model: onnx.ModelProto | bytes, *, base_dir: str | None = None, runner: Runner | None = None,
               time_limit: float = LOAD_TIME_LIMIT) -> PendingLoad:
    """Start checking, in a child process, whether onnxruntime creates a session for ``model``
    with ``runner``'s settings (default :data:`DEPLOYED`: as an application loads it, graph
    optimizations on); the caller goes on meanwhile and takes the :class:`LoadVerdict` from
    :meth:`PendingLoad.result`."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return PendingLoad(data, base_dir, runner or DEPLOYED, time_limit)


def _load_child_main() -> None:
    import json
    import sys

    settings = json.loads(sys.argv[2])
    data = sys.stdin.buffer.read()
    runner = Runner(optimize=settings["optimize"], prepack=settings["prepack"], threads=settings["threads"],
                    providers=tuple(settings["providers"]))
    try:
        error = runner.load_error(data, base_dir=settings["base_dir"])
        setup = False
    except GraphSurgeryError as exc:  # no onnxruntime, external data that cannot be read: no verdict
        error, setup = _first_line(exc), True
    sys.stdout.write(json.dumps({"error": error, "setup": setup}))
    sys.stdout.flush()
