"""KServe V1 / Vertex AI prediction: `{"instances": [...]}` in, `{"predictions": [...]}` out."""

from __future__ import annotations

import numpy as np
from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pallet.decoding import Decoder
from pallet.inputs import from_instances
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest
from pallet.serve.http import json_response, label, read_body, require_json, routed, to_list
from pallet.serve.schemas.v1 import Instances
from pallet.serve.types import InferenceRequest

PROTOCOL = "v1"
REQUEST = Decoder(Instances, expected='a JSON object with "instances": [...]', quote='"')


def routes(plane: DataPlane) -> list[Route]:
    async def predict(request: Request) -> Response:
        name = request.path_params["name"]
        request.state.protocol = PROTOCOL
        label(request, plane.get(name))
        require_json(request)
        doc = REQUEST.json(await read_body(request, plane.config.max_body_bytes, plane.config.read_timeout))
        if doc.instances is UNSET and doc.inputs is UNSET:
            raise BadRequest(f"request body must be {REQUEST.expected}")
        key = "instances" if doc.instances is not UNSET else "inputs"
        model = routed(request, plane, name)
        response = await plane.infer(InferenceRequest(name, from_instances(getattr(doc, key), model.signature, key),
                                                      str(model.ref.version)))
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


def predictions(outputs: dict[str, np.ndarray]) -> list:
    """One prediction per row: the value of the single output, or an object of every output."""
    if len(outputs) == 1:
        return to_list(next(iter(outputs.values())))
    columns = {name: to_list(array) for name, array in outputs.items()}
    rows = len(next(iter(columns.values())))
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]
