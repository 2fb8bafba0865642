"""Batching and load shedding through a real server, with a deliberately slow model."""

import asyncio
import re

import httpx

from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from tests.serve.conftest import RunningServer


def body(value):
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [value, value]}]}


async def fire(url, values):
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/v2/models/slow/infer", json=body(v)) for v in values))


def calls(metrics_text):
    match = re.search(r'^pallet_batch_rows_count\{model="slow",version="1"\} (\S+)$', metrics_text, re.M)
    return float(match.group(1)) if match else 0.0


def test_concurrent_requests_share_predict_calls(slow_store):
    with RunningServer(create_app(ServeConfig(models=["slow"], max_batch_size=32, access_log=False),
                                  slow_store)) as server:
        before = calls(httpx.get(f"{server.url}/metrics").text)
        responses = asyncio.run(fire(server.url, range(12)))
        after = calls(httpx.get(f"{server.url}/metrics").text)
    for value, response in zip(range(12), responses):
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [2 * value, 2 * value]  # each gets its own rows
    assert 1 <= after - before < 12  # fewer predict calls than requests


def test_a_failing_request_does_not_fail_its_batch_neighbours(slow_store):
    with RunningServer(create_app(ServeConfig(models=["slow"], max_batch_size=32, access_log=False),
                                  slow_store)) as server:
        responses = asyncio.run(fire(server.url, [1, 2, -1, 3, 4]))
    assert [r.status_code for r in responses] == [200, 200, 500, 200, 200]
    assert "negative input" in responses[2].json()["error"]


def test_past_the_queue_limit_requests_get_503_with_retry_after(slow_store):
    config = ServeConfig(models=["slow"], max_batch_size=1, max_queue=2, access_log=False)
    with RunningServer(create_app(config, slow_store)) as server:
        responses = asyncio.run(fire(server.url, range(8)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 2 and 503 in statuses
    shed = next(r for r in responses if r.status_code == 503)
    assert shed.headers["retry-after"] == "1"
    assert "--max-queue 2" in shed.json()["error"]


def test_batch_metrics_are_exposed(client):
    client.post("/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    text = client.get("/metrics").text
    assert re.search(r'^pallet_batch_rows_bucket\{le="1.0",model="iris",version="1"\} [1-9]', text, re.M)
    assert "pallet_batch_queue_seconds_bucket" in text
