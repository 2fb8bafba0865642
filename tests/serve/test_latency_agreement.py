"""One timing per request: the dashboard, `pallet rollout status` and `pallet bench` print the same p95
for the same requests to a live server (127.0.0.1, bounded)."""

import json

import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import pallet
from pallet.bench import run_bench
from pallet.cli import app as cli
from pallet.rollout import Rollouts
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import Store
from tests.serve.conftest import RunningServer, wait_for

NAME = "timed"  # a name no other test serves: the process's metrics hold nobody else's requests for it


@pytest.fixture
def two_versions(tmp_path, monkeypatch):
    """timed:1 (production) and timed:2, the same iris classifier; the CLI reads this store."""
    store = Store(tmp_path / "home")
    x, y = load_iris(return_X_y=True)
    classifier = LogisticRegression(max_iter=500).fit(x, y)
    pallet.save(classifier, NAME, sample=x[:5], aliases=["production"], store=store)
    pallet.save(classifier, NAME, sample=x[:5], store=store)
    monkeypatch.setenv("PALLET_HOME", str(store.home))
    monkeypatch.setenv("PALLET_DB_URL", store.db_url)
    return store


def test_dashboard_rollout_status_and_bench_print_the_same_p95(two_versions):
    rollouts = Rollouts(two_versions, actor="test")
    config = ServeConfig(models=[f"{NAME}@production"], rollout_poll=0.2)
    with RunningServer(create_app(config, two_versions)) as server, httpx.Client(base_url=server.url) as client:

        def promote_before_the_measured_level(step: str) -> None:
            """The bench's warm-up went to timed:1; its measured requests all go to timed:2."""
            if "concurrent connection" in step:
                revision = rollouts.promote(NAME, f"{NAME}:2", reason="test").revision
                wait_for(lambda: client.get(f"/admin/rollouts/{NAME}").json()["served_revision"] == revision,
                         what="the server to route by the promotion")

        model = pallet.load(f"{NAME}:2", store=two_versions)
        _, (level,) = run_bench(model, [4], 1.5, 1, server.url, [], progress=promote_before_the_measured_level)
        assert level.errors == 0 and level.requests > 100

        def rollout_status() -> dict:
            done = CliRunner().invoke(cli, ["rollout", "status", NAME, "--json"])
            assert done.exit_code == 0, done.output
            return next(v for v in json.loads(done.stdout)["versions"] if v["version"] == "2")

        counted = wait_for(lambda: (v := rollout_status()).get("requests") == level.requests and v,
                           what="the server to store its rollout figures")
        models = client.get("/ui/api/dashboard").json()["models"]
        dashboard = next(m for m in models if m["name"] == NAME)["figures"]["versions"]["2"]

    assert dashboard["requests"] == counted["requests"] == level.requests
    bench_p95 = round(level.percentile(95) * 1000, 3)
    assert dashboard["p95_ms"] == counted["p95_ms"] == bench_p95, (dashboard, counted, bench_p95)
