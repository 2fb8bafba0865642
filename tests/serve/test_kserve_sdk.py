"""KServe's Python SDK (`kserve`) against a real server: health, readiness and inference over V1 and V2 REST
(JSON and binary tensors) and over gRPC.

The SDK's calls run in a Python process of their own: KServe's generated protobuf modules define the same
`inference.*` messages as tritonclient's and pallet's under another file name, and protobuf refuses both in
one process. Each `async def _...` below is such a call sequence; `sdk` runs it there and returns what it
returned (JSON). The server runs here, as in the other protocol tests.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pallet.net import free_port
from pallet.settings import ServeConfig

# Iris rows 0, 50 and 149: one of each class.
IRIS = [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [5.9, 3.0, 5.1, 1.8]]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(demo_store):
    from pallet.serve.app import create_app
    from tests.serve.conftest import MODELS, RunningServer

    config = ServeConfig(models=MODELS, grpc_port=free_port(), access_log=False)
    with RunningServer(create_app(config, demo_store)) as running:
        yield running


def sdk(server, calls) -> dict:
    """What `calls(url, grpc_address)` returns, run with the SDK in a process of its own."""
    code = ("import asyncio, json, sys; from tests.serve import test_kserve_sdk as t; "
            "print(json.dumps(asyncio.run(getattr(t, sys.argv[1])(*sys.argv[2:]))))")
    done = subprocess.run([sys.executable, "-c", code, calls.__name__, server.url, server.grpc], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _iris(binary: bool, outputs=(), dtype="FP64", request_id="r-1", **parameters):
    from kserve import InferInput, InferRequest
    from kserve.protocol.infer_type import RequestedOutput

    tensor = InferInput("input", [3, 4], dtype)
    tensor.set_data_from_numpy(np.array(IRIS, np.float32 if dtype == "FP32" else np.float64), binary_data=binary)
    requested = [RequestedOutput(name, parameters=options) for name, options in outputs] or None
    return InferRequest(model_name="iris", infer_inputs=[tensor], request_outputs=requested, request_id=request_id,
                        parameters=parameters or None)


def _outputs(response) -> dict:
    return {o.name: o.as_numpy().tolist() for o in response.outputs}


async def _rest_health(url, grpc):
    from kserve import InferenceRESTClient, RESTConfig

    v1, v2 = InferenceRESTClient(RESTConfig(protocol="v1")), InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        unknown = await v1.is_model_ready(url, "nosuch")
    except Exception as e:  # KServe's servers answer 404 for a model they do not have, and the SDK raises
        unknown = str(e)
    answers = {"v1_live": await v1.is_server_live(url), "v2_live": await v2.is_server_live(url),
               "v2_ready": await v2.is_server_ready(url), "v1_model_ready": await v1.is_model_ready(url, "iris"),
               "v2_model_ready": await v2.is_model_ready(url, "iris"), "v1_unknown": unknown,
               "v2_unknown": await v2.is_model_ready(url, "nosuch")}
    await v1.close()
    await v2.close()
    return answers


async def _v1_infer(url, grpc):
    from kserve import InferenceRESTClient, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v1"))
    answers = {key: await client.infer(url, {key: IRIS}, model_name="iris") for key in ("instances", "inputs")}
    await client.close()
    return answers


async def _v2_infer(url, grpc):
    from kserve import InferenceRESTClient, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    binary_outputs = [("label", {"binary_data": True}), ("probabilities", {"binary_data": True})]
    requests = {"json": _iris(False), "binary_in": _iris(True), "fp32_binary_in": _iris(True, dtype="FP32"),
                "binary_out": _iris(True, binary_outputs), "binary_data_output": _iris(True, binary_data_output=True),
                "label_only": _iris(False, [("label", {})])}
    answers = {}
    for name, request in requests.items():
        headers = {}
        response = await client.infer(url, request, model_name="iris", response_headers=headers)
        answers[name] = {"content_type": headers["content-type"], "id": response.id, "sent_id": request.id,
                         "outputs": _outputs(response)}
    try:
        await client.infer(url, _iris(True), model_name="nosuch")
    except Exception as e:
        answers["unknown"] = str(e)
    await client.close()
    return answers


async def _grpc(url, grpc):
    from kserve import InferenceGRPCClient

    async with InferenceGRPCClient(grpc) as client:
        answers = {"live": await client.is_server_live(), "ready": await client.is_server_ready(),
                   "model_ready": await client.is_model_ready("iris"),
                   "unknown_ready": await client.is_model_ready("nosuch"),
                   "raw": _outputs(await client.infer(_iris(True))),
                   "typed": _outputs(await client.infer(_iris(False))),
                   "label_only": _outputs(await client.infer(_iris(True, [("label", {})]))),
                   "id": (await client.infer(_iris(True, request_id="g-7"))).id}
        try:
            bad = _iris(True)
            bad.model_name = "nosuch"
            await client.infer(bad)
        except Exception as e:
            answers["unknown"] = f"{e.code().name}: {e.details()}"
    return answers


async def _unauthenticated(url, grpc):
    from kserve import InferenceRESTClient, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v1"))
    answers = {"live": await client.is_server_live(url)}
    try:
        await client.infer(url, {"instances": IRIS}, model_name="iris")
    except Exception as e:
        answers["infer"] = str(e)
    await client.close()
    return answers


def test_liveness_and_readiness_over_v1_and_v2_rest(server):
    answers = sdk(server, _rest_health)
    assert answers["v1_live"] is True and answers["v2_live"] is True and answers["v2_ready"] is True
    assert answers["v1_model_ready"] is True and answers["v2_model_ready"] is True
    assert answers["v2_unknown"] is False
    assert "404" in answers["v1_unknown"] and "model 'nosuch' is not loaded" in answers["v1_unknown"]


def test_liveness_stays_open_on_a_shared_server_and_inference_does_not(start_server):
    running = start_server(share_token="kserve-probe-token", access_log=False)
    running.grpc = ""
    answers = sdk(running, _unauthenticated)
    assert answers["live"] is True
    assert "401" in answers["infer"] and "shared by link" in answers["infer"]


def test_v1_infer_with_instances_and_inputs(server):
    answers = sdk(server, _v1_infer)
    for key in ("instances", "inputs"):
        predictions = answers[key]["predictions"]
        assert [p["label"] for p in predictions] == [0, 1, 2]
        assert np.allclose([sum(p["probabilities"]) for p in predictions], 1)


def test_v2_infer_json_and_binary_tensors(server):
    answers = sdk(server, _v2_infer)
    reference = answers["json"]["outputs"]
    assert reference["label"] == [0, 1, 2] and np.array(reference["probabilities"]).shape == (3, 3)
    for name in ("binary_in", "fp32_binary_in", "binary_out", "binary_data_output"):
        outputs = answers[name]["outputs"]
        assert outputs["label"] == [0, 1, 2], name
        assert np.allclose(outputs["probabilities"], reference["probabilities"], atol=1e-6), name
    assert answers["json"]["content_type"] == answers["binary_in"]["content_type"] == "application/json"
    assert answers["binary_out"]["content_type"] == "application/octet-stream"
    assert answers["binary_data_output"]["content_type"] == "application/octet-stream"
    assert list(answers["label_only"]["outputs"]) == ["label"]
    assert all(answer["id"] == answer["sent_id"] for name, answer in answers.items() if name != "unknown")
    assert "404" in answers["unknown"] and "model 'nosuch' is not loaded" in answers["unknown"]


def test_grpc_health_readiness_and_infer(server):
    answers = sdk(server, _grpc)
    assert answers["live"] is True and answers["ready"] is True
    assert answers["model_ready"] is True and answers["unknown_ready"] is False
    assert answers["raw"]["label"] == answers["typed"]["label"] == [0, 1, 2]
    assert np.allclose(answers["raw"]["probabilities"], answers["typed"]["probabilities"])
    assert list(answers["label_only"]) == ["label"] and answers["id"] == "g-7"
    assert answers["unknown"].startswith("NOT_FOUND: ") and "nosuch" in answers["unknown"]


def test_the_sdk_stays_out_of_the_test_process():
    """Its protobuf modules would keep gRPC servers here from starting."""
    assert "kserve" not in sys.modules
