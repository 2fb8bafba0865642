"""A Redis cache that dies, never starts, or comes back: answers go on, bypasses are counted, the cache returns.

Each test runs a private redis-server on a free port, so killing it touches nothing else.
"""

import logging
import re
import shutil
import signal
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest

from pallet.net import free_port
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from tests.serve.conftest import RunningServer

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [4.6, 3.1, 1.5, 0.2]]


def metric(url, name, **labels):
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def lookups(url, result):
    return metric(url, "pallet_cache_lookups_total", model="iris", result=result, version="1")


def bypassed(url):
    return metric(url, "pallet_cache_bypass_total", model="iris", reason="unavailable", version="1")


class PrivateRedis:
    """redis-server on `port`, no persistence: a restart starts empty."""

    def __init__(self, port):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = port
        self.process = None

    def start(self):
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.kill()


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def lines(self, level, text):
        return [r for r in self.records if r.levelno == level and text in r.getMessage()]


@pytest.fixture
def serve_log():
    logger = logging.getLogger("pallet.serve")
    handler, level = Captured(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def redis_server():
    server = PrivateRedis(free_port())
    yield server
    server.stop()


def predict(client, url, row):
    response = client.post(f"{url}/v1/models/iris:predict", json={"instances": [row]})
    return response.status_code, response.json()


def same(body, expected):
    """The same answer: the label, and probabilities to rounding (a batch of several rows may sum in another order)."""
    got, want = body["predictions"][0], expected["predictions"][0]
    return got["label"] == want["label"] and np.allclose(got["probabilities"], want["probabilities"], atol=1e-12)


def test_redis_killed_under_load_then_back(demo_store, redis_server, serve_log):
    redis_server.start()
    config = ServeConfig(models=["iris"], cache=f"redis://127.0.0.1:{redis_server.port}/0", cache_ttl=60,
                         access_log=False)
    with RunningServer(create_app(config, demo_store)) as server, httpx.Client(timeout=30) as client:
        misses, hits = lookups(server.url, "miss"), lookups(server.url, "hit")
        expected = [predict(client, server.url, row)[1] for row in ROWS]  # computed by the model: misses
        assert [predict(client, server.url, row)[1] for row in ROWS] == expected  # from the cache
        assert lookups(server.url, "miss") - misses == len(ROWS) and lookups(server.url, "hit") - hits == len(ROWS)

        # Clients keep asking, from several threads, while Redis dies and comes back.
        answers: list[tuple[int, bool]] = []
        stop = threading.Event()

        def load(offset):
            with httpx.Client(timeout=30) as own:
                for i in range(5000):  # bounded, whatever happens
                    if stop.is_set():
                        return
                    row = (offset + i) % len(ROWS)
                    try:
                        status, body = predict(own, server.url, ROWS[row])
                    except httpx.HTTPError as e:
                        answers.append((repr(e), False))
                        return
                    answers.append((status, status == 200 and same(body, expected[row])))

        threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        redis_server.kill()
        killed_at = len(answers)
        before = bypassed(server.url)
        for row in ROWS * 5:  # and this client, whose answers are counted exactly
            status, body = predict(client, server.url, row)
            assert status == 200 and same(body, expected[ROWS.index(row)])
        assert bypassed(server.url) - before >= len(ROWS) * 5
        down_hits = lookups(server.url, "hit")

        redis_server.start()  # the same port, empty
        restarted = time.monotonic()
        deadline = restarted + 20
        while lookups(server.url, "hit") <= down_hits:  # a miss fills it, then hits come back
            assert time.monotonic() < deadline, "the cache was not used again after Redis came back"
            predict(client, server.url, ROWS[0])
            time.sleep(0.05)
        back_after = time.monotonic() - restarted
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert len(answers) > killed_at  # requests were served while Redis was down
    assert all(status == 200 and right for status, right in answers), [a for a in answers if a != (200, True)][:5]
    assert len(serve_log.lines(logging.WARNING, "unavailable")) == 1  # once, not per request
    assert len(serve_log.lines(logging.INFO, "is back")) == 1
    print(f"\nRedis killed under load: {len(answers)} requests from 3 clients, 0 errors, "
          f"cache hits resumed {back_after:.2f} s after restart")


def test_redis_never_up_serves_from_the_start(demo_store, serve_log):
    port = free_port()  # nothing listens there
    config = ServeConfig(models=["iris"], cache=f"redis://127.0.0.1:{port}/0", access_log=False)
    with RunningServer(create_app(config, demo_store)) as server, httpx.Client(timeout=30) as client:
        before, lookups_before = bypassed(server.url), lookups(server.url, "hit") + lookups(server.url, "miss")
        answers = [predict(client, server.url, row) for row in ROWS * 10]
        assert {status for status, _ in answers} == {200}
        assert [body["predictions"][0]["label"] for _, body in answers[:4]] == [0, 2, 1, 0]
        assert bypassed(server.url) - before == len(answers)
        assert lookups(server.url, "hit") + lookups(server.url, "miss") == lookups_before
    warnings = serve_log.lines(logging.WARNING, "unavailable")
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0].getMessage()


def test_a_hung_redis_holds_no_request_up(demo_store, redis_server, serve_log):
    redis_server.start()
    config = ServeConfig(models=["iris"], cache=f"redis://127.0.0.1:{redis_server.port}/0", access_log=False)
    with RunningServer(create_app(config, demo_store)) as server, httpx.Client(timeout=10) as client:
        expected = predict(client, server.url, ROWS[1])[1]
        hits = lookups(server.url, "hit")
        redis_server.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        try:
            before = bypassed(server.url)
            began = time.monotonic()
            answers = [predict(client, server.url, ROWS[1]) for _ in range(20)]  # a stalled request would time out
            took = time.monotonic() - began
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        assert all(status == 200 and same(body, expected) for status, body in answers)
        assert bypassed(server.url) - before == 20 and lookups(server.url, "hit") == hits
        deadline = time.monotonic() + 20
        while lookups(server.url, "hit") == hits:
            assert time.monotonic() < deadline, "the cache was not used again after Redis answered again"
            predict(client, server.url, ROWS[1])
            time.sleep(0.05)
    assert len(serve_log.lines(logging.WARNING, "unavailable")) == 1
    print(f"\nRedis hung (SIGSTOP): 20 requests answered in {took:.2f} s, all bypassing the cache")
