"""`pallet rollout` against replicas with several workers each, behind nginx, sharing PostgreSQL."""

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pallet.batch.records import RunLog, RunRecord
from pallet.cli import app
from pallet.demo import train_demo_models
from pallet.deploy.local import LocalCluster
from pallet.net import free_port
from pallet.store import Store, default_store
from tests.serve.test_rollouts import Load, wait_for

PALLET = str(Path(sys.executable).parent / "pallet")


@pytest.fixture
def shared_env(tmp_path, postgres_url):
    """A store in PostgreSQL: digits:1 @production, digits:2 @candidate (trained the same way)."""
    store = Store(tmp_path / "home", postgres_url)
    train_demo_models(store, torch_models=())
    train_demo_models(store, alias="candidate", torch_models=())
    return {"PALLET_HOME": str(store.home), "PALLET_DB_URL": postgres_url}


@pytest.fixture(scope="module")
def local_env(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("rollout-cli") / "home")
    train_demo_models(store, torch_models=())
    train_demo_models(store, alias="candidate", torch_models=())
    return {"PALLET_HOME": str(store.home), "PALLET_DB_URL": store.db_url}


def pallet(env, *args, timeout=120):
    return subprocess.run([PALLET, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def test_every_worker_of_every_replica_follows_the_cli(shared_env):
    with LocalCluster(["digits@production"], replicas=2, port=free_port(), serve_args=["--workers", "2"],
                      env=shared_env) as cluster, Load(cluster.url, clients=4, limit=20_000) as load:
        wait_for(lambda: len(load.recent(100)) == 100, what="load through nginx")

        promoted = pallet(shared_env, "rollout", "promote", "digits", "--to", "digits@candidate", "--reason", "retrained")
        assert promoted.returncode == 0, promoted.stderr
        assert "digits: single, stable digits:2" in promoted.stdout
        wait_for(lambda: {v for _, v, _ in load.recent(200)} == {"2"}, what="all four workers to serve digits:2")

        assert pallet(shared_env, "rollout", "rollback", "digits").returncode == 0
        wait_for(lambda: {v for _, v, _ in load.recent(200)} == {"1"}, what="all four workers to serve digits:1")

        canary = pallet(shared_env, "rollout", "start", "digits", "--to", "digits:2", "--steps", "50,100",
                        "--step-duration", "3s", "--min-requests", "20", "--wait", timeout=90)
        assert canary.returncode == 0, canary.stderr
        assert "digits:2 serves 100% of 'digits'" in canary.stdout
        wait_for(lambda: {v for _, v, _ in load.recent(200)} == {"2"}, what="the canary's promotion")
        status = json.loads(pallet(shared_env, "rollout", "status", "digits", "--json").stdout)
    statuses = Counter(status for status, _, _ in load.results)
    assert statuses == {200: len(load.results)}, statuses
    assert status["mode"] == "single" and status["stable"] == "2" and status["previous"] == "1"
    assert status["versions"][0]["requests"] > 0  # counted by the replicas, read from the store

    history = pallet(shared_env, "rollout", "history", "digits", "--json")
    events = json.loads(history.stdout)
    assert [e["action"] for e in events if e["action"] != "hold"] == ["promote", "rollback", "start", "promote"]
    assert events[0]["reason"] == "retrained"
    assert "canary complete" in events[-1]["reason"] and events[-1]["actor"].startswith("canary on ")
    table = pallet(shared_env, "rollout", "history", "digits").stdout
    assert "rollback" in table and "retrained" in table


@pytest.mark.parametrize("args, message", [
    (["rollout", "promote", "digits", "--to", "digits:99"], "error: model 'digits' has no version 99"),
    (["rollout", "promote", "digits", "--to", "iris:1"], "error: 'iris:1' is a version of 'iris', not of 'digits'"),
    (["rollout", "status", "digits"], "error: 'digits' has no rollout yet"),
    (["rollout", "rollback", "digits"], "error: 'digits' has no rollout yet"),
    (["rollout", "status", "x"], "error: no model named 'x' in the store at "),
    (["rollout", "history", "x"], "error: no model named 'x' in the store at "),
    (["rollout", "split", "digits", "digits:1=ninety"], "error: 'digits:1=ninety' is not VERSION=WEIGHT"),
    (["rollout", "split", "digits", "digits:1=-1"], "error: version 1: weight must be a number >= 0"),
    (["rollout", "start", "digits", "--to", "digits:2", "--steps", "50,20"], "error: --steps must be increasing"),
    (["rollout", "start", "digits", "--to", "digits:2", "--steps", "a,b"], "error: --steps must be percentages"),
    (["rollout", "start", "digits", "--to", "digits:2", "--step-duration", "soon"], "error: 'soon' is not a duration"),
    (["rollout", "shadow", "digits", "--to", "digits:1"], "error: digits:1 is the version serving 'digits'"),
    (["rollout", "start", "digits"], "error: Missing option '--to'"),
])
def test_cli_mistakes_are_one_line_and_non_zero(local_env, monkeypatch, args, message):
    for name, value in local_env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message.lower() in result.stderr.lower(), result.stderr
    assert "Traceback" not in result.output


def test_the_same_duration_reads_the_same_in_show_config_batch_check_and_a_rollout(local_env, monkeypatch, tmp_path):
    for name, value in local_env.items():
        monkeypatch.setenv(name, value)
    config = CliRunner().invoke(app, ["serve", "iris", "--cache-ttl", "300", "--show-config"])
    assert config.exit_code == 0, config.output
    assert next(line.split()[1] for line in config.output.splitlines() if line.startswith("cache_ttl ")) == "5m"

    finished = datetime.now(timezone.utc) - timedelta(seconds=300)
    RunLog(default_store().index.engine).start(RunRecord(
        RunLog.new_id(), "iris:1", "iris", 1, "in.csv", str(tmp_path / "out.csv"), finished.isoformat(),
        status="succeeded", finished=finished.isoformat(), rows_written=3))
    checked = CliRunner().invoke(app, ["batch", "check", "--output", str(tmp_path / "out.csv")])
    assert checked.exit_code == 0, checked.output
    assert checked.output.strip().endswith("(3 rows) 5m ago")

    started = CliRunner().invoke(app, ["rollout", "start", "iris", "--to", "iris:2", "--step-duration", "300"])
    try:
        assert started.exit_code == 0, started.output
        assert "5m left in the step" in started.output
        history = CliRunner().invoke(app, ["rollout", "history", "iris", "--json"])
        assert json.loads(history.output)[-1]["reason"].endswith(", 5m each")
    finally:
        CliRunner().invoke(app, ["rollout", "rollback", "iris"])
