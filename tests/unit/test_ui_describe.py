"""How the prototype page reads a signature: image-shaped inputs, text, numbers; labels and probabilities."""

import pytest

from pallet.signature import Signature, TensorSpec
from pallet.ui.describe import describe_input, describe_output, describe_outputs, image_shape, input_kind

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


@pytest.mark.parametrize(
    "outputs, kinds",
    [
        ([TensorSpec("embedding", "float32", (-1, 384))], ["embedding"]),   # a sentence encoder
        ([TensorSpec("embedding", "float32", (-1, 8))], ["values"]),       # too short to compare as meaning
        ([TensorSpec("label", "int64", (-1,)), TensorSpec("features", "float32", (-1, 384))], ["label", "values"]),
        ([TensorSpec("probabilities", "float32", (-1, 384))], ["probabilities"]),
        ([TensorSpec("ids", "int64", (-1, 384))], ["values"]),
    ],
)
def test_only_a_models_one_long_float_output_is_an_embedding(outputs, kinds):
    signature = Signature((TensorSpec("text", "str", (-1,)),), tuple(outputs))
    described = describe_outputs(signature)
    assert [o["kind"] for o in described] == kinds
    assert all("names" not in o for o in described)


def test_class_names_are_given_per_class_value():
    outputs = (TensorSpec("label", "int64", (-1,)), TensorSpec("probabilities", "float64", (-1, 3), labels=[3, 5, 7]))
    signature = Signature((TensorSpec("x", "float64", (-1, 4)),), outputs, classes=("three", "five", "seven"))
    label, probabilities = describe_outputs(signature)
    assert label["names"] == probabilities["names"] == {"3": "three", "5": "five", "7": "seven"}
    # Without a probabilities output to say the class values, they are the class indices.
    bare = Signature(signature.inputs, outputs[:1], classes=("no", "yes"))
    assert describe_outputs(bare)[0]["names"] == {"0": "no", "1": "yes"}
    assert Signature.from_dict(signature.to_dict()) == signature
