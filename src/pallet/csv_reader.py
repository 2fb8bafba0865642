"""Reading CSV: the one place pallet parses it, for request bodies, `pallet predict`, batch files and export data.

Text in memory (a request body, a small file) is read row by row with Python's `csv` module; files
too big to hold are streamed by pyarrow with every column kept as text, so odd values are judged row
by row later instead of stopping the reader. Both follow the same dialect: comma-separated, `"`
quoting, a UTF-8 byte-order mark ignored, empty lines skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pallet.errors import InvalidInput, PalletError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv as pcsv

BLOCK_BYTES = 1 << 22  # what pyarrow reads at a time from a file


def read_rows(text: str) -> list[list[str]]:
    """The non-empty rows of CSV `text`, each a list of its fields as written."""
    try:
        return [row for row in csv.reader(io.StringIO(text.removeprefix("\ufeff"))) if row]
    except csv.Error as e:
        raise InvalidInput(f"the CSV input cannot be read: {e}") from None


def read_header(path: Path) -> list[str]:
    """The column names on a CSV file's first line; each must be there once."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError:
        raise PalletError(f"input {path} is not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as e:
        raise PalletError(f"cannot parse {path} as CSV: {e}") from None
    if not header:
        raise PalletError(f"input {path} is empty: a CSV needs a header line")
    if len(set(header)) != len(header):
        twice = sorted({c for c in header if header.count(c) > 1})
        raise PalletError(f"input {path} names column {', '.join(repr(c) for c in twice)} more than once")
    return header


def text_columns(columns: list[str]) -> pcsv.ConvertOptions:
    """pyarrow's options to read every one of `columns` as text (empty fields as null)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    return pcsv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=True)


def read_batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A CSV file (with a header naming `columns`) in record batches, every column as text."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        with pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
                           convert_options=text_columns(columns)) as reader:
            yield from reader
    except pa.ArrowInvalid as e:
        raise PalletError(f"cannot parse {path} as CSV: {e}") from None


def read_table(path: Path) -> pa.Table:
    """A whole CSV file with a header, each column typed from its values (numbers as numbers)."""
    import pyarrow.csv as pcsv

    return pcsv.read_csv(path)
