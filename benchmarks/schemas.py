"""How fast a V2 infer JSON body is decoded and checked: orjson with checks written by hand (how
pallet read bodies before it had schemas), msgspec structs and pydantic v2 models of the same
contract, and pallet's own decoder (envelope, then the tensors as numpy arrays).

    .venv/bin/python benchmarks/schemas.py [--repeat 7]

Bodies: the digits model's input (64 floats) as one row and as 64 rows. Figures are the best of
`--repeat` timeit rounds, in microseconds per body. Results: benchmarks/results/schemas.json.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from importlib import metadata
from typing import Any

import msgspec
import numpy as np
import orjson
import pydantic

from run import machine

from pallet.serve.protocols import v2


class MsgspecTensor(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class MsgspecOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class MsgspecRequest(msgspec.Struct):
    inputs: list[MsgspecTensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[MsgspecOutput] | None = None


class PydanticTensor(pydantic.BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class PydanticOutput(pydantic.BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class PydanticRequest(pydantic.BaseModel):
    inputs: list[PydanticTensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[PydanticOutput] | None = None


def orjson_by_hand(body: bytes) -> dict:
    """The checks pallet made by hand on the parsed body before it had schemas."""
    doc = orjson.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("request body must be a JSON object with 'inputs'")
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ValueError("'inputs' must be a non-empty list")
    seen = set()
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ValueError(f"inputs[{i}] must be an object with a string 'name'")
        if tensor["name"] in seen:
            raise ValueError("given twice")
        seen.add(tensor["name"])
        for key in ("shape", "datatype"):
            if key not in tensor:
                raise ValueError(f"missing '{key}'")
        parameters = tensor.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError("'parameters' must be an object")
        if "data" not in tensor and "binary_data_size" not in parameters:
            raise ValueError("missing 'data'")
    if not isinstance(doc.get("parameters") or {}, dict):
        raise ValueError("'parameters' must be an object")
    if doc.get("id") is not None and not isinstance(doc["id"], str):
        raise ValueError("'id' must be a string")
    return doc


def body(rows: int) -> bytes:
    values = np.random.default_rng(0).integers(0, 17, (rows, 64)).astype(float)
    return orjson.dumps({"id": "bench", "inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP64",
                                                    "data": values.ravel().tolist()}]})


def best_us(call, payload: bytes, repeat: int) -> float:
    timer = timeit.Timer(lambda: call(payload))
    number, _ = timer.autorange()
    return round(min(timer.repeat(repeat, number)) / number * 1e6, 2)


CANDIDATES = {
    "orjson_by_hand": orjson_by_hand,
    "msgspec": msgspec.json.Decoder(MsgspecRequest).decode,
    "pydantic_v2": PydanticRequest.model_validate_json,
    "pallet_decode_request_with_numpy": lambda b: v2.decode_request(b, None, "digits", "1"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    figures = {}
    for label, rows in (("1_row_64_floats", 1), ("64_rows_64_floats", 64)):
        payload = body(rows)
        figures[label] = {"body_bytes": len(payload),
                          **{name: best_us(call, payload, args.repeat) for name, call in CANDIDATES.items()}}
    doc = {"benchmark": "schemas",
           "description": "Decoding and checking a V2 infer JSON body, microseconds per body (best of rounds).",
           "command": " ".join([".venv/bin/python", "benchmarks/schemas.py", *sys.argv[1:]]),
           "machine": machine(),
           "versions": {n: metadata.version(n) for n in ("pallet", "orjson", "msgspec", "pydantic", "numpy")},
           "results": figures}
    from run import RESULTS
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "schemas.json").write_text(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
