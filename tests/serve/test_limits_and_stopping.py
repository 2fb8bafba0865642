"""`pallet serve` under hostile clients, when starting and when told to stop: bounds on headers,
slow clients, request size and memory; ready only after every model's warm-up; SIGTERM drains;
a killed worker is replaced."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from pallet.net import free_port, wait_ready
from tests.serve.conftest import stop, store_of_classes

PALLET = str(Path(sys.executable).parent / "pallet")
BODY_LIMIT_MB = 1


def serve(store, *args):
    port = free_port()
    proc = subprocess.Popen([PALLET, "serve", *args, "--port", str(port), "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PALLET_HOME": str(store.home), "PALLET_DB_URL": store.db_url})
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, port, url


@pytest.fixture(scope="module")
def bounded(demo_store):
    proc, port, url = serve(demo_store, "digits@production", "iris@production", "--max-header-kb", "8",
                            "--read-timeout", "1", "--max-body-mb", str(BODY_LIMIT_MB), "--max-rows", "5000")
    yield port, url, proc.pid
    stop(proc)


def exchange(port: int, data: bytes, pause: float = 0.0) -> bytes:
    """Send `data` (then wait `pause` s) and read until the server closes; b"" when it answers nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        time.sleep(pause)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_headers_over_the_limit_get_431_and_the_server_goes_on(bounded):
    port, url, _ = bounded
    answer = exchange(port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"--max-header-kb" in answer and answer.endswith(b"}")
    endless = exchange(port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000)  # never ends
    assert endless.startswith(b"HTTP/1.1 431 ")  # refused as it grew, not after --read-timeout with a 408
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(100))  # many small ones add up too
    assert exchange(port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431 ")
    assert httpx.get(f"{url}/v2/health/ready", headers={"X-Fine": "c" * 4000}).status_code == 200


def test_a_client_too_slow_with_its_headers_gets_408_and_an_idle_one_is_closed(bounded):
    port, url, _ = bounded
    answer = exchange(port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
    assert answer.startswith(b"HTTP/1.1 408 ") and b"--read-timeout" in answer
    assert exchange(port, b"") == b""  # connected, sent nothing: closed without an answer
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_a_client_too_slow_with_its_body_gets_408_and_the_connection_closes(bounded):
    port, _, _ = bounded
    head = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer = exchange(port, head + b"Content-Length: 500\r\n\r\n{\"inputs\": [")
    assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower()
    assert b"did not arrive within 1s" in answer


def test_bodies_over_the_limit_get_413_declared_or_streamed(bounded):
    port, url, _ = bounded
    too_big = BODY_LIMIT_MB * 2**20 + 1
    declared = exchange(port, b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              b"Content-Length: %d\r\n\r\n{" % too_big)  # refused before the body is sent
    assert declared.startswith(b"HTTP/1.1 413 ")

    def chunks():
        for _ in range(too_big // 65536 + 1):
            yield b" " * 65536

    streamed = httpx.post(f"{url}/v2/models/iris/infer", content=chunks(), timeout=30)
    assert streamed.status_code == 413 and "--max-body-mb" in streamed.json()["error"]


def test_values_per_request_are_bounded(start_server):
    server = start_server(models=["digits@production"], max_elements=640)
    rows = np.zeros((11, 64)).tolist()
    with httpx.Client(base_url=server.url) as client:
        refused = client.post("/v1/models/digits:predict", json={"instances": rows})
        assert refused.status_code == 413 and "704 values" in refused.json()["error"]
        assert "--max-elements" in refused.json()["error"]
        assert client.post("/v1/models/digits:predict", json={"instances": rows[:10]}).status_code == 200


def resident_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def near_limit_body() -> bytes:
    row = ",".join(["16.0"] * 64)
    count = (BODY_LIMIT_MB * 2**20 - 200) // (len(row) + 3)
    return ('{"instances": [' + ",".join(f"[{row}]" for _ in range(count)) + "]}").encode()


def test_fifty_concurrent_near_limit_bodies_keep_memory_bounded(bounded):
    """Decoded JSON takes about ten times its bytes, so 50 bodies at once would take 500 MiB; with
    4 large requests answered at a time (--large-requests) the peak stays within 100 MiB of before."""
    port, url, pid = bounded
    body = near_limit_body()
    assert BODY_LIMIT_MB * 2**20 - 1000 < len(body) <= BODY_LIMIT_MB * 2**20
    with httpx.Client(base_url=url) as client:  # warm: every code path has run once
        assert client.post("/v1/models/digits:predict", content=body).status_code == 200
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) counts from now
    before = resident_kib(pid, "VmRSS")

    async def flood():
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/models/digits:predict", content=body) for _ in range(50)))

    responses = asyncio.run(flood())
    assert [r.status_code for r in responses] == [200] * 50
    assert all(len(r.json()["predictions"]) == body.count(b"[") - 1 for r in responses[:3])
    peak = resident_kib(pid, "VmHWM")
    grew_mib = (peak - before) / 1024
    print(f"resident memory: {before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB, "
          f"+{grew_mib:.0f} MiB for 50 x {len(body) / 2**20:.2f} MiB bodies")
    assert grew_mib < 25 * 4 * BODY_LIMIT_MB


def test_sigterm_turns_readiness_off_lets_in_flight_requests_finish_and_exits_0(slow_store):
    proc, port, url = serve(slow_store, "slow", "--drain-seconds", "60", "--max-batch-size", "1")
    results = []

    def call(value):
        with httpx.Client(base_url=url, timeout=60) as client:
            body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [value, value]}]}
            results.append(client.post("/v2/models/slow/infer", json=body))

    callers = [threading.Thread(target=call, args=(v,)) for v in range(6)]  # 6 x 0.3 s, one at a time
    for caller in callers:
        caller.start()
    time.sleep(0.4)  # the first is running, the others queued
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (ready := httpx.get(f"{url}/v2/health/ready").status_code) == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready == 503  # not ready at once, while still answering
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    late = httpx.post(f"{url}/v2/models/slow/infer", timeout=60,
                      json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [9, 9]}]})
    for caller in callers:
        caller.join(timeout=60)
    assert proc.poll() is None  # still draining: 60 s
    proc.send_signal(signal.SIGTERM)  # a second SIGTERM ends the drain now
    _, err = proc.communicate(timeout=30)
    assert late.status_code == 200 and late.json()["outputs"][0]["data"] == [18, 18]
    assert sorted(r.status_code for r in results) == [200] * 6
    assert sorted(r.json()["outputs"][0]["data"][0] for r in results) == [0, 2, 4, 6, 8, 10]
    assert proc.returncode == 0, err
    assert "SIGTERM: not ready from now" in err and "Traceback" not in err


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def test_a_killed_worker_is_replaced_and_the_server_stays_ready(demo_store, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # each worker writes its metrics under its pid
    proc, port, url = serve(demo_store, "iris@production", "--workers", "2")

    def loaded() -> set[int]:  # workers that have loaded the models (their lifespan ran)
        return {int(path.stem.rsplit("_", 1)[-1]) for path in tmp_path.glob("gauge_max_*.db")}

    statuses = []
    try:
        deadline = time.monotonic() + 60
        while len(loaded()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = loaded()
        assert len(workers) == 2 and workers <= children(proc.pid)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not loaded() - workers and time.monotonic() < deadline:
            with httpx.Client(base_url=url, timeout=10) as fresh:  # new connections: both workers' turn
                statuses.append(fresh.get("/v2/health/ready").status_code)
                statuses.append(fresh.post("/v1/models/iris:predict",
                                           json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).status_code)
            time.sleep(0.05)
        replacement = loaded() - workers
        assert replacement, "the killed worker was not replaced"
        assert victim not in children(proc.pid) and replacement <= children(proc.pid)
    finally:
        _, err = stop(proc, signal.SIGTERM)
    assert statuses and set(statuses) == {200}, statuses
    assert proc.returncode == 0, err


WARMING = textwrap.dedent('''
    import os
    import time

    class Warming:
        """Takes its time over its first prediction, then leaves a mark; the class WARM_BREAK names fails."""

        @classmethod
        def load(cls, path):
            return cls()

        def predict(self, inputs):
            if os.environ.get("WARM_BREAK") == type(self).__name__:
                raise RuntimeError("this model cannot predict")
            marker = os.environ["WARM_MARKER"]
            if not os.path.exists(marker):
                time.sleep(1.5)
                open(marker, "w").close()
            return {"y": inputs["x"] * 2}

    class Broken(Warming):
        pass
''')


@pytest.fixture(scope="module")
def warming_store(tmp_path_factory):
    os.environ["WARM_MARKER"] = str(tmp_path_factory.mktemp("saving") / "warmed")  # saving predicts once on the sample too
    try:
        return store_of_classes(tmp_path_factory, "warmmodel", WARMING, ("Warming", "warming"), ("Broken", "broken"))
    finally:
        os.environ.pop("WARM_MARKER", None)


def test_ready_only_once_every_model_has_answered_its_warm_up(warming_store, tmp_path, monkeypatch):
    marker = tmp_path / "warmed"
    monkeypatch.setenv("WARM_MARKER", str(marker))
    port = free_port()
    proc = subprocess.Popen([PALLET, "serve", "warming", "--port", str(port), "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PALLET_HOME": str(warming_store.home),
                                 "PALLET_DB_URL": warming_store.db_url})
    answers = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code
            except httpx.TransportError:
                status = None  # not listening yet
            answers.append((status, marker.exists()))
            if status == 200:
                break
            time.sleep(0.05)
    finally:
        stop(proc)
    assert answers[-1] == (200, True)
    assert all(warmed for status, warmed in answers if status is not None)  # nothing answered before the warm-up


def test_a_model_that_fails_its_warm_up_is_not_served(warming_store, tmp_path, monkeypatch):
    monkeypatch.setenv("WARM_MARKER", str(tmp_path / "warmed"))
    monkeypatch.setenv("WARM_BREAK", "Broken")
    env = {**os.environ, "PALLET_HOME": str(warming_store.home), "PALLET_DB_URL": warming_store.db_url}
    done = subprocess.run([PALLET, "serve", "broken", "--port", str(free_port())], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode != 0 and "this model cannot predict" in done.stderr and "Traceback" not in done.stderr
    several = subprocess.run([PALLET, "serve", "broken", "--workers", "2", "--port", str(free_port())],
                             capture_output=True, text=True, timeout=60, env=env)
    assert several.returncode == 1 and "this model cannot predict" in several.stderr
    assert several.stderr.rstrip().endswith("error: a worker could not start (its reason is above); nothing is served")
    proc, port, url = serve(warming_store, "warming", "broken", "--skip-unloadable")
    try:
        assert httpx.get(f"{url}/v2/models/broken/ready").status_code == 503
        assert httpx.get(f"{url}/v2/models/warming/ready").status_code == 200
    finally:
        stop(proc)
