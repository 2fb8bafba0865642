"""Output caching through real servers: memory per process, Redis shared between servers."""

import re
import uuid

import httpx
import pytest

from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from tests.serve.conftest import RunningServer

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def lookups(url, result, model="iris", version="1"):
    text = httpx.get(f"{url}/metrics").text
    pattern = rf'^pallet_cache_lookups_total\{{model="{model}",result="{result}",version="{version}"\}} (\S+)$'
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


def test_memory_cache_answers_repeated_inputs(demo_store):
    with RunningServer(create_app(ServeConfig(models=["iris"], cache="memory:100", access_log=False),
                                  demo_store)) as server:
        hits, misses = lookups(server.url, "hit"), lookups(server.url, "miss")
        first = httpx.post(f"{server.url}/v1/models/iris:predict", json=ROW).json()
        again = httpx.post(f"{server.url}/v1/models/iris:predict", json=ROW).json()
        other = httpx.post(f"{server.url}/v1/models/iris:predict", json={"instances": [[6.7, 3.0, 5.2, 2.3]]})
        assert first == again
        assert other.json()["predictions"][0]["label"] == 2
        assert lookups(server.url, "hit") - hits == 1
        assert lookups(server.url, "miss") - misses == 2


def test_cache_is_off_by_default(server):
    before = lookups(server.url, "hit") + lookups(server.url, "miss")
    httpx.post(f"{server.url}/v1/models/iris:predict", json=ROW)
    httpx.post(f"{server.url}/v1/models/iris:predict", json=ROW)
    assert lookups(server.url, "hit") + lookups(server.url, "miss") == before


def test_redis_cache_is_shared_between_servers(demo_store):
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379: {e}")
    row = {"instances": [[float(uuid.uuid4().int % 1000) / 100, 3.0, 1.0, 0.5]]}  # new to the cache
    config = ServeConfig(models=["iris"], cache="redis://127.0.0.1:6379/0", cache_ttl=60, access_log=False)
    with RunningServer(create_app(config, demo_store)) as one, RunningServer(create_app(config, demo_store)) as two:
        hits = lookups(one.url, "hit")
        first = httpx.post(f"{one.url}/v1/models/iris:predict", json=row).json()
        second = httpx.post(f"{two.url}/v1/models/iris:predict", json=row).json()  # the other server
        assert first == second
        assert lookups(two.url, "hit") - hits == 1  # the second server found the first one's result
