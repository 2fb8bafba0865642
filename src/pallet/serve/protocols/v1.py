"""KServe V1 / Vertex AI prediction: `{"instances": [...]}` in, `{"predictions": [...]}` out."""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest
from pallet.serve.http import json_response, label, parse_json, read_body, require_json, to_list
from pallet.serve.types import InferenceRequest
from pallet.signature import Signature

PROTOCOL = "v1"


def routes(plane: DataPlane) -> list[Route]:
    async def predict(request: Request) -> Response:
        name = request.path_params["name"]
        request.state.protocol = PROTOCOL
        model = label(request, plane.get(name))
        require_json(request)
        doc = parse_json(await read_body(request, plane.config.max_body_bytes))
        if not isinstance(doc, dict) or not ({"instances", "inputs"} & set(doc)):
            raise BadRequest('request body must be a JSON object with "instances": [...]')
        key = "instances" if "instances" in doc else "inputs"
        response = await plane.infer(InferenceRequest(name, from_instances(doc[key], model.signature, key)))
        return json_response({"predictions": predictions(response.outputs)})

    async def status(request: Request) -> Response:
        name = request.path_params["name"]
        plane.get(name)
        return json_response({"name": name, "ready": True})

    async def listing(request: Request) -> Response:
        return json_response({"models": plane.names()})

    return [
        Route("/v1/models", listing),
        Route("/v1/models/{name}:predict", predict, methods=["POST"]),
        Route("/v1/models/{name}", status),
    ]


def from_instances(instances: Any, signature: Signature, key: str = "instances") -> dict[str, Any]:
    """Named inputs from instances: rows of features, or objects keyed by input name."""
    if not isinstance(instances, list) or not instances:
        raise BadRequest(f'"{key}" must be a non-empty list, one entry per row')
    if all(isinstance(row, dict) for row in instances):
        inputs = {}
        for spec in signature.inputs:
            missing = [i for i, row in enumerate(instances) if spec.name not in row]
            if missing:
                raise BadRequest(f"{key}[{missing[0]}] has no '{spec.name}'; each instance needs "
                                 f"{', '.join(signature.input_names)}")
            inputs[spec.name] = [row[spec.name] for row in instances]
        extra = {k for row in instances for k in row} - set(signature.input_names)
        if extra:
            raise BadRequest(f"unknown input '{sorted(extra)[0]}' in {key}; this model takes: "
                             f"{', '.join(signature.input_names)}")
        return inputs
    if any(isinstance(row, dict) for row in instances):
        raise BadRequest(f'"{key}" mixes objects and rows; use one form for every instance')
    if len(signature.inputs) != 1:
        raise BadRequest(f"this model takes {len(signature.inputs)} inputs ({', '.join(signature.input_names)}): "
                         "send each instance as an object keyed by input name")
    return {signature.inputs[0].name: instances}


def predictions(outputs: dict[str, np.ndarray]) -> list:
    """One prediction per row: the value of the single output, or an object of every output."""
    if len(outputs) == 1:
        return to_list(next(iter(outputs.values())))
    columns = {name: to_list(array) for name, array in outputs.items()}
    rows = len(next(iter(columns.values())))
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]
