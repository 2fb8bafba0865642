"""Streaming inference (gRPC ModelStreamInfer) with Triton's own clients against a real server on free ports."""

import asyncio
import queue

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from sklearn.datasets import load_digits

from pallet.net import free_port
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from tests.serve.conftest import MODELS, RunningServer, access_log_lines
from tests.serve.test_batching import calls
from tests.serve.test_protocol_grpc import _slow_input

DIGITS = load_digits()
ROWS = DIGITS.data[:100]


@pytest.fixture(scope="module")
def grpc_server(demo_store):
    config = ServeConfig(models=MODELS, grpc_port=free_port(), access_log=False)
    with RunningServer(create_app(config, demo_store)) as running:
        yield running


def digits_input(rows: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows.astype(np.float64))
    return tensor


def expected_labels(server, rows: np.ndarray) -> list[int]:
    """The labels REST gives for the same rows: the stream must answer exactly these."""
    answer = httpx.post(f"{server.url}/v2/models/digits/infer", timeout=60, json={"inputs": [
        {"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}],
        "outputs": [{"name": "label"}]})
    return answer.json()["outputs"][0]["data"]


def stream(address: str, requests, headers=None, count=None) -> list:
    """Send `requests` (keyword arguments of async_stream_infer) on one stream; the (result, error)
    pairs in the order they came back."""
    answers: queue.Queue = queue.Queue()
    with triton.InferenceServerClient(address) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
        for request in requests:
            client.async_stream_infer("digits", **request)
        got = [answers.get(timeout=60) for _ in range(len(requests) if count is None else count)]
        client.stop_stream()
    return got


def test_one_stream_answers_100_requests_in_order_with_their_ids(grpc_server):
    requests = [{"inputs": [digits_input(ROWS[i:i + 1])], "request_id": f"r{i}",
                 "outputs": [triton.InferRequestedOutput("label")]} for i in range(100)]
    got = stream(grpc_server.grpc, requests)
    assert all(error is None for _, error in got), [error for _, error in got if error is not None][:3]
    assert [result.get_response().id for result, _ in got] == [f"r{i}" for i in range(100)]
    labels = [int(result.as_numpy("label")[0]) for result, _ in got]
    assert labels == expected_labels(grpc_server, ROWS)
    assert np.mean(np.array(labels) == DIGITS.target[:100]) > 0.9
    assert {result.get_response().model_name for result, _ in got} == {"digits"}


def test_an_error_is_that_requests_answer_and_the_stream_goes_on(grpc_server):
    good = [{"inputs": [digits_input(ROWS[i:i + 1])], "request_id": f"r{i}"} for i in range(6)]
    wrong = {"inputs": [digits_input(np.ones((1, 5)))], "request_id": "bad"}
    got = stream(grpc_server.grpc, good[:3] + [wrong] + good[3:])
    errors = [error for _, error in got]
    assert [e is None for e in errors] == [True, True, True, False, True, True, True]
    assert "input" in errors[3].message() and "64" in errors[3].message(), errors[3].message()
    answered = [result for result, _ in got if result is not None]
    assert [r.get_response().id for r in answered] == [f"r{i}" for i in range(6)]
    assert [int(r.as_numpy("label")[0]) for r in answered] == expected_labels(grpc_server, ROWS[:6])


def test_an_unknown_model_on_a_stream_is_its_requests_error(grpc_server):
    answers: queue.Queue = queue.Queue()
    with triton.InferenceServerClient(grpc_server.grpc) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        client.async_stream_infer("nosuch", [digits_input(ROWS[:1])])
        client.async_stream_infer("digits", [digits_input(ROWS[:1])], request_id="after")
        missing, after = answers.get(timeout=60), answers.get(timeout=60)
        client.stop_stream()
    assert missing[0] is None and "nosuch" in missing[1].message()
    assert after[1] is None and after[0].get_response().id == "after"


def test_the_asyncio_client_streams_too(grpc_server):
    async def requests():
        for i in range(20):
            yield {"model_name": "digits", "inputs": [digits_input(ROWS[i:i + 1])], "request_id": f"a{i}"}

    async def run():
        async with triton_aio.InferenceServerClient(grpc_server.grpc) as client:
            return [pair async for pair in client.stream_infer(requests())]

    got = asyncio.run(run())
    assert all(error is None for _, error in got)
    assert [result.get_response().id for result, _ in got] == [f"a{i}" for i in range(20)]
    assert [int(result.as_numpy("label")[0]) for result, _ in got] == expected_labels(grpc_server, ROWS[:20])


def test_triton_final_response_flag_marks_each_answer(grpc_server):
    requests = [{"inputs": [digits_input(ROWS[:1])], "request_id": "f", "enable_empty_final_response": True}]
    [(result, error)] = stream(grpc_server.grpc, requests)
    assert error is None and result.get_response().parameters["triton_final_response"].bool_param is True


def test_streamed_requests_batch_with_unary_ones(slow_store):
    config = ServeConfig(models=["slow"], grpc_port=free_port(), max_batch_size=32, access_log=False)
    with RunningServer(create_app(config, slow_store)) as server:
        before = calls(httpx.get(f"{server.url}/metrics").text)

        async def mixed():
            async def requests():
                for v in range(8):
                    yield {"model_name": "slow", "inputs": [_slow_input(v)], "request_id": str(v)}

            async with triton_aio.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as client:
                async def streamed():
                    return [pair async for pair in client.stream_infer(requests())]
                return await asyncio.gather(streamed(), *(client.infer("slow", [_slow_input(v)])
                                                          for v in range(8, 16)))

        got, *unary = asyncio.run(mixed())
        after = calls(httpx.get(f"{server.url}/metrics").text)
    assert [result.as_numpy("y").tolist() for result, _ in got] == [[[2 * v, 2 * v]] for v in range(8)]
    assert [result.as_numpy("y").tolist() for result in unary] == [[[2 * v, 2 * v]] for v in range(8, 16)]
    assert 1 <= after - before <= 4  # 16 requests, streamed and unary, in a handful of predict calls


def test_a_stream_without_the_key_is_refused_with_pallets_message(demo_store, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    config = ServeConfig(models=["digits"], grpc_port=free_port(), auth=True, access_log=False)
    with RunningServer(create_app(config, demo_store)):
        address = f"127.0.0.1:{config.grpc_port}"
        [(result, error)] = stream(address, [], count=1)  # refused as the stream opens, before any request
        assert result is None and error.status() == "StatusCode.UNAUTHENTICATED"
        assert error.message().startswith("missing API key: send 'authorization: Bearer KEY'"), error.message()
        [(result, error)] = stream(address, [], headers={"x-api-key": "wrong"}, count=1)
        assert result is None and error.message().startswith("wrong API key")
        [(result, error)] = stream(address, [{"inputs": [digits_input(ROWS[:1])], "request_id": "k"}],
                                   headers={"authorization": "Bearer s3cret"})
        assert error is None and result.get_response().id == "k"


def test_a_stream_gets_a_request_id_and_one_access_log_line(demo_store, caplog):
    config = ServeConfig(models=["digits"], grpc_port=free_port(), access_log=True)
    with access_log_lines(caplog) as lines, RunningServer(create_app(config, demo_store)) as server:
        requests = [{"inputs": [digits_input(ROWS[:1])]}, {"inputs": [digits_input(np.ones((1, 3)))]}]
        got = stream(server.grpc, requests, headers={"x-request-id": "stream-1"})
    assert got[0][1] is None and got[1][1] is not None
    [line] = [line for line in lines if line["path"].endswith("/ModelStreamInfer")]
    assert (line["request_id"], line["status"], line["model"], line["protocol"]) == ("stream-1", "OK", "digits", "grpc")
    assert (line["answers"], line["failed"]) == (2, 1)
