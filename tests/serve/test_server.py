"""Server-wide behaviour: metrics, request ids, access log, limits, API keys, lifecycle, docs."""

import gzip
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from pallet.cli import app
from pallet.net import free_port, wait_ready
from pallet.store import Store
from tests.serve.conftest import stop, wait_for

IRIS = load_iris().data.tolist()
PALLET = str(Path(sys.executable).parent / "pallet")


def infer_iris(client, rows=1, **headers):
    return client.post("/v1/models/iris:predict", json={"instances": IRIS[:rows]}, headers=headers)


def test_request_id_is_echoed_or_made(client):
    assert infer_iris(client, **{"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = infer_iris(client).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    odd = infer_iris(client, **{"X-Request-ID": "x" * 500}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", odd)  # an unreasonable id is replaced, not echoed


def test_a_crash_answers_json_500_and_keeps_the_connection():
    from pallet.settings import ServeConfig
    from pallet.serve.middleware import RequestContext
    from tests.serve.conftest import RunningServer

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        if scope["path"] == "/boom":
            raise ZeroDivisionError("bug")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine"})

    with RunningServer(RequestContext(app, ServeConfig(access_log=False))) as running:
        with httpx.Client(base_url=running.url) as client:  # one keep-alive connection
            boom = client.get("/boom")
            assert boom.status_code == 500
            assert "internal error (ZeroDivisionError)" in boom.json()["error"]
            assert client.get("/fine").text == "fine"


def test_access_log_is_json_lines_with_model_version_latency_status(client, caplog):
    logger = logging.getLogger("pallet.access")
    logger.propagate = True  # let caplog see it
    try:
        with caplog.at_level(logging.INFO, logger="pallet.access"):
            infer_iris(client, **{"X-Request-ID": "log-me"})
            client.get("/v2/models/nosuch")
            # the line is written once the response has gone out: wait for it (bounded)
            wait_for(lambda: any(r.name == "pallet.access" and json.loads(r.getMessage())["status"] == 404
                                 for r in caplog.records), seconds=10, what="the 404's access-log line")
    finally:
        logger.propagate = False
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pallet.access"]
    mine = next(r for r in records if r["request_id"] == "log-me")
    assert (mine["model"], mine["version"], mine["status"], mine["protocol"]) == ("iris", "1", 200, "v1")
    assert mine["latency_ms"] > 0 and mine["path"] == "/v1/models/iris:predict"
    assert any(r["status"] == 404 and r["path"] == "/v2/models/nosuch" for r in records)


def test_metrics_count_requests_and_latency_per_model_version_protocol_status(client):
    def count(text, labels):
        match = re.search(r"^pallet_requests_total\{" + labels + r"\} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    ok = 'model="iris",protocol="v1",status="200",version="1"'
    bad = 'model="iris",protocol="v1",status="400",version="1"'
    unknown = 'model="",protocol="v1",status="404",version=""'
    before = client.get("/metrics").text
    infer_iris(client)
    infer_iris(client)
    client.post("/v1/models/iris:predict", json={"instances": [[1]]})
    client.post("/v1/models/random-name-1:predict", json={"instances": [[1]]})
    text = client.get("/metrics").text
    assert count(text, ok) - count(before, ok) == 2
    assert count(text, bad) - count(before, bad) == 1
    assert count(text, unknown) - count(before, unknown) == 1
    assert "random-name-1" not in text  # names a client makes up never become labels
    assert 'pallet_request_duration_seconds_bucket{le="0.005",model="iris",protocol="v1",version="1"}' in text
    assert re.search(r'^pallet_model_load_seconds\{model="digits",version="1"\} \d', text, re.M)
    assert "pallet_requests_in_flight" in text


def test_body_over_the_limit_is_413(start_server):
    server = start_server(max_body_mb=1000 / 2**20)
    with httpx.Client(base_url=server.url) as client:
        response = infer_iris(client, rows=100)
        assert response.status_code == 413
        assert "limit is 1000" in response.json()["error"]
        packed = gzip.compress(json.dumps({"instances": [IRIS[0]] * 200}).encode())
        assert len(packed) < 1000
        response = client.post("/v1/models/iris:predict", content=packed,
                               headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        assert response.status_code == 413 and "decompressed" in response.json()["error"]


def test_gzip_bodies_are_read(client):
    packed = gzip.compress(json.dumps({"instances": IRIS[:1]}).encode())
    response = client.post("/v1/models/iris:predict", content=packed,
                           headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.json()["predictions"][0]["label"] == 0
    csv = "".join(",".join(map(str, row)) + "\n" for row in IRIS[:100]).encode()
    gz = {"Content-Encoding": "gzip", "Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": "iris"}
    members = gzip.compress(csv[:1000]) + gzip.compress(csv[1000:])
    response = client.post("/invocations", content=members, headers=gz)
    assert len(response.json()["predictions"]) == 100  # every member is read
    truncated = gzip.compress(csv)[:-30]
    response = client.post("/invocations", content=truncated, headers=gz)
    assert response.status_code == 400 and "truncated gzip" in response.json()["error"]
    response = client.post("/v1/models/iris:predict", content=b"xx",
                           headers={"Content-Encoding": "br", "Content-Type": "application/json"})
    assert response.status_code == 415


def test_unknown_routes_and_methods_answer_json(client):
    response = client.get("/v3/nothing")
    assert response.status_code == 404 and "no endpoint GET /v3/nothing" in response.json()["error"]
    response = client.get("/v2/models/iris/infer")
    assert response.status_code == 405 and "GET is not allowed" in response.json()["error"]


def test_openapi_describes_every_endpoint_and_docs_render(client, server):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    for route in server.app.routes:
        path = getattr(route, "path", "")
        if path and not path.startswith(("/docs", "/ui/static")) and path not in ("/", "/openapi.json"):
            assert path in paths, f"{path} is missing from the OpenAPI description"
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["parameters"][0]["schema"]["enum"] == ["digits", "digits-onnx", "iris"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("InferenceRequest")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_repository_load_and_unload_need_the_key(start_server, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    server = start_server(models=["iris"])
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/v2/repository/models/digits/load").status_code == 401
        wrong = client.post("/v2/repository/models/digits/load", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and "wrong API key" in wrong.json()["error"]
        key = {"Authorization": "Bearer s3cret"}
        loaded = client.post("/v2/repository/models/digits/load", headers=key)
        assert loaded.json() == {"name": "digits", "version": "1", "state": "READY"}
        assert client.get("/v2/models/digits/ready").status_code == 200
        assert infer_iris(client).status_code == 200  # inference stays open without --auth
        assert client.post("/v2/repository/models/iris/unload", headers=key).status_code == 200
        gone = infer_iris(client)
        assert gone.status_code == 404 and "(it was unloaded)" in gone.json()["error"]
        index = client.get("/v2/repository/index", headers=key).json()
        assert {(m["name"], m["state"]) for m in index} == {("digits", "READY"), ("iris", "UNAVAILABLE")}
        missing = client.post("/v2/repository/models/nosuch/load", headers=key)
        assert missing.status_code == 404 and "no model named 'nosuch'" in missing.json()["error"]


def test_the_thread_plan_reaches_onnxruntime(start_server):
    server = start_server(models=["digits-onnx"], threads=1)
    session = server.app.state.plane.get("digits-onnx").runtime.session
    assert session.get_session_options().intra_op_num_threads == 1


def test_repository_changes_are_refused_with_several_workers(start_server):
    server = start_server(models=["iris"], workers=2)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/v2/repository/models/iris/unload")
        assert response.status_code == 409 and "would change only one of them" in response.json()["error"]
        assert client.get("/v2/repository/index").status_code == 200


def test_auth_guards_every_endpoint_but_probes(start_server, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "s3cret")
    server = start_server(auth=True)
    with httpx.Client(base_url=server.url) as client:
        assert infer_iris(client).status_code == 401
        assert client.get("/v2/models/iris").status_code == 401
        assert infer_iris(client, **{"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/ping").status_code == 200


def _serve(*args, env=None):
    return subprocess.Popen([PALLET, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _wait_ready(url, proc):
    wait_ready(url, proc)  # raises, with the server's stderr, when it exits first


def test_pallet_serve_with_two_workers_aggregates_metrics(demo_store, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve("digits@production", "iris", "--port", str(port), "--workers", "2", "--no-access-log",
                  env={"PALLET_HOME": str(demo_store.home), "PALLET_DB_URL": demo_store.db_url,
                       "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    try:
        _wait_ready(url, proc)
        with httpx.Client(base_url=url) as client:
            for _ in range(40):  # new connections spread over the workers
                with httpx.Client(base_url=url) as fresh:
                    assert infer_iris(fresh).status_code == 200
            text = client.get("/metrics").text
        total = re.search(r'^pallet_requests_total\{model="iris",protocol="v1",status="200",version="1"\} (\S+)$',
                          text, re.M)
        assert total and float(total.group(1)) == 40  # summed over both workers
        assert len(re.findall(r"^pallet_model_load_seconds\{model=\"iris\"", text, re.M)) == 1
        workers = {path.stem.rsplit("_", 1)[-1] for path in tmp_path.glob("gauge_max_*.db")}
        assert len(workers) == 2  # both worker processes loaded the models and wrote metrics
    finally:
        out, err = stop(proc)
    assert f"serving on {url} with 2 workers" in out
    from pallet.threads import available_cores

    per_worker = max(1, available_cores() // 2)
    assert f"threads   2 workers x {per_worker} thread" in out  # the cores shared between the workers
    assert f"{url}/v2/models/{{model}}/infer" in out and f"{url}/invocations" in out
    assert "Traceback" not in err


def test_pallet_serve_port_from_sagemaker_env(demo_store):
    port = free_port()
    proc = _serve("iris", env={"PALLET_HOME": str(demo_store.home), "PALLET_DB_URL": demo_store.db_url,
                               "SAGEMAKER_BIND_TO_PORT": str(port)})
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/ping").status_code == 200
    finally:
        stop(proc)


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuch"], "error: no model named 'nosuch'"),
        ([], "error: name at least one model to serve"),
        (["iris", "--workers", "0"], "error: Invalid value for '--workers'"),
        (["iris", "--port", "70000"], "error: Invalid value for '--port'"),
        (["iris", "--max-rows", "0"], "error: Invalid value for '--max-rows'"),
        (["iris", "--max-body-mb", "-1"], "error: Invalid value for '--max-body-mb'"),
        (["iris", "--host", "999.1.1.1"], "error: cannot listen on 999.1.1.1"),
        (["iris", "--auth"], "error: Invalid value: --auth needs the key in the PALLET_API_KEY"),
        (["iris", "--port", "notanumber"], "error: Invalid value for '--port'"),
        (["iris", "--ui", "/nonexistent"], "error: --ui /nonexistent: no index.html there"),
        (["iris", "--share-token", "short"], "error: --share-token must be 8 to 128 letters"),
        (["iris", "--port", "8123", "--grpc-port", "8123"], "error: --grpc-port 8123 is the REST port too"),
        (["iris", "--grpc-port", "70000"], "error: Invalid value for '--grpc-port'"),
    ],
)
def test_pallet_serve_mistakes_are_one_line(demo_store, monkeypatch, args, message):
    monkeypatch.delenv("PALLET_API_KEY", raising=False)
    result = _cli(demo_store, monkeypatch, "serve", *args)
    assert result.exit_code != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_bad_sagemaker_port_is_one_line(demo_store, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "abc")
    result = _cli(demo_store, monkeypatch, "serve", "iris")
    assert result.exit_code != 0
    assert "error: Invalid value: SAGEMAKER_BIND_TO_PORT must be a port number, got 'abc'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _cli(demo_store, monkeypatch, "models", "list").exit_code == 0  # other commands do not care


def test_pallet_serve_port_in_use(demo_store, server, monkeypatch):
    result = _cli(demo_store, monkeypatch, "serve", "iris", "--port", str(server.port))
    assert result.exit_code == 1
    assert f"error: cannot listen on 127.0.0.1:{server.port}: Address already in use" in result.stderr
    result = _cli(demo_store, monkeypatch, "serve", "iris", "--port", str(free_port()), "--grpc-port", str(server.port))
    assert result.exit_code == 1 and result.stderr.strip().endswith("pick another --grpc-port or --host")


def _cli(store, monkeypatch, *args):
    """`pallet ARGS` through typer's runner, in this process: for checks of its one error line."""
    monkeypatch.setenv("PALLET_HOME", str(store.home))
    monkeypatch.setenv("PALLET_DB_URL", store.db_url)
    return CliRunner().invoke(app, list(args))


def test_pallet_serve_on_every_interface_prints_shareable_urls(demo_store):
    port = free_port()
    proc = _serve("iris", "--host", "0.0.0.0", "--port", str(port), "--share-token", "new", "--no-access-log",
                  env={"PALLET_HOME": str(demo_store.home), "PALLET_DB_URL": demo_store.db_url})
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/ui/iris").status_code == 401
    finally:
        out, err = stop(proc)
    urls = re.findall(rf"(http://[0-9.]+:{port}/\?token=([A-Za-z0-9_-]+))", out)
    assert urls and any("127.0.0.1" in url for url, _ in urls), out
    assert len({token for _, token in urls}) == 1  # one token, made by 'new', on every printed address
    assert "dashboard             http://" in out and "/dashboard?token=" in out
    assert "Traceback" not in err


@pytest.fixture
def tampered_store(tmp_path):
    """iris as trained; digits with its model file changed after saving."""
    from pallet.demo import train_demo_models

    store = Store(tmp_path / "home")
    train_demo_models(store, torch_models=())
    model_file = store.resolve("digits").path / "model.joblib"
    model_file.chmod(0o644)
    model_file.write_bytes(model_file.read_bytes()[:-10] + b"tampered!!")
    return store


def test_a_tampered_artifact_stops_the_server_naming_the_model_and_the_file(tampered_store):
    done = subprocess.run([PALLET, "serve", "iris", "digits", "--port", str(free_port())], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PALLET_HOME": str(tampered_store.home),
                                                      "PALLET_DB_URL": tampered_store.db_url})
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: cannot serve digits: file model.joblib of ")
    assert "does not match its sha256" in done.stderr and "--skip-unloadable" in done.stderr


def test_skip_unloadable_serves_the_others_and_reports_the_tampered_one_not_ready(tampered_store):
    port = free_port()
    proc = subprocess.Popen([PALLET, "serve", "iris", "digits", "--skip-unloadable", "--port", str(port),
                             "--no-access-log"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PALLET_HOME": str(tampered_store.home),
                                 "PALLET_DB_URL": tampered_store.db_url})
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.post("/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200
            not_ready = client.get("/v2/models/digits/ready")
            assert not_ready.status_code == 503 and "could not be loaded" in not_ready.json()["error"]
            assert "sha256" in not_ready.json()["error"]
            index = {m["name"]: m for m in client.get("/v2/repository/index").json()}
            assert index["digits"]["state"] == "UNAVAILABLE" and "sha256" in index["digits"]["reason"]
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "NOT SERVED digits: file model.joblib" in out


SERVE_TWICE = '''
import json, os, signal, sys, threading, time
import httpx
from pallet.serve.server import serve
from pallet.settings import ServeConfig
from pallet.store import Store

home, db_url = sys.argv[1], sys.argv[2]

def check_then_stop(url, answers):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                answers.append(httpx.get(f"{url}/metrics").status_code)
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGTERM)

for port in sys.argv[3:]:  # the second server in this process starts as the first did
    answers = []
    threading.Thread(target=check_then_stop, args=(f"http://127.0.0.1:{port}", answers), daemon=True).start()
    serve(ServeConfig(models=["iris"], port=int(port), workers=2, access_log=False), store=Store(home, db_url),
          echo=lambda line: None)
    print(json.dumps({"answers": answers, "environ": dict(os.environ)}), flush=True)
'''


def test_serve_returns_with_the_environment_as_it_was(demo_store, tmp_path):
    environ = {name: value for name, value in os.environ.items()
               if not name.endswith("_NUM_THREADS") and name not in ("PALLET_HOME", "PALLET_DB_URL",
                                                                      "PALLET_SERVE_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}
    environ["OMP_NUM_THREADS"] = "7"  # one set before serving is put back; the others stay unset
    environ["HOME"] = str(tmp_path)  # with PALLET_HOME unset, the default store is HOME's: never the real one
    done = subprocess.run([sys.executable, "-c", SERVE_TWICE, str(demo_store.home), demo_store.db_url,
                           str(free_port()), str(free_port())], capture_output=True, text=True, timeout=240, env=environ, cwd=tmp_path)
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(runs) == 2, done.stderr
    # Each time the workers got the store, the settings and a metrics folder that exists.
    assert [run["answers"] for run in runs] == [[200], [200]]
    assert [run["environ"] for run in runs] == [environ, environ]
