"""SageMaker's container contract and MLflow's scoring shapes on `/invocations` against a real server."""

import pytest
from sklearn.datasets import load_iris

IRIS = load_iris().data.tolist()
TARGET = {"X-Amzn-SageMaker-Target-Model": "iris"}


def test_ping(client):
    response = client.get("/ping")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": IRIS[:1] + IRIS[-1:]},
        IRIS[:1] + IRIS[-1:],
        {"inputs": IRIS[:1] + IRIS[-1:]},
        {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": IRIS[:1] + IRIS[-1:]}},
        {"dataframe_records": [{"input": IRIS[0]}, {"input": IRIS[-1]}]},
    ],
    ids=["instances", "rows", "mlflow-inputs", "mlflow-dataframe-split", "mlflow-records"],
)
def test_invocations_json_shapes(client, payload):
    response = client.post("/invocations", json=payload, headers=TARGET)
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == [0, 2]


def test_invocations_csv_in_csv_out(client):
    body = "\n".join(",".join(map(str, row)) for row in (IRIS[0], IRIS[-1])) + "\n"
    response = client.post("/invocations", content=body,
                           headers={**TARGET, "Content-Type": "text/csv", "Accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().split("\n")
    assert [line.split(",")[0] for line in lines] == ["0", "2"]
    assert len(lines[0].split(",")) == 4  # label, then the 3 class probabilities


def test_accept_with_q_zero_is_skipped(client):
    response = client.post("/invocations", json=IRIS[:1],
                           headers={**TARGET, "Accept": "text/csv;q=0, application/json"})
    assert response.json()["predictions"][0]["label"] == 0


def test_csv_in_json_out(client):
    response = client.post("/invocations", content="5.1,3.5,1.4,0.2\n",
                           headers={**TARGET, "Content-Type": "text/csv"})
    assert response.json()["predictions"][0]["label"] == 0


def test_target_model_header_picks_the_model(client):
    headers = {"X-Amzn-SageMaker-Target-Model": "digits-onnx.tar.gz"}
    response = client.post("/invocations", json=[[0.0] * 64], headers=headers)
    assert response.status_code == 200 and "label" in response.json()["predictions"][0]


@pytest.mark.parametrize(
    "headers, body, status, message",
    [
        ({}, b"[[1,2,3,4]]", 400, "this server has 3 models loaded (digits, digits-onnx, iris): name one in the "
                                  "X-Amzn-SageMaker-Target-Model header"),
        ({**TARGET, "Content-Type": "text/csv"}, b"1,2,3,4\n1,2,3\n", 400, "CSV line 2 has 3 fields; expected 4"),
        ({**TARGET, "Content-Type": "text/csv"}, b"1,2,3\n", 400, "expected shape [-1, 4], got [1, 3]"),
        ({**TARGET, "Content-Type": "text/csv"}, b"1,2,nan,4\n", 400, "contains NaN or infinity"),
        ({**TARGET, "Content-Type": "text/csv"}, b"", 400, "the CSV input has no rows"),
        ({**TARGET, "Content-Type": "application/xml"}, b"<x/>", 415, "send application/json or text/csv"),
        ({**TARGET, "Accept": "application/xml"}, b"[[1,2,3,4]]", 406, "accept application/json or text/csv"),
        ({**TARGET, "Content-Type": "application/json"}, b"{bad", 400, "input is not valid JSON"),
        ({"X-Amzn-SageMaker-Target-Model": "nosuch"}, b"[[1,2,3,4]]", 404, "model 'nosuch' is not loaded"),
        ({**TARGET, "Content-Type": "text/csv"}, b"\xff\xfe", 400, "not UTF-8 text"),
        ({**TARGET, "Content-Type": "text/csv"}, b"a,a,b,c\n1,2,3,4\n", 400, "names a column twice"),
        ({**TARGET, "Content-Type": "text/csv"}, b"1,2,3," + b"9" * 140000 + b"\n", 400, "cannot be read"),
        (TARGET, b"[" * 100000 + b"]" * 100000, 400, "not valid JSON"),
        (TARGET, b'[{"input": [1, 2, 3, 4], "extra": 1}]', 400, "unknown input 'extra' in records[0]"),
        (TARGET, b'{"dataframe_split": {"data": 5}}', 400, '"dataframe_split": "data" must be a list of rows'),
        (TARGET, b'{"dataframe_split": 5}', 400, '"dataframe_split" must be an object with "data"'),
    ],
)
def test_bad_invocations(client, headers, body, status, message):
    response = client.post("/invocations", content=body, headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
