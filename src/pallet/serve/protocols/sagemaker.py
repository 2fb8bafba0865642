"""SageMaker's container contract (`/ping`, `/invocations`) and MLflow's scoring protocol on the same
route (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, CSV; `/health`, `/version`)."""

from __future__ import annotations

import csv
import io
import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import pallet
from pallet.inputs import parse_inputs
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from pallet.serve.http import JSON, json_response, label, read_body, routed, to_list
from pallet.serve.protocols.v1 import predictions
from pallet.serve.types import InferenceRequest

PROTOCOL = "sagemaker"
MLFLOW_SHAPE = re.compile(r'\s*\{\s*"(dataframe_split|dataframe_records|inputs)"')  # how MLflow's bodies open
TARGET_MODEL = "x-amzn-sagemaker-target-model"
CSV = "text/csv"


def routes(plane: DataPlane) -> list[Route]:
    async def ping(request: Request) -> Response:
        return Response(status_code=200 if plane.ready() else 503)

    async def invocations(request: Request) -> Response:
        request.state.protocol = PROTOCOL
        name = _target(plane, request)
        label(request, plane.get(name))
        fmt = _content_format(request.headers.get("content-type", JSON))
        answer = _accept_format(request.headers.get("accept", JSON))
        body = await read_body(request, plane.config.max_body_bytes, plane.config.read_timeout)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise BadRequest("request body is not UTF-8 text") from None
        if MLFLOW_SHAPE.match(text):
            request.state.protocol = "mlflow"  # the same route: counted under the protocol the client speaks
        model = routed(request, plane, name)
        inputs = _named(parse_inputs(text, model.signature, fmt), model.signature.input_names)
        response = await plane.infer(InferenceRequest(name, inputs, str(model.ref.version)))
        if answer == "csv":
            return Response(_csv_rows(response.outputs), media_type=CSV)
        return json_response({"predictions": predictions(response.outputs)})

    async def health(request: Request) -> Response:  # MLflow's scoring server
        return Response("\n" if plane.ready() else "not ready\n", 200 if plane.ready() else 503,
                        media_type="text/plain")

    async def version(request: Request) -> Response:
        return Response(pallet.__version__, media_type="text/plain")

    return [
        Route("/ping", ping),
        Route("/health", health),
        Route("/version", version),
        Route("/invocations", invocations, methods=["POST"]),
    ]


def _target(plane: DataPlane, request: Request) -> str:
    target = request.headers.get(TARGET_MODEL)
    if target:
        return target.removesuffix(".tar.gz")
    names = plane.names()
    if len(names) == 1:
        return names[0]
    raise BadRequest(f"this server has {len(names)} models loaded ({', '.join(names)}): "
                     "name one in the X-Amzn-SageMaker-Target-Model header")


def _content_format(content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    if kind in (JSON, "", "text/json") or kind.endswith("+json"):
        return "json"
    if kind == CSV:
        return "csv"
    raise UnsupportedMediaType(f"Content-Type '{kind}' is not supported; send application/json or text/csv")


def _accept_format(accept: str) -> str:
    kinds = []
    for part in accept.split(","):
        kind, *options = [item.strip().lower() for item in part.split(";")]
        if any(option.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for option in options):
            continue  # q=0: "not this one"
        kinds.append(kind)
    for kind in kinds:
        if kind in (JSON, "*/*", "application/*", ""):
            return "json"
        if kind in (CSV, "text/*"):
            return "csv"
    raise NotAcceptable(f"cannot answer in '{accept}'; accept application/json or text/csv")


def _named(inputs, names: list[str]) -> dict:
    return inputs if isinstance(inputs, dict) else {names[0]: inputs}


def _csv_rows(outputs) -> str:
    """One line per row: the values of every output, flattened, in output order."""
    columns = [to_list(array.reshape(len(array), -1)) for array in outputs.values()]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for parts in zip(*columns, strict=True):
        writer.writerow([value for part in parts for value in part])
    return buffer.getvalue()
