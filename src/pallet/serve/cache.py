"""Output caching: the same inputs to the same model version give the stored outputs.

The key hashes the model name and version and every input tensor's name, dtype,
shape and bytes, so a cache is never served across versions. `memory[:N]` keeps the
N most recent results in each process; `redis://host:port/db` shares them between
workers and replicas, each entry expiring after a TTL. A cache that fails is a miss,
never a failed request.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import OrderedDict

import numpy as np

from pallet.errors import PalletError

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


class RedisCache:
    def __init__(self, url: str, ttl_seconds: float):
        import redis.asyncio as redis

        self.client = redis.from_url(url)
        self.ttl = max(1, int(ttl_seconds))
        self.url = url

    async def get(self, key: str) -> Arrays | None:
        try:
            data = await self.client.get(key)
        except Exception as e:  # an unreachable cache is a miss
            log.warning("cache %s unavailable: %s", self.url, e)
            return None
        if data is None:
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}

    async def set(self, key: str, outputs: Arrays) -> None:
        if any(a.dtype.kind == "O" for a in outputs.values()):
            return  # object arrays would need pickle, which a shared cache must not load
        buffer = io.BytesIO()
        np.savez(buffer, **outputs)
        try:
            await self.client.set(key, buffer.getvalue(), ex=self.ttl)
        except Exception as e:
            log.warning("cache %s unavailable: %s", self.url, e)


def make_cache(spec: str | None, ttl_seconds: float = 3600):
    """`None`, `memory`, `memory:N` or a `redis://` / `rediss://` URL."""
    if not spec:
        return None
    if spec == "memory" or spec.startswith("memory:"):
        size = spec.partition(":")[2] or "10000"
        if not size.isascii() or not size.isdigit() or int(size) < 1:
            raise PalletError(f"--cache memory:N needs a positive number of entries, got '{spec}'")
        return MemoryCache(int(size))
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(spec, ttl_seconds)
    raise PalletError(f"unknown --cache '{spec}': use memory, memory:N or redis://host:port/db")
