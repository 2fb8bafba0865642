"""`pallet serve --bundle` runs with the flags it is given, over what the bundle's pallet.yaml says."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression

import pallet
from pallet.deploy.bundle import app_from_bundle, bundle_settings, bundle_store
from pallet.deploy.bundle import _recorded as recorded
from pallet.net import free_port, wait_ready

PALLET = str(Path(sys.executable).parent / "pallet")


def small_bundle(folder: Path) -> Path:
    """A bundle as `pallet build` lays it out (pallet.yaml and its store), without the wheel and manifests."""
    rows = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    model = LogisticRegression().fit(rows, [0, 1, 0, 1])
    store = bundle_store(folder)
    ref = pallet.save(model, "tiny", sample=rows[:2], store=store)
    store.index.engine.dispose()
    serve = recorded(bundle_settings(port=free_port(), grpc_port=None))
    (folder / "pallet.yaml").write_text(yaml.safe_dump({"models": [str(ref)], "serve": serve}))
    return folder


def test_serve_bundle_runs_with_the_flags_given(tmp_path):
    bundle = small_bundle(tmp_path / "bundle")
    port, log = free_port(), tmp_path / "stdout.txt"
    env = {**os.environ, "PALLET_HOME": str(tmp_path / "elsewhere")}
    env.pop("PALLET_DB_URL", None)
    with log.open("w") as out:
        proc = subprocess.Popen([PALLET, "serve", "--bundle", str(bundle), "--port", str(port), "--workers", "2",
                                 "--drain-seconds", "10m", "--max-batch-size", "1", "--read-timeout", "1",
                                 "--no-access-log"], env=env, stdout=out, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        startup = log.read_text()
        assert f"serving on {url} with 2 workers" in startup
        assert "batching  off" in startup  # --max-batch-size 1 over the file's 32
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 ")  # --read-timeout 1 over the default 30 s
        body = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [0.0, 1.0]}]}
        assert httpx.post(f"{url}/v2/models/tiny/infer", json=body).status_code == 200
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while (ready := httpx.get(f"{url}/v2/health/ready").status_code) == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready == 503  # draining (--drain-seconds 10m): not ready, yet still answering
        assert httpx.post(f"{url}/v2/models/tiny/infer", json=body).status_code == 200
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


def test_the_lambda_app_of_a_bundle_reads_the_environment_as_pallet_serve_does(tmp_path, monkeypatch):
    bundle = small_bundle(tmp_path / "bundle")
    monkeypatch.setenv("PALLET_MAX_ROWS", "1")
    monkeypatch.setenv("PALLET_CACHE", "memory:7")
    monkeypatch.setenv("PALLET_WORKERS", "4")  # the Lambda app is one process, whatever the environment says
    app = app_from_bundle(bundle, writable=str(tmp_path / "tmp"), preload=True)
    plane = app.state.plane
    assert (plane.config.max_rows, plane.config.cache, plane.config.workers) == (1, "memory:7", 1)
    assert plane.cache.size == 7

    async def infer(rows: list[list[float]]) -> httpx.Response:
        body = {"inputs": [{"name": "input", "shape": [len(rows), 2], "datatype": "FP64",
                            "data": [value for row in rows for value in row]}]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lambda") as client:
            return await client.post("/v2/models/tiny/infer", json=body)

    assert asyncio.run(infer([[0.0, 1.0]])).status_code == 200
    refused = asyncio.run(infer([[0.0, 1.0], [1.0, 0.0]]))
    assert refused.status_code == 400 and "at most 1 per request" in refused.text
