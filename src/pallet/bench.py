"""`pallet bench`: an honest answer for one model: the server under load beside in-process `predict`.

The load generator keeps `concurrency` HTTP/1.1 keep-alive connections busy for a
bounded time (and a bounded number of requests), each sending the same Open
Inference Protocol request and timing every answer. Latency percentiles come from the
server's own histogram for the level's requests, so they match the dashboard and
`pallet rollout status` for the same traffic.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from pallet.errors import PalletError
from pallet.model import Model
from pallet.net import free_port, wait_ready
from pallet.quantiles import counts_of, quantile_of_buckets, quantile_of_counts
from pallet.serve.codecs import datatype_of
from pallet.units import format_duration

MAX_REQUESTS = 2_000_000  # a bound on any one level, whatever the duration


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False, default_factory=list)
    mean_batch_rows: float | None = None
    server_latency: dict[str, float] = field(repr=False, default_factory=dict)  # {"le": count} during the level

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Seconds: the p-th percentile of the server's own latency histogram for this level's requests,
        read as the dashboard and `pallet rollout status` read it (the client's timings in the same
        buckets when the server counted none)."""
        found = quantile_of_buckets(self.server_latency, p / 100)
        if found is None:
            found = quantile_of_counts(counts_of(self.latencies), p / 100)
        return float("nan") if found is None else found


def infer_body(model: Model, rows: int) -> bytes:
    """A V2 infer request of `rows` rows built from the version's stored sample."""
    sample = model.version.sample()
    tensors = []
    for spec in model.signature.inputs:
        data = sample[spec.name]
        data = np.resize(data, (rows, *data.shape[1:]))
        flat = data.reshape(-1).tolist()
        if data.dtype.kind in "SO":
            flat = [v.decode() if isinstance(v, bytes) else v for v in flat]
        tensors.append({"name": spec.name, "shape": list(data.shape), "datatype": datatype_of(spec.dtype),
                        "data": flat})
    return orjson.dumps({"inputs": tensors})


def in_process_rate(model: Model, rows: int, seconds: float) -> float:
    """Requests per second `model.predict` manages on the same rows, with no server at all."""
    sample = model.version.sample()
    inputs = {name: np.resize(value, (rows, *value.shape[1:])) for name, value in sample.items()}
    arrays = model.signature.validate(inputs)
    calls, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline and calls < MAX_REQUESTS:
        model.run(arrays)
        calls += 1
    return calls / (time.perf_counter() - started)


async def drive(url: str, body: bytes, concurrency: int, seconds: float) -> LevelResult:
    """Keep `concurrency` connections busy posting `body` to `url` for `seconds`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline and len(latencies) + errors < MAX_REQUESTS:
                sent = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                if status == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(connection() for _ in range(concurrency)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    errors += sum(1 for outcome in outcomes if isinstance(outcome, Exception))
    return LevelResult(concurrency, len(latencies), errors, elapsed, latencies)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
    return status


def server_counts(url: str, model: str) -> dict[str, Any]:
    """What the server has counted for `model` so far (every version and protocol), from /metrics:
    its latency histogram ({"le": cumulative count}) and the sum and count of its batch sizes."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, Any] = {"latency": {}, "batch_rows_sum": 0.0, "batches": 0.0}
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name == "pallet_request_duration_seconds_bucket":
                le = sample.labels["le"]
                counts["latency"][le] = counts["latency"].get(le, 0.0) + sample.value
            elif sample.name == "pallet_batch_rows_sum":
                counts["batch_rows_sum"] += sample.value
            elif sample.name == "pallet_batch_rows_count":
                counts["batches"] += sample.value
    return counts


class LocalServer:
    """`pallet serve REF` in a subprocess, pinned to the first core when there are two or more."""

    def __init__(self, ref: str, serve_args: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "pallet.cli", "serve", ref, "--port", str(self.port), "--no-access-log",
                   *serve_args]
        self.cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        first = min(self.cores, default=None)
        pin = (lambda: os.sched_setaffinity(0, {first})) if len(self.cores) >= 2 else None
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=pin)
        if pin:  # the load generator gets the other cores, until close()
            os.sched_setaffinity(0, self.cores - {first})
        self._wait_ready()

    def _wait_ready(self) -> None:
        try:
            wait_ready(self.url, self.process)
        except PalletError:
            self.close()
            raise

    def close(self) -> None:
        if len(self.cores) >= 2:
            os.sched_setaffinity(0, self.cores)
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_bench(model: Model, levels: list[int], seconds: float, rows: int, url: str | None,
              serve_args: list[str], progress: Callable[[str], None] = lambda _: None
              ) -> tuple[float, list[LevelResult]]:
    """In-process rate, then one result per concurrency level against `url` or a server of our own."""
    if not levels or any(level < 1 for level in levels):
        raise PalletError("--concurrency takes positive numbers, e.g. 1,8,32")
    if rows < 1:
        raise PalletError("--rows must be 1 or more")
    progress(f"in-process predict on {rows} row(s) for {format_duration(seconds)}")
    floor = in_process_rate(model, rows, seconds)
    body = infer_body(model, rows)
    server = None if url else LocalServer(str(model.ref), serve_args)
    base = (url or server.url).rstrip("/")
    target = f"{base}/v2/models/{model.ref.name}/infer"
    results = []
    try:
        asyncio.run(drive(target, body, 1, min(seconds, 1.0)))  # warm up
        for level in levels:
            progress(f"{level} concurrent connection(s) for {format_duration(seconds)}")
            before = server_counts(base, model.ref.name)
            result = asyncio.run(drive(target, body, level, seconds))
            after = server_counts(base, model.ref.name)
            calls = after["batches"] - before["batches"]
            result.mean_batch_rows = (after["batch_rows_sum"] - before["batch_rows_sum"]) / calls if calls else None
            result.server_latency = {le: n - before["latency"].get(le, 0.0) for le, n in after["latency"].items()}
            results.append(result)
    finally:
        if server:
            server.close()
    return floor, results
