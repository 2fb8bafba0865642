"""`pallet bench` end to end: it starts its own server, or targets a running one."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pallet
from pallet.bench import drive, infer_body
from pallet.cli import app
from pallet.errors import PalletError
from pallet.units import parse_duration

PALLET = str(Path(sys.executable).parent / "pallet")


def run_cli(store, *args):
    return subprocess.run([PALLET, "bench", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PALLET_HOME": str(store.home), "PALLET_DB_URL": store.db_url,
                               "COLUMNS": "200"})


def test_bench_starts_a_server_and_reports_each_level(demo_store):
    done = run_cli(demo_store, "iris", "--concurrency", "1,4", "--duration", "500ms")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in lines] == ["1", "4"]
    for line in lines:
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        assert float(cells[1].replace(",", "")) > 0  # req/s
        assert cells[5] == "0"                       # errors
    assert "in-process predict on the same rows" in done.stdout


def test_bench_against_a_running_server(server, demo_store):
    done = run_cli(demo_store, "digits", "--url", server.url, "--concurrency", "2", "--duration", "300ms",
                   "--rows", "3")
    assert done.returncode == 0, done.stderr
    assert "3 row(s) per request" in done.stdout


def test_the_load_generator_counts_answers_and_errors(server, demo_store):
    model = pallet.load("iris", store=demo_store)
    ok = asyncio.run(drive(f"{server.url}/v2/models/iris/infer", infer_body(model, 2), 3, 0.3))
    assert ok.requests > 0 and ok.errors == 0 and len(ok.latencies) == ok.requests
    bad = asyncio.run(drive(f"{server.url}/v2/models/nosuch/infer", infer_body(model, 1), 2, 0.2))
    assert bad.requests == 0 and bad.errors > 0


@pytest.mark.parametrize("args, message", [
    (["iris", "--concurrency", "x"], "error: --concurrency takes numbers"),
    (["iris", "--concurrency", "0"], "error: --concurrency takes positive numbers"),
    (["iris", "--duration", "soon"], "error: 'soon' is not a duration"),
    (["iris", "--duration", "0s"], "error: duration must be more than zero"),
    (["nosuch"], "error: no model named 'nosuch'"),
])
def test_bench_mistakes_are_one_line(demo_store, monkeypatch, args, message):
    monkeypatch.setenv("PALLET_HOME", str(demo_store.home))
    monkeypatch.setenv("PALLET_DB_URL", demo_store.db_url)
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_durations():
    assert parse_duration("10s") == 10 and parse_duration("500ms") == 0.5 and parse_duration("1m") == 60
    with pytest.raises(PalletError, match="more than zero"):
        parse_duration("0s", positive=True)
