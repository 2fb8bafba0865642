"""`pallet predict`: run a stored model on inputs from a file or stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

import pallet
from pallet.cli import app
from pallet.errors import InvalidInput
from pallet.inputs import parse_inputs
from pallet.store import store_to_read


@app.command()
def predict(
    ref: str = typer.Argument(..., help="name, name:VERSION or name@ALIAS"),
    input: str = typer.Option(None, "--input", "-i", help="A .json or .csv file of rows, or - for stdin."),
    fmt: str = typer.Option(None, "--format", "-f", help="json or csv (default: from the file name; json for -)."),
    sample: bool = typer.Option(False, "--sample", help="Predict on the sample stored with the version."),
) -> None:
    """Predict on a batch of inputs and print the outputs as JSON."""
    if (input is None) == (not sample):
        raise InvalidInput("give the inputs with --input FILE (or - for stdin), or use --sample")
    model = pallet.load(ref, store=store_to_read(ref))  # no store is made where there is none
    if sample:
        inputs = model.version.sample()
    else:
        inputs = parse_inputs(_read(input), model.signature, fmt or ("csv" if input.lower().endswith(".csv") else "json"))
    outputs = model.predict(inputs)
    typer.echo(json.dumps({"model": str(model.ref), "outputs": {k: _jsonable(v) for k, v in outputs.items()}}))


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.exists() or path.is_dir():
        raise InvalidInput(f"input file {source} does not exist" if not path.exists() else f"{source} is a folder")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"input file {source} is not UTF-8 text (JSON or CSV)") from None


def _jsonable(array: np.ndarray) -> list:
    if array.dtype.kind == "S":
        array = np.char.decode(array, "utf-8", errors="replace")
    return array.tolist()
