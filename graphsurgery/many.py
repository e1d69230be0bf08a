"""Many models at once: one job per model file, in worker processes, where one model's failure
never stops the others.

    from graphsurgery.many import outputs_for, run_all
    pairs = outputs_for(["a.onnx", "b.onnx"], "out/")      # [("a.onnx", "out/a.onnx"), ...]
    for done in run_all(job, pairs, jobs=4):               # job(src, dst) -> anything picklable
        print(done.src, done.ok, done.error)

The job is a module-level function (worker processes are started fresh and import it). A
job that raises is a failed model: :class:`Done` holds the error's one-line message and its
type; nothing escapes to the caller but ``KeyboardInterrupt``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import GraphSurgeryError, ManyError


@dataclass
class Done:
    """One model's outcome: ``value`` is what the job returned; ``error`` the one-line reason
    it failed (``None`` when it did not), ``kind`` the error's type name, ``code`` its exit code."""

    src: str
    dst: str
    value: Any = None
    error: str | None = None
    kind: str = ""
    code: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def outputs_for(sources: list[str], folder: str, *, overwrite: bool = False) -> list[tuple[str, str]]:
    """``(source, folder/basename(source))`` for each source. The folder is created when missing
    (its parent must exist); two sources with the same file name, a source given twice, or an
    output that is its own source (unless ``overwrite``) are refused before any work."""
    if not folder or not folder.strip():
        raise ManyError("-o needs a folder when several models are given")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ManyError(f"-o {folder} is a file; with several models -o names a folder to write them into")
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise ManyError(f"-o {folder}: folder {parent} does not exist")
    seen: dict[str, str] = {}
    pairs = []
    for src in sources:
        if not os.path.isfile(src):
            what = "is a folder" if os.path.isdir(src) else "does not exist"
            raise ManyError(f"model file {src} {what}; give .onnx files")
        base = os.path.basename(src)
        if base in seen:
            same = os.path.samefile(seen[base], src)
            raise ManyError(f"{src} is given twice" if same else
                            f"{seen[base]} and {src} would both be written to {os.path.join(folder, base)}; "
                            "optimise them into different folders")
        seen[base] = src
        dst = os.path.join(folder, base)
        if not overwrite and os.path.exists(dst) and os.path.samefile(dst, src):
            raise ManyError(f"refusing to overwrite the input {src} (-o {folder}); write elsewhere, "
                            "or pass --overwrite")
        pairs.append((src, dst))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ManyError(f"-o {folder}: cannot create the folder ({exc.strerror or type(exc).__name__})") from None
    return pairs


def _call(job: Callable[[str, str], Any], src: str, dst: str) -> Done:
    try:
        return Done(src, dst, value=job(src, dst))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a model's failure is data here, reported per model
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, GraphSurgeryError):
            message = f"unexpected {type(exc).__name__}: {message}"
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return Done(src, dst, error=message, kind=type(cause).__name__, code=int(getattr(exc, "code", 2) or 2))


def run_all(job: Callable[[str, str], Any], pairs: list[tuple[str, str]], *, jobs: int = 1,
            progress: Callable[[int, int, str], None] | None = None) -> Iterator[Done]:
    """Run ``job(src, dst)`` for every pair, ``jobs`` at a time in worker processes (in this
    process when ``jobs`` is 1), yielding each :class:`Done` as it finishes (in the order given
    when ``jobs`` is 1)."""
    total = len(pairs)
    if progress:
        progress(0, total, "")
    if jobs <= 1 or total <= 1:
        for i, (src, dst) in enumerate(pairs, 1):
            done = _call(job, src, dst)
            if progress:
                progress(i, total, os.path.basename(src))
            yield done
        return
    import concurrent.futures as cf
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no onnxruntime state inherited through fork
    with cf.ProcessPoolExecutor(max_workers=min(jobs, total), mp_context=context) as pool:
        futures = {pool.submit(_call, job, src, dst): (src, dst) for src, dst in pairs}
        try:
            for i, fut in enumerate(cf.as_completed(futures), 1):
                src, dst = futures[fut]
                try:
                    done = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker that died (out of memory, a crash)
                    done = Done(src, dst, error=f"the worker process failed ({type(exc).__name__}: "
                                                f"{' '.join(str(exc).split())})", kind="WorkerError", code=2)
                if progress:
                    progress(i, total, os.path.basename(src))
                yield done
        except BaseException:
            for f in futures:
                f.cancel()
            raise
