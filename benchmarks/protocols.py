"""REST vs gRPC on one pallet server: Triton's own clients, the same tensors, the same data plane.

    .venv/bin/python benchmarks/protocols.py [--rounds 3] [--seconds 10]

One `pallet serve digits minilm --grpc-port` pinned to core 0; the load comes from client
processes pinned to core 1 (tritonclient.http with binary tensors for REST, tritonclient.grpc
with raw tensors for gRPC: the same client library and encoding work on both sides), each
process running closed loops on its own threads: c=1 is one process, c=32 is 4 processes x 8
threads. Workloads: digits, one row of 64 FP64 per request; minilm, a batch of 64 sentences
per request (BYTES in, 64 x 384 FP32 out, about 98 KB of answer). REST and gRPC alternate
within each round; medians over rounds. Results: benchmarks/results/protocols.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from run import WORK, machine, prepare_store

from pallet.demo import register_minilm
from pallet.export.data import sentences
from pallet.net import free_port, wait_ready
from pallet.quantiles import counts_of, quantile_of_counts
from pallet.store import Store

RESULTS = Path(__file__).parent / "results"
WORKLOADS = {"digits, 1 row": "digits", "minilm, 64 sentences": "minilm"}
CONCURRENCY = {1: (1, 1), 32: (4, 8)}   # c -> (processes, threads each)


def inputs(protocol: str, workload: str):
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    module = grpc_client if protocol == "grpc" else http_client
    if workload == "digits":
        tensor = module.InferInput("input", [1, 64], "FP64")
        tensor.set_data_from_numpy(np.arange(64, dtype=np.float64).reshape(1, 64) % 17)
    else:
        tensor = module.InferInput("text", [64], "BYTES")
        tensor.set_data_from_numpy(sentences(64))
    return [tensor]


def client_process(protocol: str, address: str, workload: str, threads: int, seconds: float, out) -> None:
    """Closed loops on `threads` threads for `seconds`; puts (requests, errors, latencies) on `out`."""
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    results = []

    def loop() -> None:
        if protocol == "grpc":
            client = grpc_client.InferenceServerClient(address)
            outputs = None
        else:
            client = http_client.InferenceServerClient(address, connection_timeout=60, network_timeout=60)
            outputs = [http_client.InferRequestedOutput(name, binary_data=True) for name in
                       (("label", "probabilities") if workload == "digits" else ("embedding",))]
        tensors = inputs(protocol, workload)
        latencies, errors = [], 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:  # bounded by the deadline
            start = time.perf_counter()
            try:
                client.infer(workload, tensors, outputs=outputs)
                latencies.append(time.perf_counter() - start)
            except Exception:
                errors += 1
        results.append((latencies, errors))

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(([x for lat, _ in results for x in lat], sum(e for _, e in results)))


def drive(protocol: str, address: str, workload: str, c: int, seconds: float) -> dict:
    processes, threads = CONCURRENCY[c]
    queue = multiprocessing.Queue()
    os.sched_setaffinity(0, {1})  # children inherit core 1
    procs = [multiprocessing.Process(target=client_process, args=(protocol, address, workload, threads, seconds,
                                                                  queue)) for _ in range(processes)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    collected = [queue.get(timeout=seconds + 120) for _ in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    latencies = [x for lat, _ in collected for x in lat]
    errors = sum(e for _, e in collected)
    counts = counts_of(latencies)  # the server's latency buckets, read as `pallet bench` reads client timings
    return {"requests_per_s": len(latencies) / elapsed, "p50_ms": quantile_of_counts(counts, 0.50) * 1000,
            "p99_ms": quantile_of_counts(counts, 0.99) * 1000, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python benchmarks/protocols.py", *sys.argv[1:]])
    WORK.mkdir(exist_ok=True)
    home = prepare_store()
    store = Store(home)
    if not (home / "models" / "minilm").exists():
        register_minilm(store)
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "PALLET_HOME": str(home)}
    log = open(WORK / "grpc-server.log", "w")
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "pallet.cli", "serve", "digits", "minilm",
                               "--port", str(port), "--grpc-port", str(grpc_port), "--no-access-log"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    figures: dict = {}
    try:
        wait_ready(f"http://127.0.0.1:{port}", server, 180)
        for workload_label, workload in WORKLOADS.items():
            for c in CONCURRENCY:
                runs: dict[str, list[dict]] = {"REST": [], "gRPC": []}
                for _ in range(args.rounds):
                    for label, protocol, address in (("REST", "http", f"127.0.0.1:{port}"),
                                                     ("gRPC", "grpc", f"127.0.0.1:{grpc_port}")):
                        runs[label].append(drive(protocol, address, workload, c, args.seconds))
                for label, results in runs.items():
                    row = {key: statistics.median(r[key] for r in results)
                           for key in ("requests_per_s", "p50_ms", "p99_ms")}
                    row["errors"] = sum(r["errors"] for r in results)
                    figures.setdefault(workload_label, {}).setdefault(f"c={c}", {})[label] = row
                    print(f"{workload_label:22} c={c:<3} {label:5} {row['requests_per_s']:9.1f} req/s  "
                          f"p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  errors {row['errors']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    doc = {"benchmark": "protocols", "description": __doc__.strip().splitlines()[0], "command": command,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "versions": {n: metadata.version(n) for n in ("pallet", "grpcio", "protobuf", "tritonclient", "uvicorn",
                                                           "starlette", "onnxruntime", "torch")},
           "results": figures}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "protocols.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
