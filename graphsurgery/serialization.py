"""Reading and writing model files: validation on the way in, atomic writes on the way out.

A load parses the bytes once and keeps the ``ModelProto`` as it is; external tensor data
stays on disk until a tensor is read (then it is memory-mapped). A save writes to a
temporary file in the target folder and renames it into place, so a failed save never
leaves a half-written model behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import onnx
from google.protobuf.descriptor import FieldDescriptor as _FD
from google.protobuf.message import DecodeError

from . import external_data
from .errors import ModelLoadError, SaveError

if TYPE_CHECKING:
    from .model import Model

TWO_GB = 2**31
# upb (the protobuf runtime onnx uses) refuses messages nested deeper than this.
MAX_MESSAGE_DEPTH = 100
_ALIGN = 64
_CHUNK = 4 * 2**20


def parse(data: bytes, what: str) -> onnx.ModelProto:
    """Parse model bytes, refusing what is empty, truncated or plainly not an ONNX model."""
    if not data:
        raise ModelLoadError(f"{what} is empty (0 bytes); it is not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as exc:
        raise ModelLoadError(f"{what} is not a readable ONNX model (truncated or not protobuf): {exc}") from None
    except RecursionError:
        raise ModelLoadError(f"{what} nests subgraphs too deeply to be read") from None
    validate_header(proto, what)
    validate_text(proto, what)
    return proto


def validate_text(proto: onnx.ModelProto, what: str) -> None:
    """Refuse a model holding text (names, domains, doc strings...) that is not valid UTF-8.

    Protobuf decodes text fields only when they are read, so without this a damaged name would
    raise UnicodeDecodeError from whichever tool reads it first. Weights are not looked at.
    """
    stack: list[tuple[object, str]] = [(proto, "the model")]
    STRING, MESSAGE = _FD.TYPE_STRING, _FD.TYPE_MESSAGE
    while stack:
        msg, where = stack.pop()
        try:
            fields = msg.ListFields() if not isinstance(msg, onnx.TensorProto) else _tensor_text_fields(msg)
        except UnicodeDecodeError:
            fields = None
        for fd, value in fields or ():
            t = fd.type
            if t == STRING:
                # protobuf hands back bytes, not str, for text that does not decode
                if isinstance(value, bytes) or (not isinstance(value, str) and any(isinstance(v, bytes)
                                                                                   for v in value)):
                    fields = None
                    break
            elif t == MESSAGE:
                if _is_repeated(fd):
                    stack.extend((v, f"{where} › {fd.name}[{i}]") for i, v in enumerate(value))
                else:
                    stack.append((value, f"{where} › {fd.name}"))
        if fields is None:
            raise ModelLoadError(f"{what}: {where} holds text that is not valid UTF-8 (a name, domain or doc "
                                 "string); the file is damaged")


def _tensor_text_fields(t: onnx.TensorProto) -> list:
    """The fields of a tensor that may hold text, without copying its data."""
    d = t.DESCRIPTOR.fields_by_name
    out = [(d["name"], t.name), (d["doc_string"], t.doc_string)]
    if len(t.external_data):
        out.append((d["external_data"], t.external_data))
    if "metadata_props" in d and len(t.metadata_props):
        out.append((d["metadata_props"], t.metadata_props))
    if "segment" in d and t.HasField("segment"):
        out.append((d["segment"], t.segment))
    return out


def _is_repeated(fd) -> bool:
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == fd.LABEL_REPEATED


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


def _atomic_target(path: str) -> tuple[int, str]:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SaveError(f"cannot save to {path}: folder {folder} does not exist")
    return tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)


def write_atomic(path: str, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the new one, never a partial one, whatever happens to this
    process. ``durable`` also flushes the file and its folder to disk before returning, so the
    new file survives a power loss too (it costs the time of writing to the device).
    """
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
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


def save(model: Model, path: str, *, overwrite: bool, external: bool | None, location: str | None,
         size_threshold: int, depth: int, has_external: bool, durable: bool, progress=None) -> None:
    """Write ``model`` to ``path`` as described in :meth:`graphsurgery.Model.save`."""
    path = os.fspath(path)
    src = model.source_path
    if not overwrite and src is not None and os.path.exists(path) and os.path.samefile(path, src):
        raise SaveError(f"refusing to overwrite the input model {src}; save elsewhere, or pass overwrite=True")
    if 2 + 3 * depth + 5 > MAX_MESSAGE_DEPTH:
        raise SaveError(f"subgraphs nest {depth} levels deep; protobuf readers refuse "
                        f"messages nested deeper than {MAX_MESSAGE_DEPTH} levels, so nobody could read this file. "
                        "Inline or flatten some If/Loop bodies first")
    proto = model.proto
    if external is None:
        external = has_external or proto.ByteSize() >= TWO_GB
    if not external:
        if has_external:
            _inline_external(model)
        size = proto.ByteSize()
        if size >= TWO_GB:
            raise SaveError(f"the model is {size / 2**30:.2f} GiB; protobuf cannot write a file of 2 GiB or more. "
                            "Save with external_data=True to keep weights in a separate file")
        write_atomic(path, proto.SerializeToString(), durable)
        return
    _save_external(model, path, location or os.path.basename(path) + ".data", size_threshold, durable, progress)


def _inline_external(model: Model) -> None:
    from . import tensors

    for t in list(iter_model_tensors(model.proto)):
        if external_data.is_external(t):
            data = tensors.to_numpy(t, model.base_dir)
            raw = data.tobytes()
            del t.external_data[:]
            t.ClearField("data_location")  # absent, as in a model that was never external
            t.raw_data = raw


def _save_external(model: Model, path: str, location: str, size_threshold: int, durable: bool,
                   progress=None) -> None:
    """Stream every external tensor, and every inline initializer of ``size_threshold`` bytes or
    more, into one data file beside ``path``; then point the tensors at it and write the model."""
    if os.path.isabs(location) or ".." in location.replace("\\", "/").split("/") or "/" in location:
        raise SaveError(f"external data location {location!r} must be a plain file name in the model's folder")
    folder = os.path.dirname(os.path.abspath(path))
    data_path = os.path.join(folder, location)
    if model.source_path is not None and os.path.exists(data_path):
        src_folder = os.path.dirname(os.path.abspath(model.source_path))
        same_file = os.path.exists(path) and os.path.samefile(path, model.source_path)
        if os.path.samefile(folder, src_folder) and not same_file and any(
                external_data.is_external(t) and _location_of(t) == location for t in iter_model_tensors(model.proto)):
            raise SaveError(f"saving beside the input would overwrite its data file {data_path}, which the input "
                            "model still needs; pass location='NEW_NAME.data'")
    proto = model.proto
    initializers = _initializer_ids(proto)
    chosen = []
    for t in iter_model_tensors(proto):
        if external_data.is_external(t):
            chosen.append((t, external_data.resolve(t, model.base_dir)))
        elif id(t) in initializers and t.data_type != onnx.TensorProto.STRING and t.ByteSize() >= size_threshold:
            chosen.append((t, None))
    fd, tmp_data = _atomic_target(data_path)
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
                    length = _copy_range(ref.path, ref.offset, ref.length, out)
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
        # point the tensors at the new file; keep what is needed to undo it
        undo = []
        for t, off, length in placed:
            old = None
            if external_data.is_external(t):
                old = onnx.TensorProto()
                old.CopyFrom(t)
            undo.append((t, old, off, length))
            external_data.set_entries(t, location, off, length)
        try:
            write_atomic(path, proto.SerializeToString(), durable)
        except BaseException:
            _undo(undo, tmp_data)
            raise
        os.replace(tmp_data, data_path)
        if durable:
            _fsync_folder(data_path)
    except BaseException:
        _unlink(tmp_data)
        raise
    model._moved_to(folder)


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
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
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
