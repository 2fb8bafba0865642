"""`pallet bench`: an honest answer for one model: the server under load beside in-process `predict`.

The load generator keeps `concurrency` HTTP/1.1 keep-alive connections busy for a
bounded time (and a bounded number of requests), each sending the same Open
Inference Protocol request and timing every answer.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import orjson

from pallet.errors import PalletError
from pallet.model import Model
from pallet.serve.codecs import datatype_of

MAX_REQUESTS = 2_000_000  # a bound on any one level, whatever the duration


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False, default_factory=list)
    mean_batch_rows: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies, p)) if self.latencies else float("nan")


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*", text)
    if not match:
        raise PalletError(f"bad duration '{text}': use e.g. 10s, 500ms or 1m")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[match.group(2)]
    if value <= 0:
        raise PalletError(f"duration must be more than zero, got '{text}'")
    return value


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


def batch_rows(url: str, model: str) -> tuple[float, float]:
    """(sum, count) of the model's batch sizes from /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = {kind: re.search(rf'^pallet_batch_rows_{kind}\{{model="{re.escape(model)}",version="[^"]*"\}} (\S+)$',
                             text, re.M) for kind in ("sum", "count")}
    return tuple(float(m.group(1)) if m else 0.0 for m in (found["sum"], found["count"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 60, path: str = "/v2/health/ready") -> None:
    """Return once `url + path` answers 200; `PalletError` if `process` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().strip() if process.stderr else ""
            raise PalletError(f"the server exited before it was ready: {error}")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise PalletError(f"the server did not become ready within {seconds:g}s")


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
    progress(f"in-process predict on {rows} row(s) for {seconds:g}s")
    floor = in_process_rate(model, rows, seconds)
    body = infer_body(model, rows)
    server = None if url else LocalServer(str(model.ref), serve_args)
    base = (url or server.url).rstrip("/")
    target = f"{base}/v2/models/{model.ref.name}/infer"
    results = []
    try:
        asyncio.run(drive(target, body, 1, min(seconds, 1.0)))  # warm up
        for level in levels:
            progress(f"{level} concurrent connection(s) for {seconds:g}s")
            before = batch_rows(base, model.ref.name)
            result = asyncio.run(drive(target, body, level, seconds))
            after = batch_rows(base, model.ref.name)
            calls = after[1] - before[1]
            result.mean_batch_rows = (after[0] - before[0]) / calls if calls else None
            results.append(result)
    finally:
        if server:
            server.close()
    return floor, results
