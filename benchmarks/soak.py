"""Soak: one `pallet serve` under a steady, moderate mix of every protocol for a bounded time.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 200]

`pallet serve digits iris --grpc-port` runs pinned to core 0; one client process on core 1 sends
`--rate` requests a second at a fixed pace (open loop, at most 64 in flight) on 127.0.0.1,
cycling through: V2 JSON, V2 binary tensors, V2 over gRPC, V1 instances, SageMaker JSON and CSV,
MLflow dataframe_split, Azure ML /score, and a malformed request that must get 400. An error is
any other status or an answer that differs from the first answer to the same request. Every 10 s
the server's resident memory (VmRSS of the process) is read. Results: benchmarks/results/soak.json,
with RSS per minute and its growth from minute 2 to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np

from run import WORK, record

from pallet.demo import train_demo_models
from pallet.net import free_port, wait_ready
from pallet.quantiles import counts_of, quantile_of_counts
from pallet.serve.protocols.proto import grpc_service_pb2 as pb
from pallet.serve.protocols.proto import grpc_service_pb2_grpc as rpc
from pallet.store import Store

DIGIT = [float(v) for v in np.arange(64) % 16]
IRIS = [5.1, 3.5, 1.4, 0.2]
BINARY_HEADER = json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 64],
                                        "parameters": {"binary_data_size": 512}}],
                            "outputs": [{"name": "label", "parameters": {"binary_data": False}}]}).encode()
HTTP_KINDS = {
    "v2 json": ("POST", "/v2/models/digits/infer", {"content-type": "application/json"},
                json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 64], "data": DIGIT}]})),
    "v2 binary": ("POST", "/v2/models/digits/infer",
                  {"content-type": "application/octet-stream", "inference-header-content-length": str(len(BINARY_HEADER))},
                  BINARY_HEADER + np.array(DIGIT, dtype="<f8").tobytes()),
    "v1": ("POST", "/v1/models/iris:predict", {"content-type": "application/json"},
           json.dumps({"instances": [IRIS, IRIS]})),
    "sagemaker json": ("POST", "/invocations", {"content-type": "application/json",
                                                "x-amzn-sagemaker-target-model": "iris"},
                       json.dumps({"instances": [IRIS]})),
    "sagemaker csv": ("POST", "/invocations", {"content-type": "text/csv", "x-amzn-sagemaker-target-model": "iris"},
                      ",".join(map(str, IRIS)) + "\n"),
    "mlflow": ("POST", "/invocations", {"content-type": "application/json", "x-amzn-sagemaker-target-model": "iris"},
               json.dumps({"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [IRIS]}})),
    "azure": ("POST", "/score?model=iris", {"content-type": "application/json"},
              json.dumps({"input_data": {"data": [IRIS]}})),
    "malformed": ("POST", "/v2/models/digits/infer", {"content-type": "application/json"}, '{"inputs": [{"name": 1'),
}
EXPECTED_STATUS = {"malformed": 400}
KINDS = [*HTTP_KINDS, "grpc"]


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def agrees(expected: bytes, got: bytes) -> bool:
    """The same answer: equal labels and text, numbers within 1e-9 (a row batched with others may
    differ in the last bits of its probabilities)."""
    if expected == got:
        return True
    try:
        return _close(json.loads(expected), json.loads(got))
    except ValueError:
        return False


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-9
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


async def soak(url: str, grpc_address: str, pid: int, seconds: float, rate: float) -> dict:
    counts = {kind: {"requests": 0, "errors": 0} for kind in KINDS}
    first: dict[str, bytes] = {}
    examples: list[str] = []
    latencies: list[float] = []
    memory: list[tuple[float, float]] = []
    in_flight = asyncio.Semaphore(64)
    skipped = 0
    channel = grpc.aio.insecure_channel(grpc_address)
    stub = rpc.GRPCInferenceServiceStub(channel)
    grpc_request = pb.ModelInferRequest(model_name="digits", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP64", shape=[1, 64], contents=pb.InferTensorContents(fp64_contents=DIGIT))])

    async def one(client: httpx.AsyncClient, kind: str) -> None:
        started = time.perf_counter()
        try:
            if kind == "grpc":
                reply = await stub.ModelInfer(grpc_request, timeout=30)
                labels = [list(out.contents.int64_contents) for out in reply.outputs if out.name == "label"]
                status, body = 200, json.dumps(labels).encode()
            else:
                method, path, headers, content = HTTP_KINDS[kind]
                response = await client.request(method, path, headers=headers, content=content)
                status, body = response.status_code, response.content
        except Exception as error:  # counted and kept as an example: the soak goes on
            status, body = 0, repr(error).encode()
        latencies.append(time.perf_counter() - started)
        counts[kind]["requests"] += 1
        same = agrees(first.setdefault(kind, body), body) if status == EXPECTED_STATUS.get(kind, 200) else False
        if not same:
            counts[kind]["errors"] += 1
            if len(examples) < 10:
                examples.append(f"{kind}: {status} {body[:200]!r}")
        in_flight.release()

    async def sample_memory(started: float) -> None:
        while True:
            memory.append((time.monotonic() - started, resident_mib(pid)))
            await asyncio.sleep(10)

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        started = time.monotonic()
        sampler = asyncio.create_task(sample_memory(started))
        tasks = set()
        sent = 0
        while (now := time.monotonic() - started) < seconds:
            due = int(now * rate)
            while sent < due:
                if in_flight.locked():
                    skipped += 1
                else:
                    await in_flight.acquire()
                    task = asyncio.create_task(one(client, KINDS[sent % len(KINDS)]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        memory.append((time.monotonic() - started, resident_mib(pid)))
        sampler.cancel()
    await channel.close()
    total = sum(c["requests"] for c in counts.values())
    return {"seconds": seconds, "rate_per_s": rate, "requests": total,
            "errors": sum(c["errors"] for c in counts.values()), "not_sent_at_64_in_flight": skipped,
            "by_kind": counts, "error_examples": examples, **latency_figures(latencies),
            **memory_figures(memory, seconds)}


def latency_figures(latencies: list[float]) -> dict:
    """p50 and p99 in ms, the client's timings counted into the server's latency buckets and read as
    `pallet bench`, the dashboard and `pallet rollout status` read them."""
    counts = counts_of(latencies)
    return {"p50_ms": round(quantile_of_counts(counts, 0.50) * 1000, 2),
            "p99_ms": round(quantile_of_counts(counts, 0.99) * 1000, 2)}


def memory_figures(memory: list[tuple[float, float]], seconds: float) -> dict:
    """The median resident MiB of each minute, and its growth from minute 2 (or the first) to the last."""
    per_minute = {}
    for at, mib in memory:
        per_minute.setdefault(int(at // 60) + 1 if at < seconds else int(seconds // 60), []).append(mib)
    minutes = {minute: round(statistics.median(values), 1) for minute, values in sorted(per_minute.items())}
    base_minute = 2 if len(minutes) > 2 else min(minutes)
    growth = (minutes[max(minutes)] - minutes[base_minute]) / minutes[base_minute] * 100
    return {"rss_mib_by_minute": minutes, "rss_growth_percent": round(growth, 2), "rss_growth_from_minute": base_minute}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python benchmarks/soak.py", *sys.argv[1:]])
    home = WORK / "soak-home"
    if not (home / "models" / "digits").exists():
        train_demo_models(Store(home), torch_models=())
    port, grpc_port = free_port(), free_port()
    log = open(WORK / "soak-server.log", "w")
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "pallet.cli", "serve", "digits", "iris",
                               "--port", str(port), "--grpc-port", str(grpc_port), "--no-access-log"],
                              env={**os.environ, "PALLET_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server, 120)
        os.sched_setaffinity(0, {1})
        figures = asyncio.run(soak(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", server.pid,
                                   args.minutes * 60, args.rate))
    finally:
        server.terminate()
        server.wait(timeout=60)
    record("soak", __doc__.strip().splitlines()[0], figures, command)
    if figures["errors"] or figures["rss_growth_percent"] >= 5:
        sys.exit(f"soak: {figures['errors']} errors, resident memory grew {figures['rss_growth_percent']}%")


if __name__ == "__main__":
    main()
