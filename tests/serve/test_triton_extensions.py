"""Triton's model configuration and statistics extensions, read by Triton's own clients (http, grpc and
asyncio) from a real server on free ports, checked against the signature, the settings and /metrics."""

import asyncio

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
import tritonclient.http as triton_http
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

import pallet
from pallet.errors import InvalidReference
from pallet.net import free_port
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer
from tests.serve.test_batching import fire

STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@pytest.fixture(scope="module")
def batched(demo_store):
    config = ServeConfig(models=["iris@production", "digits@production"], grpc_port=free_port(),
                         max_batch_size=16, max_latency_ms=20, workers=1, threads=2, access_log=False)
    with RunningServer(create_app(config, demo_store)) as running:
        yield running


@pytest.fixture(scope="module")
def slow(slow_store):
    config = ServeConfig(models=["slow"], grpc_port=free_port(), max_batch_size=32, max_latency_ms=50,
                         access_log=False)
    with RunningServer(create_app(config, slow_store)) as running:
        yield running


def test_http_model_config_follows_the_signature_and_the_batching_settings(batched):
    with triton_http.InferenceServerClient(batched.url[len("http://"):]) as client:
        config = client.get_model_config("iris")
        assert client.get_model_config("iris", "1") == config
    assert (config["name"], config["platform"], config["backend"]) == ("iris", "sklearn", "python")
    assert config["max_batch_size"] == 16
    assert config["input"][0]["name"] == "input" and config["input"][0]["data_type"] == "TYPE_FP64"
    assert config["input"][0]["dims"] == [4]  # the batch axis is left out when max_batch_size > 0
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs["probabilities"]["dims"] == [3] and outputs["probabilities"]["data_type"] == "TYPE_FP64"
    assert outputs["label"]["dims"] == [1] and outputs["label"]["reshape"] == {"shape": []}  # one per row
    assert config["dynamic_batching"]["preferred_batch_size"] == [16]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 20_000  # a number, as Triton writes it
    assert config["instance_group"] == [{"name": "iris_0", "kind": "KIND_CPU", "count": 1, "gpus": [],
                                         "secondary_devices": [], "profile": [], "passive": False,
                                         "host_policy": ""}]
    assert config["parameters"]["intra_op_threads"] == {"string_value": "2"}
    assert config["version_policy"] == {"specific": {"versions": [1]}}


def test_grpc_model_config_is_the_same_configuration(batched):
    rest = httpx.get(f"{batched.url}/v2/models/digits/config").json()
    with triton_grpc.InferenceServerClient(batched.grpc) as client:
        message = client.get_model_config("digits").config
        as_json = client.get_model_config("digits", as_json=True)
    assert message.name == "digits" and message.max_batch_size == 16
    assert [(t.name, list(t.dims)) for t in message.input] == [("input", [64])]
    assert message.dynamic_batching.max_queue_delay_microseconds == 20_000
    assert as_json["config"]["input"][0]["data_type"] == "TYPE_FP64"
    assert json_format.ParseDict(rest, type(message)()) == message  # REST is the JSON form of the message


def test_without_batching_max_batch_size_is_zero_and_dims_keep_the_rows(start_server):
    server = start_server(models=["iris@production"], max_batch_size=1)
    config = httpx.get(f"{server.url}/v2/models/iris/config").json()
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config
    assert config["input"][0]["dims"] == [-1, 4]


def test_config_of_an_unknown_model_or_version_is_not_found(batched):
    with triton_http.InferenceServerClient(batched.url[len("http://"):]) as client:
        with pytest.raises(InferenceServerException, match="'nosuch' is not loaded"):
            client.get_model_config("nosuch")
        with pytest.raises(InferenceServerException, match="no version '9'"):
            client.get_model_config("iris", "9")
    with triton_grpc.InferenceServerClient(batched.grpc) as client:
        with pytest.raises(InferenceServerException, match="NOT_FOUND"):
            client.get_model_config("nosuch")


def _metrics(url: str) -> dict:
    """From /metrics, per stage of slow:1 its count and seconds, and the model's totals."""
    figures = {"requests_200": 0.0, "executions": 0.0, "inferences": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.labels.get("model") != "slow" or sample.labels.get("version") != "1":
                continue
            if sample.name == "pallet_requests_total" and sample.labels["status"] == "200":
                figures["requests_200"] += sample.value
            elif sample.name in ("pallet_executions_total", "pallet_inferences_total"):
                figures[sample.name.removeprefix("pallet_").removesuffix("_total")] = sample.value
            elif sample.name.startswith("pallet_inference_stage_seconds_"):
                figures[(sample.labels["stage"], sample.name.rsplit("_", 1)[1])] = sample.value
    return figures


def _grpc_infer(address: str, value: float):
    with triton_grpc.InferenceServerClient(address) as client:
        tensor = triton_grpc.InferInput("x", [2, 2], "FP64")
        tensor.set_data_from_numpy(np.full((2, 2), value))
        return client.infer("slow", [tensor]).as_numpy("y")


def test_statistics_count_what_metrics_count(slow):
    http = triton_http.InferenceServerClient(slow.url[len("http://"):])
    before = http.get_inference_statistics("slow")["model_stats"][0]
    responses = asyncio.run(fire(slow.url, range(12)))  # concurrent: they share predict calls
    assert [r.status_code for r in responses] == [200] * 12
    assert _grpc_infer(slow.grpc, 3.0).tolist() == [[6.0, 6.0]] * 2  # two rows in one request
    assert asyncio.run(fire(slow.url, [-1]))[0].status_code == 500  # the model fails
    after = http.get_inference_statistics("slow")["model_stats"][0]
    counted = _metrics(slow.url)
    with triton_grpc.InferenceServerClient(slow.grpc) as client:
        over_grpc = client.get_inference_statistics("slow", "1", as_json=True)["model_stats"][0]

    assert (after["name"], after["version"]) == ("slow", "1")
    assert after["inference_count"] - before["inference_count"] == 12 + 2 + 1  # rows, the failed one's too
    executions = after["execution_count"] - before["execution_count"]
    assert 3 <= executions < 14  # batching: fewer predict calls than requests
    stats = after["inference_stats"]
    assert stats["success"]["count"] - before["inference_stats"]["success"]["count"] == 13
    assert stats["fail"]["count"] - before["inference_stats"]["fail"]["count"] == 1
    assert stats["compute_infer"]["count"] - before["inference_stats"]["compute_infer"]["count"] == 13
    assert after["last_inference"] > 0 and after["last_inference"] >= before["last_inference"]

    assert after["inference_count"] == counted["inferences"] and after["execution_count"] == counted["executions"]
    assert stats["success"]["count"] == counted["requests_200"]
    for stage in STAGES:
        assert stats[stage]["count"] == counted.get((stage, "count"), 0)
        assert abs(stats[stage]["ns"] - counted.get((stage, "sum"), 0) * 1e9) <= 1  # the same seconds, in ns
    assert int(over_grpc["execution_count"]) == after["execution_count"]  # gRPC's JSON writes uint64 as text
    assert int(over_grpc["inference_stats"]["success"]["ns"]) == stats["success"]["ns"]


def test_server_statistics_list_every_loaded_version_and_the_asyncio_client_reads_them(slow):
    async def read():
        async with triton_grpc_aio.InferenceServerClient(slow.grpc) as client:
            return await client.get_inference_statistics()

    everything = asyncio.run(read())
    assert [(s.name, s.version) for s in everything.model_stats] == [("slow", "1")]
    rest = httpx.get(f"{slow.url}/v2/models/stats")  # the statistics, not a model named "stats"
    assert rest.status_code == 200 and [s["name"] for s in rest.json()["model_stats"]] == ["slow"]
    one = httpx.get(f"{slow.url}/v2/models/slow/versions/1/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in one] == [("slow", "1")]
    assert httpx.get(f"{slow.url}/v2/models/nosuch/stats").status_code == 404


@pytest.mark.parametrize("name", ["stats", "config"])
def test_reserved_words_are_never_model_names(tmp_path, name):
    model = LogisticRegression().fit(np.eye(2), [0, 1])
    with pytest.raises(InvalidReference, match=f"'{name}' cannot be a model name: 'stats' and 'config' are reserved"):
        pallet.save(model, name, sample=np.eye(2), store=Store(tmp_path / "home"))
