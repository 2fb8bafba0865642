"""Fuzzing, longer than `make test` runs it: how many inputs each target tried, and what it found.

    .venv/bin/python benchmarks/fuzz.py [--runs 2000000] [--examples 100]

- Coverage-guided (atheris, libFuzzer): every target in tests/fuzz/decoders.py for `--runs`
  inputs from its seeds; a decoder raising anything but pallet's declared errors is a crash.
- schemathesis from the server's /openapi.json against `pallet serve` with the demo models, every
  phase (examples, coverage, fuzzing, stateful), `--examples` per operation: once without the API
  key (admin operations answer 401) and once with it (they run, and may unload models).
Results: benchmarks/results/fuzz.json; a crash or a failed check exits 1.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from run import WORK, record

from pallet.demo import train_demo_models
from pallet.net import free_port, wait_ready
from pallet.store import Store

HERE = Path(__file__).parent
HARNESS = HERE.parent / "tests" / "fuzz" / "decoders.py"
TARGETS = ["v2_request", "binary_tensor", "csv", "v1_instances", "signature_validate"]
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
BIN = Path(sys.executable).parent


def coverage_guided(target: str, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as corpus:
        done = subprocess.run([sys.executable, str(HARNESS), target, f"-runs={runs}", "-seed=1", "-max_len=4096",
                               f"-artifact_prefix={WORK}/fuzz-{target}-", corpus],
                              capture_output=True, text=True)
        tried = re.search(r"^Done (\d+) runs in (\d+) second", done.stderr, re.M)
        coverage = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", done.stderr)
        return {"inputs_tried": int(tried.group(1)) if tried else None, "seconds": int(tried.group(2)) if tried else None,
                "edges_covered": int(coverage[-1][0]) if coverage else None,
                "corpus_entries": int(coverage[-1][2]) if coverage else None,
                "crash": None if done.returncode == 0 else done.stderr[-1500:]}  # the input is kept in WORK


def schemathesis(examples: int, key: str | None) -> dict:
    home = WORK / "fuzz-home"
    if not (home / "models" / "digits").exists():
        train_demo_models(Store(home), torch_models=())
    port = free_port()
    env = {**os.environ, "PALLET_HOME": str(home), "PALLET_API_KEY": "fuzz-" + os.urandom(8).hex()}
    server = subprocess.Popen([str(BIN / "pallet"), "serve", "digits", "iris", "digits-onnx", "--port", str(port),
                               "--no-access-log"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server, 120)
        auth = ["-H", f"Authorization: Bearer {env['PALLET_API_KEY']}"] if key else []
        done = subprocess.run([str(BIN / "st"), "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", CHECKS,
                               "--max-examples", str(examples), "--workers", "1", "--no-color", *auth],
                              capture_output=True, text=True, cwd=WORK)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=60)
    cases = re.search(r"(\d+) generated, (\d+) (?:passed|found)", done.stdout)
    return {"with_api_key": bool(key), "cases_generated": int(cases.group(1)) if cases else None,
            "operations": int(m.group(1)) if (m := re.search(r"Tested: (\d+)", done.stdout)) else None,
            "passed": done.returncode == 0, "server_tracebacks": err.count("Traceback"),
            "failures": None if done.returncode == 0 else done.stdout[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2_000_000)
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python benchmarks/fuzz.py", *sys.argv[1:]])
    WORK.mkdir(exist_ok=True)
    figures = {"atheris": {}, "schemathesis": []}
    for target in TARGETS:
        figures["atheris"][target] = coverage_guided(target, args.runs)
        print(target, figures["atheris"][target], flush=True)
    for key in (None, "key"):
        figures["schemathesis"].append(schemathesis(args.examples, key))
        print(figures["schemathesis"][-1], flush=True)
    record("fuzz", __doc__.strip().splitlines()[0], figures, command)
    failed = [t for t, r in figures["atheris"].items() if r["crash"]] + \
             [f"schemathesis (key: {r['with_api_key']})" for r in figures["schemathesis"]
              if not r["passed"] or r["server_tracebacks"]]
    if failed:
        sys.exit("fuzzing found problems in: " + ", ".join(failed))


if __name__ == "__main__":
    main()
