"""Open Inference Protocol (KServe V2) datatypes <-> numpy, in one table.

JSON tensors carry `data` flat or nested in row-major order; binary tensors (the
binary tensor data extension) carry raw little-endian bytes, and BYTES elements as a
4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from pallet.errors import InvalidInput
from pallet.signature import cast

# V2 datatype -> signature dtype (numpy's name, or "bytes")
DATATYPES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "bytes",
}
# signature dtype -> V2 datatype
V2_NAMES = {dtype: name for name, dtype in DATATYPES.items()} | {"str": "BYTES"}
_BY_NUMPY = {np.dtype(dtype): name for name, dtype in DATATYPES.items() if dtype != "bytes"}


def datatype_of(dtype: str | np.dtype) -> str:
    """The V2 datatype for a signature dtype name or a numpy dtype."""
    if isinstance(dtype, np.dtype):
        known = _BY_NUMPY.get(dtype)
        if known is not None:
            return known
        dtype = "bytes" if dtype.kind in "USO" else dtype.name
    try:
        return V2_NAMES[dtype]
    except KeyError:
        raise InvalidInput(f"dtype {dtype} has no Open Inference Protocol datatype") from None


def check_datatype(datatype: Any, where: str) -> str:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}")
    return DATATYPES[datatype]


MAX_DIMS = 32


def check_shape(shape: Any, where: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**62 for d in shape):
        raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMS:
        raise InvalidInput(f"{where}: 'shape' has {len(shape)} dimensions; at most {MAX_DIMS} are supported")
    return tuple(shape)


def decode_json(datatype: str, shape: list[int], data: Any, where: str) -> np.ndarray:
    """A tensor from JSON `data` (flat or nested), checked against `datatype` and `shape`."""
    dtype = check_datatype(datatype, where)
    shape = check_shape(shape, where)
    if not isinstance(data, list):
        data = [data]
    if dtype == "bytes":
        flat = list(_flatten(data, where))
        if not all(isinstance(v, str) for v in flat):
            raise InvalidInput(f"{where}: datatype BYTES expects strings in 'data'")
        array = np.array([v.encode() for v in flat], dtype=object)
    elif dtype[0] in "iu" and all(type(v) is int for v in _flatten(data, where)):
        try:  # exact, even past float precision (numpy would make 2**63 a float)
            array = np.array(list(_flatten(data, where)), dtype=dtype)
        except OverflowError:
            raise InvalidInput(f"{where}: values out of range for {dtype}") from None
    else:
        try:
            array = np.asarray(data)
        except (ValueError, RecursionError):
            raise InvalidInput(f"{where}: 'data' has rows of different lengths or is nested too deeply") from None
        if array.dtype.kind == "b" and dtype != "bool":
            raise InvalidInput(f"{where}: datatype {datatype} expects numbers, got booleans")
        if dtype == "bool" and array.dtype.kind != "b":
            raise InvalidInput(f"{where}: datatype BOOL expects true/false values")
        if array.dtype.kind == "f" and dtype[0] in "iu":
            raise InvalidInput(f"{where}: datatype {datatype} expects integers, got fractions")
        flat = array.reshape(-1)
        if flat.size and math.prod(shape) == flat.size:
            flat = flat.reshape(shape)  # so a refused value is named by [row, column]
        array = cast(flat, dtype, where)
    return reshape(array, shape, where)


def decode_binary(datatype: str, shape: list[int], raw: bytes, where: str) -> np.ndarray:
    """A tensor from raw bytes of the binary tensor data extension."""
    dtype = check_datatype(datatype, where)
    shape = check_shape(shape, where)
    if dtype == "bytes":
        items, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InvalidInput(f"{where}: BYTES binary data ends inside a length prefix")
            (size,) = struct.unpack_from("<I", raw, offset)
            items.append(raw[offset + 4: offset + 4 + size])
            offset += 4 + size
        if offset != len(raw):
            raise InvalidInput(f"{where}: BYTES binary data is shorter than its length prefixes say")
        array = np.array(items, dtype=object)
    else:
        itemsize = np.dtype(dtype).itemsize
        if len(raw) != math.prod(shape) * itemsize:
            raise InvalidInput(f"{where}: binary data has {len(raw)} bytes; shape {list(shape)} of {datatype} "
                               f"needs {math.prod(shape) * itemsize}")
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    return reshape(array, shape, where)


def encode_json(array: np.ndarray) -> tuple[str, list[int], list | np.ndarray]:
    """(datatype, shape, flat data) for a JSON response; numeric data stays an array for orjson."""
    datatype = datatype_of(array.dtype)
    flat = array.reshape(-1)
    if datatype == "BYTES":
        data = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    elif datatype == "FP16":
        data = np.ascontiguousarray(flat, dtype=np.float32)
    else:
        data = np.ascontiguousarray(flat)
    return datatype, list(array.shape), data


def encode_binary(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """(datatype, shape, raw bytes) for the binary tensor data extension."""
    datatype = datatype_of(array.dtype)
    if datatype == "BYTES":
        parts = []
        for v in array.reshape(-1).tolist():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return datatype, list(array.shape), b"".join(parts)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return datatype, list(array.shape), np.ascontiguousarray(little).tobytes()


def reshape(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """`array` in `shape`, refused with a message when it holds another number of values."""
    if array.size != math.prod(shape):
        raise InvalidInput(f"{where}: shape {list(shape)} needs {math.prod(shape)} values, 'data' has {array.size}")
    try:
        return array.reshape(shape)
    except ValueError as e:  # e.g. a zero-sized shape too large for numpy to describe
        raise InvalidInput(f"{where}: shape {list(shape)} cannot be used: {e}") from None


def _flatten(data: list, where: str):
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item, where)
        else:
            yield item
