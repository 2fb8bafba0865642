import pytest

from pallet.errors import InvalidReference
from pallet.store import ModelRef
from pallet.store.refs import check_alias


@pytest.mark.parametrize(
    "text, expected",
    [
        ("digits", ModelRef("digits")),
        ("digits:3", ModelRef("digits", version=3)),
        ("digits@production", ModelRef("digits", alias="production")),
        ("digits@latest", ModelRef("digits")),
        ("digits-onnx.v2_x", ModelRef("digits-onnx.v2_x")),
    ],
)
def test_parse(text, expected):
    assert ModelRef.parse(text) == expected


@pytest.mark.parametrize("text", ["digits:3", "digits@staging", "iris"])
def test_str_round_trips(text):
    assert str(ModelRef.parse(text)) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("digits:0", "bad version"),
        ("digits:x", "bad version"),
        ("digits:²", "bad version"),
        ("digits:99999999999999999999", "bad version"),
        ("digits@", "bad alias"),
        ("digits@9x", "bad alias"),
        ("", "bad model name"),
        ("my model", "bad model name"),
        ("-x", "bad model name"),
        ("../etc:1", "bad model name"),
        ("digits\n", "bad model name"),
        ("\tdigits", "bad model name"),
        ("digits\u200b", "bad model name"),
        ("dіgits", "bad model name"),  # Cyrillic і
    ],
)
def test_parse_rejects(text, message):
    with pytest.raises(InvalidReference, match=message):
        ModelRef.parse(text)


def test_latest_is_reserved_as_an_alias_name():
    with pytest.raises(InvalidReference, match="reserved"):
        check_alias("latest")
