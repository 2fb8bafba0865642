"""Reading a batch of inputs from JSON or CSV text, for `pallet predict` and friends."""

from __future__ import annotations

import json
from typing import Any

from pallet.bodies import DataframeSplit, MlflowInputs, MlflowInstances, MlflowRecords, MlflowSplit, mlflow_shape
from pallet.csv_reader import read_rows
from pallet.errors import InvalidInput
from pallet.signature import Signature


SHAPES = ('{"dataframe_split": ...}', '{"dataframe_records": [...]}', '{"instances": [...]}', '{"inputs": ...}')


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
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"input is not valid JSON: {e}") from None
    if isinstance(data, dict):
        data = _unwrap(data, signature)
    if isinstance(data, dict) and not set(data) <= set(signature.input_names):
        raise InvalidInput(f"a JSON object must be one of {', '.join(SHAPES)} or the model's inputs by name "
                           f"({', '.join(signature.input_names)}); got {', '.join(map(str, data))}")
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        return from_records(data, signature)
    if isinstance(data, list) and len(signature.inputs) == 1:
        spec = signature.inputs[0]
        depth, probe = 0, data
        while isinstance(probe, list) and probe:
            depth, probe = depth + 1, probe[0]
        if depth == len(spec.shape) - 1:  # one row: a batch of one
            return [data]
    return data


def _unwrap(body: dict, signature: Signature) -> Any:
    """What an MLflow-shaped body holds (checked against its schema), or the body itself."""
    match mlflow_shape(body):
        case MlflowSplit(dataframe_split=split):
            return from_split(split, signature)
        case MlflowRecords(dataframe_records=rows) | MlflowInstances(instances=rows) | MlflowInputs(inputs=rows):
            return rows
    if len(body) == 2 and "params" in body:
        return {k: v for k, v in body.items() if k != "params"}  # MLflow's inference params: no model here takes them
    return body


def from_instances(instances: Any, signature: Signature, what: str = "instances") -> dict[str, Any]:
    """Named inputs from instances: rows of features (one-input models), or objects keyed by input name."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(f'"{what}" must be a non-empty list, one entry per row')
    if all(isinstance(row, dict) for row in instances):
        return from_records(instances, signature, what)
    if any(isinstance(row, dict) for row in instances):
        raise InvalidInput(f'"{what}" mixes objects and rows; use one form for every instance')
    if len(signature.inputs) != 1:
        raise InvalidInput(f"this model takes {len(signature.inputs)} inputs ({', '.join(signature.input_names)}): "
                           "send each instance as an object keyed by input name")
    return {signature.inputs[0].name: instances}


def from_records(records: list[dict], signature: Signature, what: str = "records") -> dict[str, Any]:
    """Named inputs from objects keyed by input name, one per row; every key must be an input."""
    names = signature.input_names
    for i, row in enumerate(records):
        for name in names:
            if name not in row:
                raise InvalidInput(f"{what}[{i}] has no '{name}'; each one needs {', '.join(names)}")
        for key in row:
            if key not in names:
                raise InvalidInput(f"unknown input '{key}' in {what}[{i}]; this model takes: {', '.join(names)}")
    return {name: [row[name] for row in records] for name in names}


def from_split(split: DataframeSplit, signature: Signature, what: str = "dataframe_split") -> Any:
    """Inputs from pandas' split orientation: `data` rows, optional `columns` and `index` (ignored).

    A model with one input takes the rows as they are; a model whose inputs are named columns
    (saved from a DataFrame sample) takes them by name, in any order, and every column must be one.
    """
    columns, rows = split.columns, split.data
    names = signature.input_names
    if len(names) == 1 and columns == names and len(signature.inputs[0].shape) == 1 \
            and all(isinstance(r, list) and len(r) == 1 for r in rows):
        return [row[0] for row in rows]  # one column of a 1-D input (text, say): pandas writes each as [value]
    if not columns or len(names) == 1:
        return rows
    missing = [n for n in names if n not in columns]
    extra = [str(c) for c in columns if c not in names]
    if missing or extra or len(set(columns)) != len(columns):
        problems = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown column(s) {', '.join(extra)}"] if extra else []) + \
                   (["a column named twice"] if len(set(columns)) != len(columns) else [])
        raise InvalidInput(f"{what}: {'; '.join(problems)}; this model takes the columns {', '.join(names)}")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidInput(f"{what} data[{i}] must be a list of {len(columns)} values")
    return {name: [row[columns.index(name)] for row in rows] for name in names}


def _from_csv(text: str, signature: Signature) -> Any:
    rows = read_rows(text)
    if not rows:
        raise InvalidInput("the CSV input has no rows")
    names = signature.input_names
    header = None
    first = [cell.strip() for cell in rows[0]]
    text_only = all(spec.dtype in ("str", "bytes") for spec in signature.inputs)
    if (set(first) == set(names) or not text_only) and not any(_is_number(cell) for cell in first):
        header, rows = first, rows[1:]
        if len(set(header)) != len(header):
            raise InvalidInput(f"the CSV header names a column twice: {', '.join(header)}")
    width = len(header or rows[0]) if (header or rows) else 0
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise InvalidInput(f"CSV line {number} has {len(row)} fields; expected {width}")
    values = [[_value(cell, text_only) for cell in row] for row in rows]
    if header and set(header) == set(names) and len(names) > 1:
        return {name: [row[header.index(name)] for row in values] for name in names}
    if len(names) != 1:
        raise InvalidInput(f"this model takes inputs {', '.join(names)}: give the CSV a header naming them")
    if len(signature.inputs[0].shape) == 1 and width == 1:  # a 1-D input: one value per line
        return [row[0] for row in values]
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _value(cell: str, text: bool = False) -> Any:
    if text:
        return cell
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
