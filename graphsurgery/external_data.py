"""External tensor data: resolving locations safely, validating them, memory-mapping them.

A tensor stored outside the model file names a ``location`` relative to the model's
folder plus an optional ``offset`` and ``length``. This module refuses locations that
escape that folder (``..``, absolute paths, symbolic or hard links) and ranges that
fall outside the file or disagree with the tensor's dtype and shape.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass

import onnx

from .errors import ExternalDataError

_DIGITS = re.compile(r"[0-9]+")

# Bits per element for element types whose storage is not a whole number of bytes.
_SUBBYTE_BITS = {
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.UINT4: 4,
}
for _name, _bits in (("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2)):
    if hasattr(onnx.TensorProto, _name):  # newer element types, absent from older onnx releases
        _SUBBYTE_BITS[getattr(onnx.TensorProto, _name)] = _bits


@dataclass(frozen=True)
class ExternalRef:
    """Where one tensor's bytes live on disk."""

    path: str  # absolute, resolved
    location: str  # as written in the model
    offset: int
    length: int  # -1 when the model gives none (the rest of the file)


def is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


ELEMENT_TYPES = frozenset(onnx.TensorProto.DataType.values())


def dtype_name(data_type: int) -> str:
    """The element type's ONNX name, or ``unknown(N)`` for a number ONNX does not define."""
    if data_type in ELEMENT_TYPES:
        return onnx.TensorProto.DataType.Name(data_type)
    return f"unknown({data_type})"


def element_count(tensor: onnx.TensorProto) -> int:
    count = 1
    for d in tensor.dims:
        count *= d
    return count


def expected_nbytes(tensor: onnx.TensorProto) -> int | None:
    """The number of bytes the tensor's dtype × shape needs, or None for strings/unknown."""
    count = element_count(tensor)
    if count < 0:
        return None
    dt = tensor.data_type
    if dt in _SUBBYTE_BITS:
        return (count * _SUBBYTE_BITS[dt] + 7) // 8
    if dt in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    itemsize = _itemsize(dt)
    return None if itemsize is None else count * itemsize


@functools.cache
def _itemsize(dt: int) -> int | None:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(dt).itemsize
    except (KeyError, ValueError, TypeError):
        return None


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    entries: dict[str, str] = {}
    for e in tensor.external_data:
        if e.key in entries:
            # readers disagree on which entry wins (some take the first, some the last)
            raise ExternalDataError(
                f"tensor {tensor.name or '<unnamed tensor>'!r} names external data {e.key!r} twice "
                f"({entries[e.key]!r} and {e.value!r}); tools disagree on which one wins, so keep one")
        entries[e.key] = e.value
    return entries


def resolve(tensor: onnx.TensorProto, base_dir: str | None) -> ExternalRef:
    """Resolve and validate the external data reference of ``tensor``.

    Raises :class:`ExternalDataError` naming the tensor and the file when the
    location is unsafe or the byte range does not fit.
    """
    name = tensor.name or "<unnamed tensor>"
    entries = _entries(tensor)
    location = entries.get("location")
    if not location:
        raise ExternalDataError(f"tensor {name!r} is marked EXTERNAL but names no 'location'")
    if "\0" in location:
        raise ExternalDataError(f"tensor {name!r}: external data location {location!r} contains a NUL byte, "
                                "which no file name can hold")
    if base_dir is None:
        raise ExternalDataError(
            f"tensor {name!r} keeps its data in {location!r}, but the model was not loaded from a file; "
            "load it from its path so external data can be found"
        )
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise ExternalDataError(
            f"tensor {name!r}: external data location {location!r} is an absolute path; "
            "locations must be relative to the model's folder"
        )
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        raise ExternalDataError(
            f"tensor {name!r}: external data location {location!r} climbs out of the model's folder with '..'"
        )
    base_real = os.path.realpath(base_dir)
    path = os.path.join(base_real, *parts)
    # Refuse any symbolic link on the way, not only at the end.
    probe = base_real
    for part in parts:
        probe = os.path.join(probe, part)
        if os.path.islink(probe):
            raise ExternalDataError(
                f"tensor {name!r}: external data location {location!r} goes through a symbolic link ({probe}); "
                "copy the data file into the model's folder instead"
            )
    if os.path.commonpath([os.path.realpath(path), base_real]) != base_real:
        raise ExternalDataError(f"tensor {name!r}: external data location {location!r} escapes the model's folder")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ExternalDataError(
            f"tensor {name!r}: external data file {path} does not exist; keep the data file beside the model"
        ) from None
    except OSError as exc:
        raise ExternalDataError(f"tensor {name!r}: cannot read external data file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ExternalDataError(f"tensor {name!r}: external data location {location!r} is not a regular file")
    if st.st_nlink > 1:
        raise ExternalDataError(
            f"tensor {name!r}: external data file {path} has {st.st_nlink} hard links; "
            "a hard link may point outside the model's folder, so copy the file instead"
        )
    raw_offset, raw_length = entries.get("offset", "0"), entries.get("length")
    if not _DIGITS.fullmatch(raw_offset) or (raw_length is not None and not _DIGITS.fullmatch(raw_length)):
        # only plain decimal digits: readers parse "1_0", " 8" or "1e3" differently
        raise ExternalDataError(
            f"tensor {name!r}: external data offset/length must be plain non-negative integers "
            f"(offset={entries.get('offset')!r}, length={raw_length!r})"
        )
    offset = int(raw_offset)
    length = int(raw_length) if raw_length is not None else -1
    if offset < 0 or offset > st.st_size:
        raise ExternalDataError(
            f"tensor {name!r}: external data offset {offset} lies outside {path} ({st.st_size} bytes)"
        )
    if length < -1 or (length >= 0 and offset + length > st.st_size):
        raise ExternalDataError(
            f"tensor {name!r}: external data range [{offset}, {offset + length}) lies outside {path} "
            f"({st.st_size} bytes)"
        )
    expected = expected_nbytes(tensor)
    available = length if length >= 0 else st.st_size - offset
    if expected is not None and available != expected and (length >= 0 or available < expected):
        raise ExternalDataError(
            f"tensor {name!r}: external data holds {available} bytes but dtype "
            f"{dtype_name(tensor.data_type)} × shape {list(tensor.dims)} needs {expected}"
        )
    return ExternalRef(path=path, location=location, offset=offset, length=expected if length < 0 and expected is not None else length)


def set_entries(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Point ``tensor`` at ``location``/``offset``/``length``, dropping any inline data."""
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key = key
        entry.value = value
