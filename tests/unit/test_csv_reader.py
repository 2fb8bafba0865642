"""One CSV reader: request bodies, `pallet predict` files, batch inputs and export data read alike."""

import pyarrow as pa
import pytest

from pallet.batch.sources import FileSource
from pallet.csv_reader import read_batches, read_header, read_rows, read_table
from pallet.errors import InvalidInput, PalletError
from pallet.inputs import parse_inputs
from pallet.signature import Signature, TensorSpec

TEXT = '\ufeffid,a,note\n1,0.5,"x, y"\n\n2,,"say ""hi"""\n'


def test_rows_as_written_with_quotes_and_empty_lines_skipped():
    assert read_rows(TEXT) == [["id", "a", "note"], ["1", "0.5", "x, y"], ["2", "", 'say "hi"']]
    assert read_rows("") == []
    with pytest.raises(InvalidInput, match="the CSV input cannot be read"):
        read_rows("1,2," + "9" * 140000 + "\n")


def test_a_file_reads_the_same_in_rows_and_in_batches(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(TEXT, encoding="utf-8")
    header = read_header(path)
    assert header == ["id", "a", "note"]
    table = pa.Table.from_batches(list(read_batches(path, header)))
    assert table.column_names == header
    assert all(t == pa.string() for t in table.schema.types)  # every column as text
    from_batches = [[v if v is not None else "" for v in row.values()] for row in table.to_pylist()]
    assert from_batches == read_rows(TEXT)[1:]
    typed = read_table(path)
    assert typed.column("id").to_pylist() == [1, 2] and typed.column("a").to_pylist() == [0.5, None]


def test_predict_and_batch_read_one_file_alike(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("a,b\n1,2.5\n3,4\n")
    two = Signature((TensorSpec("a", "float32", (-1,)), TensorSpec("b", "float32", (-1,))))
    assert parse_inputs(path.read_text(), two, "csv") == {"a": [1, 3], "b": [2.5, 4]}
    source = FileSource(path)
    assert source.columns == ["a", "b"] and source.total_rows == 2
    assert next(source.chunks(10)).to_pydict() == {"a": ["1", "3"], "b": ["2.5", "4"]}


@pytest.mark.parametrize("content, message", [
    (b"", "is empty: a CSV needs a header line"),
    (b"a,b,a\n1,2,3\n", "names column 'a' more than once"),
    (b"\xff\xfe,a\n", "is not UTF-8 text"),
])
def test_header_mistakes_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(PalletError, match=message):
        read_header(path)


def test_a_broken_file_names_itself(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(PalletError, match="cannot parse .*bad.csv as CSV"):
        list(read_batches(path, ["a", "b"]))
