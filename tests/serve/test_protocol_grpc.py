"""The Open Inference Protocol over gRPC, with Triton's own client against a real server on free ports."""

import asyncio
import re

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sklearn.datasets import load_iris
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as stubs
from tritonclient.utils import InferenceServerException

from pallet.net import free_port
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from tests.serve.conftest import MODELS, RunningServer, access_log_lines
from tests.serve.test_batching import body, calls

IRIS = load_iris().data[[0, 50, 149]]


@pytest.fixture(scope="module")
def grpc_server(demo_store):
    config = ServeConfig(models=MODELS, grpc_port=free_port(), max_body_mb=64 / 1024, access_log=False)
    with RunningServer(create_app(config, demo_store)) as running:
        yield running


@pytest.fixture
def client(grpc_server):
    with triton.InferenceServerClient(grpc_server.grpc) as c:
        yield c


def iris_input(rows=IRIS, datatype="FP64"):
    tensor = triton.InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows.astype(np.float64 if datatype == "FP64" else np.float32))
    return tensor


def failure(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_health_and_metadata_rpcs(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris") and client.is_model_ready("iris", "1")
    assert not client.is_model_ready("nosuch")
    server = client.get_server_metadata()
    assert server.name == "pallet" and "binary_tensor_data" in server.extensions
    metadata = client.get_model_metadata("digits")
    assert metadata.platform == "sklearn" and list(metadata.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("input", "FP64", [-1, 64])]
    assert [t.name for t in metadata.outputs] == ["label", "probabilities"]


def test_infer_with_raw_tensors_answers_as_rest_does(client, grpc_server):
    result = client.infer("iris", [iris_input()], request_id="req-7",
                          outputs=[triton.InferRequestedOutput("label"), triton.InferRequestedOutput("probabilities")])
    rest = httpx.post(f"{grpc_server.url}/v2/models/iris/infer", json={"inputs": [
        {"name": "input", "datatype": "FP64", "shape": [3, 4], "data": IRIS.ravel().tolist()}]}).json()
    rest = {o["name"]: o for o in rest["outputs"]}
    assert result.as_numpy("label").tolist() == rest["label"]["data"] == [0, 1, 2]
    assert np.allclose(result.as_numpy("probabilities").ravel(), rest["probabilities"]["data"])
    response = result.get_response()
    assert response.id == "req-7" and response.model_name == "iris" and response.model_version == "1"


def test_requested_outputs_and_float32_input_cast_like_rest(client):
    result = client.infer("iris", [iris_input(datatype="FP32")], outputs=[triton.InferRequestedOutput("label")])
    assert [o.name for o in result.get_response().outputs] == ["label"]
    assert result.as_numpy("label").tolist() == [0, 1, 2]


def test_typed_contents_in_typed_contents_out(grpc_server):
    with grpc.insecure_channel(grpc_server.grpc) as channel:
        stub = stubs.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="iris", id="typed")
        tensor = request.inputs.add(name="input", datatype="FP64", shape=[3, 4])
        tensor.contents.fp64_contents.extend(IRIS.ravel().tolist())
        response, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "my-id-1"),))
    outputs = {o.name: o for o in response.outputs}
    assert list(outputs["label"].contents.int64_contents) == [0, 1, 2] and not response.raw_output_contents
    assert len(outputs["probabilities"].contents.fp64_contents) == 9
    assert ("x-request-id", "my-id-1") in call.initial_metadata()
    assert ("x-model-version", "1") in call.trailing_metadata()


@pytest.mark.parametrize("rows, datatype, name, code, message", [
    (np.zeros((2, 3)), "FP64", "iris", grpc.StatusCode.INVALID_ARGUMENT, "expected shape [-1, 4], got [2, 3]"),
    (IRIS, "FP64", "nosuch", grpc.StatusCode.NOT_FOUND, "model 'nosuch' is not loaded on this server"),
    (np.zeros((200, 64)), "FP64", "digits", grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
])
def test_errors_map_to_grpc_codes_with_the_rest_messages(client, grpc_server, rows, datatype, name, code, message):
    error = failure(lambda: client.infer(name, [iris_input(rows, datatype)]))
    assert error.status() == str(code) and message in error.message()
    if code is not grpc.StatusCode.RESOURCE_EXHAUSTED:  # the same words as over REST
        rest = httpx.post(f"{grpc_server.url}/v2/models/{name}/infer", json={"inputs": [
            {"name": "input", "datatype": datatype, "shape": list(rows.shape), "data": rows.ravel().tolist()}]})
        assert rest.json()["error"] == error.message()


def test_malformed_requests_are_invalid_argument(grpc_server):
    with grpc.insecure_channel(grpc_server.grpc) as channel:
        stub = stubs.GRPCInferenceServiceStub(channel)
        cases = [
            (pb.ModelInferRequest(model_name="iris"), "'inputs' must name at least one tensor"),
            (_request("input", "FP99", [1, 4]), "unknown datatype 'FP99'"),
            (_request("input", "FP64", [2, 4], [1.0] * 3), "shape [2, 4] needs 8 values"),
            (_request("input", "FP64", [1, 4], raw=b"\x00" * 5), "5 bytes"),
        ]
        for request, message in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
            assert message in caught.value.details()


def _request(name, datatype, shape, values=None, raw=None):
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if raw is not None:
        request.raw_input_contents.append(raw)
    elif values is not None:
        tensor.contents.fp64_contents.extend(values)
    return request


def test_grpc_health_checking_for_kubernetes_probes(grpc_server):
    with grpc.insecure_channel(grpc_server.grpc) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        for service in ("", "inference.GRPCInferenceService"):
            assert check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING


def test_metrics_count_grpc_requests_under_their_protocol(client, grpc_server):
    client.infer("iris", [iris_input()])
    failure(lambda: client.infer("iris", [iris_input(np.zeros((1, 3)))]))
    text = httpx.get(f"{grpc_server.url}/metrics").text
    assert re.search(r'pallet_requests_total\{model="iris",protocol="grpc",status="200",version="1"\} [1-9]', text)
    assert re.search(r'pallet_requests_total\{model="iris",protocol="grpc",status="400",version="1"\} [1-9]', text)


def test_repository_rpcs_need_the_admin_key_and_load_and_unload(demo_store, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    config = ServeConfig(models=["iris", "digits"], grpc_port=free_port(), access_log=False)
    with RunningServer(create_app(config, demo_store)):
        with triton.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as client:
            assert failure(client.get_model_repository_index).status() == "StatusCode.UNAUTHENTICATED"
            error = failure(lambda: client.unload_model("iris", headers={"authorization": "Bearer wrong"}))
            assert error.status() == "StatusCode.UNAUTHENTICATED" and error.message().startswith("wrong API key")
            key = {"authorization": "Bearer s3cret"}
            index = client.get_model_repository_index(headers=key)
            assert {(m.name, m.state) for m in index.models} == {("iris", "READY"), ("digits", "READY")}
            assert client.infer("iris", [iris_input()]).as_numpy("label").tolist() == [0, 1, 2]  # open without --auth
            client.unload_model("iris", headers=key)
            assert not client.is_model_ready("iris")
            assert failure(lambda: client.infer("iris", [iris_input()])).status() == "StatusCode.NOT_FOUND"
            client.load_model("iris", headers=key)
            assert client.is_model_ready("iris")


def test_auth_extends_the_key_to_every_rpc_but_health(demo_store, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    config = ServeConfig(models=["iris"], grpc_port=free_port(), auth=True, access_log=False)
    with RunningServer(create_app(config, demo_store)):
        address = f"127.0.0.1:{config.grpc_port}"
        with triton.InferenceServerClient(address) as client:
            assert failure(lambda: client.infer("iris", [iris_input()])).status() == "StatusCode.UNAUTHENTICATED"
            result = client.infer("iris", [iris_input()], headers={"x-api-key": "s3cret"})
            assert result.as_numpy("label").tolist() == [0, 1, 2]
        with grpc.insecure_channel(address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_load_shedding_is_resource_exhausted(slow_store):
    config = ServeConfig(models=["slow"], grpc_port=free_port(), max_batch_size=1, max_queue=1, access_log=False)
    with RunningServer(create_app(config, slow_store)):
        async def many():
            async with triton_aio.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as client:
                return await asyncio.gather(*(client.infer("slow", [_slow_input(v)]) for v in range(6)),
                                            return_exceptions=True)
        results = asyncio.run(many())
    shed = [r for r in results if isinstance(r, InferenceServerException)]
    assert shed and all(r.status() == "StatusCode.RESOURCE_EXHAUSTED" for r in shed)
    assert "--max-queue 1" in shed[0].message()
    assert any(not isinstance(r, Exception) for r in results)


def _slow_input(value):
    tensor = triton.InferInput("x", [1, 2], "FP64")
    tensor.set_data_from_numpy(np.array([[value, value]], dtype=np.float64))
    return tensor


def test_rest_and_grpc_requests_batch_together(slow_store):
    config = ServeConfig(models=["slow"], grpc_port=free_port(), max_batch_size=32, access_log=False)
    with RunningServer(create_app(config, slow_store)) as server:
        before = calls(httpx.get(f"{server.url}/metrics").text)

        async def mixed():
            async with triton_aio.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as grpc_client, \
                    httpx.AsyncClient(base_url=server.url, timeout=60) as rest:
                grpc_calls = [grpc_client.infer("slow", [_slow_input(v)]) for v in range(8)]
                rest_calls = [rest.post("/v2/models/slow/infer", json=body(v)) for v in range(8, 16)]
                return await asyncio.gather(*grpc_calls, *rest_calls)

        results = asyncio.run(mixed())
        after = calls(httpx.get(f"{server.url}/metrics").text)
    for value, result in enumerate(results[:8]):
        assert result.as_numpy("y").tolist() == [[2 * value, 2 * value]]
    for value, response in zip(range(8, 16), results[8:]):
        assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [2 * value, 2 * value]
    assert 1 <= after - before <= 4  # 16 requests from two protocols in a handful of predict calls


def test_every_grpc_call_gets_an_access_log_line_with_its_request_id(demo_store, caplog):
    config = ServeConfig(models=["iris"], grpc_port=free_port(), access_log=True)
    with access_log_lines(caplog) as lines, RunningServer(create_app(config, demo_store)) as server:
        with triton.InferenceServerClient(server.grpc) as client:
            client.infer("iris", [iris_input()], headers={"x-request-id": "trace-1"})
            failure(lambda: client.infer("nosuch", [iris_input()], headers={"x-request-id": "trace-2"}))
    by_id = {line["request_id"]: line for line in lines if line["path"].endswith("/ModelInfer")}
    assert (by_id["trace-1"]["status"], by_id["trace-1"]["model"], by_id["trace-1"]["protocol"]) == ("OK", "iris", "grpc")
    assert (by_id["trace-2"]["status"], by_id["trace-2"]["model"]) == ("NOT_FOUND", "nosuch"), lines


def test_outputs_with_no_typed_field_answer_raw_and_bad_typed_shapes_are_invalid():
    from pallet.errors import InvalidInput
    from pallet.serve.protocols.v2_grpc import decode_request, encode_response
    from pallet.serve.types import InferenceResponse

    answer = encode_response(InferenceResponse("m", "1", {"half": np.ones((2, 2), np.float16),
                                                          "label": np.array([1, 2])}), raw=False)
    assert len(answer.raw_output_contents) == 2 and not answer.outputs[1].contents.int64_contents
    assert np.frombuffer(answer.raw_output_contents[0], "<f2").tolist() == [1.0] * 4
    for shape in ([-1, -1], [2**32, 2**32]):
        request = pb.ModelInferRequest(model_name="m")
        request.inputs.add(name="text", datatype="BYTES", shape=shape).contents.bytes_contents.append(b"x")
        with pytest.raises(InvalidInput):
            decode_request(request, "1")


def test_an_ipv6_host_binds_grpc_too(demo_store):
    config = ServeConfig(models=["iris"], host="::1", grpc_port=free_port(), access_log=False)
    app = create_app(config, demo_store)
    server = RunningServer(app)
    server.server.config.host = "::1"
    with server:
        with triton.InferenceServerClient(f"[::1]:{config.grpc_port}") as client:
            assert client.is_server_ready()
