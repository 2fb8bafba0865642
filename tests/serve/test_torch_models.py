"""The torch demo models on every protocol: digits-torch (a torch MLP) and minilm (sentence embeddings)."""

import asyncio
import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from pallet.demo import SENTENCES, register_minilm, train_digits_torch
from pallet.export.data import split
from pallet.model import load_runtime
from pallet.net import free_port
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer

X_TEST, Y_TEST = split("digits", "test")


@pytest.fixture(scope="module")
def torch_store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("torch") / "home")
    train_digits_torch(store)
    register_minilm(store)
    return store


@pytest.fixture(scope="module")
def torch_server(torch_store):
    config = ServeConfig(models=["digits-torch", "minilm"], max_batch_size=64, grpc_port=free_port(),
                         access_log=False)
    with RunningServer(create_app(config, torch_store)) as running:
        yield running


@pytest.fixture(scope="module")
def expected(torch_store):
    """What the stored models answer when called directly, to compare the server's answers with."""
    minilm = load_runtime(torch_store.resolve("minilm"))
    return minilm.predict({"text": np.array(SENTENCES, dtype=object)})["embedding"]


def test_minilm_embeds_text_sent_as_v2_bytes(torch_server, expected):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": SENTENCES}]}
    response = httpx.post(f"{torch_server.url}/v2/models/minilm/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["name"] == "embedding" and output["datatype"] == "FP32" and output["shape"] == [3, 384]
    embedding = np.array(output["data"], dtype=np.float32).reshape(3, 384)
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    assert np.allclose(embedding, expected, atol=1e-5)
    assert response.headers["x-model-version"] == "1"


def test_minilm_through_tritonclient_and_v1_and_sagemaker(torch_server, expected):
    client = triton.InferenceServerClient(f"127.0.0.1:{torch_server.port}")
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array(SENTENCES[:2], dtype=object), binary_data=True)
    result = client.infer("minilm", [text], outputs=[triton.InferRequestedOutput("embedding", binary_data=True)])
    assert np.allclose(result.as_numpy("embedding"), expected[:2], atol=1e-5)
    v1 = httpx.post(f"{torch_server.url}/v1/models/minilm:predict", json={"instances": SENTENCES[1:]}, timeout=60)
    assert v1.status_code == 200, v1.text
    assert np.allclose(v1.json()["predictions"], expected[1:], atol=1e-5)  # one output: each row bare
    sagemaker = httpx.post(f"{torch_server.url}/invocations", json={"instances": SENTENCES[:1]},
                           headers={"X-Amzn-SageMaker-Target-Model": "minilm"}, timeout=60)
    assert sagemaker.status_code == 200, sagemaker.text
    assert np.allclose(sagemaker.json()["predictions"][0], expected[0], atol=1e-5)


def test_minilm_over_grpc_with_bytes_tensors_raw_and_typed(torch_server, expected):
    import tritonclient.grpc as triton_grpc

    with triton_grpc.InferenceServerClient(torch_server.grpc) as client:
        text = triton_grpc.InferInput("text", [3], "BYTES")
        text.set_data_from_numpy(np.array(SENTENCES, dtype=object))
        assert np.allclose(client.infer("minilm", [text]).as_numpy("embedding"), expected, atol=1e-5)
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name="minilm")
    request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(SENTENCES[0].encode())
    with grpc.insecure_channel(torch_server.grpc) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert np.allclose(response.outputs[0].contents.fp32_contents, expected[0], atol=1e-5)


def test_minilm_rejects_numbers_with_a_4xx(torch_server):
    body = {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}
    response = httpx.post(f"{torch_server.url}/v2/models/minilm/infer", json=body, timeout=60)
    assert response.status_code == 400 and "text" in response.json()["error"]


def test_digits_torch_answers_like_the_scikit_learn_digits_on_every_protocol(torch_server):
    v2 = httpx.post(f"{torch_server.url}/v2/models/digits-torch/infer", timeout=60, json={
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [20, 64], "data": X_TEST[:20].ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert np.mean(np.array(outputs["label"]["data"]) == Y_TEST[:20]) >= 0.9
    assert outputs["probabilities"]["shape"] == [20, 10]
    v1 = httpx.post(f"{torch_server.url}/v1/models/digits-torch:predict", json={"instances": X_TEST[:3].tolist()})
    assert [p["label"] for p in v1.json()["predictions"]] == outputs["label"]["data"][:3]
    metadata = httpx.get(f"{torch_server.url}/v2/models/digits-torch").json()
    assert metadata["platform"] == "pytorch_libtorch" and metadata["parameters"]["size_bytes"] > 10_000


def calls(text: str, model: str) -> float:
    match = re.search(rf'^pallet_batch_rows_count\{{model="{model}",version="1"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def _embed_concurrently(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return await asyncio.gather(*(client.post("/v2/models/minilm/infer", json={
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [SENTENCES[i % 3]]}]})
            for i in range(n)))


def test_concurrent_text_requests_batch_together_and_each_gets_its_own_row(torch_server, expected):
    before = calls(httpx.get(f"{torch_server.url}/metrics").text, "minilm")
    responses = asyncio.run(_embed_concurrently(torch_server.url, 24))
    text = httpx.get(f"{torch_server.url}/metrics").text
    after = calls(text, "minilm")
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert np.allclose(response.json()["outputs"][0]["data"], expected[i % 3], atol=1e-4)
    assert 1 <= after - before < 24
    size = re.search(r'^pallet_model_size_bytes\{model="minilm",version="1"\} (\S+)$', text, re.M)
    assert size and float(size.group(1)) > 80e6


def test_minilm_exports_to_onnx_and_int8_keeping_its_tokenizer(torch_store, expected):
    from pallet.errors import NoRuntime
    from pallet.export import export
    from pallet.export.optimize import quantize

    ref, report = export(torch_store, "minilm", "onnx")
    onnx = torch_store.resolve(ref)
    assert onnx.manifest.runtime == "sentence" and onnx.manifest.runtime_options["backend"] == "onnx"
    assert "encoder/tokenizer.json" in onnx.manifest.files and "encoder/model.safetensors" not in onnx.manifest.files
    assert report.parity.data == "its sample and sentences" and report.parity.rows == 243
    assert report.parity.agreement == 1.0 and report.parity.max_abs_diff < 1e-4
    ref, report = quantize(torch_store, str(ref), "int8")
    int8 = torch_store.resolve(ref)
    assert int8.manifest.size_bytes < onnx.manifest.size_bytes / 3
    assert report.parity.agreement > 0.85  # cosine >= 0.99 for most sentences (89% when recorded)
    embedding = load_runtime(int8).predict({"text": np.array(SENTENCES, dtype=object)})["embedding"]
    cosine = np.sum(embedding * expected, axis=1)  # both L2-normalised
    assert cosine.min() > 0.97
    with pytest.raises(NoRuntime, match="needs more than an ONNX graph"):
        export(torch_store, "minilm", "web")


def test_a_one_column_dataframe_of_text_is_read_as_pandas_writes_it(torch_server, expected):
    body = {"dataframe_split": {"columns": ["text"], "index": [0, 1], "data": [[SENTENCES[0]], [SENTENCES[1]]]},
            "params": {"ignored": True}}
    response = httpx.post(f"{torch_server.url}/invocations", json=body,
                          headers={"X-Amzn-SageMaker-Target-Model": "minilm"}, timeout=60)
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["predictions"], expected[:2], atol=1e-5)
    azure = httpx.post(f"{torch_server.url}/score?model=minilm", timeout=60,
                       json={"input_data": {"columns": ["text"], "data": [[SENTENCES[2]]]}})
    assert azure.status_code == 200 and np.allclose(azure.json(), expected[2:], atol=1e-5)
