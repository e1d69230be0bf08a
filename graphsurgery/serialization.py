"""Reading and writing model files: validation on the way in, atomic writes on the way out.

A load parses the bytes once and keeps the ``ModelProto`` as it is; external tensor data
stays on disk until a tensor is read (then it is memory-mapped). A save writes to a
temporary file in the target folder and renames it into place, so a failed save never
leaves a half-written model behind.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from typing import NamedTuple

import onnx
from google.protobuf.message import DecodeError

from . import external_data
from .errors import ModelLoadError, SaveError
from .ops import subgraph_protos
from .text import find_bad_text, text_is_utf8
from .text import validate_text as validate_text  # (where it was first defined)

TWO_GB = 2**31
# upb (the protobuf runtime onnx uses) refuses messages nested deeper than this.
MAX_MESSAGE_DEPTH = 100
_ALIGN = 64
_MAX_PARSE_FOR_DATA = 256 * 2**20
_CHUNK = 4 * 2**20


def parse(data: bytes, what: str) -> onnx.ModelProto:
    """Parse model bytes, refusing what is empty, truncated or plainly not an ONNX model, or
    holds text that is not UTF-8."""
    if not data:
        raise ModelLoadError(f"{what} is empty (0 bytes); it is not an ONNX model")
    # the strict parse first, and let go of it, so the two parses never hold the model twice
    text_ok = text_is_utf8(data)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as exc:
        raise ModelLoadError(f"{what} is not a readable ONNX model (truncated or not protobuf): {exc}") from None
    except RecursionError:
        raise ModelLoadError(f"{what} nests subgraphs too deeply to be read") from None
    validate_header(proto, what)
    if not text_ok:
        find_bad_text(proto, what)
    return proto


def validate_header(proto: onnx.ModelProto, what: str) -> None:
    """Refuse a parsed message that cannot be an ONNX model, or whose opsets are ambiguous."""
    if proto.ir_version <= 0:
        hint = " (random bytes and empty files parse as an empty message)" if not proto.HasField("graph") else ""
        raise ModelLoadError(f"{what} has no valid ir_version ({proto.ir_version}): it is not an ONNX model{hint}")
    if not proto.HasField("graph"):
        raise ModelLoadError(f"{what} has no graph: it is not an ONNX model")
    if proto.ir_version >= 3 and len(proto.opset_import) == 0:
        raise ModelLoadError(f"{what} imports no opset; every model since IR version 3 must name the opset of "
                             "its operators (add one with onnx.helper.make_opsetid('', VERSION))")
    _check_opsets(proto.opset_import, what)
    for f in proto.functions:
        _check_opsets(f.opset_import, f"{what}, function {f.domain}::{f.name}")


def _check_opsets(imports, what: str) -> None:
    seen: dict[str, int] = {}
    for op in imports:
        if op.domain in seen:
            raise ModelLoadError(f"{what} imports domain {op.domain or 'ai.onnx'!r} twice (versions "
                                 f"{seen[op.domain]} and {op.version}); keep one opset_import entry per domain")
        seen[op.domain] = op.version


def too_deep(depth: int) -> bool:
    """Would subgraphs nested ``depth`` levels deep make a file protobuf readers refuse?"""
    return 2 + 3 * depth + 5 > MAX_MESSAGE_DEPTH


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ModelLoadError(f"model file {path} does not exist") from None
    except IsADirectoryError:
        raise ModelLoadError(f"{path} is a folder, not a model file") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror}") from None


def iter_graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers of ``graph`` and of every subgraph, and tensors held in node attributes."""
    yield from graph.initializer
    for s in graph.sparse_initializer:
        yield s.values
        yield s.indices
    for node in graph.node:
        yield from iter_node_tensors(node)


def iter_node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for a in node.attribute:
        t = a.type
        if t == onnx.AttributeProto.TENSOR:
            yield a.t
        elif t == onnx.AttributeProto.TENSORS:
            yield from a.tensors
        elif t == onnx.AttributeProto.GRAPH:
            yield from iter_graph_tensors(a.g)
        elif t == onnx.AttributeProto.GRAPHS:
            for g in a.graphs:
                yield from iter_graph_tensors(g)


def iter_model_tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from iter_graph_tensors(proto.graph)
    for f in proto.functions:
        for node in f.node:
            yield from iter_node_tensors(node)


# Temporary files are named ".<target>.<pid>-<random>.gstmp", so a later save can tell they are
# ours and whether the process that made them is gone (killed mid-save): see reclaim_stale().
_TMP_RE = re.compile(r"^\..*\.(\d+)-[0-9a-f]{8}\.gstmp$")
_TMP_SUFFIX = ".gstmp"
# A temporary whose process still seems alive is left alone unless it is this old (pid reuse).
STALE_AFTER = 24 * 3600.0


def _create_temp(folder: str, base: str) -> tuple[int, str]:
    """Create a new temporary file beside the target, with the mode the umask gives new files
    (as any other tool writing the file would), not mkstemp's 0600."""
    for _ in range(100):
        name = f".{base}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
        tmp = os.path.join(folder, name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise SaveError(f"cannot create a temporary file in {folder}")  # pragma: no cover


def _atomic_target(path: str) -> tuple[int, str]:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SaveError(f"cannot save to {path}: folder {folder} does not exist")
    return _create_temp(folder, os.path.basename(path))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, but belongs to someone else
    return True


def reclaim_stale(folder: str) -> list[str]:
    """Delete graphsurgery's own temporaries in ``folder`` left by saves that were killed: those
    whose process is gone (or that are older than STALE_AFTER). Returns the names removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        m = _TMP_RE.match(name)
        if m is None:
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if _alive(int(m.group(1))) and now - st.st_mtime < STALE_AFTER:
            continue
        try:
            os.unlink(path)
            removed.append(name)
        except OSError:
            pass
    return removed


def write_atomic(path: str, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the new one, never a partial one, whatever happens to this
    process. ``durable`` also flushes the file and its folder to disk before returning, so the
    new file survives a power loss too (it costs the time of writing to the device).
    """
    _replace(_write_temp(path, data, durable), path, durable)


def _write_temp(path: str, data: bytes, durable: bool) -> str:
    """``data`` written to a new temporary file beside ``path``; its name."""
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _replace(tmp: str, path: str, durable: bool) -> None:
    """Rename the temporary file ``tmp`` over ``path`` (the file is dropped if that fails)."""
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    if durable:
        _fsync_folder(path)


def _fsync_folder(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(out, data) -> None:
    """Write every byte to an unbuffered file (a raw write may take only part)."""
    view = memoryview(data)
    while view:
        n = out.write(view)
        view = view[n:]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Saved(NamedTuple):
    """What a save did: the model file's bytes as written (the proto as it now is: weights
    that moved inline or out are so in the proto too), whether it keeps weights externally,
    and the folder its external data now lives in (None: where it was)."""

    data: bytes
    external: bool
    base_dir: str | None


def save(proto: onnx.ModelProto, path: str, *, base_dir: str | None, source_path: str | None, overwrite: bool,
         external: bool | None, location: str | None, size_threshold: int, depth: int, has_external: bool,
         durable: bool, progress=None, data: bytes | None = None) -> Saved:
    """Write ``proto`` to ``path`` as described in :meth:`graphsurgery.Model.save`. ``data``
    is ``proto`` serialized, if the caller has it; ``base_dir`` where its external data lives;
    ``source_path`` the file it was loaded from, never overwritten unless ``overwrite``."""
    return prepare(proto, path, base_dir=base_dir, source_path=source_path, overwrite=overwrite, external=external,
                   location=location, size_threshold=size_threshold, depth=depth, has_external=has_external,
                   durable=durable, progress=progress, data=data).commit()


def prepare(proto: onnx.ModelProto, path: str, *, base_dir: str | None, source_path: str | None, overwrite: bool,
            external: bool | None, location: str | None, size_threshold: int, depth: int, has_external: bool,
            durable: bool, progress=None, data: bytes | None = None) -> PendingSave:
    """The first half of :func:`save` (same arguments): refuse what cannot be saved, and write a
    model that keeps its weights in the file, as ``data``, under a temporary name. Nothing is
    replaced until :meth:`PendingSave.commit`; :meth:`PendingSave.discard` leaves no trace.
    A save that moves weights in or out of the model file does all its writing at commit, so
    a discarded save never changes ``proto``."""
    path = os.fspath(path)
    src = source_path
    if not overwrite and src is not None and os.path.exists(path) and os.path.samefile(path, src):
        raise SaveError(f"refusing to overwrite the input model {src}; save elsewhere, or pass overwrite=True")
    if too_deep(depth):
        raise SaveError(f"subgraphs nest {depth} levels deep; protobuf readers refuse "
                        f"messages nested deeper than {MAX_MESSAGE_DEPTH} levels, so nobody could read this file. "
                        "Inline or flatten some If/Loop bodies first")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder):
        reclaim_stale(folder)
    size = len(data) if data is not None else proto.ByteSize()
    if external is None:
        external = has_external or size >= TWO_GB
    pending = PendingSave(proto, path, base_dir, external, location, size_threshold, durable, progress)
    if not external and not has_external:
        if size >= TWO_GB:
            raise SaveError(f"the model is {size / 2**30:.2f} GiB; protobuf cannot write a file of 2 GiB or more. "
                            "Save with external_data=True to keep weights in a separate file")
        pending.data = proto.SerializeToString() if data is None else data
        pending.old = _data_files_of(path)
        pending.tmp = _write_temp(path, pending.data, durable)
    return pending


class PendingSave:
    """A save :func:`prepare` made ready; call :meth:`commit` or :meth:`discard`, once."""

    def __init__(self, proto: onnx.ModelProto, path: str, base_dir: str | None, external: bool,
                 location: str | None, size_threshold: int, durable: bool, progress) -> None:
        self.proto, self.path, self.base_dir, self.external = proto, path, base_dir, external
        self.location, self.size_threshold, self.durable, self.progress = location, size_threshold, durable, progress
        self.data: bytes | None = None
        self.tmp: str | None = None
        self.old: set[str] = set()

    def commit(self) -> Saved:
        """Put the model in place; what was written."""
        path, proto, durable = self.path, self.proto, self.durable
        tmp, self.tmp = self.tmp, None
        if tmp is not None:  # written already, as it was checked
            _replace(tmp, path, durable)
            _drop_old_data(path, self.old, keep=set(), location=os.path.basename(path) + ".data")
            return Saved(self.data, False, None)
        if not self.external:  # weights move into the model file
            _inline_external(proto, self.base_dir)
            size = proto.ByteSize()
            if size >= TWO_GB:
                raise SaveError(f"the model is {size / 2**30:.2f} GiB; protobuf cannot write a file of 2 GiB or "
                                "more. Save with external_data=True to keep weights in a separate file")
            data = proto.SerializeToString()
            old = _data_files_of(path)
            write_atomic(path, data, durable)
            _drop_old_data(path, old, keep=set(), location=os.path.basename(path) + ".data")
            return Saved(data, False, None)
        data = _save_external(proto, self.base_dir, path, self.location or os.path.basename(path) + ".data",
                              self.size_threshold, durable, self.progress)
        return Saved(data, True, os.path.dirname(os.path.abspath(path)))

    def discard(self) -> None:
        """Drop what was written; nothing was replaced."""
        tmp, self.tmp = self.tmp, None
        if tmp is not None:
            _unlink(tmp)


def _inline_external(proto: onnx.ModelProto, base_dir: str | None) -> None:
    from . import tensors

    for t in list(iter_model_tensors(proto)):
        if external_data.is_external(t):
            data = tensors.to_numpy(t, base_dir)
            raw = data.tobytes()
            del t.external_data[:]
            t.ClearField("data_location")  # absent, as in a model that was never external
            t.raw_data = raw


def _save_external(proto: onnx.ModelProto, base_dir: str | None, path: str, location: str, size_threshold: int,
                   durable: bool, progress=None) -> bytes:
    """Stream every external tensor, and every inline initializer of ``size_threshold`` bytes or
    more, into one new data file beside ``path``; then point the tensors at it and write the model.

    The model and its data change together: the data goes to a file no model refers to yet
    (``location`` for a new model if no such file exists, else ``location`` with a fresh tag), and only then does
    the model that refers to it replace the old model, atomically. A reader, or a save killed at any
    step, sees the old model with the old data or the new model with the new data. The data files
    the old model used are deleted afterwards, if the model now at ``path`` no longer uses them.
    An existing file is never overwritten, so the data of other models in the folder is safe.
    """
    if (os.path.isabs(location) or ".." in location.replace("\\", "/").split("/") or "/" in location
            or "\\" in location or "\0" in location or location in ("", ".")):
        raise SaveError(f"external data location {location!r} must be a plain file name in the model's folder")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SaveError(f"cannot save to {path}: folder {folder} does not exist")
    initializers = _initializer_ids(proto)
    chosen = []
    for t in iter_model_tensors(proto):
        if external_data.is_external(t):
            chosen.append((t, external_data.resolve(t, base_dir)))
        elif id(t) in initializers and t.data_type != onnx.TensorProto.STRING and t.ByteSize() >= size_threshold:
            chosen.append((t, None))
    old = _data_files_of(path)
    fd, tmp_data = _create_temp(folder, location)
    final = None
    placed = []
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            offset = 0
            for t, ref in chosen:
                pad = (-offset) % _ALIGN
                if pad:
                    _write_all(out, b"\0" * pad)
                    offset += pad
                if ref is not None:
                    try:
                        length = _copy_range(ref.path, ref.offset, ref.length, out)
                    except FileNotFoundError:
                        raise SaveError(f"external data file {ref.path} of tensor {t.name!r} was deleted while "
                                        "saving (did another program replace the model?)") from None
                else:
                    data = t.raw_data if t.HasField("raw_data") else _as_raw(t)
                    _write_all(out, data)
                    length = len(data)
                placed.append((t, offset, length))
                offset += length
                if progress is not None:
                    progress(len(placed), len(chosen), "tensors written")
            if durable:
                os.fsync(out.fileno())
        # the plain name only for a model saved here for the first time; after that a fresh name each
        # time, so no name is ever reused while a reader may still hold a model that refers to it
        final = _claim_name(tmp_data, folder, location, plain=not os.path.lexists(path))
        tmp_data = None
        if durable:
            _fsync_folder(path)  # the data file's name is on disk before any model refers to it
        # point the tensors at the new file; keep what is needed to undo it
        undo = []
        for t, off, length in placed:
            prev = None
            if external_data.is_external(t):
                prev = onnx.TensorProto()
                prev.CopyFrom(t)
            undo.append((t, prev, off, length))
            external_data.set_entries(t, final, off, length)
        try:
            data = proto.SerializeToString()
            write_atomic(path, data, durable)
        except BaseException:
            _undo(undo, os.path.join(folder, final))
            raise
    except BaseException:
        if tmp_data is not None:
            _unlink(tmp_data)
        if final is not None and not _uses(path, final):
            _unlink(os.path.join(folder, final))  # ours, and no model refers to it
        raise
    _drop_old_data(path, old, keep={final}, location=location)
    return data


def _claim_name(tmp: str, folder: str, location: str, plain: bool) -> str:
    """Give the written data file its final name without ever replacing an existing file:
    ``location`` if ``plain`` and free, else ``location`` with a fresh tag
    (``m.onnx.data`` -> ``m.onnx.1a2b3c4d.data``)."""
    stem, dot, ext = location.rpartition(".")
    candidates = ([location] if plain else []) + [f"{stem}.{secrets.token_hex(4)}.{ext}" if dot and stem else
                               f"{location}.{secrets.token_hex(4)}" for _ in range(50)]
    for name in candidates:
        target = os.path.join(folder, name)
        try:
            os.link(tmp, target)  # fails if the name exists: never replaces anything
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system: check, then rename
            if os.path.lexists(target):
                continue
            os.rename(tmp, target)
            return name
        _unlink(tmp)
        return name
    raise SaveError(f"cannot find a free name for the data file {location} in {folder}")  # pragma: no cover


def _tagged(name: str, location: str) -> bool:
    """Is ``name`` ``location`` or a tagged variant _claim_name could have made of it?"""
    if name == location:
        return True
    stem, dot, ext = location.rpartition(".")
    pattern = (re.escape(stem) + r"\.[0-9a-f]{8}\." + re.escape(ext)) if dot and stem else \
        (re.escape(location) + r"\.[0-9a-f]{8}")
    return re.fullmatch(pattern, name) is not None


def _data_files_of(path: str) -> set[str]:
    """The external data locations the model file at ``path`` refers to (empty if unreadable, or
    too big to parse for this: a model that large keeps its weights inline, almost always)."""
    try:
        if os.path.getsize(path) > _MAX_PARSE_FOR_DATA:
            return set()
        with open(path, "rb") as f:
            if not _mentions(f, b"location"):
                return set()  # a tensor's data file is named under the key "location": none here
            f.seek(0)
            proto = onnx.ModelProto.FromString(f.read())
        return {_location_of(t) for t in iter_model_tensors(proto) if external_data.is_external(t)} - {""}
    except Exception:  # noqa: BLE001 - no model, or one we cannot read: it refers to nothing we know of
        return set()


def _mentions(f, word: bytes) -> bool:
    """Does the open file ``f`` hold ``word`` anywhere? Read in chunks, never whole."""
    tail = b""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return False
        seen = tail + chunk
        if word in seen:
            return True
        tail = seen[-len(word) + 1:]


def _uses(path: str, name: str) -> bool:
    return name in _data_files_of(path)


def _drop_old_data(path: str, old: set[str], keep: set, location: str) -> None:
    """Delete the data files the replaced model used, when they are named as this save names its data
    files (other names may be shared with other models) and the model now at ``path`` does not use them."""
    candidates = {n for n in old - keep if "/" not in n and "\\" not in n and _tagged(n, location)}
    if not candidates:
        return
    now_used = _data_files_of(path)
    folder = os.path.dirname(os.path.abspath(path))
    for name in candidates - now_used:
        _unlink(os.path.join(folder, name))


def _undo(undo, tmp_data: str) -> None:
    with open(tmp_data, "rb") as f:
        for t, old, off, length in undo:
            if old is not None:
                t.CopyFrom(old)
            else:
                f.seek(off)
                del t.external_data[:]
                t.ClearField("data_location")
                t.raw_data = f.read(length)


def _location_of(t: onnx.TensorProto) -> str:
    for e in t.external_data:
        if e.key == "location":
            return e.value
    return ""


def _initializer_ids(proto: onnx.ModelProto) -> dict[int, onnx.TensorProto]:
    """The initializer protos of every graph, by id. upb hands out one Python object per
    message only while that object lives, so the dict keeps them alive to keep ids stable."""
    ids: dict[int, onnx.TensorProto] = {}
    stack = [proto.graph]
    while stack:
        g = stack.pop()
        ids.update((id(t), t) for t in g.initializer)
        for n in g.node:
            stack.extend(subgraph_protos(n))
    return ids


def _as_raw(t: onnx.TensorProto) -> bytes:
    from onnx import numpy_helper

    return numpy_helper.from_array(numpy_helper.to_array(t)).raw_data


def _copy_range(src: str, offset: int, length: int, out) -> int:
    """Copy ``length`` bytes at ``offset`` of ``src`` to the current position of ``out`` (an
    unbuffered file), in the kernel where it can (no bytes pass through Python)."""
    dst = out.fileno()
    copied = 0
    with open(src, "rb", buffering=0) as f:
        for kernel_copy in (_copy_file_range, _sendfile):
            try:
                while copied < length:
                    n = kernel_copy(f.fileno(), dst, length - copied, offset + copied)
                    if n == 0:
                        raise SaveError(f"external data file {src} ended early while copying")
                    copied += n
                return copied
            except (OSError, AttributeError):
                continue  # not supported between these files: try the next way
        f.seek(offset + copied)
        while copied < length:
            chunk = f.read(min(_CHUNK, length - copied))
            if not chunk:
                raise SaveError(f"external data file {src} ended early while copying")
            _write_all(out, chunk)
            copied += len(chunk)
    return copied


def _copy_file_range(src_fd: int, dst_fd: int, count: int, src_offset: int) -> int:
    return os.copy_file_range(src_fd, dst_fd, count, src_offset)


def _sendfile(src_fd: int, dst_fd: int, count: int, src_offset: int) -> int:
    return os.sendfile(dst_fd, src_fd, src_offset, count)
