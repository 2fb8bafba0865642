"""Open Inference Protocol (KServe V2) over gRPC: `inference.GRPCInferenceService`, as Triton's
grpc_service.proto defines it, translated to and from the data plane.

Tensors arrive as typed `contents` or as `raw_input_contents` (the bytes the binary
tensor extension carries over REST); the answer uses raw outputs when the request used
raw inputs, as Triton's clients expect, and typed contents otherwise. Errors carry the
REST messages, with the gRPC status code of the REST status.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import numpy as np
import orjson
from starlette.datastructures import Headers

import pallet
from pallet.errors import InvalidInput, PalletError
from pallet.serve import codecs
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import Conflict, Overloaded, PayloadTooLarge, status_of
from pallet.serve.middleware import access_log, error_log, key_refusal, new_request_id
from pallet.serve.protocols.proto import grpc_service_pb2 as pb
from pallet.serve.protocols.proto import grpc_service_pb2_grpc as rpc
from pallet.serve.protocols.v2 import EXTENSIONS, PLATFORMS
from pallet.serve.types import InferenceRequest, InferenceResponse

PROTOCOL = "grpc"
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.FAILED_PRECONDITION,
         413: grpc.StatusCode.RESOURCE_EXHAUSTED, 422: grpc.StatusCode.FAILED_PRECONDITION,
         500: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE}
# typed contents field per V2 datatype
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}
ADMIN = {"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"}


def grpc_code(error: Exception) -> grpc.StatusCode:
    """The gRPC status for an error: load shedding and size limits are RESOURCE_EXHAUSTED, the rest
    follow the REST status."""
    if isinstance(error, (Overloaded, PayloadTooLarge)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return CODES.get(status_of(error), grpc.StatusCode.INTERNAL)


class Servicer(rpc.GRPCInferenceServiceServicer):
    """Every RPC reads the message, calls the data plane, and writes the answer; nothing else."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request, context):
        try:
            self.plane.get(request.name, request.version or None)
        except Exception as error:
            if grpc_code(error) in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                return pb.ModelReadyResponse(ready=False)
            raise
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="pallet", version=pallet.__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        model = self.plane.get(request.name, request.version or None)
        manifest = model.version.manifest

        def tensors(specs) -> list:
            return [pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=codecs.datatype_of(s.dtype),
                                                            shape=list(s.shape)) for s in specs]

        return pb.ModelMetadataResponse(name=request.name, versions=self.plane.versions(request.name),
                                        platform=PLATFORMS.get(manifest.runtime, manifest.runtime),
                                        inputs=tensors(model.signature.inputs),
                                        outputs=tensors(model.signature.outputs))

    async def ModelInfer(self, request, context):
        started = time.perf_counter()
        model, version, status = "", "", 500
        try:
            metadata = [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]
            routed = self.plane.route(request.model_name, request.model_version or None,
                                      Headers(raw=[(k.encode(), v.encode()) for k, v in metadata]))
            model, version = routed.ref.name, str(routed.ref.version)
            parsed, raw = decode_request(request, version)
            response = encode_response(await self.plane.infer(parsed), raw)
            context.set_trailing_metadata((("x-model-version", version),))
            status = 200
            return response
        except asyncio.CancelledError:
            status = 499  # the client went away (deadline, cancel): not the server's failure
            raise
        except Exception as error:
            status = status_of(error)
            raise
        finally:
            self.plane.observe(model, version, PROTOCOL, status, time.perf_counter() - started)

    async def RepositoryIndex(self, request, context):
        return pb.RepositoryIndexResponse(models=[
            pb.RepositoryIndexResponse.ModelIndex(name=m["name"], version=m.get("version", ""),
                                                  state=m.get("state", ""), reason=m.get("reason", ""))
            for m in self.plane.index() if not request.ready or m.get("state") == "READY"])

    async def RepositoryModelLoad(self, request, context):
        self._single_process()
        loop = asyncio.get_running_loop()  # loading reads and verifies files: keep it off the event loop
        self.plane.register(await loop.run_in_executor(None, self.plane.prepare, request.model_name))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        self._single_process()
        self.plane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def _single_process(self) -> None:
        if self.plane.config.workers > 1:
            raise Conflict(f"this server runs {self.plane.config.workers} worker processes and a load or unload "
                           "would change only one of them; restart pallet serve with the models you want")


def decode_request(request: Any, version: str) -> tuple[InferenceRequest, bool]:
    """The data plane's request, and whether the client sent raw tensors (and so wants them back)."""
    if not request.inputs:
        raise InvalidInput("'inputs' must name at least one tensor (name, shape, datatype, contents)")
    raw = bool(request.raw_input_contents)
    if raw and len(request.raw_input_contents) != len(request.inputs):
        raise InvalidInput(f"{len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} inputs: "
                           "give one per input, in order")
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        where = f"input '{tensor.name}'"
        if not tensor.name:
            raise InvalidInput(f"inputs[{i}] has no name")
        if tensor.name in inputs:
            raise InvalidInput(f"{where} is given twice")
        shape = list(codecs.check_shape(list(tensor.shape), where))
        codecs.check_datatype(tensor.datatype, where)
        if raw:
            inputs[tensor.name] = codecs.decode_binary(tensor.datatype, shape, request.raw_input_contents[i], where)
            continue
        field = CONTENTS.get(tensor.datatype)
        if field is None:
            raise InvalidInput(f"{where}: {tensor.datatype} travels only as raw_input_contents")
        values = list(getattr(tensor.contents, field))
        if tensor.datatype == "BYTES":
            array = np.empty(len(values), dtype=object)
            array[:] = values
            inputs[tensor.name] = codecs.reshape(array, tuple(shape), where)
        else:
            inputs[tensor.name] = codecs.decode_json(tensor.datatype, shape, values, where)
    outputs = [o.name for o in request.outputs] or None
    parameters = {key: _parameter(value) for key, value in request.parameters.items()}
    return InferenceRequest(request.model_name, inputs, version, request.id or None, outputs, parameters), raw


def _parameter(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def encode_response(response: InferenceResponse, raw: bool) -> Any:
    # Outputs with no typed contents field (FP16) travel raw, and then all of them do, as Triton answers.
    raw = raw or any(codecs.datatype_of(a.dtype) not in CONTENTS for a in response.outputs.values())
    message = pb.ModelInferResponse(model_name=response.model_name, model_version=response.model_version,
                                    id=response.id or "")
    for name, array in response.outputs.items():
        datatype, shape, data = codecs.encode_binary(array) if raw else codecs.encode_json(array)
        tensor = message.outputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            message.raw_output_contents.append(data)
        else:
            flat = np.asarray(data).ravel().tolist() if datatype != "BYTES" else [
                v if isinstance(v, bytes) else str(v).encode() for v in np.asarray(array, dtype=object).ravel()]
            getattr(tensor.contents, CONTENTS[datatype]).extend(flat)
    return message


class Guard(grpc.aio.ServerInterceptor):
    """What the REST middleware does, for gRPC: API keys (the repository RPCs whenever a key is set,
    every RPC but health checks with --auth), a request id for every call (the client's
    `x-request-id` or a new one, sent back as metadata), and errors as status codes with their
    messages."""

    def __init__(self, plane: DataPlane):
        self.config = plane.config
        self.key = plane.config.api_key

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        metadata = dict(details.invocation_metadata or ())
        request_id = new_request_id(metadata.get("x-request-id"))
        refusal = None
        if self.key and not details.method.startswith("/grpc.health.") and (self.config.auth or method in ADMIN):
            given = metadata.get("authorization", "")
            given = given[7:].strip() if given.lower().startswith("bearer ") else metadata.get("x-api-key")
            refusal = key_refusal(given, self.key)
        inner = handler.unary_unary

        async def behaviour(request, context):
            started, code = time.perf_counter(), grpc.StatusCode.OK
            await context.send_initial_metadata((("x-request-id", request_id),))
            try:
                if refusal is not None:
                    code = grpc.StatusCode.UNAUTHENTICATED
                    await context.abort(code, f"{refusal}: send 'authorization: Bearer KEY' or 'x-api-key: KEY' "
                                              "metadata")
                return await inner(request, context)
            except PalletError as error:
                code = grpc_code(error)
                await context.abort(code, str(error))
            except NotImplementedError:
                code = grpc.StatusCode.UNIMPLEMENTED
                await context.abort(code, f"{method} is not implemented by pallet")
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # a bug in pallet or in model code: answer, log, keep serving
                code = grpc.StatusCode.INTERNAL
                error_log.exception("gRPC call %s (request %s) failed", method, request_id)
                await context.abort(code, f"internal error ({type(error).__name__}); see the server log, "
                                          f"request id {request_id}")
            finally:
                if self.config.access_log:
                    access_log.info(orjson.dumps({
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "request_id": request_id, "method": "gRPC",
                        "path": details.method, "status": code.name,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                        "model": getattr(request, "model_name", None) or getattr(request, "name", None),
                        "protocol": PROTOCOL}).decode())

        return grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)
