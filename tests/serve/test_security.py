"""What the server refuses and keeps to itself: names that try to reach the file system, cross-origin
calls nobody allowed, keys and tokens in logs or error bodies, and the address it binds."""

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import pallet
from pallet.net import free_port, wait_ready
from pallet.cli import app
from pallet.errors import PalletError
from pallet.settings import ServeConfig
from pallet.serve.server import reachable_hosts
from pallet.store import Store
from tests.serve.conftest import stop

PALLET = str(Path(sys.executable).parent / "pallet")
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]

# Written into the URL as they are (already percent-encoded where a client would encode them).
BAD_NAMES = [
    "../x", "../../etc", "..%2F..%2Fetc", "%2E%2E%2Fx", "..", "%2e%2e", "/etc/passwd", "%2Fetc%2Fpasswd",
    "a/b", "a%2Fb", "%00", "digits%00", "digits%0A", "x" * 129, "x" * 4000, ".hidden", "-rf", "_x",
    quote("dіgits"),            # Cyrillic і
    quote("ｄｉｇｉｔｓ"),        # full-width letters
    quote("digits\u200b"),      # a zero-width space after a real name
    quote("dig\u0131ts"),       # dotless ı
    "digits:0", "digits:-1", "digits@..", "digits@%2E%2E%2Fx", "digits:1%2F..",
]


def request(port: int, method: str, target: str, body: bytes | None = None, **headers: str):
    """One request with the target sent exactly as written (no client-side path clean-up)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body, headers={"Content-Type": "application/json", **headers})
        answer = conn.getresponse()
        return answer.status, answer.getheader("content-type") or "", answer.read()
    finally:
        conn.close()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` with its size and modification time; the index database aside."""
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")
            if not p.name.startswith("index.db")}


@pytest.fixture
def keyed(start_server, monkeypatch):
    key = secrets.token_hex(20)
    monkeypatch.setenv("PALLET_API_KEY", key)
    return start_server(), key


def test_names_that_try_to_reach_the_file_system_get_a_json_4xx(keyed, demo_store):
    running, key = keyed
    around = demo_store.home.parent
    before = snapshot(around)
    auth = {"Authorization": f"Bearer {key}"}
    v2_body = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]})
    for name in BAD_NAMES:
        for method, target, headers, body in [
            ("POST", f"/v2/repository/models/{name}/load", auth, b""),
            ("POST", f"/v2/repository/models/{name}/unload", auth, b""),
            ("POST", f"/v2/models/{name}/infer", {}, v2_body.encode()),
            ("POST", f"/v2/models/{name}/versions/1/infer", {}, v2_body.encode()),
            ("POST", f"/v1/models/{name}:predict", {}, json.dumps({"instances": [IRIS_ROW]}).encode()),
            ("GET", f"/v2/models/{name}", {}, None),
            ("GET", f"/ui/api/models/{name}", {}, None),
            ("POST", f"/v2/models/{name}/feedback", {}, b'{"rating": "good"}'),
            ("GET", f"/v2/models/{name}/feedback", auth, None),
            ("GET", f"/admin/rollouts/{name}", auth, None),
            ("POST", f"/admin/rollouts/{name}/promote", auth, b'{"to": "1"}'),
        ]:
            status, content_type, answer = request(running.port, method, target, body, **headers)
            where = f"{method} {target[:80]} -> {status} {answer[:200]!r}"
            assert status in (400, 404), where
            assert content_type.startswith("application/json"), where
            assert isinstance(json.loads(answer)["error"], str), where
        status, _, _ = request(running.port, "GET", f"/ui/{name}")
        assert status in (400, 404), name
    assert snapshot(around) == before  # nothing made, changed or removed next to the store or in it
    with httpx.Client(base_url=running.url) as client:  # the real models still answer
        assert client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).status_code == 200


def test_cors_is_off_unless_configured(start_server):
    running = start_server()
    origin = "https://app.example.com"
    with httpx.Client(base_url=running.url) as client:
        preflight = client.options("/v2/models/iris/infer", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert "access-control-allow-origin" not in preflight.headers
        got = client.get("/v2/models/iris", headers={"Origin": origin})
        assert got.status_code == 200 and "access-control-allow-origin" not in got.headers
        posted = client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers={"Origin": origin})
        assert posted.status_code == 200 and "access-control-allow-origin" not in posted.headers


def test_a_configured_origin_is_allowed_and_no_other(start_server, monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", secrets.token_hex(20))
    allowed, other = "https://app.example.com", "https://evil.example.net"
    running = start_server(cors_origins=[allowed, "http://localhost:3000/"])
    preflight_headers = {"Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "content-type, authorization"}
    with httpx.Client(base_url=running.url) as client:
        ok = client.options("/v2/models/iris/infer", headers={"Origin": allowed, **preflight_headers})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == allowed
        assert "POST" in ok.headers["access-control-allow-methods"]
        # Preflights carry no key: the admin routes answer them too, the key is checked on the call itself.
        admin = client.options("/v2/repository/models/iris/load", headers={"Origin": allowed, **preflight_headers})
        assert admin.status_code == 200 and admin.headers["access-control-allow-origin"] == allowed
        assert client.post("/v2/repository/models/iris/load", headers={"Origin": allowed}).status_code == 401
        trailing = client.get("/v2/models/iris", headers={"Origin": "http://localhost:3000"})
        assert trailing.headers["access-control-allow-origin"] == "http://localhost:3000"

        refused = client.options("/v2/models/iris/infer", headers={"Origin": other, **preflight_headers})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        got = client.get("/v2/models/iris", headers={"Origin": allowed})
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == allowed
        assert "x-request-id" in got.headers["access-control-expose-headers"].lower()
        foreign = client.get("/v2/models/iris", headers={"Origin": other})
        assert foreign.status_code == 200 and "access-control-allow-origin" not in foreign.headers


def test_a_bad_cors_origin_is_refused_with_one_line(monkeypatch, tmp_path):
    for bad in ("app.example.com", "https://app.example.com/path", "javascript:alert(1)", "https://a b"):
        with pytest.raises(PalletError, match="is not an origin"):
            ServeConfig(models=["iris"], cors_origins=[bad])
    monkeypatch.setenv("PALLET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)
    result = CliRunner().invoke(app, ["serve", "iris", "--cors-origin", "ftp://x.example.com"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--cors-origin 'ftp://x.example.com' is not an origin" in result.stderr


def test_a_401_leaks_nothing_of_the_key(keyed):
    running, key = keyed
    windows = {key[i:i + 6] for i in range(len(key) - 5)}
    near_misses = [key[:-1] + ("0" if key[-1] != "0" else "1"), key[:20], "x" + key, key.upper() + "!"]
    with httpx.Client(base_url=running.url) as client:
        answers = [client.post("/v2/repository/models/iris/load")]
        for wrong in near_misses:
            answers.append(client.post("/v2/repository/models/iris/load", headers={"Authorization": f"Bearer {wrong}"}))
            answers.append(client.get("/admin/rollouts/iris", headers={"X-API-Key": wrong}))
            answers.append(client.get("/v2/models/iris/feedback", headers={"X-API-Key": wrong}))
        for answer in answers:
            assert answer.status_code == 401
            text = answer.text + " ".join(f"{k}: {v}" for k, v in answer.headers.items())
            assert answer.json()["error"]
            assert not [w for w in windows if w in text], text
            assert not [wrong for wrong in near_misses if wrong[:12] in text], text
        assert client.post("/v2/repository/models/iris/load", headers={"X-API-Key": key}).status_code == 200


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what a browser asks for


def test_a_shared_server_tells_a_browser_how_to_get_in_and_an_api_client_why_not(start_server):
    token, wrong = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    running = start_server(share_token=token)
    with httpx.Client(base_url=running.url) as client:
        for path in ("/", "/ui/iris", "/dashboard"):
            page = client.get(path, headers={"Accept": BROWSER})
            assert page.status_code == 401 and page.headers["content-type"].startswith("text/html"), path
            assert "A shared pallet server" in page.text and "?token=&hellip;" in page.text
            assert "pallet serve" in page.text and "ask whoever shared" in page.text
            assert token not in page.text and "not this server" not in page.text
        refused = client.get(f"/ui/iris?token={wrong}", headers={"Accept": BROWSER})
        assert refused.status_code == 401 and "The token in this link is not this server's" in refused.text
        assert wrong not in refused.text and token not in refused.text
        tricky = client.get('/ui/"><script>x</script>', headers={"Accept": BROWSER})
        assert tricky.status_code == 401 and "<script>x" not in tricky.text  # the path is escaped
        for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
            for path in ("/ui/api/models", "/v2/models/iris", "/dashboard"):
                answer = client.get(path, headers=headers)
                assert answer.status_code == 401 and "?token=" in answer.json()["error"], (path, headers)
        assert client.get("/v2/models/iris", headers={"X-Share-Token": wrong}).json()["error"] == "wrong share token"
        opened = client.get(f"/ui/iris?token={token}", headers={"Accept": BROWSER})
        assert opened.status_code == 200 and "A shared pallet server" not in opened.text


@pytest.fixture(scope="module")
def iris_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("secure") / "home"
    x, y = load_iris(return_X_y=True)
    store = Store(home)
    pallet.save(LogisticRegression(max_iter=500).fit(x, y), "iris", sample=x[:3], store=store)
    store.index.engine.dispose()
    return home


def start_cli_server(home: Path, port: int, *args: str, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if k not in ("PALLET_DB_URL", "PALLET_API_KEY", "PALLET_SHARE_TOKEN")}
    proc = subprocess.Popen([PALLET, "serve", "iris", "--port", str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**clean, "PALLET_HOME": str(home), "PYTHONUNBUFFERED": "1", **env})
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    except PalletError:
        stop(proc)
        raise
    return proc


def test_keys_and_tokens_never_reach_the_logs(iris_home):
    key, token = secrets.token_urlsafe(24), secrets.token_urlsafe(18)
    wrong_key, wrong_token = secrets.token_urlsafe(24), secrets.token_urlsafe(18)
    port = free_port()
    proc = start_cli_server(iris_home, port, "--share-token", token, "--access-log", PALLET_API_KEY=key)
    sent = 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            def call(method, path, expect, **kwargs):
                nonlocal sent
                answer = client.request(method, path, **kwargs)
                assert answer.status_code == expect, (method, path, answer.text)
                sent += 1
                return answer

            opened = call("GET", f"/v2/models/iris?token={token}", 200)
            cookie = opened.headers["set-cookie"].split(";")[0]
            assert token in cookie
            call("GET", "/v2/models/iris", 200, headers={"Cookie": cookie})
            call("POST", f"/v1/models/iris:predict?token={token}&x=1", 200, json={"instances": [IRIS_ROW]})
            call("GET", "/v2/models/iris", 200, headers={"X-Share-Token": token})
            call("POST", f"/v2/repository/models/iris/load?token={token}", 200,
                 headers={"Authorization": f"Bearer {key}"})
            call("GET", f"/v2/models/iris/feedback?token={token}", 200, headers={"X-API-Key": key})
            call("POST", f"/v2/repository/models/iris/load?token={token}", 401,
                 headers={"Authorization": f"Bearer {wrong_key}"})
            call("GET", f"/v2/models/iris/feedback?token={token}", 401, headers={"X-API-Key": wrong_key})
            call("GET", f"/v2/models/iris?token={wrong_token}", 401)
            call("GET", "/v2/models/iris", 401, headers={"Cookie": cookie.replace(token, wrong_token)})
            call("GET", f"/no/such/path?token={token}&key={key}", 404)
            call("POST", f"/v2/models/iris/infer?token={token}", 400, content=b"{not json",
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    finally:
        out, err = stop(proc)
    access = [line for line in out.splitlines() if line.startswith("{")]
    assert len(access) >= sent  # the access log was on: every request above was logged
    for secret in (key, wrong_key, token, wrong_token):
        assert secret not in out and secret not in err
    assert "?token=<share token>" in out  # the links it prints say where the token goes, not what it is
    assert {json.loads(line)["path"] for line in access} >= {"/v2/models/iris", "/no/such/path"}


def test_the_server_binds_loopback_by_default(iris_home):
    assert ServeConfig().host == "127.0.0.1"
    port = free_port()
    proc = start_cli_server(iris_home, port, "--no-access-log")
    try:
        with httpx.Client() as client:
            assert client.get(f"http://127.0.0.1:{port}/v2/health/live").status_code == 200
        others = [address for address in reachable_hosts("0.0.0.0") if not address.startswith("127.")]
        refused = []
        for address in others:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                try:
                    s.connect((address, port))
                except ConnectionRefusedError:
                    refused.append(address)
    finally:
        out, _ = stop(proc)
    assert out.splitlines()[0].endswith(f"serving on http://127.0.0.1:{port}")
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address to try a connection on")
    assert refused == others
