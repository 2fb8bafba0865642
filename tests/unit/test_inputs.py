import pytest

from pallet.errors import InvalidInput
from pallet.inputs import from_instances, parse_inputs
from pallet.signature import Signature, TensorSpec

MATRIX = Signature((TensorSpec("x", "float64", (-1, 2)),))
TWO = Signature((TensorSpec("a", "float64", (-1,)), TensorSpec("b", "int64", (-1,))))
TEXT = Signature((TensorSpec("text", "str", (-1,)),))
COLUMN = Signature((TensorSpec("v", "float64", (-1,)),))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[[1, 2], [3, 4]]", [[1, 2], [3, 4]]),
        ("[1, 2]", [[1, 2]]),
        ('{"instances": [[1, 2]]}', [[1, 2]]),
        ('{"dataframe_split": {"columns": ["p", "q"], "data": [[1, 2]]}}', [[1, 2]]),
        ('[{"x": [1, 2]}]', {"x": [[1, 2]]}),
    ],
)
def test_json_shapes_for_one_input(text, expected):
    assert parse_inputs(text, MATRIX, "json") == expected


def test_json_for_several_inputs():
    split = '{"dataframe_split": {"columns": ["b", "a"], "data": [[1, 0.5], [2, 1.5]]}}'
    assert parse_inputs(split, TWO, "json") == {"a": [0.5, 1.5], "b": [1, 2]}
    records = '{"dataframe_records": [{"a": 0.5, "b": 1}]}'
    assert parse_inputs(records, TWO, "json") == {"a": [0.5], "b": [1]}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}', r"data\[0\] must be a list of 2 values"),
        ('{"dataframe_split": {"columns": ["a", "b"], "data": [5]}}', r"data\[0\] must be a list of 2 values"),
        ('{"dataframe_split": {"columns": {"a": 1}, "data": [[1, 2]]}}', '"dataframe_split": "columns" must be a list of column names'),
        ('{"dataframe_split": {"columns": ["a", "c"], "data": [[1, 2]]}}',
         "missing column.s. b; unknown column.s. c; this model takes the columns a, b"),
        ('{"instances": [[1, 2]], "extra": 1}', "a JSON object must be one of"),
        ('[{"a": 1}]', r"records\[0\] has no 'b'"),
        ('[{"a": 1, "b": 2, "c": 3}]', r"unknown input 'c' in records\[0\]"),
        ('{"dataframe_records": [[1, 2]]}', '"dataframe_records" must be a non-empty list of objects keyed by input name'),
        ('{"instances": [], "params": {}}', '"instances" must be a non-empty list, one entry per row'),
        ('{"dataframe_split": {"data": [[1, 2]], "orient": "split", "dtype": 1}}',
         r'"dataframe_split": unknown key\(s\) dtype, orient; it takes data, columns, index'),
    ],
)
def test_json_mistakes_for_several_inputs(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_inputs(text, TWO, "json")


def test_csv_header_maps_columns_to_inputs():
    assert parse_inputs("b,a\n1,0.5\n2,\n", TWO, "csv") == {"a": [0.5, None], "b": [1, 2]}


def test_csv_single_column_feeds_a_1d_input():
    assert parse_inputs("1.5\n2.5\n", COLUMN, "csv") == [1.5, 2.5]


def test_csv_text_rows_are_data_unless_the_header_names_the_input():
    assert parse_inputs("hello\nworld\n", TEXT, "csv") == ["hello", "world"]
    assert parse_inputs("text\nhello\n", TEXT, "csv") == ["hello"]
    assert parse_inputs("007\n", TEXT, "csv") == ["007"]  # text stays text


def test_instances_need_one_form():
    with pytest.raises(InvalidInput, match="mixes objects and rows"):
        from_instances([{"x": [1, 2]}, [1, 2]], MATRIX)
    with pytest.raises(InvalidInput, match="send each instance as an object keyed by input name"):
        from_instances([[1, 2]], TWO)
