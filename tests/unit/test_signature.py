import numpy as np
import pytest

from pallet.errors import InvalidInput
from pallet.signature import Signature, TensorSpec


def sig(*specs):
    return Signature(tuple(specs))


FLOAT = TensorSpec("x", "float32", (-1, 3))


def test_infer_reads_names_dtypes_and_batch_axis():
    s = Signature.infer({"x": np.zeros((5, 3)), "t": np.array(["a", "b"])}, {"y": np.array([1, 2])})
    assert s.inputs[0] == TensorSpec("x", "float64", (-1, 3))
    assert s.inputs[1] == TensorSpec("t", "str", (-1,))
    assert s.outputs[0] == TensorSpec("y", "int64", (-1,))


def test_infer_dtype_override_and_nan_in_sample():
    s = Signature.infer({"x": np.array([[1.0, np.nan]])}, dtypes={"x": "float32"})
    assert s.inputs[0].dtype == "float32"
    assert s.inputs[0].allow_nan


def test_infer_rejects_scalar_sample():
    with pytest.raises(InvalidInput, match="scalar"):
        Signature.infer({"x": np.float64(1.0)})


def test_round_trip_through_dict():
    s = Signature((FLOAT, TensorSpec("t", "str", (-1,))), (TensorSpec("p", "float64", (-1, 2), labels=["a", "b"]),))
    assert Signature.from_dict(s.to_dict()) == s


def test_validate_converts_lists_to_declared_dtype_and_shape():
    out = sig(FLOAT).validate([[1, 2, 3], [4, 5, 6]])
    assert out["x"].dtype == np.float32
    assert out["x"].shape == (2, 3)
    assert out["x"][1, 2] == 6


def test_validate_accepts_dict_by_name():
    out = sig(FLOAT, TensorSpec("n", "int64", (-1,))).validate({"x": np.ones((2, 3)), "n": [1.0, 2.0]})
    assert out["n"].dtype == np.int64
    assert out["n"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "value, message",
    [
        ([[1, 2]], r"input 'x': expected shape \[-1, 3\], got \[1, 2\]"),
        ([1, 2, 3], r"got \[3\] \(a single row\? wrap it in a list"),
        ([[[1, 2, 3]]], r"expected shape \[-1, 3\], got \[1, 1, 3\]"),
        ([[1, 2, 3], [4, 5]], "rows have different lengths"),
        ([["a", "b", "c"]], r"input 'x': expected numbers \(float32\), got text"),
        ([[1, None, {}]], r"got \{\} at position \[0, 2\]"),
        ([[1, 2, "three"]], r"got text \('three' at position \[0, 2\]\)"),
        ([[1, float("nan"), 3]], r"input 'x' contains NaN or infinity \(row 0\)"),
        ([[1, 2, 3], [1, float("inf"), 3]], r"NaN or infinity \(row 1\)"),
        ([[1, None, 3]], "NaN or infinity"),
        ([[1e300, 1, 1]], "out of range for float32"),
        (np.zeros((0, 3)), "empty batch"),
        ([[1 + 2j, 0, 0]], "complex numbers"),
    ],
)
def test_validate_rejects_bad_float_input(value, message):
    with pytest.raises(InvalidInput, match=message):
        sig(FLOAT).validate(value)


def test_validate_allows_nan_where_signature_does():
    out = sig(TensorSpec("x", "float64", (-1,), allow_nan=True)).validate([1.0, None, float("nan")])
    assert np.isnan(out["x"][1:]).all()


@pytest.mark.parametrize(
    "dtype, value, message",
    [
        ("int64", [1.5], r"expected whole numbers \(int64\)"),
        ("int8", [200], r"out of range for int8 \(-128..127\)"),
        ("uint8", [-1], "out of range for uint8"),
        ("int32", [float("nan")], "whole numbers"),
        ("bool", [2], "expected booleans"),
        ("str", [1, 2], r"expected text \(str\), got"),
        ("int64", ["1"], "expected numbers"),
    ],
)
def test_validate_rejects_wrong_or_unconvertible_dtype(dtype, value, message):
    with pytest.raises(InvalidInput, match=message):
        sig(TensorSpec("v", dtype, (-1,))).validate(value)


@pytest.mark.parametrize(
    "dtype, value, expected",
    [
        ("int64", [1.0, 2.0], [1, 2]),
        ("uint8", [0, 255], [0, 255]),
        ("bool", [0, 1], [False, True]),
        ("bool", [True, False], [True, False]),
        ("str", [b"a", "b"], ["a", "b"]),
        ("bytes", ["a"], [b"a"]),
        ("float16", [1, 2], [1.0, 2.0]),
    ],
)
def test_validate_converts_compatible_values(dtype, value, expected):
    out = sig(TensorSpec("v", dtype, (-1,))).validate(value)["v"]
    assert out.tolist() == expected


@pytest.mark.parametrize(
    "dtype, value, message",
    [
        ("int64", [2.0**63, 1.0], "out of range for int64"),       # float(2**63 - 1) rounds up to this
        ("uint64", [2.0**64], "out of range for uint64"),
        ("int64", [10**400], "out of range for int64"),             # Python ints too big for a float
        ("float64", [[10**400, 1]], "out of range for float64"),
        ("float16", [70000], "out of range for float16"),           # integers overflow small floats too
        ("float64", [True, False], "got booleans"),
        ("float64", [["5.1", None]], r"got '5.1' at position \[0, 0\]"),  # text is not parsed into numbers
        ("str", [b"\xff"], "not valid UTF-8"),
    ],
)
def test_validate_refuses_values_that_would_not_survive(dtype, value, message):
    shape = (-1, -1) if isinstance(value[0], list) else (-1,)
    with pytest.raises(InvalidInput, match=message):
        sig(TensorSpec("v", dtype, shape, allow_nan=True)).validate(value)


def test_extreme_integers_that_fit_are_exact():
    out = sig(TensorSpec("v", "uint64", (-1,))).validate(np.array([2**64 - 1], dtype=np.uint64))["v"]
    assert out.tolist() == [2**64 - 1]
    out = sig(TensorSpec("v", "int64", (-1,))).validate([-(2**63), 2**63 - 1])["v"]
    assert out.tolist() == [-(2**63), 2**63 - 1]


def test_bytes_keep_trailing_nuls_and_text_encodes_as_utf8():
    out = sig(TensorSpec("v", "bytes", (-1,))).validate(np.array([b"ab\x00\x00", "é"], dtype=object))["v"]
    assert out.tolist() == [b"ab\x00\x00", "é".encode()]


def test_a_fixed_batch_size_is_enforced():
    with pytest.raises(InvalidInput, match=r"expected shape \[1, 2\], got \[2, 2\]"):
        sig(TensorSpec("v", "float32", (1, 2))).validate([[1, 2], [3, 4]])


def test_validate_names_missing_input():
    with pytest.raises(InvalidInput, match=r"missing input 'n' \(int64\[-1\]\)"):
        sig(FLOAT, TensorSpec("n", "int64", (-1,))).validate({"x": [[1, 2, 3]]})


def test_validate_names_extra_input():
    with pytest.raises(InvalidInput, match="unknown input 'z'; this model takes: x"):
        sig(FLOAT).validate({"x": [[1, 2, 3]], "z": [1]})


def test_validate_wants_names_for_several_inputs():
    with pytest.raises(InvalidInput, match=r"takes 2 inputs \(x, n\): pass them by name"):
        sig(FLOAT, TensorSpec("n", "int64", (-1,))).validate([[1, 2, 3]])


def test_validate_rejects_different_row_counts():
    with pytest.raises(InvalidInput, match="different numbers of rows: 'x' has 1, 'n' has 2"):
        sig(FLOAT, TensorSpec("n", "int64", (-1,))).validate({"x": [[1, 2, 3]], "n": [1, 2]})


def test_free_dimensions_accept_any_size():
    s = sig(TensorSpec("x", "float32", (-1, -1)))
    assert s.validate([[1, 2]])["x"].shape == (1, 2)
    assert s.validate([[1, 2, 3, 4]])["x"].shape == (1, 4)


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown dtype"):
        TensorSpec("x", "float128", (-1,))
