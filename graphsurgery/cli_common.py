"""What every command of the command line shares: reading a model or an .npz file, checking
an output path before any work, saving with nothing left behind on failure, the option types,
and how a run's results are shown. ``cli``, ``cli_optimize`` and ``cli_fix`` import it;
it imports none of them, and nothing heavy until a helper is called."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .errors import GraphSurgeryError, UsageError


def example_path() -> str:
    """Path of the example model bundled with the package."""
    from importlib import resources

    return str(resources.files("graphsurgery").joinpath("data/example.onnx"))


def one_line(text) -> str:
    return " ".join(str(text).split())


def os_error(exc: OSError, doing: str = "") -> str:
    """``cannot write /x/y.onnx: Permission denied`` from an OSError, whatever its form."""
    what = exc.strerror or exc.__class__.__name__
    name = exc.filename if exc.filename is not None else ""
    if doing:
        return f"{doing}: {what}"
    return f"{name}: {what}" if name else one_line(str(exc) or what)


def not_a_device(path: str, what: str) -> None:
    """A character or block device (/dev/zero, /dev/sda) would be read without end: refuse it."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # the reader names the problem
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UsageError(f"{what} {path} is a device, not a file")


def load(path: str):
    """The model at ``path``; an operating system error is one line naming the file."""
    from .core.model import load as load_model

    not_a_device(path, "model file")
    try:
        return load_model(path)
    except OSError as exc:
        raise GraphSurgeryError(os_error(exc, f"cannot read {path}")) from None


def read_npz(path: str, option: str) -> dict:
    """Arrays by name from an .npz file (never pickle), or one clear error naming the option."""
    import zipfile

    import numpy as np

    if not os.path.exists(path):
        raise UsageError(f"{option} {path}: file does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder; give an .npz file (numpy.savez(path, name=array, ...))")
    not_a_device(path, option)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError:  # numpy's guess when the file is neither .npy nor .npz: pickle, refused
        raise UsageError(f"{option} {path} is not an .npz file; save arrays by name with "
                         "numpy.savez(path, name=array, ...)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{option} {path} is not a readable .npz file ({one_line(exc) or 'empty'})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UsageError(f"{option} {path} holds a single unnamed array (.npy); save arrays by name with "
                         "numpy.savez(path, name=array, ...)")
    try:
        with data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:
        reason = "it holds object (pickled) arrays, which graphsurgery never loads" if "pickle" in str(exc) \
            else one_line(exc)
        raise UsageError(f"{option} {path}: cannot read its arrays: {reason}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UsageError(f"{option} {path} is not a readable .npz file ({one_line(exc)})") from None
    if not arrays:
        raise UsageError(f"{option} {path} holds no arrays")
    return arrays


def check_output(path: str, option: str, inputs: list[str | None], overwrite: bool | None = None) -> str:
    """Refuse, before any work is done, an output that cannot be written or is an input."""
    if not path or not path.strip():
        raise UsageError(f"{option} needs a file name")
    if path == "-":
        raise UsageError(f"{option} -: a model cannot be written to stdout; give a file name")
    if path.endswith(("/", os.sep)):
        raise UsageError(f"{option} {path} ends with a slash, so it names a folder; give a file name")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {os.path.join(path, 'model.onnx')}")
    if os.path.exists(path) and not os.path.isfile(path):  # /dev/null, a pipe: never replace those
        raise UsageError(f"{option} {path} exists and is not a regular file; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise UsageError(f"{option} {path}: folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: {folder} is a file, not a folder")
    for src in inputs:
        if src and not overwrite and os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src):
            raise UsageError(f"refusing to overwrite the input {src} ({option} {path}); write elsewhere"
                             + (", or pass --overwrite" if overwrite is False else ""))
    import tempfile

    try:  # the only sure test that a file can be created there (permissions, read-only or pseudo file systems)
        fd, probe = tempfile.mkstemp(prefix=".graphsurgery-probe-", dir=folder)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create a file in folder {folder} "
                         f"({exc.strerror or exc.__class__.__name__})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def save(model, path: str, **kwargs) -> None:
    """Save, turning an operating system error into one line naming the file. A save that fails
    leaves no new file behind (a model file whose external data file was not written, say)."""
    data = path + ".data"
    new = [p for p in (path, data) if not os.path.lexists(p)]
    try:
        model.save(path, **kwargs)
    except BaseException as exc:
        for p in new:
            remove_quietly(p)
        if isinstance(exc, OSError):
            raise GraphSurgeryError(os_error(exc, f"cannot write {path}")) from None
        raise


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def tolerance(text: str) -> float:
    """An option's tolerance: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive(text: str) -> int:
    """An option's count: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def format_run(results: list, verification: list, verbose: bool) -> str:
    """One line per pass (what it did, in counts); each change and skip under it with -v."""
    lines = []
    for r in results:
        head = f"{r.name}: " + (f"{len(r.changes)} change(s)" if r.changed else "no change")
        if r.skipped:
            head += f", {len(r.skipped)} skipped"
        lines.append(head)
        if verbose:
            lines += [f"  - {c}" for c in r.changes] + [f"  · skipped: {s}" for s in r.skipped]
    for name, report in verification:
        lines.append(f"verified after {name}: " + "; ".join(str(d) for d in report))
    if not verbose and any(r.changes or r.skipped for r in results):
        lines.append("(-v lists each change)")
    return "\n".join(lines)


def jsonable(value):
    """``value`` as JSON can hold it: arrays as lists, inf and nan as text, the rest as str."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf or nan
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return jsonable(value.tolist())
    except AttributeError:
        return str(value)


class _Failure(GraphSurgeryError):
    """A failure with its own exit code and extra JSON fields (raised and read here only)."""

    def __init__(self, message: str, code: int = 2, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra


def verification_failed(exc: GraphSurgeryError) -> GraphSurgeryError:
    """What a command raises when ``exc`` (a VerificationError) stopped it: exit code 3, and
    with --json the verification report."""
    return _Failure(str(exc), 3, report=[vars(d) for d in getattr(exc, "report", None) or []])


def report_error(exc: BaseException, want_json: bool) -> int:
    """One line on stderr, and with --json an error object on stdout; returns the exit code."""
    code = getattr(exc, "code", 2) if isinstance(exc, _Failure) else 2
    extra = getattr(exc, "extra", {}) if isinstance(exc, _Failure) else {}
    if isinstance(exc, GraphSurgeryError):
        message = one_line(exc)
        kind = "usage" if isinstance(exc, UsageError) else type(exc).__name__
        if isinstance(exc, _Failure) and exc.__cause__ is not None:
            kind = type(exc.__cause__).__name__
    elif isinstance(exc, OSError):
        message, kind = os_error(exc), type(exc).__name__
    elif isinstance(exc, MemoryError):
        message, kind = "out of memory", "MemoryError"
    else:
        message = (f"unexpected {type(exc).__name__}: {one_line(exc)}; this is a bug in graphsurgery, "
                   "please report it with the output of the same command run with -v")
        kind = "internal"
    print(f"graphsurgery: error: {message}", file=sys.stderr)
    if want_json:
        try:
            print(json.dumps({"error": message, "type": kind, "exit_code": code, **jsonable(extra)}, indent=2))
        except BrokenPipeError:  # the error object piped into a command that stopped reading
            silence_stdout()
    return code


def silence_stdout() -> None:
    """Nothing more may reach a closed pipe, not even Python's flush at exit."""
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until the process ends
    except OSError:
        pass
