"""How the prototype page reads a signature: image-shaped inputs, text, numbers; labels and probabilities."""

import pytest

from pallet.signature import TensorSpec
from pallet.ui.describe import describe_input, describe_output, image_shape, input_kind

import numpy as np


@pytest.mark.parametrize(
    "dtype, shape, expected",
    [
        ("float64", (-1, 64), {"height": 8, "width": 8, "channels": 1}),
        ("float32", (-1, 784), {"height": 28, "width": 28, "channels": 1}),
        ("float32", (-1, 28, 28), {"height": 28, "width": 28, "channels": 1}),
        ("uint8", (-1, 32, 32, 3), {"height": 32, "width": 32, "channels": 3}),
        ("float64", (-1, 4), None),           # iris: four features are not a picture
        ("float64", (-1, 63), None),          # not a square
        ("float64", (-1, 49), None),          # 7x7 is below the smallest image side
        ("float32", (-1, -1), None),          # width unknown
        ("float32", (-1, 28, 28, 4), None),   # four channels: not a picture the page can draw
        ("str", (-1, 64), None),
    ],
)
def test_image_shape(dtype, shape, expected):
    assert image_shape(TensorSpec("x", dtype, shape)) == expected


def test_input_kinds_and_sample_range():
    assert input_kind(TensorSpec("t", "str", (-1,))) == "text"
    assert input_kind(TensorSpec("x", "float64", (-1, 4))) == "numbers"
    described = describe_input(TensorSpec("x", "float64", (-1, 64)), np.arange(128.0).reshape(2, 64))
    assert described["kind"] == "image" and (described["min"], described["max"]) == (0.0, 127.0)
    assert described["sample"][1][0] == 64.0
    text = describe_input(TensorSpec("t", "str", (-1,)), np.array([b"caf\xc3\xa9", b"x"], dtype=object))
    assert text["sample"] == ["café", "x"] and "min" not in text


@pytest.mark.parametrize(
    "spec, kind, labels",
    [
        (TensorSpec("label", "int64", (-1,)), "label", None),
        (TensorSpec("label", "str", (-1, 1)), "label", None),
        (TensorSpec("probabilities", "float32", (-1, 3)), "probabilities", [0, 1, 2]),
        (TensorSpec("scores", "float64", (-1, 2), labels=["cat", "dog"]), "probabilities", ["cat", "dog"]),
        (TensorSpec("embedding", "float32", (-1, 384)), "values", None),
        (TensorSpec("probabilities", "int64", (-1, 3)), "values", None),
    ],
)
def test_output_kinds(spec, kind, labels):
    described = describe_output(spec)
    assert described["kind"] == kind and described.get("labels") == labels
