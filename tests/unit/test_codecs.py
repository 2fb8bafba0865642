import numpy as np
import pytest

from pallet.errors import InvalidInput
from pallet.serve import codecs

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]


def sample(datatype):
    dtype = np.dtype(codecs.DATATYPES[datatype])
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    return np.array([[0, 1], [2, 3]], dtype=dtype)


@pytest.mark.parametrize("datatype", NUMERIC)
def test_json_round_trip(datatype):
    array = sample(datatype)
    name, shape, data = codecs.encode_json(array)
    assert (name, shape) == (datatype, [2, 2])
    back = codecs.decode_json(name, shape, np.asarray(data).tolist(), "x")
    assert back.dtype == array.dtype and np.array_equal(back, array)


@pytest.mark.parametrize("datatype", NUMERIC + ["BYTES"])
def test_binary_round_trip(datatype):
    array = np.array([[b"ab", b""], [b"\xff\x00", b"xyz"]], dtype=object) if datatype == "BYTES" else sample(datatype)
    name, shape, raw = codecs.encode_binary(array)
    assert name == datatype
    back = codecs.decode_binary(name, shape, raw, "x")
    assert back.shape == array.shape
    assert back.tolist() == array.tolist()


def test_nested_and_flat_json_data_are_the_same():
    flat = codecs.decode_json("FP32", [2, 2], [1, 2, 3, 4], "x")
    nested = codecs.decode_json("FP32", [2, 2], [[1, 2], [3, 4]], "x")
    assert np.array_equal(flat, nested) and flat.dtype == np.float32


def test_bytes_from_json_strings_and_back():
    array = codecs.decode_json("BYTES", [2], ["héllo", "b"], "x")
    assert array.tolist() == ["héllo".encode(), b"b"]
    assert codecs.encode_json(np.array(["a", "b"]))[2] == ["a", "b"]


def test_numpy_dtypes_map_to_datatypes():
    assert codecs.datatype_of(np.dtype("float64")) == "FP64"
    assert codecs.datatype_of(np.dtype("<U3")) == "BYTES"
    assert codecs.datatype_of("str") == "BYTES"


@pytest.mark.parametrize(
    "datatype, shape, data, message",
    [
        ("FP32", [2, 2], [1, 2, 3], r"shape \[2, 2\] needs 4 values, 'data' has 3"),
        ("FP32", [1, 2], ["a", "b"], r"expected numbers \(float32\), got text"),
        ("INT64", [2], [1.5, 2], "expects integers, got fractions"),
        ("INT8", [1], [300], r"out of range for int8"),
        ("UINT8", [1], [-1], "out of range for uint8"),
        ("FP32", [1], [True], "expects numbers, got booleans"),
        ("BOOL", [1], [1], "expects true/false"),
        ("BYTES", [1], [1], "BYTES expects strings"),
        ("FP128", [1], [1], "unknown datatype 'FP128'"),
        ({}, [1], [1], "unknown datatype {}"),
        (["FP32"], [1], [1], "unknown datatype"),
        ("FP32", [-1], [1], "'shape' must be a list of non-negative integers"),
        ("FP32", "2", [1, 2], "'shape' must be a list"),
        ("FP32", [2, 2], [[1, 2], [3]], "rows of different lengths"),
    ],
)
def test_json_decoding_rejects(datatype, shape, data, message):
    with pytest.raises(InvalidInput, match=message):
        codecs.decode_json(datatype, shape, data, "input 'x'")


@pytest.mark.parametrize("shape", [[1] * 40, [0, 2**61, 2**61], [2**62]])
def test_absurd_shapes_are_refused(shape):
    with pytest.raises(InvalidInput):
        codecs.decode_json("FP32", shape, [], "x")
    with pytest.raises(InvalidInput):
        codecs.decode_binary("FP32", shape, b"", "x")


def test_64_bit_integers_are_exact_in_json():
    assert codecs.decode_json("UINT64", [2], [2**64 - 1, 1], "x").tolist() == [2**64 - 1, 1]
    assert codecs.decode_json("INT64", [1], [-(2**63)], "x").tolist() == [-(2**63)]
    with pytest.raises(InvalidInput, match="out of range for int64"):
        codecs.decode_json("INT64", [1], [2**63], "x")


def test_binary_decoding_rejects_wrong_sizes():
    with pytest.raises(InvalidInput, match=r"binary data has 7 bytes; shape \[2\] of FP32 needs 8"):
        codecs.decode_binary("FP32", [2], b"\x00" * 7, "x")
    with pytest.raises(InvalidInput, match="shorter than its length prefixes"):
        codecs.decode_binary("BYTES", [1], b"\x05\x00\x00\x00ab", "x")
