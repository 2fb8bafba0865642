"""Output caching: the same inputs to the same model version give the stored outputs.

The key hashes the model name and version and every input tensor's name, dtype,
shape and bytes, so a cache is never served across versions. `memory[:N]` keeps the
N most recent results in each process; `redis://host:port/db` shares them between
workers and replicas, each entry expiring after a TTL. A cache that fails is bypassed,
never a failed request.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections import OrderedDict

import numpy as np

from pallet.errors import PalletError
from pallet.settings.serve import Unfit, cache_spec
from pallet.urls import redact

Arrays = dict[str, np.ndarray]
log = logging.getLogger("pallet.serve")


def cache_key(model: str, version: str, inputs: Arrays) -> str:
    digest = hashlib.sha256(f"{model}\0{version}\0".encode())
    for name in sorted(inputs):
        array = inputs[name]
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        if array.dtype.kind == "O":  # bytes objects: length-prefixed, so ["ab", "c"] != ["a", "bc"]
            for value in array.reshape(-1).tolist():
                data = value if isinstance(value, bytes) else str(value).encode()
                digest.update(len(data).to_bytes(8, "little") + data)
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return f"pallet:{model}:{version}:{digest.hexdigest()}"


class MemoryCache:
    def __init__(self, size: int = 10_000):
        self.size = size
        self.entries: OrderedDict[str, Arrays] = OrderedDict()

    async def get(self, key: str) -> Arrays | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    async def set(self, key: str, outputs: Arrays) -> None:
        self.entries[key] = outputs
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class CacheUnavailable(Exception):
    """The shared cache cannot be reached now: the request is served without it."""


class RedisCache:
    """Redis as a shared cache that never holds a request up for long.

    Each call waits at most `timeout` seconds, with no retries. Once Redis fails, it is left alone
    for `retry_seconds` (requests meanwhile go straight to the model), then one request tries it
    again; a warning says when it becomes unavailable and an info line when it is back.
    """

    def __init__(self, url: str, ttl_seconds: float, timeout: float = 0.25, retry_seconds: float = 1.0):
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client = redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                     retry=Retry(NoBackoff(), 0))
        self.ttl = max(1, int(ttl_seconds))
        self.url = redact(url)
        self.retry_seconds = retry_seconds
        self.down = False
        self.retry_at = 0.0

    async def get(self, key: str) -> Arrays | None:
        """The stored outputs, None on a miss; `CacheUnavailable` when Redis cannot answer now."""
        if not self._worth_trying():
            raise CacheUnavailable(self.url)
        try:
            data = await self.client.get(key)
        except Exception as e:  # unreachable, timed out, refused: any of it means serve without the cache
            await self._failed(e)
            raise CacheUnavailable(self.url) from None
        self._answered()
        if data is None:
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}

    async def set(self, key: str, outputs: Arrays) -> None:
        if self.down or any(a.dtype.kind == "O" for a in outputs.values()):
            return  # object arrays would need pickle, which a shared cache must not load
        buffer = io.BytesIO()
        np.savez(buffer, **outputs)
        try:
            await self.client.set(key, buffer.getvalue(), ex=self.ttl)
        except Exception as e:
            await self._failed(e)

    def _worth_trying(self) -> bool:
        """Always while Redis answers; once per `retry_seconds` while it does not (that request probes)."""
        if not self.down:
            return True
        now = time.monotonic()
        if now < self.retry_at:
            return False
        self.retry_at = now + self.retry_seconds
        return True

    async def _failed(self, error: Exception) -> None:
        self.retry_at = time.monotonic() + self.retry_seconds
        if not self.down:
            self.down = True
            log.warning("cache %s unavailable, serving without it and trying again every %gs: %s", self.url,
                        self.retry_seconds, str(error).strip() or type(error).__name__)
        try:  # idle connections to a Redis that went away are dead too: the next try opens a new one
            await self.client.connection_pool.disconnect(inuse_connections=False)
        except Exception:
            pass

    def _answered(self) -> None:
        if self.down:
            self.down = False
            log.info("cache %s is back", self.url)


def make_cache(spec: str | None, ttl_seconds: float = 3600):
    """`None`, `memory`, `memory:N` or a `redis://` / `rediss://` URL (the grammar is the settings')."""
    try:
        kind = cache_spec(spec)
    except Unfit as problem:
        raise PalletError(f"--cache {problem}") from None
    if kind is None:
        return None
    return MemoryCache(kind[1]) if kind[0] == "memory" else RedisCache(kind[1], ttl_seconds)