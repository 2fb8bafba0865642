"""KServe V1 / Vertex AI `instances` against a real server."""

import pytest
from sklearn.datasets import load_iris

IRIS = load_iris().data.tolist()


def test_predict_rows(client):
    response = client.post("/v1/models/iris:predict", json={"instances": IRIS[:2] + IRIS[-1:]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == [0, 0, 2]
    assert len(predictions[0]["probabilities"]) == 3
    assert abs(sum(predictions[0]["probabilities"]) - 1) < 1e-9


def test_predict_objects_keyed_by_input_name(client):
    response = client.post("/v1/models/iris:predict", json={"instances": [{"input": IRIS[0]}, {"input": IRIS[-1]}]})
    assert [p["label"] for p in response.json()["predictions"]] == [0, 2]


def test_inputs_is_accepted_like_instances(client):
    response = client.post("/v1/models/iris:predict", json={"inputs": IRIS[:1]})
    assert response.json()["predictions"][0]["label"] == 0


def test_status_and_listing(client):
    assert client.get("/v1/models/iris").json() == {"name": "iris", "ready": True}
    assert client.get("/v1/models").json() == {"models": ["digits", "digits-onnx", "iris"]}
    assert client.get("/v1/models/nosuch").status_code == 404


@pytest.mark.parametrize(
    "payload, status, message",
    [
        ({"rows": IRIS[:1]}, 400, 'a JSON object with "instances"'),
        ({"instances": []}, 400, '"instances" must be a non-empty list'),
        ({"instances": "x"}, 400, '"instances" must be a non-empty list'),
        ({"instances": [{"input": IRIS[0]}, IRIS[1]]}, 400, "mixes objects and rows"),
        ({"instances": [{"input": IRIS[0]}, {"x": 1}]}, 400, "instances[1] has no 'input'"),
        ({"instances": [{"input": IRIS[0], "extra": 1}]}, 400, "unknown input 'extra'"),
        ({"instances": [[1, 2, 3]]}, 400, "input 'input': expected shape [-1, 4], got [1, 3]"),
        ({"instances": [[1, 2, 3, 4], [1, 2]]}, 400, "rows have different lengths"),
        ({"instances": [[1, 2, "x", 4]]}, 400, "expected numbers (float64)"),
        ({"instances": [[1, 2, None, 4]]}, 400, "contains NaN or infinity"),
    ],
)
def test_bad_instances(client, payload, status, message):
    response = client.post("/v1/models/iris:predict", json=payload)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_unknown_model(client):
    response = client.post("/v1/models/nosuch:predict", json={"instances": IRIS[:1]})
    assert response.status_code == 404 and "model 'nosuch' is not loaded" in response.json()["error"]
