import asyncio
import uuid

import numpy as np
import pytest

from pallet.errors import PalletError
from pallet.serve.cache import CacheUnavailable, MemoryCache, RedisCache, cache_key, make_cache

REDIS_URL = "redis://127.0.0.1:6379/0"
X = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}


def test_key_depends_on_version_dtype_shape_and_bytes():
    base = cache_key("m", "1", X)
    assert cache_key("m", "1", {"x": X["x"].copy()}) == base
    assert cache_key("m", "2", X) != base                                    # never across versions
    assert cache_key("n", "1", X) != base
    assert cache_key("m", "1", {"x": X["x"].astype(np.float64)}) != base      # dtype
    assert cache_key("m", "1", {"x": X["x"].reshape(3, 2)}) != base           # shape
    assert cache_key("m", "1", {"x": X["x"] + 1}) != base                     # bytes
    assert cache_key("m", "1", {"y": X["x"]}) != base                         # name


def test_key_of_byte_strings_is_length_prefixed():
    a = np.array([b"ab", b"c"], dtype=object)
    b = np.array([b"a", b"bc"], dtype=object)
    assert cache_key("m", "1", {"t": a}) != cache_key("m", "1", {"t": b})


def test_memory_cache_keeps_the_most_recent():
    async def main():
        cache = MemoryCache(2)
        await cache.set("a", {"y": np.array([1])})
        await cache.set("b", {"y": np.array([2])})
        await cache.get("a")                       # a is now the most recent
        await cache.set("c", {"y": np.array([3])})
        return [await cache.get(k) for k in "abc"]

    a, b, c = asyncio.run(main())
    assert a["y"].tolist() == [1] and b is None and c["y"].tolist() == [3]


@pytest.mark.parametrize("spec, message", [("memory:0", "positive number"), ("memory:x", "positive number"),
                                           ("disk", "--cache must be memory, memory:N or redis://host:port/db, got 'disk'")])
def test_bad_specs(spec, message):
    with pytest.raises(PalletError, match=message):
        make_cache(spec)


def test_specs():
    assert make_cache(None) is None
    assert make_cache("memory:5").size == 5
    assert isinstance(make_cache("redis://127.0.0.1:6379/0"), RedisCache)


@pytest.fixture
def redis_url():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {e}")
    return REDIS_URL


def test_redis_round_trip_with_ttl(redis_url):
    import redis

    key = f"pallet:test:{uuid.uuid4().hex}"

    async def main():
        cache = RedisCache(redis_url, ttl_seconds=120)
        await cache.set(key, {"label": np.array([1, 2]), "p": np.array([[0.5, 0.5]], np.float32),
                              "name": np.array(["a", "bc"])})
        found = await cache.get(key)
        await cache.client.aclose()
        return found

    found = asyncio.run(main())
    assert found["label"].tolist() == [1, 2] and found["p"].dtype == np.float32
    assert found["name"].tolist() == ["a", "bc"]
    ttl = redis.Redis.from_url(redis_url).ttl(key)
    assert 0 < ttl <= 120


def test_unreachable_redis_is_bypassed_and_left_alone_for_a_while():
    async def main():
        cache = RedisCache("redis://127.0.0.1:1/0", ttl_seconds=10, retry_seconds=3600)
        await cache.set("k", {"y": np.array([1])})  # a failed write is no error
        with pytest.raises(CacheUnavailable):
            await cache.get("k")
        probed = cache.retry_at
        with pytest.raises(CacheUnavailable):
            await cache.get("k")  # not tried again: the next try is an hour away
        return cache.down, probed, cache.retry_at

    down, probed, retry_at = asyncio.run(main())
    assert down and retry_at == probed
