"""Open Inference Protocol (KServe V2 / Triton) over HTTP, with the binary tensor data extension.

Translates wire format to the data plane's `InferenceRequest` and back; nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import pallet
from pallet.decoding import Decoder
from pallet.serve import codecs
from pallet.serve import parameters as infer_parameters
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest, Conflict
from pallet.serve import triton
from pallet.serve.http import DIGITS, json_response, label, read_body, require_json, routed
from pallet.serve.schemas import v2 as schemas
from pallet.serve.types import InferenceRequest, InferenceResponse
from pallet.signature import TensorSpec

PROTOCOL = "v2"
HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "model_configuration", "statistics"]


def routes(plane: DataPlane) -> list[Route]:
    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        ok = plane.ready()
        return json_response({"ready": ok}, 200 if ok else 503)

    async def server_metadata(request: Request) -> Response:
        return json_response({"name": "pallet", "version": pallet.__version__, "extensions": EXTENSIONS})

    async def model_metadata(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        model = plane.get(name, version)
        return json_response({
            "name": name,
            "versions": plane.versions(name),
            "platform": triton.platform(model.version.manifest.runtime),
            "inputs": [_tensor_metadata(s) for s in model.signature.inputs],
            "outputs": [_tensor_metadata(s) for s in model.signature.outputs],
            "parameters": {"size_bytes": model.version.manifest.size_bytes},
        })

    async def model_ready(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        plane.get(name, version)  # 404 when it is not loaded
        return json_response({"name": name, "ready": True})

    async def infer(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        request.state.protocol = PROTOCOL
        label(request, plane.get(name, version))  # 404 before the body is read
        require_json(request)
        body = await read_body(request, plane.config.max_body_bytes, plane.config.read_timeout)
        answering = str(routed(request, plane, name, version).ref.version)
        parsed, binary_outputs = decode_request(body, request.headers.get(HEADER_LENGTH), name, answering)
        return encode_response(await plane.infer(parsed), binary_outputs)

    async def repository_index(request: Request) -> Response:
        return json_response(plane.index())

    def single_process() -> None:
        if plane.config.workers > 1:
            raise Conflict(f"this server runs {plane.config.workers} worker processes and a load or unload "
                           "would change only one of them; restart pallet serve with the models you want")

    async def load(request: Request) -> Response:
        single_process()
        loop = asyncio.get_running_loop()  # loading reads and verifies files: keep it off the event loop
        model = plane.register(await loop.run_in_executor(None, plane.prepare, request.path_params["name"]))
        return json_response({"name": model.ref.name, "version": str(model.ref.version), "state": "READY"})

    async def unload(request: Request) -> Response:
        single_process()
        plane.unload(request.path_params["name"])
        return json_response({"name": request.path_params["name"], "state": "UNAVAILABLE"})

    return [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        *_triton_extension_routes(plane),  # before /v2/models/{name}: "stats" is no model name
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v2/repository/index", repository_index, methods=["GET", "POST"]),
        Route("/v2/repository/models/{name}/load", load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", unload, methods=["POST"]),
    ]


def _triton_extension_routes(plane: DataPlane) -> list[Route]:
    """Triton's model configuration and statistics extensions (`pallet.serve.triton` builds the answers)."""
    async def model_config(request: Request) -> Response:
        config = triton.model_config(plane, request.path_params["name"], request.path_params.get("version"))
        return json_response(triton.to_json(config))

    async def model_statistics(request: Request) -> Response:
        name, version = request.path_params.get("name"), request.path_params.get("version")
        return json_response(triton.to_json(triton.model_statistics(plane, name, version)))

    return [
        Route("/v2/models/stats", model_statistics),
        Route("/v2/models/{name}/config", model_config),
        Route("/v2/models/{name}/versions/{version}/config", model_config),
        Route("/v2/models/{name}/stats", model_statistics),
        Route("/v2/models/{name}/versions/{version}/stats", model_statistics),
    ]


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": codecs.datatype_of(spec.dtype), "shape": list(spec.shape)}


REQUEST = Decoder(schemas.InferenceRequest, expected="a JSON object with 'inputs'")


def decode_request(body: bytes, header_length: str | None, name: str,
                   version: str | None) -> tuple[InferenceRequest, set[str] | bool]:
    """The request, and which outputs to send as binary (True: all of them)."""
    binary = b""
    if header_length is not None:
        if not DIGITS.fullmatch(header_length) or int(header_length) > len(body):
            raise BadRequest(f"Inference-Header-Content-Length {header_length!r} does not fit a body of "
                             f"{len(body)} bytes")
        body, binary = body[:int(header_length)], body[int(header_length):]
    doc = REQUEST.json(body)
    inputs = _input_arrays(doc.inputs, binary)
    parameters = doc.parameters or {}
    binary_outputs: set[str] | bool = infer_parameters.check_request(parameters)
    requested, classify = None, {}
    if doc.outputs is not None:
        requested, binary_outputs, classify = infer_parameters.outputs(
            [(o.name, o.parameters or {}) for o in doc.outputs], binary_outputs)
    return InferenceRequest(name, inputs, version, doc.id, requested, parameters, classify), binary_outputs


def _input_arrays(tensors: list[schemas.RequestInput], binary: bytes) -> dict[str, np.ndarray]:
    """Each input as an array: from its JSON `data`, or from its share of the binary data."""
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in tensors:
        where = f"input '{tensor.name}'"
        if tensor.name in inputs:
            raise BadRequest(f"{where} is given twice")
        if tensor.parameters is not None and tensor.parameters.shared_memory_region is not UNSET:
            infer_parameters.check_tensor(where, ["shared_memory_region"])
        size = tensor.parameters.binary_data_size if tensor.parameters is not None else UNSET
        if size is not UNSET:
            if offset + size > len(binary):
                raise BadRequest(f"{where}: binary_data_size {size!r} runs past the {len(binary)} bytes of binary data")
            inputs[tensor.name] = codecs.decode_binary(tensor.datatype, tensor.shape, binary[offset:offset + size], where)
            offset += size
        elif tensor.data is not UNSET:
            inputs[tensor.name] = codecs.decode_json(tensor.datatype, tensor.shape, tensor.data, where)
        else:
            raise BadRequest(f"{where}: missing 'data' (or a binary_data_size parameter)")
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data follow the tensors that declared them")
    return inputs


def encode_response(response: InferenceResponse, binary_outputs: set[str] | bool) -> Response:
    outputs, chunks = [], []
    for name, array in response.outputs.items():
        if binary_outputs is True or (binary_outputs and name in binary_outputs):
            datatype, shape, raw = codecs.encode_binary(array)
            outputs.append({"name": name, "datatype": datatype, "shape": shape,
                            "parameters": {"binary_data_size": len(raw)}})
            chunks.append(raw)
        else:
            datatype, shape, data = codecs.encode_json(array)
            outputs.append({"name": name, "datatype": datatype, "shape": shape, "data": data})
    doc = {"model_name": response.model_name, "model_version": response.model_version, "outputs": outputs}
    if response.id is not None:
        doc["id"] = response.id
    if not chunks:
        return json_response(doc)
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(header + b"".join(chunks), 200, {"Inference-Header-Content-Length": str(len(header))},
                    media_type="application/octet-stream")

