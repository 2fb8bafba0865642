"""Azure ML's scoring contract: `GET /` for liveness, `POST /score` answered with a list of predictions.

Bodies: `{"input_data": {"columns", "index", "data"}}` (pandas' split orientation, columns
matched to the model's input names), `{"input_data": [[...]]}` (rows) and `{"data": [[...]]}`
(the classic scoring script's shape). With several models loaded, `?model=` or the
`azureml-model-deployment` header (Azure's deployment name, when it names a loaded model)
picks one.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pallet.bodies import AzureData, DataframeSplit, azure_shape
from pallet.inputs import from_instances, from_split
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest
from pallet.serve.http import json_response, label, parse_json, read_body, require_json, routed
from pallet.serve.protocols.v1 import predictions
from pallet.serve.types import InferenceRequest

PROTOCOL = "azureml"
DEPLOYMENT = "azureml-model-deployment"


def liveness() -> Response:
    """`GET /` for probes and API clients: KServe's servers answer `{"status": "alive"}` (its SDK's V1
    `is_server_live` reads that body) and Azure ML's probe reads only the 200."""
    return json_response({"status": "alive"})


def routes(plane: DataPlane) -> list[Route]:
    async def score(request: Request) -> Response:
        request.state.protocol = PROTOCOL
        name = _deployment(plane, request)
        label(request, plane.get(name))
        require_json(request)
        body = parse_json(await read_body(request, plane.config.max_body_bytes, plane.config.read_timeout))
        model = routed(request, plane, name)
        inputs = decode(body, model.signature)
        response = await plane.infer(InferenceRequest(name, inputs, str(model.ref.version)))
        return json_response(predictions(response.outputs))

    return [Route("/score", score, methods=["POST"])]


def decode(body, signature) -> dict:
    """Named inputs from one of Azure's scoring bodies (`pallet.bodies.AZURE`)."""
    shape = azure_shape(body)
    if shape is None:
        keys = ", ".join(map(str, body)) if isinstance(body, dict) else type(body).__name__
        raise BadRequest(f'the body must be {{"input_data": ...}} (a pandas split object or rows) or '
                         f'{{"data": [rows]}}; got {keys}')
    if isinstance(shape, AzureData):
        return from_instances(shape.data, signature, "data")
    if isinstance(shape.input_data, DataframeSplit):
        return from_split(shape.input_data, signature, "input_data")
    return from_instances(shape.input_data, signature, "input_data")


def _deployment(plane: DataPlane, request: Request) -> str:
    """`?model=`; else the deployment header when it names a loaded model (Azure sets it to the deployment's
    name, e.g. blue); else the only model loaded."""
    names = plane.names()
    if request.query_params.get("model"):
        return request.query_params["model"]
    deployment = request.headers.get(DEPLOYMENT)
    if deployment in names or (deployment and len(names) > 1):
        return deployment
    if len(names) == 1:
        return names[0]
    raise BadRequest(f"this server has {len(names)} models loaded ({', '.join(names)}): name one in the "
                     f"{DEPLOYMENT} header or ?model=")
