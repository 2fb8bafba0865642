"""Azure ML's scoring contract and MLflow's scoring protocol, with a real client against a real server,
on the demo models and on a model trained on a DataFrame with named columns."""

import re

import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import pallet
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer

IRIS = load_iris().data[[0, 149]].tolist()
FRAME = load_iris(as_frame=True)
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DEPLOY = {"azureml-model-deployment": "iris"}


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A server with one model trained on a DataFrame: its inputs are its named columns."""
    x = FRAME.data.set_axis(COLUMNS, axis=1)
    model = LogisticRegression(max_iter=1000).fit(x, FRAME.target)
    store = Store(tmp_path_factory.mktemp("named") / "home")
    pallet.save(model, "iris-named", sample=x.head(3), store=store)
    with RunningServer(create_app(ServeConfig(models=["iris-named"], access_log=False), store)) as running:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            yield client


def shuffled(rows: list[list[float]]) -> tuple[list[str], list[list[float]]]:
    """The columns in another order than training, and the rows to match."""
    order = [2, 0, 3, 1]
    return [COLUMNS[i] for i in order], [[row[i] for i in order] for row in rows]


def test_a_dataframe_sample_keeps_its_column_names_in_the_signature(named):
    description = named.get("/v2/models/iris-named").json()
    assert [t["name"] for t in description["inputs"]] == COLUMNS
    assert all(t["shape"] == [-1] and t["datatype"] == "FP64" for t in description["inputs"])


@pytest.mark.parametrize("body", [
    {"input_data": {"columns": COLUMNS, "index": [0, 1], "data": IRIS}},
    {"input_data": IRIS},
    {"data": IRIS},
], ids=["split", "rows", "classic"])
def test_azure_score_shapes_answer_a_list_of_predictions(client, body):
    response = client.post("/score", json=body, headers=DEPLOY)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert isinstance(answer, list) and [p["label"] for p in answer] == [0, 2]
    assert len(answer[0]["probabilities"]) == 3


def test_azure_model_is_picked_by_header_or_query(client):
    by_query = client.post("/score?model=iris", json={"data": IRIS})
    assert by_query.status_code == 200 and [p["label"] for p in by_query.json()] == [0, 2]
    neither = client.post("/score", json={"data": IRIS})
    assert neither.status_code == 400 and "azureml-model-deployment header or ?model=" in neither.json()["error"]
    unknown = client.post("/score", json={"data": IRIS}, headers={"azureml-model-deployment": "nosuch"})
    assert unknown.status_code == 404 and "model 'nosuch' is not loaded" in unknown.json()["error"]


def test_azure_split_routes_named_columns_in_any_order(named):
    columns, rows = shuffled(IRIS)
    response = named.post("/score", json={"input_data": {"columns": columns, "index": [7, 8], "data": rows}})
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()] == [0, 2]


def test_liveness_at_the_root_as_kserve_answers_and_the_page_for_browsers(client):
    probe = client.get("/")
    assert probe.status_code == 200 and probe.json() == {"status": "alive"}
    assert probe.headers["content-type"] == "application/json"
    assert client.head("/").status_code == 200
    page = client.get("/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html") and "<html" in page.text.lower()


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": ["a", "b", "c", "d"], "index": [0, 1], "data": IRIS}},
    {"dataframe_records": [{"input": IRIS[0]}, {"input": IRIS[1]}]},
    {"instances": IRIS},
    {"inputs": IRIS},
], ids=["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_mlflow_json_shapes_on_invocations(client, body):
    response = client.post("/invocations", json=body, headers={"X-Amzn-SageMaker-Target-Model": "iris"})
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == [0, 2]


def test_mlflow_csv_and_named_columns(named):
    columns, rows = shuffled(IRIS)
    csv_body = ",".join(columns) + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n"
    response = named.post("/invocations", content=csv_body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == [0, 2]
    records = [dict(zip(columns, row)) for row in rows]
    for body in ({"dataframe_split": {"columns": columns, "data": rows}}, {"dataframe_records": records},
                 {"instances": records}):
        answer = named.post("/invocations", json=body)
        assert answer.status_code == 200 and [p["label"] for p in answer.json()["predictions"]] == [0, 2], body
    v1 = named.post("/v1/models/iris-named:predict", json={"instances": records})
    assert [p["label"] for p in v1.json()["predictions"]] == [0, 2]


@pytest.mark.parametrize("path, body, message", [
    ("/invocations", {"dataframe_split": {"columns": COLUMNS[:3], "data": [r[:3] for r in IRIS]}},
     "missing column(s) petal_width"),
    ("/invocations", {"dataframe_split": {"columns": COLUMNS + ["colour"], "data": [r + [1] for r in IRIS]}},
     "unknown column(s) colour"),
    ("/invocations", {"dataframe_records": [{**dict(zip(COLUMNS, IRIS[0])), "colour": 1}]},
     "unknown input 'colour' in records[0]"),
    ("/invocations", {"dataframe_records": [dict(zip(COLUMNS[:3], IRIS[0]))]}, "has no 'petal_width'"),
    ("/invocations", {"dataframe_split": {"columns": COLUMNS, "data": IRIS, "orient": "split"}},
     'unknown key(s) orient'),
    ("/score", {"input_data": {"columns": COLUMNS[1:], "data": [r[1:] for r in IRIS]}},
     "missing column(s) sepal_length"),
    ("/score", {"input_data": {"columns": COLUMNS, "data": [IRIS[0][:3]]}}, "data[0] must be a list of 4 values"),
])
def test_named_columns_missing_or_unknown_are_a_4xx_naming_them(named, path, body, message):
    response = named.post(path, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.parametrize("path, body, message", [
    ("/invocations", {"columns": ["a"], "rows": IRIS},
     'a JSON object must be one of {"dataframe_split": ...}, {"dataframe_records": [...]}, {"instances": [...]}'),
    ("/invocations", {"dataframe_split": {"data": 5}}, '"dataframe_split": "data" must be a list of rows'),
    ("/score", {"instances": IRIS}, 'the body must be {"input_data": ...}'),
    ("/score", {"input_data": 5}, '"input_data" must be a non-empty list'),
    ("/score", {"data": []}, '"data" must be a non-empty list'),
    ("/score", [[1, 2, 3, 4]], 'the body must be {"input_data": ...}'),
    ("/score", {"input_data": {"columns": ["a", "b", "c", "d"]}}, '"input_data": "data" must be a list of rows'),
    ("/score", {"data": [[1, 2, 3]]}, "expected shape [-1, 4], got [1, 3]"),
])
def test_malformed_bodies_are_a_400_naming_what_is_accepted(client, path, body, message):
    response = client.post(path, json=body, headers={**DEPLOY, "X-Amzn-SageMaker-Target-Model": "iris"})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_mlflow_health_and_version_and_the_protocol_labels(client):
    health = client.get("/health")
    assert health.status_code == 200 and health.text == "\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", client.get("/version").text)
    client.post("/score", json={"data": IRIS}, headers=DEPLOY)
    client.post("/invocations", json={"dataframe_records": [{"input": IRIS[0]}]},
                headers={"X-Amzn-SageMaker-Target-Model": "iris"})
    client.post("/invocations", json={"instances": IRIS}, headers={"X-Amzn-SageMaker-Target-Model": "iris"})
    text = client.get("/metrics").text
    for protocol in ("azureml", "mlflow", "sagemaker"):
        assert re.search(rf'pallet_requests_total\{{model="iris",protocol="{protocol}",status="200",version="1"\}} '
                         r'[1-9]', text), protocol


def test_openapi_lists_both_formats(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/score", "/invocations", "/health", "/version"} <= set(paths)
    azure = paths["/score"]["post"]
    assert [p["name"] for p in azure["parameters"]] == ["azureml-model-deployment", "model"]
    assert "input_data" in str(azure["requestBody"]) and "dataframe_split" in str(paths["/invocations"])


def test_mlflow_own_scoring_client_works_unchanged(named):
    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    host, port = named.base_url.host, named.base_url.port
    client = ScoringServerClient(host, port)
    client.ping()
    assert client.get_version() == named.get("/version").text
    columns, rows = shuffled(IRIS)
    frame = pd.DataFrame(rows, columns=columns)  # another column order than training
    predictions = client.invoke(frame).get_predictions(predictions_format="dataframe")
    assert predictions["label"].tolist() == [0, 2]


def test_azure_deployment_header_naming_a_deployment_is_fine_with_one_model(named):
    response = named.post("/score", json={"input_data": {"columns": COLUMNS, "data": IRIS}},
                          headers={"azureml-model-deployment": "blue"})
    assert response.status_code == 200 and [p["label"] for p in response.json()] == [0, 2]


def test_probes_stay_open_with_auth(demo_store, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    config = ServeConfig(models=["iris"], auth=True, access_log=False)
    with RunningServer(create_app(config, demo_store)) as server:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").json() == {"status": "alive"} and client.get("/health").status_code == 200
            assert client.get("/", headers={"Accept": "text/html"}).status_code == 401
            assert client.post("/score", json={"data": IRIS}).status_code == 401
