"""Memory under a burst of near-limit bodies: 50 at once, each just under --max-body-mb.

    .venv/bin/python benchmarks/memory.py

For each body limit (1 MiB, and the default 16 MiB) and each --large-requests (4, the default, and
50, i.e. every request at once), one `pallet serve digits` on 127.0.0.1 gets one warm-up request,
its peak resident memory is reset (/proc/PID/clear_refs), then 50 concurrent V1 requests whose
bodies are JSON digits rows filling the limit. Recorded: the answers' statuses, and the server's
peak resident memory (VmHWM) above what it held before. Results: benchmarks/results/memory.json.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from run import WORK, record

from pallet.demo import train_demo_models
from pallet.net import free_port, wait_ready
from pallet.store import Store

BODIES = 50


def near_limit_body(limit_mib: int) -> bytes:
    row = ",".join(["16.0"] * 64)
    count = (limit_mib * 2**20 - 200) // (len(row) + 3)
    return ('{"instances": [' + ",".join(f"[{row}]" for _ in range(count)) + "]}").encode()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


async def burst(url: str, body: bytes) -> list[int]:
    limits = httpx.Limits(max_connections=BODIES)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        answers = await asyncio.gather(*(client.post("/v1/models/digits:predict", content=body)
                                         for _ in range(BODIES)))
    return [a.status_code for a in answers]


def measure(home: Path, limit_mib: int, turns: int) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "pallet.cli", "serve", "digits", "--port", str(port),
                               "--max-body-mb", str(limit_mib), "--large-requests", str(turns), "--no-access-log"],
                              env={**os.environ, "PALLET_HOME": str(home)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(url, server, 120)
        body = near_limit_body(limit_mib)
        httpx.post(f"{url}/v1/models/digits:predict", content=body, timeout=120).raise_for_status()
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        before = status_kib(server.pid, "VmRSS")
        started = time.perf_counter()
        statuses = asyncio.run(burst(url, body))
        seconds = time.perf_counter() - started
        peak = status_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"body_mib": round(len(body) / 2**20, 3), "large_requests": turns, "bodies": BODIES,
            "statuses": dict(collections.Counter(statuses)), "rss_before_mib": round(before / 1024, 1),
            "peak_growth_mib": round((peak - before) / 1024, 1), "seconds": round(seconds, 1)}


def main() -> None:
    command = " ".join([".venv/bin/python benchmarks/memory.py", *sys.argv[1:]])
    home = WORK / "memory-home"
    if not (home / "models" / "digits").exists():
        train_demo_models(Store(home), torch_models=())
    figures = []
    for limit_mib in (1, 16):
        for turns in (4, BODIES):
            figures.append(measure(home, limit_mib, turns))
            print(figures[-1], flush=True)
    record("memory", __doc__.strip().splitlines()[0], figures, command)


if __name__ == "__main__":
    main()
