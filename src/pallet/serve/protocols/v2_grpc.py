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
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import grpc
import numpy as np
import orjson
from starlette.datastructures import Headers

import pallet
from pallet.errors import InvalidInput, PalletError
from pallet.serve import codecs
from pallet.serve import parameters as infer_parameters
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import Conflict, NonFiniteOutput, Overloaded, PayloadTooLarge, status_of
from pallet.serve.middleware import access_log, error_log, key_refusal, new_request_id
from pallet.serve.protocols.proto import grpc_service_pb2 as pb
from pallet.serve.protocols.proto import grpc_service_pb2_grpc as rpc
from pallet.serve import triton
from pallet.serve.protocols.v2 import EXTENSIONS
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
STREAM_WINDOW = 64  # requests of one stream in flight at once; their answers still leave in request order
EMPTY_FINAL = "triton_enable_empty_final_response"  # Triton's flag: mark each stream answer that ends its request
REQUEST_ID: ContextVar[str] = ContextVar("grpc_request_id", default="")  # the call's id, set by Guard


def grpc_code(error: Exception) -> grpc.StatusCode:
    """The gRPC status for an error: load shedding and size limits are RESOURCE_EXHAUSTED, the rest
    follow the REST status."""
    if isinstance(error, (Overloaded, PayloadTooLarge)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(error, NonFiniteOutput):  # 422: the input is the problem, as with any bad argument
        return grpc.StatusCode.INVALID_ARGUMENT
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
                                        platform=triton.platform(manifest.runtime),
                                        inputs=tensors(model.signature.inputs),
                                        outputs=tensors(model.signature.outputs))

    async def ModelInfer(self, request, context):
        response = await self._infer(request, context)
        context.set_trailing_metadata((("x-model-version", response.model_version),))
        return response

    async def ModelStreamInfer(self, request_iterator, context):
        """Answers every request on the stream, in request order, each as ModelInfer answers it
        (requests are in flight together, so they batch with everything else); a request that
        fails is answered with its `error_message` and the stream goes on."""
        window, answers = asyncio.Semaphore(STREAM_WINDOW), asyncio.Queue()
        reader = asyncio.ensure_future(self._read_stream(request_iterator, context, window, answers))
        try:
            while (answer := await answers.get()) is not None:
                response = await answer
                window.release()
                yield response
            await reader  # a broken request stream ends the call with its error
        finally:
            reader.cancel()
            while not answers.empty():
                pending = answers.get_nowait()
                if pending is not None:
                    pending.cancel()

    async def _read_stream(self, requests, context, window: asyncio.Semaphore, answers: asyncio.Queue) -> None:
        try:
            async for request in requests:
                await window.acquire()
                answers.put_nowait(asyncio.ensure_future(self._stream_answer(request, context)))
        finally:
            answers.put_nowait(None)  # the end of the requests, or of reading them

    async def _stream_answer(self, request, context) -> Any:
        final = request.parameters[EMPTY_FINAL].bool_param if EMPTY_FINAL in request.parameters else False
        if EMPTY_FINAL in request.parameters:
            del request.parameters[EMPTY_FINAL]  # the stream's business, not the model's
        try:
            answer = pb.ModelStreamInferResponse(infer_response=await self._infer(request, context))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            message = error_status(error, "ModelStreamInfer", REQUEST_ID.get())[1]
            answer = pb.ModelStreamInferResponse(error_message=message, infer_response=pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id))
        if final:  # a model answers each request once, so every answer is its request's last
            answer.infer_response.parameters["triton_final_response"].bool_param = True
        return answer

    async def _infer(self, request, context) -> Any:
        """One ModelInferRequest through the data plane, counted in the metrics once."""
        started = time.perf_counter()
        model, version, status = "", "", 500
        try:
            metadata = [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]
            routed = self.plane.route(request.model_name, request.model_version or None,
                                      Headers(raw=[(k.encode(), v.encode()) for k, v in metadata]))
            model, version = routed.ref.name, str(routed.ref.version)
            parsed, raw = decode_request(request, version)
            response = encode_response(await self.plane.infer(parsed), raw)
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

    async def ModelConfig(self, request, context):
        return pb.ModelConfigResponse(config=triton.model_config(self.plane, request.name, request.version or None))

    async def ModelStatistics(self, request, context):
        return triton.model_statistics(self.plane, request.name or None, request.version or None)

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
        infer_parameters.check_tensor(where, tensor.parameters)
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
    parameters = {key: _parameter(value) for key, value in request.parameters.items()}
    every_binary = infer_parameters.check_request(parameters)
    outputs, binary, classify = infer_parameters.outputs(
        [(o.name, {k: _parameter(v) for k, v in o.parameters.items()}) for o in request.outputs], every_binary)
    raw = raw or every_binary or bool(binary)  # one answer cannot mix raw and typed outputs: raw when any is
    return InferenceRequest(request.model_name, inputs, version, request.id or None, outputs or None, parameters,
                            classify), raw


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


def error_status(error: Exception, method: str, request_id: str) -> tuple[grpc.StatusCode, str]:
    """The status and message a failed call, or a failed request on a stream, answers with; a bug
    in pallet or in model code is logged with the call's request id."""
    if isinstance(error, PalletError):
        return grpc_code(error), str(error)
    if isinstance(error, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by pallet"
    error_log.error("gRPC call %s (request %s) failed", method, request_id, exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log, " \
                                     f"request id {request_id}"


class Guard(grpc.aio.ServerInterceptor):
    """What the REST middleware does, for gRPC: API keys (the repository RPCs whenever a key is set,
    every RPC but health checks with --auth), a request id for every call (the client's
    `x-request-id` or a new one, sent back as metadata), an access log line per call, and errors as
    status codes with their messages. Unary calls and streams alike; a stream's line counts its
    answers and the requests that failed."""

    def __init__(self, plane: DataPlane):
        self.config = plane.config
        self.key = plane.config.api_key

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or (handler.unary_unary is None and handler.stream_stream is None):
            return handler
        call = _Call(details, self._refusal(details), self.config.access_log)
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def answer(request, context):
                call.model = getattr(request, "model_name", None) or getattr(request, "name", None)
                async with call.guarded(context):
                    return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(answer, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)
        stream = handler.stream_stream

        async def answers(requests, context):
            call.counts = {"answers": 0, "failed": 0}
            async with call.guarded(context):
                async for response in stream(requests, context):
                    call.model = call.model or response.infer_response.model_name or None
                    call.counts["answers"] += 1
                    call.counts["failed"] += bool(response.error_message)
                    yield response

        return grpc.stream_stream_rpc_method_handler(answers, request_deserializer=handler.request_deserializer,
                                                     response_serializer=handler.response_serializer)

    def _refusal(self, details) -> str | None:
        method = details.method.rsplit("/", 1)[-1]
        if not self.key or details.method.startswith("/grpc.health.") or not (self.config.auth or method in ADMIN):
            return None
        metadata = dict(details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        given = given[7:].strip() if given.lower().startswith("bearer ") else metadata.get("x-api-key")
        return key_refusal(given, self.key)


class _Call:
    """One RPC as the Guard sees it: its request id, the key check, the status it ended with, its log line."""

    def __init__(self, details, refusal: str | None, logged: bool):
        self.path, self.method = details.method, details.method.rsplit("/", 1)[-1]
        self.request_id = new_request_id(dict(details.invocation_metadata or ()).get("x-request-id"))
        self.refusal, self.logged = refusal, logged
        self.model: str | None = None
        self.counts: dict[str, int] = {}

    @asynccontextmanager
    async def guarded(self, context):
        started, code = time.perf_counter(), grpc.StatusCode.OK
        REQUEST_ID.set(self.request_id)
        await context.send_initial_metadata((("x-request-id", self.request_id),))
        try:
            if self.refusal is not None:
                code = grpc.StatusCode.UNAUTHENTICATED
                await context.abort(code, f"{self.refusal}: send 'authorization: Bearer KEY' or 'x-api-key: KEY' "
                                          "metadata")
            yield
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # answer, log, keep serving
            code, message = error_status(error, self.method, self.request_id)
            await context.abort(code, message)
        finally:
            if self.logged:
                access_log.info(orjson.dumps({
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "request_id": self.request_id, "method": "gRPC",
                    "path": self.path, "status": code.name,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "model": self.model, "protocol": PROTOCOL, **self.counts}).decode())
