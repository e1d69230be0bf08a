"""TensorProto ⇄ numpy, without copying where the bytes allow it.

Reading gives a read-only array: a view over the tensor's ``raw_data`` bytes, or a
memory map of its external data file. Element types numpy lacks (bfloat16, float8,
4-bit) go through ``onnx.numpy_helper``, which decodes them.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from . import external_data
from .errors import ExternalDataError, InvalidModelError

_STANDARD = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.BOOL: np.bool_,
    onnx.TensorProto.COMPLEX64: np.complex64,
    onnx.TensorProto.COMPLEX128: np.complex128,
}


T = onnx.TensorProto
# Which typed field holds the values of each element type, and how many values per element
# (complex numbers take two; 4-bit types pack two elements in one int32 value).
_FIELDS = {
    T.FLOAT: ("float_data", 1), T.COMPLEX64: ("float_data", 2),
    T.DOUBLE: ("double_data", 1), T.COMPLEX128: ("double_data", 2),
    T.INT64: ("int64_data", 1), T.UINT32: ("uint64_data", 1), T.UINT64: ("uint64_data", 1),
    T.STRING: ("string_data", 1),
    T.INT4: ("int32_data", 0.5), T.UINT4: ("int32_data", 0.5),
}
for _t in ("INT32", "INT16", "INT8", "UINT8", "UINT16", "BOOL", "FLOAT16", "BFLOAT16", "FLOAT8E4M3FN",
           "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0"):
    if hasattr(T, _t):
        _FIELDS[getattr(T, _t)] = ("int32_data", 1)
if hasattr(T, "FLOAT4E2M1"):
    _FIELDS[T.FLOAT4E2M1] = ("int32_data", 0.5)
# element types whose elements take a whole number of bytes each
_FIXED_SIZE = {t: np.dtype(d).itemsize for t, d in _STANDARD.items()}
_TYPED = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
# numpy cannot hold more than this many bytes in one array on any platform we support
_MAX_BYTES = 2**62


def problem(tensor: onnx.TensorProto, base_dir: str | None) -> str | None:
    """Why the tensor's value cannot be read as its element type and shape say, or None.

    Cheap: it compares lengths and checks external data ranges; it decodes nothing.
    """
    # the common weight first: raw bytes of a fixed-size element type and nothing else
    fields = tensor.ListFields()
    if len(fields) <= 5:
        raw = dims = None
        dt = T.UNDEFINED
        for fd, value in fields:
            name = fd.name
            if name == "raw_data":
                raw = value
            elif name == "dims":
                dims = value
            elif name == "data_type":
                dt = value
            elif name not in ("name", "doc_string"):
                raw = None
                break
        size = _FIXED_SIZE.get(dt)
        if raw is not None and size is not None:
            count = 1
            for d in dims or ():
                if d < 0:
                    count = -1
                    break
                count *= d
            if count >= 0 and count * size == len(raw):
                return None
    bad, nbytes = _type_problem(tensor)
    if bad is not None:
        return bad
    name = tensor.name or "<unnamed tensor>"
    if tensor.HasField("segment"):
        return (f"tensor {name!r} holds a segment ({tensor.segment.begin}..{tensor.segment.end}) of a larger "
                "tensor, which neither onnx nor graphsurgery can read; store the whole tensor instead")
    dt = tensor.data_type
    typed = [f for f in _TYPED if len(getattr(tensor, f))]
    if external_data.is_external(tensor):
        if tensor.HasField("raw_data") or typed:
            return f"tensor {name!r} is marked EXTERNAL but also holds data in the model; keep one of them"
        try:
            external_data.resolve(tensor, base_dir)
        except external_data.ExternalDataError as exc:
            return str(exc)
        return None
    if tensor.HasField("raw_data"):
        if typed:
            return f"tensor {name!r} holds both raw_data and {typed[0]}; keep one of them"
        if dt == T.STRING:
            return f"tensor {name!r} of element type STRING holds raw_data; strings go in string_data"
        if nbytes is not None and len(tensor.raw_data) != nbytes:
            return (f"tensor {name!r}: raw_data holds {len(tensor.raw_data)} bytes but element type "
                    f"{external_data.dtype_name(dt)} × shape {list(tensor.dims)} needs {nbytes}")
        return None
    if len(typed) > 1:
        return f"tensor {name!r} holds values in both {typed[0]} and {typed[1]}; keep one of them"
    field, per = _FIELDS.get(dt, (None, 1))
    have = len(getattr(tensor, typed[0])) if typed else 0
    if typed and field is not None and typed[0] != field:
        return (f"tensor {name!r} of element type {external_data.dtype_name(dt)} holds its values in "
                f"{typed[0]}; they belong in {field}")
    if field is not None:
        count = external_data.element_count(tensor)
        need = int(count * per + 0.5) if per < 1 else count * per
        if have != need:
            return (f"tensor {name!r} holds {have} value(s) in {field} but element type "
                    f"{external_data.dtype_name(dt)} × shape {list(tensor.dims)} needs {need}")
    return None


def _type_problem(tensor: onnx.TensorProto) -> tuple[str | None, int | None]:
    """What is wrong with the tensor's element type or shape (or None), and the bytes they need."""
    dt = tensor.data_type
    if dt == T.UNDEFINED or dt not in external_data.ELEMENT_TYPES:
        return (f"tensor {tensor.name or '<unnamed tensor>'!r} has element type {external_data.dtype_name(dt)}, "
                "which ONNX does not define"), None
    if any(d < 0 for d in tensor.dims):
        return (f"tensor {tensor.name or '<unnamed tensor>'!r} has a negative dimension in its shape "
                f"{list(tensor.dims)}"), None
    nbytes = external_data.expected_nbytes(tensor)
    if nbytes is not None and nbytes > _MAX_BYTES:
        return (f"tensor {tensor.name or '<unnamed tensor>'!r}: shape {list(tensor.dims)} needs {nbytes} bytes, "
                "more than any file holds"), nbytes
    return None, nbytes


def to_numpy(tensor: onnx.TensorProto, base_dir: str | None = None) -> np.ndarray:
    """Return the tensor's value as a read-only numpy array.

    Raw little-endian data of a standard element type is viewed, not copied; external
    data is memory-mapped after its location has been checked. A tensor whose data does not
    match its element type and shape raises :class:`graphsurgery.InvalidModelError`.
    """
    dtype = _STANDARD.get(tensor.data_type)
    if (dtype is not None and np.little_endian and not external_data.is_external(tensor)
            and tensor.HasField("raw_data") and all(d >= 0 for d in tensor.dims)):
        raw = tensor.raw_data  # (a copy: read it once)
        if len(raw) == external_data.expected_nbytes(tensor) and not any(len(getattr(tensor, f)) for f in _TYPED):
            arr = np.frombuffer(raw, dtype=dtype)
            return arr.reshape(tuple(tensor.dims))
    # (external data itself is checked by resolve(), which raises ExternalDataError)
    bad = _type_problem(tensor)[0] if external_data.is_external(tensor) else problem(tensor, base_dir)
    if bad is not None:
        raise InvalidModelError(f"{bad}; the model is damaged", [bad])
    try:
        return _to_numpy(tensor, base_dir)
    except OSError as exc:  # the data file went away (or became unreadable) after it was checked
        raise ExternalDataError(f"tensor {tensor.name or '<unnamed tensor>'!r}: cannot read its external data "
                                f"({exc.strerror or exc}); was the model replaced while it was being read?") from None
    except (ValueError, TypeError, OverflowError, KeyError, MemoryError) as exc:
        name = tensor.name or "<unnamed tensor>"
        msg = f"tensor {name!r} cannot be decoded as {external_data.dtype_name(tensor.data_type)} × " \
              f"shape {list(tensor.dims)}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        raise InvalidModelError(msg, [msg]) from None


def _to_numpy(tensor: onnx.TensorProto, base_dir: str | None) -> np.ndarray:
    dtype = _STANDARD.get(tensor.data_type)
    shape = tuple(tensor.dims)
    if external_data.is_external(tensor):
        ref = external_data.resolve(tensor, base_dir)
        if dtype is not None:
            count = int(np.prod(shape, dtype=np.int64))
            if count == 0:
                return np.zeros(shape, dtype)
            arr = np.memmap(ref.path, dtype=dtype, mode="r", offset=ref.offset, shape=(count,))
            return arr.reshape(shape)
        with open(ref.path, "rb") as f:  # rare element types: decode through onnx
            f.seek(ref.offset)
            data = f.read(ref.length if ref.length >= 0 else -1)
        inline = onnx.TensorProto()
        inline.CopyFrom(tensor)
        del inline.external_data[:]
        inline.data_location = onnx.TensorProto.DEFAULT
        inline.raw_data = data
        return _readonly(numpy_helper.to_array(inline))
    if dtype is not None and tensor.HasField("raw_data") and np.little_endian:
        arr = np.frombuffer(tensor.raw_data, dtype=dtype)
        return arr.reshape(shape)
    return _readonly(numpy_helper.to_array(tensor))


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def from_numpy(array, name: str = "", like: onnx.TensorProto | None = None) -> onnx.TensorProto:
    """Build a TensorProto holding ``array`` as raw data.

    ``like`` keeps the element type of an existing tensor when ``array`` is a Python
    scalar or list; an ndarray keeps its own dtype.
    """
    if not isinstance(array, np.ndarray):
        dtype = None
        if like is not None and like.data_type in _STANDARD:
            dtype = _STANDARD[like.data_type]
        array = np.asarray(array, dtype=dtype)
    tensor = numpy_helper.from_array(np.ascontiguousarray(array) if array.ndim else array, name=name)
    if like is not None and like.doc_string and not tensor.doc_string:
        tensor.doc_string = like.doc_string
    return tensor
