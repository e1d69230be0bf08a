"""onnx's checker, run where its crashes and hangs cannot take the caller down.

onnx's C++ checker and shape inference abort or crash the whole process on some damaged
models, so they run in a child process: a crash becomes a reported problem. The child is
forked where the platform allows it (a few milliseconds: it shares the parent's memory). A
fork copies the locks other threads hold at that moment, so a forked child can wait forever
on one: the parent watches the child's CPU time, and a child that stops using the CPU
without waiting on the disk is stuck; it is killed and the check runs again in a freshly
started interpreter (as it does where there is no fork). A check that runs past
:data:`TIME_LIMIT` is a problem of its own, reported.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable

from .errors import GraphSurgeryError

# a child that uses no CPU for this long, and is not waiting on the disk, is stuck on a lock
STALL_SECONDS = 10.0
# no check of any model takes this long; a child still at it is stopped and the check fails
TIME_LIMIT = 900.0
_STUCK = object()
# the caller's own checks run before onnx's in the child: () -> (findings, facts, external)
First = Callable[[], tuple[list[str], object, bool]]


# what the child reports, alone, for a model whose text is not all UTF-8 (``text=True``)
NOT_UTF8 = "the model holds text that is not valid UTF-8"


# what onnx's full check is made of: ``check_model(full_check=True)`` runs the checker, then
# strict shape inference with type checks (and without data propagation) on the same model.
# Either half alone is one of these; a full check is both.
ALL, STRUCTURE, INFERENCE = "all", "structure", "inference"


def run_onnx_checker(data: bytes, base_dir: str | None, full: bool, text: bool = False, part: str = ALL
                     ) -> list[str]:
    """onnx's checker (with shape inference when ``full``) on the serialized model ``data``,
    its findings as one line each. ``base_dir``: where the model's external data lives (None
    when it has none). ``text``: first check that every text field is UTF-8, and if not,
    report :data:`NOT_UTF8` alone. ``part``: :data:`STRUCTURE` runs the checker alone,
    :data:`INFERENCE` the strict shape inference alone (``text`` and ``base_dir`` do not
    concern it). Runs in this process: see :func:`isolated_check`."""
    import onnx

    if part == INFERENCE:
        return _run_inference(data)
    if part == STRUCTURE:
        full = False
    if text:
        from .text import text_is_utf8

        if not text_is_utf8(data):
            return [NOT_UTF8]

    try:
        if base_dir is not None:
            from .serialization import _create_temp

            # onnx's checker finds external data only relative to a model path, so give it one
            # beside the data, for the length of the check.
            try:
                fd, tmp = _create_temp(base_dir, "graphsurgery-check.onnx")
            except (OSError, GraphSurgeryError):  # a read-only folder: the external files were resolved already
                onnx.checker.check_model(data, full_check=full)
            else:
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    onnx.checker.check_model(tmp, full_check=full)
                finally:
                    os.unlink(tmp)
        else:
            onnx.checker.check_model(data, full_check=full)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()
        return [f"onnx checker: {first[0] if first else exc}"]
    except Exception as exc:  # noqa: BLE001 - onnx's C++ code raises whatever it meets; it is a finding
        return [_finding(exc)]
    return []


def _finding(exc: Exception) -> str:
    """What onnx's shape inference, or its C++ code in general, raised, as one line."""
    import onnx

    first = str(exc).strip().splitlines()
    if isinstance(exc, onnx.shape_inference.InferenceError):
        return f"onnx shape inference: {first[0] if first else exc}"
    return f"onnx checker failed on this model ({type(exc).__name__}: {first[0] if first else ''})"


def _run_inference(data: bytes) -> list[str]:
    """The second half of onnx's full check: what ``check_model(full_check=True)`` runs after
    the checker, with the same options (types checked, strict, no data propagation)."""
    from onnx.onnx_cpp2py_export import shape_inference as c_inference

    try:
        c_inference.infer_shapes(data, True, True, False)  # (the bytes, not a parsed copy, come back)
    except Exception as exc:  # noqa: BLE001 - onnx's C++ code raises whatever it meets; it is a finding
        return [_finding(exc)]
    return []


def isolated_check(data: bytes, base_dir: str | None, full: bool, text: bool = False) -> list[str]:
    """:func:`run_onnx_checker` in a child process: forked, or started afresh when there is
    no fork or the forked child got stuck."""
    return start_check(data, base_dir, full, text).result()


class PendingCheck:
    """A check running in child processes; :meth:`result` waits for its findings, and
    :meth:`cancel` stops it. One of the two must be called.

    A full check runs as its two halves, the checker and the shape inference, in two forked
    children at once (the second half takes most of the time); the findings are the checker's
    if it found any, else the inference's, as ``check_model(full_check=True)`` reports them.
    ``first``: checks of the caller's own that come before onnx's, run in the (first) child on
    the caller's memory as it was when forked (or here, when there is no fork or the child got
    stuck); it returns ``(findings, facts, external)``. When it finds anything, that is the
    verdict. ``facts``, anything JSON can carry, is handed back as :attr:`facts` (None when the
    child died before reporting them); ``external`` False means the model keeps no data outside
    the file, so onnx's checker is not given ``base_dir``.
    ``inference``: the second half, started ahead by :func:`start_inference` on the same bytes.
    """

    def __init__(self, data: bytes, base_dir: str | None, full: bool, text: bool = False,
                 first: First | None = None, inference: StartedHalf | None = None):
        self._args = (data, base_dir, full, text)
        self._first = first
        self.facts = None
        self._children: list[tuple[int, int]] = []
        ahead = inference.take() if inference is not None else None
        if hasattr(os, "fork") and full:
            self._children = [_fork(data, base_dir, full, text, STRUCTURE, first),
                              ahead or _fork(data, base_dir, full, text, INFERENCE, None)]
            return
        if ahead is not None:
            _close_and_stop(ahead)
        if hasattr(os, "fork"):
            self._children = [_fork(data, base_dir, full, text, ALL, first)]

    def result(self) -> list[str]:
        children, self._children = self._children, []
        try:
            while children:
                outcome = _watch(*children.pop(0))
                if outcome is _STUCK:
                    break
                found, facts = outcome
                if facts is not None:
                    self.facts = facts
                if found or not children:
                    return found
        finally:
            for child in children:
                _close_and_stop(child)
        data, base_dir, full, text = self._args
        if self._first is not None:  # (no fork, or a forked child got stuck: all of it from here)
            found, self.facts, external = self._first()
            if found:
                return found
            if not external:
                base_dir = None
        return _spawned(data, base_dir, full, text)

    def cancel(self) -> None:
        children, self._children = self._children, []
        for child in children:
            _close_and_stop(child)


class StartedHalf:
    """The shape-inference half of a full check, started before the rest is known; hand it to
    :func:`start_check` with the same bytes, or :meth:`cancel` it."""

    def __init__(self, child: tuple[int, int]):
        self._child: tuple[int, int] | None = child

    def take(self) -> tuple[int, int] | None:
        child, self._child = self._child, None
        return child

    def cancel(self) -> None:
        child = self.take()
        if child is not None:
            _close_and_stop(child)


def start_inference(data: bytes) -> StartedHalf | None:
    """Start the shape-inference half of a full check of ``data`` now (None where there is no
    fork: the check then runs whole); it needs nothing but the bytes."""
    if not hasattr(os, "fork"):
        return None
    return StartedHalf(_fork(data, None, True, False, INFERENCE, None))


def _close_and_stop(child: tuple[int, int]) -> None:
    pid, read_fd = child
    os.close(read_fd)
    _stop(pid)


def start_check(data: bytes, base_dir: str | None, full: bool, text: bool = False,
                first: First | None = None, inference: StartedHalf | None = None) -> PendingCheck:
    """Start :func:`run_onnx_checker` in a child process; the caller goes on meanwhile. See
    :class:`PendingCheck` for ``first`` and ``inference``."""
    return PendingCheck(data, base_dir, full, text, first, inference)


def _crashed(sig: int) -> list[str]:
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return [f"onnx checker crashed ({name}) on this model; it is damaged in a way onnx does not report"]


def _verdict(out: bytes) -> tuple[list[str], object]:
    """The findings a child wrote (a list of lines, or an object with the findings and the
    facts of its ``first`` checks), and those facts (None if it gave none)."""
    try:
        found = json.loads(out)
    except ValueError:
        found = None
    facts = None
    if isinstance(found, dict):
        found, facts = found.get("found"), found.get("facts")
    if not isinstance(found, list) or not all(isinstance(x, str) for x in found):
        return ["onnx checker stopped without a verdict on this model"], None
    return found, facts


def _too_long() -> list[str]:
    return [f"onnx checker did not finish within {TIME_LIMIT:.0f} s on this model; it cannot be shown sound"]


def _cpu_and_state(pid: int) -> tuple[float, str] | None:
    """The child's CPU seconds so far and its scheduler state, where /proc tells them."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), fields[0].decode()
    except (OSError, IndexError, ValueError):
        return None


def _fork(data: bytes, base_dir: str | None, full: bool, text: bool, part: str,
          first: First | None) -> tuple[int, int]:
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
            found, facts, external = first() if first is not None else ([], None, True)
            if not found:
                found = run_onnx_checker(data, base_dir if external else None, full, text, part)
            view = memoryview(json.dumps({"found": found, "facts": facts}).encode())
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _watch(pid: int, read_fd: int):
    """The forked child's findings and facts (see :func:`_verdict`); :data:`_STUCK` when it
    stopped working without finishing."""
    import select

    chunks: list[bytes] = []
    outcome = None
    start = last_progress = time.monotonic()
    last_cpu = None
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], min(1.0, STALL_SECONDS / 4))
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                continue
            now = time.monotonic()
            if now - start > TIME_LIMIT:
                outcome = _too_long()
                break
            probe = _cpu_and_state(pid)
            if probe is None:
                continue  # no /proc: only the time limit applies
            cpu, state = probe
            if cpu != last_cpu or state in ("R", "D"):  # working, or reading the disk
                last_cpu, last_progress = cpu, now
            elif now - last_progress > STALL_SECONDS:
                outcome = _STUCK
                break
    except BaseException:
        os.close(read_fd)
        _stop(pid)
        raise
    os.close(read_fd)
    if outcome is not None:
        _stop(pid)
        return outcome if outcome is _STUCK else (outcome, None)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return _crashed(os.WTERMSIG(status)), None
    return _verdict(b"".join(chunks))


_CHILD = ("import json, sys\n"
          "sys.path[:0] = json.loads(sys.argv[1])\n"
          "from graphsurgery.checker import _child_main\n"
          "_child_main()\n")


def _spawned(data: bytes, base_dir: str | None, full: bool, text: bool = False, code: str = _CHILD) -> list[str]:
    """The check in a freshly started interpreter, the model given on its standard input."""
    import subprocess

    args = [sys.executable, "-c", code, json.dumps([p for p in sys.path if isinstance(p, str)]),
            json.dumps([base_dir, full, text])]
    try:
        proc = subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False,
                              timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:  # (the child is killed)
        return _too_long()
    except OSError as exc:
        return [f"onnx checker could not be started in a child process ({exc.strerror or exc})"]
    if proc.returncode < 0:
        return _crashed(-proc.returncode)
    return _verdict(proc.stdout)[0]


def _child_main() -> None:
    base_dir, full, text = json.loads(sys.argv[2])
    data = sys.stdin.buffer.read()
    sys.stdout.write(json.dumps(run_onnx_checker(data, base_dir, full, text)))
    sys.stdout.flush()
