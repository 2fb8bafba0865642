"""Open Inference Protocol (KServe V2 / Triton) over HTTP, with the binary tensor data extension.

Translates wire format to the data plane's `InferenceRequest` and back; nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import pallet
from pallet.serve import codecs
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest, Conflict
from pallet.serve.http import DIGITS, json_response, label, parse_json, read_body, require_json, routed
from pallet.serve.types import InferenceRequest, InferenceResponse
from pallet.signature import TensorSpec

PROTOCOL = "v2"
HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn", "python": "python", "torch": "pytorch_libtorch"}


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
            "platform": PLATFORMS.get(model.version.manifest.runtime, model.version.manifest.runtime),
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
        body = await read_body(request, plane.config.max_body_bytes, plane.config.read_timeout_seconds)
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


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": codecs.datatype_of(spec.dtype), "shape": list(spec.shape)}


def decode_request(body: bytes, header_length: str | None, name: str,
                   version: str | None) -> tuple[InferenceRequest, set[str] | bool]:
    """The request, and which outputs to send as binary (True: all of them)."""
    binary = b""
    if header_length is not None:
        if not DIGITS.fullmatch(header_length) or int(header_length) > len(body):
            raise BadRequest(f"Inference-Header-Content-Length {header_length!r} does not fit a body of "
                             f"{len(body)} bytes")
        body, binary = body[:int(header_length)], body[int(header_length):]
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object with 'inputs'")
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadRequest("'inputs' must be a non-empty list of tensors (name, shape, datatype, data)")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequest(f"inputs[{i}] must be an object with a string 'name'")
        where = f"input '{tensor['name']}'"
        if tensor["name"] in inputs:
            raise BadRequest(f"{where} is given twice")
        for key in ("shape", "datatype"):
            if key not in tensor:
                raise BadRequest(f"{where}: missing '{key}'")
        size = _parameters(tensor, where).get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest(f"{where}: binary_data_size {size!r} runs past the {len(binary)} bytes of binary data")
            inputs[tensor["name"]] = codecs.decode_binary(tensor["datatype"], tensor["shape"],
                                                          binary[offset:offset + size], where)
            offset += size
        elif "data" in tensor:
            inputs[tensor["name"]] = codecs.decode_json(tensor["datatype"], tensor["shape"], tensor["data"], where)
        else:
            raise BadRequest(f"{where}: missing 'data' (or a binary_data_size parameter)")
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data follow the tensors that declared them")

    parameters = _parameters(doc, "request")
    binary_outputs: set[str] | bool = bool(parameters.get("binary_data_output", False))
    requested = None
    if "outputs" in doc:
        if not isinstance(doc["outputs"], list):
            raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
        requested, wanted_binary = [], set()
        for i, output in enumerate(doc["outputs"]):
            if not isinstance(output, dict) or not isinstance(output.get("name"), str):
                raise BadRequest(f"outputs[{i}] must be an object with a string 'name'")
            requested.append(output["name"])
            options = _parameters(output, f"output '{output['name']}'")
            unsupported = set(options) - {"binary_data"}
            if unsupported:
                raise BadRequest(f"output '{output['name']}': parameter '{sorted(unsupported)[0]}' is not "
                                 "supported (only binary_data is)")
            if options.get("binary_data", binary_outputs is True):
                wanted_binary.add(output["name"])
        binary_outputs = wanted_binary
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    return InferenceRequest(name, inputs, version, request_id, requested, parameters), binary_outputs


def _parameters(holder: dict, where: str) -> dict:
    parameters = holder.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return parameters


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

