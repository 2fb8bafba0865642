"""Open Inference Protocol (KServe V2) against a real server: httpx and tritonclient."""

import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_digits, load_iris

X, Y = load_digits(return_X_y=True)
IRIS = load_iris().data


def tensor(data, datatype="FP64", name="input", shape=None):
    array = np.asarray(data)
    return {"name": name, "shape": list(shape or array.shape), "datatype": datatype, "data": array.tolist()}


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "pallet" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata(client):
    meta = client.get("/v2/models/digits-onnx").json()
    assert meta["name"] == "digits-onnx" and meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"label": "INT64", "probabilities": "FP32"}
    assert client.get("/v2/models/iris/versions/1").json()["inputs"][0]["shape"] == [-1, 4]
    assert client.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 200


@pytest.mark.parametrize("path", ["/v2/models/digits/infer", "/v2/models/digits/versions/1/infer"])
def test_infer_json(client, path):
    body = {"id": "req-1", "inputs": [tensor(X[:3].reshape(-1), shape=[3, 64])], "parameters": {"x": 1}}
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["model_name"], out["model_version"], out["id"]) == ("digits", "1", "req-1")
    outputs = {o["name"]: o for o in out["outputs"]}
    assert outputs["label"] == {"name": "label", "datatype": "INT64", "shape": [3], "data": Y[:3].tolist()}
    assert outputs["probabilities"]["shape"] == [3, 10] and len(outputs["probabilities"]["data"]) == 30


def test_nested_data_and_other_datatypes_convert(client):
    body = {"inputs": [tensor(IRIS[:2].astype(np.float32), "FP32")]}  # the model wants FP64: converted
    out = client.post("/v2/models/iris/infer", json=body).json()
    assert out["outputs"][0]["data"] == [0, 0]
    body = {"inputs": [tensor(X[:1].astype(np.int64), "INT64")]}
    assert client.post("/v2/models/digits-onnx/infer", json=body).json()["outputs"][0]["data"] == [0]


def test_requested_outputs_only(client):
    body = {"inputs": [tensor(IRIS[:1])], "outputs": [{"name": "probabilities"}]}
    out = client.post("/v2/models/iris/infer", json=body).json()
    assert [o["name"] for o in out["outputs"]] == ["probabilities"]


def test_binary_extension_by_hand(client):
    rows = X[:2].astype(np.float32)
    header = json.dumps({"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": rows.nbytes}}],
                         "outputs": [{"name": "label", "parameters": {"binary_data": True}},
                                     {"name": "probabilities"}]}).encode()
    response = client.post("/v2/models/digits-onnx/infer", content=header + rows.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header)),
                                    "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    doc = json.loads(response.content[:size])
    label = doc["outputs"][0]
    assert label["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(response.content[size:], dtype="<i8").tolist() == Y[:2].tolist()
    assert len(doc["outputs"][1]["data"]) == 20  # JSON where not asked for binary


@pytest.fixture
def triton_client(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def test_tritonclient_health_and_metadata(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready("digits") and triton_client.is_model_ready("digits", "1")
    assert triton_client.get_server_metadata()["name"] == "pallet"
    assert triton_client.get_model_metadata("digits-onnx")["inputs"][0]["datatype"] == "FP32"
    assert {m["name"] for m in triton_client.get_model_repository_index()} == {"digits", "iris", "digits-onnx"}


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer(triton_client, binary):
    rows = X[:8].astype(np.float32)
    data = triton.InferInput("input", list(rows.shape), "FP32")
    data.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput("label", binary_data=binary),
               triton.InferRequestedOutput("probabilities", binary_data=binary)]
    result = triton_client.infer("digits-onnx", [data], outputs=outputs, request_id="t-1")
    assert result.as_numpy("label").tolist() == Y[:8].tolist()
    assert result.as_numpy("probabilities").shape == (8, 10)
    assert result.as_numpy("probabilities").dtype == np.float32
    assert result.get_response()["id"] == "t-1"


def test_tritonclient_default_outputs_come_back_binary(triton_client):
    data = triton.InferInput("input", [2, 64], "FP64")
    data.set_data_from_numpy(X[:2])
    result = triton_client.infer("digits", [data], model_version="1")
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    assert result.as_numpy("label").tolist() == Y[:2].tolist()
    assert result.as_numpy("label").dtype == np.int64


def test_tritonclient_errors_are_readable(triton_client):
    from tritonclient.utils import InferenceServerException

    data = triton.InferInput("input", [1, 3], "FP32")
    data.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 64\], got \[1, 3\]"):
        triton_client.infer("digits-onnx", [data])


def test_binary_bytes_tensor(client):
    raw = b"".join(struct.pack("<I", len(s)) + s for s in (b"a", b"bc"))
    header = json.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    response = client.post("/v2/models/iris/infer", content=header + raw,
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400
    assert "expected numbers (float64), got" in response.json()["error"]


def body(**override):
    doc = {"inputs": [tensor(IRIS[:1])]}
    doc.update(override)
    return doc


@pytest.mark.parametrize(
    "model, payload, status, message",
    [
        ("iris", b"{not json", 400, "request body is not valid JSON"),
        ("iris", b"", 400, "request body is empty"),
        ("iris", b"[1, 2]", 400, "must be a JSON object with 'inputs'"),
        ("iris", {"id": "x"}, 400, "'inputs' must be a non-empty list"),
        ("iris", {"inputs": []}, 400, "'inputs' must be a non-empty list"),
        ("iris", {"inputs": [{"shape": [1]}]}, 400, "inputs[0] must be an object with a string 'name'"),
        ("nosuch", body(), 404, "model 'nosuch' is not loaded on this server; loaded: digits, digits-onnx, iris"),
        ("iris", {"inputs": [tensor(IRIS[:1], name="features")]}, 400, "unknown input 'features'; this model takes: input"),
        ("iris", {"inputs": [tensor([1.0, 2, 3, 4], shape=[2, 4])]}, 400, "shape [2, 4] needs 8 values, 'data' has 4"),
        ("iris", {"inputs": [tensor([[1.0, 2, 3]])]}, 400, "input 'input': expected shape [-1, 4], got [1, 3]"),
        ("iris", {"inputs": [tensor([["a", "b", "c", "d"]], "FP64")]}, 400, "expected numbers (float64), got text"),
        ("iris", {"inputs": [tensor([[1.5, 2, 3, 4]], "INT64")]}, 400, "datatype INT64 expects integers"),
        ("iris", {"inputs": [tensor([[1, 2, 3, 400]], "INT8")]}, 400, "out of range for int8"),
        ("iris", {"inputs": [tensor([[1, 2, 3, 4]], "FP8")]}, 400, "unknown datatype 'FP8'"),
        ("iris", {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64"}]}, 400, "missing 'data'"),
        ("iris", {"inputs": [{"name": "input", "data": [1, 2, 3, 4], "datatype": "FP64"}]}, 400, "missing 'shape'"),
        ("iris", {"inputs": [tensor(np.zeros((0, 4)))]}, 400, "input 'input' is an empty batch"),
        ("iris", {"inputs": [tensor(np.zeros((501, 4)))]}, 400, "the request has 501 rows; this server takes at most 500"),
        ("iris", {"inputs": [tensor(IRIS[:1]), tensor(IRIS[:1])]}, 400, "input 'input' is given twice"),
        ("iris", body(outputs=[{"name": "score"}]), 400, "unknown output 'score' requested"),
        ("iris", body(id=7), 400, "'id' must be a string"),
        ("iris", {"inputs": [tensor([1.0] * 4, shape=[1] * 33)]}, 400, "at most 32 are supported"),
        ("iris", {"inputs": [tensor([], shape=[0, 2**61, 2**61])]}, 400, "input 'input'"),
        ("iris", body(outputs=[{"name": "label", "parameters": {"top_k": 3}}]), 400,
         "output 'label': parameter 'top_k' is not supported (only binary_data, classification)"),
        ("iris", body(outputs=[{"name": "label", "parameters": {"classification": 3}}]), 400,
         "output 'label' of model 'iris' (int64[-1]) holds no class scores"),
        ("iris", body(outputs=[{"name": "probabilities", "parameters": {"classification": 0}}]), 400,
         "output 'probabilities': 'classification' must be a whole number of classes, at least 1"),
        ("iris", body(parameters=[1]), 400, "'parameters' must be an object"),
    ],
)
def test_bad_requests_get_a_clear_4xx(client, model, payload, status, message):
    if isinstance(payload, bytes):
        response = client.post(f"/v2/models/{model}/infer", content=payload, headers={"Content-Type": "application/json"})
    else:
        response = client.post(f"/v2/models/{model}/infer", json=payload)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_nan_in_binary_data_is_refused(client):
    rows = np.array([[5.1, np.nan, 1.4, 0.2]])
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                     "parameters": {"binary_data_size": rows.nbytes}}]}).encode()
    response = client.post("/v2/models/iris/infer", content=header + rows.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400
    assert "contains NaN or infinity (row 0)" in response.json()["error"]


def test_nan_and_infinity_literals_are_not_json(client):
    response = client.post("/v2/models/iris/infer", headers={"Content-Type": "application/json"},
                           content=b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[NaN,1,1,Infinity]}]}')
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_binary_sizes_that_do_not_add_up(client):
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 32}}]}).encode()
    response = client.post("/v2/models/iris/infer", content=header + b"\x00" * 40,
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "8 bytes of binary data follow" in response.json()["error"]
    for length in ("99999", "\xb2".encode("latin-1"), "-1"):
        response = client.post("/v2/models/iris/infer", content=header,
                               headers={"Inference-Header-Content-Length": length})
        assert response.status_code == 400 and "does not fit a body" in response.json()["error"]


def test_unknown_version_and_wrong_content_type(client):
    response = client.post("/v2/models/iris/versions/7/infer", json=body())
    assert response.status_code == 404
    assert response.json()["error"] == "model 'iris' has no version '7' loaded; loaded versions: 1"
    response = client.post("/v2/models/iris/infer", content=b"a=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "send application/json" in response.json()["error"]
    assert client.get("/v2/models/nosuch/ready").status_code == 404
