"""Deployment figures: bundle size, Lambda cold start, and nginx in front of 1 vs 2 replicas on this machine.

    .venv/bin/python benchmarks/deploy.py [--rounds 3] [--seconds 10]

Throughput is wrk (on 127.0.0.1, c=32, one row of digits per request to /v2/models/digits/infer)
through nginx; the rounds alternate 1 replica, 2 replicas. Results: benchmarks/results/deploy.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

import httpx
import numpy as np

from run import WORK, prepare_store, record, v2_body

from pallet.deploy.bundle import build, cold_start
from pallet.deploy.local import LocalCluster
from pallet.store import Store


def wrk_through(url: str, body: bytes, seconds: int, connections: int = 32) -> float:
    body_file, script = WORK / "deploy.body", WORK / "deploy.lua"
    body_file.write_bytes(body)
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                          f"{url}/v2/models/digits/infer"], capture_output=True, text=True, timeout=seconds + 60).stdout
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"errors under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def failed_during_kill(env: dict) -> dict:
    """Requests sent by 4 clients for 3 s while one of 3 replicas is SIGKILLed after 1 s."""
    results, stop = [], threading.Event()
    with LocalCluster(["digits"], replicas=3, port=18080, env=env) as cluster:
        def client():
            with httpx.Client(base_url=cluster.url, timeout=10) as http:
                while not stop.is_set():
                    try:
                        results.append(http.post("/v1/models/digits:predict", json={"instances": [[0.0] * 64]}).status_code)
                    except httpx.HTTPError:
                        results.append(0)
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1)
        cluster.kill_replica(0)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
    return {"requests": len(results), "failed": sum(1 for r in results if r != 200)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    home = prepare_store()
    env = {**os.environ, "PALLET_HOME": str(home)}
    env.pop("PALLET_DB_URL", None)
    store = Store(home, db_url=f"sqlite:///{home / 'index.db'}")
    out = WORK / "bundle"
    shutil.rmtree(out, ignore_errors=True)
    report = build(["digits"], out, store=store, targets=("lambda-image",))
    figures = {"bundle": {"models": ["digits"], "size_bytes": report.size_bytes,
                          "largest": [[name, size] for name, size in report.largest]},
               "lambda_cold_start_seconds": round(statistics.median(cold_start(out) for _ in range(3)), 3)}
    from sklearn.datasets import load_digits

    body = v2_body(load_digits().data[:1].astype(np.float64))
    rates: dict[int, list[float]] = {1: [], 2: []}
    for round_ in range(args.rounds):
        for replicas in (1, 2):
            print(f"  round {round_ + 1}/{args.rounds}: {replicas} replica(s)", file=sys.stderr)
            with LocalCluster(["digits"], replicas=replicas, port=18080, env=env) as cluster:
                wrk_through(cluster.url, body, 2)  # warm up
                rates[replicas].append(wrk_through(cluster.url, body, args.seconds))
    figures["nginx_replicas_c32"] = {str(n): {"rps": round(statistics.median(r), 1), "rounds": r} for n, r in rates.items()}
    figures["nginx_replicas_c32"]["ratio_2_vs_1"] = round(statistics.median(rates[2]) / statistics.median(rates[1]), 2)
    figures["replica_sigkill_under_load"] = failed_during_kill(env)
    record("deploy", "pallet build bundle size, Lambda cold start (fresh process to first answer), nginx in front "
           "of 1 vs 2 pallet replicas (wrk c=32, digits, one row; nginx, replicas and wrk share the 2 cores), and "
           "requests failed while one of 3 replicas is SIGKILLed", figures,
           f"benchmarks/deploy.py --rounds {args.rounds} --seconds {args.seconds}")


if __name__ == "__main__":
    main()
