"""Reading a batch of inputs from JSON or CSV text, for `pallet predict` and friends."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pallet.errors import InvalidInput
from pallet.signature import Signature


def parse_inputs(text: str, signature: Signature, fmt: str) -> Any:
    """Inputs for `signature.validate` from `text` in `fmt` (`json` or `csv`).

    JSON: a list of rows, one row, `{"input name": rows, ...}`, `{"inputs": ...}`,
    `{"instances": [...]}`, or MLflow's `{"dataframe_split": {"columns", "data"}}` and
    `{"dataframe_records": [...]}`. CSV: rows of values, with an optional header; a header that
    names the inputs maps its columns to them.
    """
    if fmt == "json":
        return _from_json(text, signature)
    if fmt == "csv":
        return _from_csv(text, signature)
    raise InvalidInput(f"unknown input format '{fmt}': use json or csv")


def _from_json(text: str, signature: Signature) -> Any:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"input is not valid JSON: {e}") from None
    if isinstance(data, dict) and len(data) == 1:
        (key, value), = data.items()
        if key in ("inputs", "instances", "dataframe_records"):
            data = value
        elif key == "dataframe_split":
            data = _from_split(value, signature)
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):  # records
        return {spec.name: [row.get(spec.name) for row in data] for spec in signature.inputs}
    if isinstance(data, list) and len(signature.inputs) == 1:
        spec = signature.inputs[0]
        depth, probe = 0, data
        while isinstance(probe, list) and probe:
            depth, probe = depth + 1, probe[0]
        if depth == len(spec.shape) - 1:  # one row: a batch of one
            return [data]
    return data


def _from_split(split: Any, signature: Signature) -> Any:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise InvalidInput('"dataframe_split" must be an object with "data" (rows) and optional "columns"')
    columns = split.get("columns")
    names = signature.input_names
    if columns and len(names) > 1:
        if set(columns) != set(names):
            raise InvalidInput(f"dataframe_split columns {columns} do not match the inputs {names}")
        return {name: [row[columns.index(name)] for row in split["data"]] for name in names}
    return split["data"]


def _from_csv(text: str, signature: Signature) -> Any:
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        raise InvalidInput("the CSV input has no rows")
    names = signature.input_names
    header = None
    if not any(_is_number(cell) for cell in rows[0]):
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    width = len(header or rows[0])
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise InvalidInput(f"CSV line {number} has {len(row)} fields; expected {width}")
    values = [[_value(cell) for cell in row] for row in rows]
    if header and set(header) == set(names) and len(names) > 1:
        return {name: [row[header.index(name)] for row in values] for name in names}
    if len(names) != 1:
        raise InvalidInput(f"this model takes inputs {', '.join(names)}: give the CSV a header naming them")
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _value(cell: str) -> Any:
    cell = cell.strip()
    if cell == "":
        return None  # a missing value: numeric inputs turn it into NaN, which the signature judges
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell
