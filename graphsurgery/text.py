"""Text fields that are not UTF-8: found with protobuf's own parser, named field by field.

onnx.proto is proto2, whose ``string`` fields protobuf does not validate when parsing, so a
damaged name would otherwise raise UnicodeDecodeError from whichever tool reads it first.
"""

from __future__ import annotations

import functools

import onnx
from google.protobuf.descriptor import FieldDescriptor as _FD
from google.protobuf.message import DecodeError

from .errors import ModelLoadError


@functools.lru_cache(maxsize=1)
def _strict_text_class():
    """A twin of ``onnx.ModelProto`` whose parser refuses text fields that are not UTF-8.

    onnx.proto is proto2, whose ``string`` fields protobuf does not validate when parsing (upb
    hands back ``bytes`` for them when read). Declaring the same messages as edition 2023 with
    ``utf8_validation = VERIFY`` makes protobuf's own C parser check every text field, at the
    cost of one more parse; ``bytes`` fields (weights, attribute strings) stay unchecked, as in
    ONNX. None when this protobuf cannot build it (then text is checked field by field).
    """
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        fdp = descriptor_pb2.FileDescriptorProto()
        onnx.ModelProto.DESCRIPTOR.file.CopyToProto(fdp)
        if fdp.dependency:
            return None
        old, new = f".{fdp.package}.", f".graphsurgery_text_check.{fdp.package}."
        fdp.name = "graphsurgery_text_check/" + fdp.name
        fdp.package = new[1:-1]
        stack = list(fdp.message_type)
        while stack:
            msg = stack.pop()
            stack.extend(msg.nested_type)
            for f in msg.field:
                if f.type_name.startswith(old):
                    f.type_name = new + f.type_name[len(old):]
        if fdp.syntax not in ("", "proto2"):
            return None
        fdp.syntax = "editions"
        fdp.edition = descriptor_pb2.EDITION_2023
        features = fdp.options.features
        features.field_presence = features.EXPLICIT  # what proto2 does, otherwise
        features.enum_type = features.CLOSED
        features.repeated_field_encoding = features.EXPANDED
        features.message_encoding = features.LENGTH_PREFIXED
        features.json_format = features.LEGACY_BEST_EFFORT
        features.utf8_validation = features.VERIFY
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(new[1:] + "ModelProto"))
    except Exception:  # noqa: BLE001 - an older protobuf without editions: the slower walk does the job
        return None


def text_is_utf8(data: bytes) -> bool:
    """False when the serialized model ``data`` may hold text that is not UTF-8 (or does not
    parse at all); True when every text field is valid UTF-8."""
    strict = _strict_text_class()
    if strict is None:
        return False
    try:
        strict.FromString(data)
    except (DecodeError, RecursionError):
        return False
    return True


def validate_text(proto: onnx.ModelProto, what: str, data: bytes | None = None) -> None:
    """Refuse a model holding text (names, domains, doc strings...) that is not valid UTF-8.

    Protobuf decodes text fields only when they are read, so without this a damaged name would
    raise UnicodeDecodeError from whichever tool reads it first. Weights are not looked at.
    ``data``, the model serialized, saves serializing it again.
    """
    if _strict_text_class() is not None and text_is_utf8(proto.SerializeToString() if data is None else data):
        return
    find_bad_text(proto, what)


def find_bad_text(proto: onnx.ModelProto, what: str) -> None:
    """Walk every text field of ``proto`` and raise naming the first that does not decode."""
    # (message, where): ``where`` is the parent's place and the field, spelt out only on error
    stack: list[tuple[object, tuple]] = [(proto, ())]
    STRING, MESSAGE = _FD.TYPE_STRING, _FD.TYPE_MESSAGE
    TensorProto = onnx.TensorProto
    while stack:
        msg, where = stack.pop()
        try:
            fields = msg.ListFields() if type(msg) is not TensorProto else _tensor_text_fields(msg)
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
                if not _is_repeated(fd):
                    stack.append((value, (where, fd.name)))
                elif fd.message_type.name == "NodeProto":
                    # most of a model's text: plain nodes are told apart without listing their fields
                    stack.extend((v, (where, fd.name, i)) for i, v in enumerate(value) if not _plain_node(v))
                else:
                    stack.extend((v, (where, fd.name, i)) for i, v in enumerate(value))
        if fields is None:
            raise ModelLoadError(f"{what}: {_where(where)} holds text that is not valid UTF-8 (a name, domain or "
                                 "doc string); the file is damaged")


def _where(where: tuple) -> str:
    """``((((), 'graph'), 'node', 3), ...)`` → ``the model › graph › node[3]``."""
    parts = []
    while where:
        parent, field, *index = where
        parts.append(f"{field}[{index[0]}]" if index else field)
        where = parent
    return " › ".join(["the model", *reversed(parts)])


_SCALAR_ATTRS = frozenset({onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT, onnx.AttributeProto.STRING,
                           onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS, onnx.AttributeProto.STRINGS})


def _plain_node(n: onnx.NodeProto) -> bool:
    """A node whose text all decodes and that holds no graph, tensor or metadata: nothing below
    it to visit. ``str.join`` raises TypeError on the bytes protobuf hands back for text that
    does not decode (attribute values ``s``/``strings`` are bytes fields, not text)."""
    if len(n.metadata_props) or len(n.device_configurations):
        return False
    try:
        "".join((n.name, n.op_type, n.domain, n.overload, n.doc_string, *n.input, *n.output))
        for a in n.attribute:
            if a.type not in _SCALAR_ATTRS:
                return False
            "".join((a.name, a.ref_attr_name, a.doc_string))
    except TypeError:
        return False
    return True


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


__all__ = ["find_bad_text", "text_is_utf8", "validate_text"]
