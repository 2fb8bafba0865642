"""pallet's benchmarks, one command: `make bench` (or `.venv/bin/python benchmarks/run.py`).

Every server runs pinned to core 0 and wrk to core 1 (`taskset`), targets alternate
A B A B over the rounds, and the medians are recorded in benchmarks/results/*.json
with the command, versions and machine. Peers (MLServer, LitServe, BentoML) run from
their own virtual environments made by benchmarks/peers.sh, when they are there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np

from pallet.net import free_port, wait_ready
from pallet.errors import PalletError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
VENVS = HERE / ".venvs"
RESULTS = HERE / "results"
PALLET = [sys.executable, "-m", "pallet.cli"]


@dataclass
class Target:
    name: str
    command: list[str]
    path: str                      # the inference route
    body: bytes
    ready: str = "/v2/health/ready"
    env: dict[str, str] = field(default_factory=dict)
    cores: str = "0"
    cwd: Path = ROOT
    cleanup: list[str] = field(default_factory=list)   # run after the server stops


class Running:
    def __init__(self, target: Target, port: int):
        self.target, self.port = target, port
        log = open(WORK / f"{target.name}.log", "w")
        command = ["taskset", "-c", target.cores, *[c.replace("{port}", str(port)) for c in target.command]]
        env = {**os.environ, **{k: v.replace("{port}", str(port)) for k, v in target.env.items()}}
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=target.cwd,
                                        env=env, start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}", self.process, 180, target.ready)
        except PalletError as e:
            self.stop()
            raise RuntimeError(f"{target.name}: {e}; see {log.name}") from None
        check = httpx.post(f"http://127.0.0.1:{port}{target.path}", content=target.body,
                           headers={"Content-Type": "application/json"}, timeout=30)
        if check.status_code != 200:
            self.stop()
            raise RuntimeError(f"{target.name} answered {check.status_code}: {check.text[:300]}")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.target.cleanup:
            subprocess.run(self.target.cleanup, capture_output=True, timeout=120)


def wrk(port: int, target: Target, connections: int, seconds: float, cores: str = "1") -> dict:
    body_file = WORK / f"{target.name}.body"
    body_file.write_bytes(target.body)
    script = WORK / f"{target.name}.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n')
    out = subprocess.run(["taskset", "-c", cores, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-s", str(script), f"http://127.0.0.1:{port}{target.path}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?timeout)\s*:?\s*(\d+)", out))
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)$", out, re.M)}
    return {"rps": rate, "p50_ms": percentiles.get("50"), "p90_ms": percentiles.get("90"),
            "p99_ms": percentiles.get("99"), "errors": errors}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def measure(targets: list[Target], levels: list[int], rounds: int, seconds: float, wrk_cores: str = "1") -> dict:
    """{target: {concurrency: median figures}}, the targets alternating A B A B within each round."""
    runs: dict[str, dict[int, list[dict]]] = {t.name: {c: [] for c in levels} for t in targets}
    for round_number in range(rounds):
        for target in targets:
            port = free_port()
            print(f"  round {round_number + 1}/{rounds}: {target.name}", flush=True)
            server = Running(target, port)
            try:
                wrk(port, target, max(levels), 1, wrk_cores)  # warm up
                for level in levels:
                    runs[target.name][level].append(wrk(port, target, level, seconds, wrk_cores))
            finally:
                server.stop()
    return {name: {str(c): _median(r) for c, r in by_level.items()} for name, by_level in runs.items()}


def _median(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p90_ms", "p99_ms")
    out = {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in keys}
    out["errors"] = sum(r["errors"] for r in runs)
    out["rounds"] = [round(r["rps"], 1) for r in runs]
    return out


# -- set-up ---------------------------------------------------------------------------------

def prepare_store() -> Path:
    """A store with the demo models and a batch-friendly MLP, made once."""
    home = WORK / "home"
    env = {**os.environ, "PALLET_HOME": str(home)}
    if not (home / "models" / "digits").exists():
        subprocess.run([*PALLET, "demo"], env=env, check=True, capture_output=True)
    # "mlp": 64-512-512-10, weights fit in cache; "mlp-wide": 64-2048-2048-10, 34 MB of weights read
    # once per predict call, however many rows it carries: the batch-friendly model.
    for name, hidden, iterations in (("mlp", (512, 512), 30), ("mlp-wide", (2048, 2048), 5)):
        if (home / "models" / name).exists():
            continue
        code = ("import warnings; warnings.simplefilter('ignore')\nimport pallet\n"
                "from sklearn.datasets import load_digits\nfrom sklearn.neural_network import MLPClassifier\n"
                f"X, y = load_digits(return_X_y=True)\nm = MLPClassifier({hidden}, max_iter={iterations}, "
                f"random_state=0).fit(X, y)\npallet.save(m, '{name}', sample=X[:5], metrics={{'accuracy': m.score(X, y)}})\n")
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return home


def baseline(rev: str) -> tuple[Path, dict[str, str]]:
    """pallet's source at git revision `rev` and a store made by it, to serve beside today's code."""
    src = WORK / f"baseline-{rev}"
    if not src.exists():
        src.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    home = WORK / f"home-{rev}"
    env = {"PALLET_HOME": str(home), "PYTHONPATH": str(src / "src")}
    if not (home / "models" / "digits").exists():
        code = "from pallet.demo import train_demo_models\nfrom pallet.store import default_store\n" \
               "train_demo_models(default_store())\n"
        subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, capture_output=True)
    return home, env


def v2_body(rows: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP64",
                                   "data": rows.reshape(-1).tolist()}]}).encode()


def pallet_target(home: Path, name: str, model: str, body: bytes, *args: str, cores: str = "0") -> Target:
    return Target(name, [*PALLET, "serve", model, "--port", "{port}", "--no-access-log", *args],
                  f"/v2/models/{model}/infer", body, env={"PALLET_HOME": str(home)}, cores=cores)


def peer_targets(artifact: Path, row: list[float]) -> list[Target]:
    peers = []
    if (VENVS / "mlserver" / "bin" / "mlserver").exists():
        folder = WORK / "mlserver"
        (folder / "digits").mkdir(parents=True, exist_ok=True)
        shutil.copy(artifact, folder / "digits" / "model.joblib")
        (folder / "digits" / "model-settings.json").write_text(json.dumps({
            "name": "digits", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"}}))
        (folder / "settings.json").write_text(json.dumps({"parallel_workers": 0, "metrics_endpoint": None}))
        peers.append(Target("mlserver", [str(VENVS / "mlserver" / "bin" / "mlserver"), "start", str(folder)],
                            "/v2/models/digits/infer", v2_body(np.array([row])),
                            env={"MLSERVER_HTTP_PORT": "{port}", "MLSERVER_GRPC_PORT": str(free_port())}))
    if (VENVS / "litserve" / "bin" / "python").exists():
        peers.append(Target("litserve", [str(VENVS / "litserve" / "bin" / "python"), str(HERE / "apps" / "litserve_app.py"),
                                         str(artifact), "{port}"], "/predict", json.dumps({"input": row}).encode(),
                            ready="/health"))
    if (VENVS / "bentoml" / "bin" / "bentoml").exists():
        peers.append(Target("bentoml", [str(VENVS / "bentoml" / "bin" / "bentoml"), "serve", "bentoml_service:Digits",
                                        "--port", "{port}"], "/predict", json.dumps({"rows": [row]}).encode(),
                            ready="/readyz", env={"DIGITS_MODEL": str(artifact)}, cwd=HERE / "apps"))
    if (VENVS / "rayserve" / "bin" / "python").exists():
        peers.append(Target("rayserve", [str(VENVS / "rayserve" / "bin" / "python"), str(HERE / "apps" / "rayserve_app.py"),
                                         str(artifact), "{port}"], "/predict", json.dumps({"rows": [row]}).encode(),
                            ready="/-/healthz", cleanup=[str(VENVS / "rayserve" / "bin" / "ray"), "stop", "--force"]))
    return peers


def versions() -> dict:
    names = ["pallet", "numpy", "scikit-learn", "starlette", "uvicorn", "onnxruntime"]
    found = {n: metadata.version(n) for n in names}
    for peer, package in (("mlserver", "mlserver"), ("litserve", "litserve"), ("bentoml", "bentoml"),
                          ("rayserve", "ray")):
        pip = VENVS / peer / "bin" / "python"
        if pip.exists():
            out = subprocess.run([str(pip), "-c", f"from importlib.metadata import version; print(version('{package}'))"],
                                 capture_output=True, text=True)
            found[package] = out.stdout.strip()
    if shutil.which("wrk"):
        found["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return found


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") *
            os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "python": platform.python_version(), "os": platform.platform()}


def record(name: str, description: str, figures: dict, command: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    doc = {"benchmark": name, "description": description, "command": command,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "versions": versions(), "results": figures}
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(figures, indent=1))


# -- the benchmarks ---------------------------------------------------------------------------

def serving(home: Path, row: np.ndarray, artifact: Path, args: argparse.Namespace, command: str, peers: bool) -> None:
    """pallet beside a bare Starlette app on the same model (and pallet at --baseline, and the peers)."""
    targets = [pallet_target(home, "pallet", "digits", v2_body(row)),
               Target("bare-starlette", [sys.executable, str(HERE / "apps" / "bare.py"), "--model", str(artifact),
                                         "--port", "{port}"], "/v2/models/digits/infer", v2_body(row))]
    if args.baseline:
        base_home, base_env = baseline(args.baseline)
        old = pallet_target(base_home, f"pallet-{args.baseline}", "digits", v2_body(row))
        old.env = base_env
        targets.insert(1, old)
    if peers:
        targets += peer_targets(artifact, row[0].tolist())
    figures = measure(targets, [1, 32], args.rounds, args.seconds)
    # beside a baseline, the figures go to a file of their own: serving.json keeps the peers' comparison
    record(f"serving-vs-{args.baseline}" if args.baseline else "serving",
           "digits scikit-learn pipeline, one row per request, one core per server, wrk on the other core; "
           "medians" + (f"; pallet-{args.baseline} is pallet's source at that git revision" if args.baseline else ""),
           figures, command)


def batching(home: Path, x: np.ndarray, args: argparse.Namespace, command: str) -> None:
    body = v2_body(x[:1])
    targets = [pallet_target(home, "mlp-wide-batching-on", "mlp-wide", body, "--max-batch-size", "64"),
               pallet_target(home, "mlp-wide-batching-off", "mlp-wide", body, "--max-batch-size", "1"),
               pallet_target(home, "mlp-batching-on", "mlp", body, "--max-batch-size", "64"),
               pallet_target(home, "mlp-batching-off", "mlp", body, "--max-batch-size", "1")]
    record("batching", "sklearn MLPs on digits, one row per request, c=64, batching on vs off: mlp-wide is "
           "64-2048-2048-10 (34 MB of weights per call), mlp is 64-512-512-10",
           measure(targets, [64], args.rounds, args.seconds), command)


def workers(home: Path, x: np.ndarray, args: argparse.Namespace, command: str) -> None:
    body = v2_body(x[:64])
    both = "0,1"
    targets = [pallet_target(home, "mlp-1-worker", "mlp", body, "--max-batch-size", "1", cores=both),
               pallet_target(home, "mlp-2-workers", "mlp", body, "--workers", "2", "--max-batch-size", "1",
                             cores=both),
               pallet_target(home, "mlp-2-workers-2-threads-each", "mlp", body, "--workers", "2", "--threads", "2",
                             "--max-batch-size", "1", cores=both)]
    record("workers", "sklearn MLP, 64 rows per request, c=8, both cores to the server (wrk shares them)",
           measure(targets, [8], args.rounds, args.seconds, wrk_cores="0,1"), command)


def cache(home: Path, x: np.ndarray, args: argparse.Namespace, command: str) -> None:
    body = v2_body(x[:1])
    targets = [pallet_target(home, "mlp-cache-memory", "mlp", body, "--cache", "memory", "--max-batch-size", "1"),
               pallet_target(home, "mlp-no-cache", "mlp", body, "--max-batch-size", "1")]
    record("cache", "sklearn MLP, the same row repeated, c=32, memory cache vs none",
           measure(targets, [32], args.rounds, args.seconds), command)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="floor,peers,batching,workers,cache")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--baseline", metavar="REV", help="Also serve pallet as it was at this git revision "
                        "(floor and peers), e.g. to compare a change with main.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("benchmarks need wrk and taskset: apt-get install -y wrk util-linux")
    WORK.mkdir(exist_ok=True)
    command = "make bench  # " + " ".join(sys.argv)
    home = prepare_store()
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    artifact = next((home / "models" / "digits").glob("*/model.joblib"))
    only = set(args.only.split(","))
    if "floor" in only or "peers" in only:
        serving(home, x[:1], artifact, args, command, peers="peers" in only)
    if "batching" in only:
        batching(home, x, args, command)
    if "workers" in only:
        workers(home, x, args, command)
    if "cache" in only:
        cache(home, x, args, command)


if __name__ == "__main__":
    main()
