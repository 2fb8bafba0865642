"""Rollouts on a live server under a real client's steady load (127.0.0.1, bounded)."""

import importlib
import json
import logging
import sys
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import pallet
from pallet.cli import app
from pallet.rollout import Rollouts, Thresholds
from pallet.rollout.state import RolloutState
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer, wait_for

USER_MODULE = '''
import joblib
import numpy as np


class Wrapped:
    """The digits classifier, changed by `answer`; kept in artifacts/model.joblib."""

    def __init__(self, model=None):
        self.model = model

    def save(self, path):
        joblib.dump(self.model, path / "model.joblib")

    @classmethod
    def load(cls, path):
        return cls(joblib.load(path / "model.joblib"))

    def predict(self, inputs):
        x = inputs["input"]
        return {"label": self.answer(x, self.model.predict(x))}


class Flaky(Wrapped):
    """Right where it answers, but fails on every row whose pixel 21 is brighter than 12."""

    def answer(self, x, label):
        if (x[:, 21] > 12).any():
            raise ValueError("pixel 21 is too bright for this version")
        return label


class Shifted(Wrapped):
    """Never fails, and answers the next digit over: always wrong."""

    def answer(self, x, label):
        return (label + 1) % 10
'''


@pytest.fixture(scope="module")
def rollout_store(tmp_path_factory):
    """digits:1 (production) and digits:2 (the same model, a good candidate); digits:3 fails on a third of
    the inputs; digits:4 disagrees with digits:1 on every input."""
    root = tmp_path_factory.mktemp("rollouts")
    (root / "rollout_models.py").write_text(USER_MODULE)
    sys.path.insert(0, str(root))
    models = importlib.import_module("rollout_models")
    x, y = load_digits(return_X_y=True)
    classifier = LogisticRegression(max_iter=500).fit(x[:1000], y[:1000])
    store = Store(root / "home")
    safe = x[x[:, 21] <= 12][:5]  # the flaky version answers its own sample
    pallet.save(classifier, "digits", sample=safe, aliases=["production"], store=store)
    pallet.save(classifier, "digits", sample=safe, store=store)
    pallet.save(models.Flaky(classifier), "digits", sample=safe, store=store)
    pallet.save(models.Shifted(classifier), "digits", sample=safe, store=store)
    yield store
    sys.path.remove(str(root))


@pytest.fixture
def live(rollout_store):
    """A server following the rollout state every 0.2 s, with no rollout to begin with."""
    _clear(rollout_store)
    config = ServeConfig(models=["digits@production"], rollout_poll=0.2)
    with RunningServer(create_app(config, rollout_store)) as server:
        yield server


def _clear(store: Store) -> None:
    """No rollout, no history, no figures, digits:1 @production: each test starts from the models alone."""
    RolloutState(store.index.engine)  # the tables exist
    with store.index.engine.begin() as conn:
        for table in ("pallet_rollout_figures", "pallet_rollout_events", "pallet_rollouts"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    store.tag("digits:1", "production")  # a promotion in an earlier test moved it with the traffic


class Load:
    """Clients sending digits rows one per request until stopped (each at most `limit` requests)."""

    def __init__(self, url: str, clients: int = 4, limit: int = 3000, headers=None):
        x, _ = load_digits(return_X_y=True)
        self.rows = x
        self.url = url
        self.limit = limit
        self.headers = headers or {}
        self.stop = threading.Event()
        self.results: list[tuple[int, str | None, int]] = []   # (status, version answering, row)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for _ in range(self.limit):
                if self.stop.is_set():
                    return
                row = int(rng.integers(len(self.rows)))
                body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64",
                                    "data": self.rows[row].tolist()}]}
                try:
                    r = client.post("/v2/models/digits/infer", json=body, headers=self.headers)
                    answer = (r.status_code, r.headers.get("x-model-version"), row)
                except httpx.HTTPError:
                    answer = (0, None, row)
                with self.lock:
                    self.results.append(answer)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def recent(self, n: int) -> list[tuple[int, str | None, int]]:
        with self.lock:
            return self.results[-n:]


def test_promote_and_rollback_under_load_fail_no_request(live, rollout_store):
    rollouts = Rollouts(rollout_store, actor="test")
    with Load(live.url) as load, httpx.Client(base_url=live.url) as client:
        wait_for(lambda: len(load.recent(50)) == 50, what="load to start")
        rollouts.promote("digits", "digits:2")
        wait_for(lambda: {v for _, v, _ in load.recent(30)} == {"2"}, what="digits:2 to answer everything")
        wait_for(lambda: client.get("/v2/models/digits/versions/1/ready").status_code == 404,
                 what="digits:1 to be retired")
        rollouts.rollback("digits", reason="test")
        wait_for(lambda: {v for _, v, _ in load.recent(30)} == {"1"}, what="digits:1 to answer everything again")
        rollouts.promote("digits", "digits:2")
        wait_for(lambda: {v for _, v, _ in load.recent(30)} == {"2"}, what="the second promotion")
        body = client.post("/v2/models/digits/infer", json={"inputs": [{"name": "input", "shape": [1, 64],
                           "datatype": "FP64", "data": [0] * 64}]}).json()
    statuses = Counter(status for status, _, _ in load.results)
    assert statuses == {200: len(load.results)}, statuses
    assert len(load.results) > 200
    assert body["model_version"] == "2"
    assert [e.action for e in rollouts.history("digits")] == ["promote", "rollback", "promote"]


def test_a_canary_to_a_good_version_reaches_100_percent(live, rollout_store):
    rollouts = Rollouts(rollout_store, actor="test")
    with Load(live.url):
        rollouts.start("digits", "digits:2", steps=[20, 60, 100], step_seconds=1.5, shadow_fraction=0.5,
                       thresholds=Thresholds(min_requests=15, min_compared=15, max_latency_ratio=3))
        final = wait_for(lambda: (r := rollouts.get("digits")).canary is None and r, what="the canary to end")
    events = rollouts.history("digits")
    assert final.stable == "2" and final.policy.shares() == {"2": 100.0}, [e.reason for e in events]
    actions = [e.action for e in events if e.action != "hold"]
    assert actions == ["start", "advance", "promote"]
    assert "agreement 100.0%" in events[-1].reason and "canary complete" in events[-1].reason


@pytest.mark.parametrize("bad, reason", [("digits:3", "candidate error rate"),
                                         ("digits:4", "candidate agrees with the baseline on 0.0%")])
def test_a_canary_to_a_bad_version_rolls_back_by_itself(live, rollout_store, bad, reason):
    rollouts = Rollouts(rollout_store, actor="test")
    with Load(live.url) as load:
        rollouts.start("digits", bad, steps=[30, 100], step_seconds=30, shadow_fraction=0.5,
                       thresholds=Thresholds(min_requests=15, min_compared=15))
        final = wait_for(lambda: (r := rollouts.get("digits")).canary is None and r, what="the rollback")
        wait_for(lambda: {v for _, v, _ in load.recent(20)} == {"1"}, what="digits:1 to answer everything")
    assert final.stable == "1" and final.policy.shares() == {"1": 100.0}
    last = rollouts.history("digits")[-1]
    assert last.action == "rollback" and last.actor.startswith("canary on ")
    assert reason in last.reason


def test_a_split_serves_its_shares_and_sticky_keys_stay_put(live, rollout_store):
    rollouts = Rollouts(rollout_store, actor="test")
    rollouts.split("digits", {"digits:1": 70, "digits:2": 30})
    with httpx.Client(base_url=live.url) as client:
        wait_for(lambda: _applied(client), what="the split")
        body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]}
        n = 600
        versions = Counter(client.post("/v2/models/digits/infer", json=body).headers["x-model-version"]
                           for _ in range(n))
        assert abs(versions["2"] / n - 0.30) < 0.08, versions   # 4.3 standard deviations

        rollouts.split("digits", {"digits:1": 50, "digits:2": 50}, sticky_key="X-User-ID")
        wait_for(lambda: _applied(client), what="the sticky split")
        first = {user: _version(client, body, user) for user in range(40)}
        again = {user: _version(client, body, user) for user in range(40)}
        v1 = client.post("/v1/models/digits:predict", json={"instances": [[0] * 64]}, headers={"X-User-ID": "7"})
    assert first == again
    assert set(first.values()) == {"1", "2"}
    assert v1.headers["x-model-version"] == first[7]


def _version(client, body, user) -> str:
    return client.post("/v2/models/digits/infer", json=body, headers={"X-User-ID": str(user)}).headers["x-model-version"]


def _applied(client) -> bool:
    status = client.get("/admin/rollouts/digits").json()
    return status["served_revision"] == status["revision"]


def test_shadow_never_changes_what_callers_receive(live, rollout_store):
    x, _ = load_digits(return_X_y=True)
    labels = pallet.load("digits:1", store=rollout_store).predict(x[:200])["label"]
    rollouts = Rollouts(rollout_store, actor="test")
    rollouts.shadow("digits", "digits:4", fraction=1.0)
    with httpx.Client(base_url=live.url) as client:
        wait_for(lambda: _applied(client), what="the shadow")
        answers = []
        for i in range(200):
            r = client.post("/v2/models/digits/infer", json={"inputs": [{"name": "input", "shape": [1, 64],
                            "datatype": "FP64", "data": x[i].tolist()}]})
            answers.append((r.status_code, r.headers["x-model-version"], r.json()["outputs"][0]["data"][0]))
        status = wait_for(lambda: (s := client.get("/admin/rollouts/digits").json())["versions"][1]["compared"] >= 150
                          and s, what="shadow figures to be counted")
    assert all(code == 200 and version == "1" for code, version, _ in answers)
    assert [label for _, _, label in answers] == labels.tolist()
    shadow = status["versions"][1]
    assert shadow["version"] == "4" and shadow["role"] == "shadow" and shadow["requests"] == 0
    assert shadow["agreement"] == 0.0 and shadow["shadow_errors"] == 0 and shadow["shadow_p95_ms"] > 0


@pytest.fixture
def guarded(rollout_store, monkeypatch):
    """A server whose admin endpoints need PALLET_API_KEY."""
    _clear(rollout_store)
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    config = ServeConfig(models=["digits@production"], rollout_poll=0.2)
    with RunningServer(create_app(config, rollout_store)) as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer s3cret"}) as client:
            yield server, client


def test_the_admin_api_runs_every_operation_behind_the_key(guarded):
    server, client = guarded
    anonymous = httpx.post(f"{server.url}/admin/rollouts/digits/promote", json={"to": "digits:2"})
    assert anonymous.status_code == 401 and "API key" in anonymous.json()["error"]
    assert httpx.get(f"{server.url}/admin/rollouts/digits").status_code == 401

    promoted = client.post("/admin/rollouts/digits/promote", json={"to": "digits:2", "reason": "retrained"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["stable"] == "2" and promoted.json()["versions"][0]["share"] == 100.0
    wait_for(lambda: _applied(client), what="the promotion")
    assert _predict_version(client) == "2"

    split = client.post("/admin/rollouts/digits/split", json={"weights": {"digits:1": 50, "digits:2": 50},
                                                               "sticky_key": "X-User-ID"})
    assert split.json()["mode"] == "split" and split.json()["sticky_key"] == "X-User-ID"
    shadow = client.post("/admin/rollouts/digits/shadow", json={"to": "digits:4", "fraction": 0.5})
    assert shadow.json()["shadow"] == {"version": "4", "fraction": 0.5}
    started = client.post("/admin/rollouts/digits/start", json={"to": "digits:4", "steps": [10, 100],
                                                                "step_seconds": 60, "min_requests": 5})
    assert started.status_code == 200 and started.json()["canary"]["thresholds"]["min_requests"] == 5
    again = client.post("/admin/rollouts/digits/start", json={"to": "digits:4"})
    assert again.status_code == 409 and "is running" in again.json()["error"]
    back = client.post("/admin/rollouts/digits/rollback", json={"reason": "enough"})
    assert back.json()["mode"] == "single" and back.json()["stable"] == "2"

    history = client.get("/admin/rollouts/digits/history").json()
    assert [e["action"] for e in history] == ["promote", "split", "shadow", "start", "rollback"]
    assert history[0]["actor"] == "http from 127.0.0.1" and history[0]["reason"] == "retrained"
    assert history[-1]["reason"] == "enough; back to digits:2"


@pytest.mark.parametrize("path, body, status, message", [
    ("promote", {}, 400, '"to" is required'),
    ("promote", {"to": 4}, 400, '"to" must be a string'),
    ("promote", {"to": None}, 400, '"to" is required'),
    ("start", {"to": "digits:2", "min_requests": 0}, 400, "min-requests must be a whole number"),
    ("split", {"weights": {"digits:2": True}}, 400, '"weights" must be an object'),
    ("promote", {"to": "digits:99"}, 404, "99"),
    ("promote", {"to": "iris:1"}, 400, "not of 'digits'"),
    ("promote", [1], 400, "JSON object"),
    ("split", {"weights": {"digits:2": "ten"}}, 400, '"weights" must be an object'),
    ("split", {"weights": {"digits:2": -1}}, 400, "weight must be a number >= 0"),
    ("start", {"to": "digits:2", "steps": []}, 400, '"steps" must be a non-empty list'),
    ("start", {"to": "digits:2", "steps": [0, 200]}, 400, "increasing percentages"),
    ("start", {"to": "digits:2", "max_error_rate": "low"}, 400, '"max_error_rate" must be a number'),
    ("shadow", {"to": "digits:2", "fraction": 2}, 400, "shadow fraction"),
    ("rollback", {}, 404, "has no rollout yet"),
])
def test_admin_mistakes_get_4xx_with_the_reason(guarded, path, body, status, message):
    _, client = guarded
    answer = client.post(f"/admin/rollouts/digits/{path}", json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_admin_status_of_a_name_without_rollout_is_404(guarded):
    _, client = guarded
    answer = client.get("/admin/rollouts/digits")
    assert answer.status_code == 404 and "no rollout yet" in answer.json()["error"]


def test_per_version_requests_are_in_metrics(live, rollout_store):
    Rollouts(rollout_store).split("digits", {"digits:1": 50, "digits:2": 50})
    with httpx.Client(base_url=live.url) as client:
        wait_for(lambda: _applied(client), what="the split")
        seen = Counter(_predict_version(client) for _ in range(60))
        metrics = client.get("/metrics").text
    for version in ("1", "2"):
        line = f'pallet_requests_total{{model="digits",protocol="v2",status="200",version="{version}"}}'
        counted = [float(l.split()[-1]) for l in metrics.splitlines() if l.startswith(line)]
        assert counted and counted[0] >= seen[version] > 0, (version, seen)


def _predict_version(client) -> str:
    r = client.post("/v2/models/digits/infer", json={"inputs": [{"name": "input", "shape": [1, 64],
                    "datatype": "FP64", "data": [0] * 64}]})
    assert r.status_code == 200
    assert r.json()["model_version"] == r.headers["x-model-version"]
    return r.headers["x-model-version"]


def test_a_split_that_gives_the_stable_version_nothing_still_answers_by_name(live, rollout_store):
    Rollouts(rollout_store).split("digits", {"digits:1": 0, "digits:2": 100})
    with httpx.Client(base_url=live.url) as client:
        wait_for(lambda: _applied(client), what="the split")
        wait_for(lambda: client.get("/v2/models/digits/versions/1/ready").status_code == 404, what="digits:1 retired")
        metadata = client.get("/v2/models/digits")
        v1 = client.post("/v1/models/digits:predict", json={"instances": [[0] * 64]})
        dashboard = client.get("/ui/api/dashboard")
    assert metadata.status_code == 200 and metadata.json()["versions"] == ["2"]
    assert v1.status_code == 200 and v1.headers["x-model-version"] == "2"
    assert dashboard.status_code == 200


def test_a_server_starts_and_answers_while_the_rollout_state_cannot_be_read(rollout_store, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    reachable = RolloutState.revisions

    def away(self, names):  # only this store's database is away; other servers in the process keep theirs
        if self.engine is not rollout_store.index.engine:
            return reachable(self, names)
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    _clear(rollout_store)
    monkeypatch.setattr(RolloutState, "revisions", away)
    # The server gives this logger a stderr handler of its own and stops it propagating (the first server in
    # the process does so at start-up): read its records through a handler on it alone, seen once each.
    logger = logging.getLogger("pallet.rollout")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    config = ServeConfig(models=["digits@production"], rollout_poll=0.2)
    try:
        with RunningServer(create_app(config, rollout_store)) as server, httpx.Client(base_url=server.url) as client:
            assert _predict_version(client) == "1"
            time.sleep(0.5)  # more polls fail: said once
    finally:
        logger.removeHandler(caplog.handler)
    failures = [r for r in caplog.records if "rollout sync failed" in r.getMessage()]
    assert len(failures) == 1 and "connection refused" in failures[0].getMessage()


def test_grpc_follows_the_sticky_split_as_rest_does(rollout_store):
    import tritonclient.grpc as triton_grpc

    from pallet.net import free_port

    _clear(rollout_store)
    config = ServeConfig(models=["digits@production"], rollout_poll=0.2, grpc_port=free_port(),
                         access_log=False)
    rollouts = Rollouts(rollout_store, actor="test")
    with RunningServer(create_app(config, rollout_store)) as server, httpx.Client(base_url=server.url) as client:
        rollouts.split("digits", {"digits:1": 50, "digits:2": 50}, sticky_key="X-User-ID")
        wait_for(lambda: _applied(client), what="the sticky split")
        body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]}
        rest = {user: _version(client, body, user) for user in range(30)}
        row = triton_grpc.InferInput("input", [1, 64], "FP64")
        row.set_data_from_numpy(np.zeros((1, 64)))
        with triton_grpc.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as grpc_client:
            grpc = {user: grpc_client.infer("digits", [row], headers={"x-user-id": str(user)}).get_response()
                    .model_version for user in range(30)}
    assert grpc == rest and set(rest.values()) == {"1", "2"}


def test_rollout_status_counts_requests_client_errors_and_failures_as_the_dashboard(live, rollout_store, monkeypatch):
    """digits:3 answers rows whose pixel 21 is 12 or less and fails (5xx) on the others; a wrong shape is the
    caller's mistake (4xx). `pallet rollout status` and the dashboard count the three alike; the error rate a
    canary judges is the model's failures only."""
    x, _ = load_digits(return_X_y=True)
    good, failing = x[x[:, 21] <= 12][:3], x[x[:, 21] > 12][:2]
    Rollouts(rollout_store, actor="test").promote("digits", "digits:3")
    with httpx.Client(base_url=live.url) as client:
        wait_for(lambda: _applied(client), what="the promotion")
        sent = Counter()
        for rows, width in ((good, 64), (failing, 64), (good[:2], 60)):
            for row in rows:
                body = {"inputs": [{"name": "input", "shape": [1, width], "datatype": "FP64",
                                    "data": row[:width].tolist()}]}
                sent[client.post("/v2/models/digits/infer", json=body).status_code // 100] += 1
        assert sent == {2: 3, 5: 2, 4: 2}, sent
        dashboard = wait_for(lambda: (d := client.get("/ui/api/dashboard").json())["models"][0]["figures"]["versions"]
                             .get("3", {}).get("requests") == 7 and d, what="the dashboard's figures")
        wait_for(lambda: Rollouts(rollout_store).status("digits")["versions"][0]["requests"] == 7,
                 what="the server to write its figures")
    monkeypatch.setenv("PALLET_HOME", str(rollout_store.home))
    monkeypatch.setenv("COLUMNS", "200")
    as_json = CliRunner().invoke(app, ["rollout", "status", "digits", "--json"])
    assert as_json.exit_code == 0, as_json.output
    (version,) = json.loads(as_json.stdout)["versions"]
    shown = dashboard["models"][0]["figures"]["versions"]["3"]
    keys = ("requests", "client_errors", "server_errors")
    assert {k: version[k] for k in keys} == {k: shown[k] for k in keys} == {"requests": 7, "client_errors": 2,
                                                                           "server_errors": 2}
    assert version["error_rate"] == pytest.approx(2 / 5)  # the model's failures of the requests it was asked
    text = CliRunner().invoke(app, ["rollout", "status", "digits"])
    header = next(line for line in text.stdout.splitlines() if "requests" in line)
    assert "client errors" in header and "failures" in header and " errors " not in header.replace("client errors", "")
