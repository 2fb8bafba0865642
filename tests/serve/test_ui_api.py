"""The JSON behind the prototype pages and the dashboard, and the feedback endpoints, over real HTTP."""

import textwrap

import httpx
import pytest

from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.ui.feedback import FeedbackLog
from tests.serve.conftest import RunningServer, store_of_classes

TOUCHY = textwrap.dedent('''
    class Touchy:
        """Doubles its input; fails (a model failure, not a bad request) on negative numbers."""

        @classmethod
        def load(cls, path):
            return cls()

        def predict(self, inputs):
            if (inputs["x"] < 0).any():
                raise ValueError("negative input")
            return {"y": inputs["x"] * 2}
''')

ROW = [0.0] * 64


def _feedback(**fields):
    return {"request_id": "req-1", "inputs": [ROW], "outputs": {"label": [3]}, "rating": "up", **fields}


def test_index_and_pages_are_html_with_their_assets(client):
    for path in ("/", "/ui/digits", "/dashboard"):
        response = client.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        for asset in ("/ui/static/pallet.css", "/ui/static/common.js"):
            assert asset in response.text
            assert client.get(asset).status_code == 200
    assert client.get("/ui/static/model.js").headers["content-type"].startswith(("text/javascript",
                                                                                  "application/javascript"))
    missing = client.get("/ui/nope")
    assert missing.status_code == 404 and "model &#x27;nope&#x27; is not loaded" in missing.text


def test_model_description_comes_from_the_signature(client):
    d = client.get("/ui/api/models/digits").json()
    assert (d["name"], d["version"], d["versions"]) == ("digits", "1", ["1"])
    (spec,) = d["inputs"]
    assert spec["kind"] == "image" and spec["image"] == {"height": 8, "width": 8, "channels": 1}
    assert (spec["min"], spec["max"]) == (0.0, 16.0) and len(spec["sample"]) == 5 and len(spec["sample"][0]) == 64
    outputs = {o["name"]: o for o in d["outputs"]}
    assert outputs["label"]["kind"] == "label"
    assert outputs["probabilities"]["kind"] == "probabilities" and outputs["probabilities"]["labels"] == list(range(10))
    iris = client.get("/ui/api/models/iris").json()
    assert iris["inputs"][0]["kind"] == "numbers" and "image" not in iris["inputs"][0]
    assert client.get("/ui/api/models/nope").status_code == 404


def test_models_summary_lists_loaded_models(client):
    rows = {m["name"]: m for m in client.get("/ui/api/models").json()}
    assert set(rows) == {"digits", "iris", "digits-onnx"}
    assert rows["digits"]["metrics"]["accuracy"] > 0.9 and rows["digits"]["size_bytes"] > 0
    assert set(rows["digits"]["feedback"]) == {"total", "up", "down"}


def test_feedback_is_stored_and_listed(client, demo_store):
    response = client.post("/v2/models/digits/feedback", json=_feedback(rating="down", correct=7, comment=" no "))
    assert response.status_code == 201
    record_id = response.json()["id"]
    records = client.get("/v2/models/digits/feedback").json()["feedback"]
    mine = next(r for r in records if r["id"] == record_id)
    assert (mine["rating"], mine["correct"], mine["comment"], mine["version"]) == ("down", "7", "no", 1)
    assert mine["inputs"] == {"input": [ROW]} and mine["outputs"] == {"label": [3]}
    stored = FeedbackLog(demo_store.index.engine).records("digits")
    assert any(r["id"] == record_id and r["request_id"] == "req-1" for r in stored)
    by_version = client.post("/v2/models/digits/versions/1/feedback", json=_feedback())
    assert by_version.status_code == 201 and by_version.json()["version"] == "1"
    assert client.get("/v2/models/digits/versions/1/feedback?limit=1").json()["feedback"][0]["id"] == by_version.json()["id"]


@pytest.mark.parametrize(
    "body, message",
    [
        ([1, 2], "feedback must be a JSON object"),
        (_feedback(request_id=None), "feedback needs 'request_id'"),
        (_feedback(request_id="bad id with spaces"), "feedback needs 'request_id'"),
        (_feedback(rating="meh"), "'rating' must be 'up', 'down' or null"),
        (_feedback(rating=None), "needs a 'rating' ('up' or 'down'), a 'correct' answer or a 'comment'"),
        (_feedback(comment="x" * 4001), "'comment' is 4001 characters; at most 4000"),
        (_feedback(correct={"a": 1}), "'correct' must be text"),
        (_feedback(correct=True), "'correct' must be text"),
        (_feedback(comment="a\x00b"), "'comment' contains a NUL character"),
        ({"request_id": "r", "rating": "up", "outputs": {"label": [1]}}, "feedback needs 'inputs'"),
        (_feedback(inputs=[[1, 2]]), "input 'input': expected shape [-1, 64], got [1, 2]"),
        (_feedback(outputs={"nope": [1]}), "feedback needs 'outputs'"),
        (_feedback(version="9"), "model 'digits' has no version '9' loaded"),
    ],
)
def test_bad_feedback_is_a_400_naming_the_field(client, body, message):
    response = client.post("/v2/models/digits/feedback", json=body)
    assert response.status_code in (400, 404), response.text
    assert message in response.json()["error"]


def test_feedback_for_an_unknown_model_is_404(client):
    assert client.post("/v2/models/nope/feedback", json=_feedback()).status_code == 404
    assert client.get("/v2/models/nope/feedback").status_code == 404
    for query in ("?limit=0", "?limit=%C2%B2", "?limit=99999999999999999999999"):
        assert client.get(f"/v2/models/digits/feedback{query}").status_code == 400
    for version in ("99999999999999999999999", "%C2%B2"):
        assert client.get(f"/v2/models/digits/versions/{version}/feedback").status_code == 400


def test_reading_feedback_needs_the_admin_key_writing_does_not(start_server, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    server = start_server()
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/v2/models/iris/feedback", json={
            "request_id": "r1", "inputs": [[1, 2, 3, 4]], "outputs": {"label": [0]}, "rating": "up"}).status_code == 201
        assert client.get("/v2/models/iris/feedback").status_code == 401
        assert client.head("/v2/models/iris/feedback").status_code == 401
        listed = client.get("/v2/models/iris/feedback", headers={"Authorization": "Bearer s3cret"})
        assert listed.status_code == 200 and listed.json()["feedback"][-1]["request_id"] == "r1"


def test_dashboard_data_counts_requests_latency_and_feedback(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            client.post("/v2/models/iris/infer", json={"inputs": [
                {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}).raise_for_status()
        assert client.post("/v2/models/iris/infer", json={"inputs": []}).status_code == 400
        data = client.get("/ui/api/dashboard").json()
    rows = {m["name"]: m for m in data["models"]}
    figures = rows["iris"]["figures"]
    assert figures["requests"] == 4 and figures["client_errors"] == 1 and figures["server_errors"] == 0
    minute = figures["last_minute"]
    assert minute["requests"] == 4 and minute["client_errors"] == 1 and minute["p50_ms"] > 0
    assert rows["digits"]["figures"] is None or rows["digits"]["figures"]["requests"] == 0
    assert data["server"]["workers"] == 1


def _v2(values: list[float]) -> dict:
    return {"inputs": [{"name": "x", "shape": [1, len(values)], "datatype": "FP64", "data": values}]}


def status_counts(url: str, model: str) -> dict[str, float]:
    """pallet_requests_total of `model` in /metrics, added up by status class: '2xx', '4xx', '5xx'."""
    found: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("pallet_requests_total{") and f'model="{model}"' in line:
            status = line.split('status="')[1][0] + "xx"
            found[status] = found.get(status, 0) + float(line.split()[-1])
    return found


@pytest.fixture(scope="module")
def touchy_store(tmp_path_factory):
    return store_of_classes(tmp_path_factory, "touchymodel", TOUCHY, ("Touchy", "touchy"))


def test_dashboard_counts_client_errors_and_model_failures_apart_as_metrics_does(touchy_store):
    config = ServeConfig(models=["touchy"], access_log=False)
    with RunningServer(create_app(config, touchy_store)) as server, httpx.Client(base_url=server.url) as client:
        before = status_counts(server.url, "touchy")
        for values, status in [([1.0, 2.0], 200)] * 3 + [([1.0, 2.0, 3.0], 400)] * 2 + [([-1.0, 2.0], 500)] * 4:
            assert client.post("/v2/models/touchy/infer", json=_v2(values)).status_code == status
        assert client.post("/v2/models/nope/infer", json=_v2([1.0, 2.0])).status_code == 404
        data = client.get("/ui/api/dashboard").json()
        after = status_counts(server.url, "touchy")
    (row,) = data["models"]
    figures, minute = row["figures"], row["figures"]["last_minute"]
    for counted in (figures, figures["versions"]["1"], minute):  # the same three figures, the same meaning
        assert (counted["requests"], counted["client_errors"], counted["server_errors"]) == (9, 2, 4), counted
    assert data["no_model"]["client_errors"] == 1 and data["no_model"]["server_errors"] == 0
    delta = {status: after.get(status, 0) - before.get(status, 0) for status in ("2xx", "4xx", "5xx")}
    assert delta == {"2xx": 3, "4xx": figures["client_errors"], "5xx": figures["server_errors"]}


def test_share_token_in_the_url_sets_a_cookie_for_the_pages_calls(start_server):
    server = start_server(share_token="token-1234")
    with httpx.Client(base_url=server.url) as client:
        refused = client.get("/ui/api/models")
        assert refused.status_code == 401 and "?token=" in refused.json()["error"]
        assert client.get("/ui/api/models", headers={"X-Share-Token": "nope-nope"}).json()["error"] == "wrong share token"
        opened = client.get("/?token=token-1234", headers={"Accept": "text/html"})  # a browser opening the link
        assert opened.status_code == 200 and f"pallet_token_{server.port}=token-1234" in opened.headers["set-cookie"]
        assert client.get("/ui/api/models").status_code == 200  # the cookie now carries it
        assert client.get("/ping").status_code == 200


def test_a_team_folder_never_serves_hidden_files(start_server, tmp_path):
    (tmp_path / "index.html").write_text("<title>ours</title>")
    (tmp_path / ".env").write_text("SECRET=1")
    server = start_server(ui=str(tmp_path))
    with httpx.Client(base_url=server.url) as client:
        assert "ours" in client.get("/").text
        assert client.get("/.env").status_code == 404
        assert client.get("/ui/").status_code == 200  # the built-in index moves to /ui/
