"""Input columns to model inputs and predictions to output columns, a chunk at a time.

Rows that cannot become model inputs are set aside with the reason, never dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pallet.errors import InvalidInput, PalletError
from pallet.signature import TEXT, Signature, TensorSpec


RESERVED = ("model", "version", "run_id")  # columns every output row gets


@dataclass
class Plan:
    """Which input columns feed which model input, and which columns are keys."""

    keys: list[str]
    inputs: dict[str, list[str]]
    key_types: dict[str, str]  # "int" or "str" for keys read as text (CSV), decided on the first chunk


def plan_columns(signature: Signature, columns: list[str], keys: list[str], model: str) -> Plan:
    missing = [k for k in keys if k not in columns]
    if missing:
        raise PalletError(f"key column {', '.join(repr(k) for k in missing)} is not in the input; "
                          f"its columns: {_names(columns)}")
    clash = [k for k in keys if k in RESERVED or any(k == s.name or k.startswith(s.name + "_") for s in signature.outputs)]
    if clash:
        raise PalletError(f"key column {', '.join(repr(k) for k in clash)} has the name of an output column; "
                          "rename it in the input")
    rest = [c for c in columns if c not in keys]
    specs = signature.inputs
    if all(s.name in rest and _width(s) == 1 for s in specs):
        return Plan(list(keys), {s.name: [s.name] for s in specs}, {})
    if len(specs) == 1:
        spec, width = specs[0], _width(specs[0])
        if width is not None and width != len(rest):
            raise PalletError(f"the input has {len(rest)} columns besides the key ({_names(rest)}); model "
                              f"'{model}' takes {width} features in input '{spec.name}' "
                              f"{spec.describe()} (name the key columns with --key)")
        return Plan(list(keys), {spec.name: rest}, {})
    raise PalletError(f"model '{model}' takes inputs {_names([s.name for s in specs])}; "
                      f"name the input columns after them (the input has {_names(rest)})")


def _width(spec: TensorSpec) -> int | None:
    dims = spec.shape[1:]
    return None if any(d < 0 for d in dims) else math.prod(dims)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "") if names else "none"


def to_inputs(table: pa.Table, plan: Plan, signature: Signature) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """The chunk's model inputs (all rows) and the reason each bad row is bad, by row index in the chunk."""
    bad: dict[int, str] = {}
    arrays = {}
    for spec in signature.inputs:
        columns = [_column(table.column(name), name, spec, bad) for name in plan.inputs[spec.name]]
        if spec.dtype in TEXT:
            array = np.array(columns[0], dtype=object)
        else:
            array = np.column_stack(columns) if len(columns) > 1 or len(spec.shape) > 1 else columns[0]
        dims = spec.shape[1:]
        if dims and all(d > 0 for d in dims):
            array = array.reshape((table.num_rows, *dims))
        elif spec.dtype in TEXT and len(spec.shape) > 1:
            array = array.reshape((table.num_rows, 1))
        arrays[spec.name] = array
    return arrays, bad


def _column(column: pa.ChunkedArray, name: str, spec: TensorSpec, bad: dict[int, str]):
    if spec.dtype in TEXT:
        values = column.to_pylist()
        for i, v in enumerate(values):
            if v is None:
                bad.setdefault(i, f"column '{name}' is empty")
        return ["" if v is None else str(v) for v in values]
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            column = pc.cast(column, pa.float64())
        except pa.ArrowInvalid:
            values = np.empty(len(column))
            for i, v in enumerate(column.to_pylist()):
                try:
                    values[i] = math.nan if v is None or v == "" else float(v)
                except ValueError:
                    values[i] = math.nan
                    bad.setdefault(i, f"column '{name}': {v[:40]!r} is not a number")
            return values
    if pa.types.is_null(column.type):  # a chunk of a SQL column with no values: all missing
        return np.full(len(column), np.nan)
    if pa.types.is_decimal(column.type):
        column = pc.cast(column, pa.float64())
    if pa.types.is_boolean(column.type) or pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        if column.null_count:  # missing values become NaN (refused later unless the model allows NaN)
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        return column.to_numpy()
    raise PalletError(f"column '{name}' holds {column.type}; model input '{spec.name}' takes numbers")


def keys_of(table: pa.Table, plan: Plan, bad: dict[int, str]) -> dict[str, pa.Array]:
    """The key columns; text keys (CSV) that all read as whole numbers on the first chunk stay numbers."""
    out = {}
    for name in plan.keys:
        column = table.column(name).combine_chunks()
        for i in np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)):
            bad.setdefault(int(i), f"key '{name}' is empty")
        if pa.types.is_string(column.type):
            kind = plan.key_types.setdefault(name, "int" if _all_ints(column) else "str")
            if kind == "int":
                values = []
                for i, v in enumerate(column.to_pylist()):
                    try:
                        number = None if v is None else int(v)
                        if number is not None and (str(number) != v or not -2**63 <= number < 2**63):
                            raise ValueError(v)
                        values.append(number)
                    except ValueError:
                        values.append(None)
                        bad.setdefault(i, f"key '{name}': {v[:40]!r} is not a whole number like the rows before")
                column = pa.array(values, pa.int64())
        out[name] = column
    return out


def _all_ints(column: pa.Array) -> bool:
    """Whether every key reads as a whole number and back unchanged ('007' does not: it stays text)."""
    try:
        numbers = pc.cast(column, pa.int64())
    except pa.ArrowInvalid:
        return False
    return pc.all(pc.equal(pc.cast(numbers, pa.string()), column)).as_py() is not False


def validate(arrays: dict[str, np.ndarray], rows: np.ndarray, signature: Signature, bad: dict[int, str]):
    """`signature.validate` on the good rows; when it refuses, row by row to find which."""
    whole = len(rows) == len(next(iter(arrays.values())))
    chosen = arrays if whole else {name: a[rows] for name, a in arrays.items()}  # no copy when every row is good
    try:
        return rows, signature.validate(chosen)
    except InvalidInput:
        keep = []
        for i in rows:
            try:
                signature.validate({name: a[i:i + 1] for name, a in arrays.items()})
                keep.append(i)
            except InvalidInput as e:
                bad[int(i)] = str(e)
        keep = np.array(keep, dtype=np.int64)
        if not len(keep):
            return keep, None
        return keep, signature.validate({name: a[keep] for name, a in arrays.items()})


def output_columns(outputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
    """One column per output; a row of k values (class probabilities) becomes k columns."""
    labels = {s.name: s.labels for s in signature.outputs}
    columns = {}
    for name, array in outputs.items():
        array = np.asarray(array)
        if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
            columns[name] = array.reshape(-1)
        else:
            flat = array.reshape(len(array), -1)
            names = labels.get(name) or list(range(flat.shape[1]))
            for j in range(flat.shape[1]):
                columns[f"{name}_{names[j] if j < len(names) else j}"] = flat[:, j]
    return columns


def outputs_of(predictions: pa.Table, signature: Signature) -> dict[str, np.ndarray]:
    """The model's outputs back from their columns (`output_columns` undone), for the run's summary."""
    outputs = {}
    names = predictions.column_names
    for spec in signature.outputs:
        if spec.name in names:
            outputs[spec.name] = predictions.column(spec.name).to_numpy(zero_copy_only=False)
            continue
        parts = [n for n in names if n.startswith(spec.name + "_")]
        if parts:
            outputs[spec.name] = np.column_stack([predictions.column(n).to_numpy(zero_copy_only=False) for n in parts])
    return outputs


def arrow_column(values: np.ndarray) -> pa.Array:
    if values.dtype.kind in "OSU":
        return pa.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values], pa.string())
    return pa.array(values)


def raw_rows(table: pa.Table, rows: list[int]) -> list[str]:
    """The rows as JSON text, for the rejects table."""
    picked = table.take(pa.array(rows, pa.int64())).to_pylist() if rows else []
    return [orjson.dumps(r, default=str).decode() for r in picked]
