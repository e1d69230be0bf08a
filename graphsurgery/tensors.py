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


def to_numpy(tensor: onnx.TensorProto, base_dir: str | None = None) -> np.ndarray:
    """Return the tensor's value as a read-only numpy array.

    Raw little-endian data of a standard element type is viewed, not copied; external
    data is memory-mapped after its location has been checked.
    """
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
