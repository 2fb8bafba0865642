"""One truth for what serves: the production alias is the stable version of the rollout, moved with it;
a version that carries an alias or gets traffic is not removed by accident."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

import pallet
from pallet.cli import app
from pallet.errors import RolloutConflict
from pallet.net import free_port
from pallet.rollout import Rollouts, Thresholds
from pallet.rollout.figures import VersionTraffic
from pallet.rollout.state import RolloutChanged
from pallet.serve.app import create_app
from pallet.settings import ServeConfig
from pallet.store import default_store
from tests.serve.conftest import RunningServer, wait_for

PALLET = str(Path(sys.executable).parent / "pallet")


@pytest.fixture
def three(home, digits_model, digits):
    """digits:1, digits:2 and digits:3 @production in the default store."""
    x, _ = digits
    store = default_store()
    for aliases in ([], [], ["production"]):
        pallet.save(digits_model, "digits", sample=x[:5], aliases=aliases, store=store)
    return store


def cli(*args, stdin=None):
    return CliRunner().invoke(app, list(args), input=stdin)


def production(store, name="digits"):
    return store.index.alias(name, "production")


def listed(name="digits"):
    result = cli("models", "list", name, "--json")
    assert result.exit_code == 0, result.output
    return {row["version"]: (row["aliases"], row["traffic"]) for row in json.loads(result.stdout)}


def answering(client) -> str:
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [0.0] * 64}]}
    response = client.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 200, response.text
    return response.headers["x-model-version"]


# -- promote, rollback and a canary move the alias --------------------------------------------------------


def test_promote_moves_production_and_rollback_moves_it_back(three):
    promoted = cli("rollout", "promote", "digits", "--to", "digits:2")
    assert promoted.exit_code == 0, promoted.output
    assert production(three) == 2
    assert listed() == {1: ([], "0%"), 2: (["production"], "100%"), 3: ([], "0%")}
    shown = cli("models", "show", "digits@production")
    assert shown.output.splitlines()[0].startswith("digits:2")
    assert any(line.split()[:2] == ["traffic", "100%"] for line in shown.output.splitlines())

    assert cli("rollout", "rollback", "digits").exit_code == 0
    assert production(three) == 3
    assert listed()[3] == (["production"], "100%")


def test_a_completed_canary_moves_production_and_a_rolled_back_one_leaves_it(store, digits_model, digits):
    x, _ = digits
    for aliases in (["production"], []):
        pallet.save(digits_model, "digits", sample=x[:5], aliases=aliases, store=store)
    rollouts = Rollouts(store)
    thresholds = Thresholds(min_requests=5, min_compared=5)
    started = rollouts.start("digits", "digits:2", steps=[50, 100], step_seconds=1, thresholds=thresholds)
    assert production(store) == 1  # a canary in flight: the stable version still serves most
    good = VersionTraffic()
    for _ in range(10):
        good.observe(0.001, True)
        good.observe_shadow(0.001, True, 1, 1)
    rollouts.state.put_figures("digits", started.revision, "p1", {"1": good, "2": good})
    done = rollouts.tick("digits", now=started.canary.step_started + 2)
    assert done.stable == "2" and done.canary is None
    assert production(store) == 2

    again = rollouts.start("digits", "digits:1", steps=[50, 100], step_seconds=60, thresholds=thresholds)
    bad = VersionTraffic()
    for _ in range(10):
        bad.observe(0.001, False)
    rollouts.state.put_figures("digits", again.revision, "p1", {"1": bad})
    assert rollouts.tick("digits", now=again.canary.step_started + 1).mode == "single"
    assert production(store) == 2


def test_the_alias_moves_in_the_same_transaction_as_the_policy(store, digits_model, digits):
    x, _ = digits
    for aliases in (["production"], [], []):
        pallet.save(digits_model, "digits", sample=x[:5], aliases=aliases, store=store)
    rollouts = Rollouts(store)
    rollouts.promote("digits", "digits:2")
    stale = rollouts.get("digits")
    rollouts.promote("digits", "digits:3")
    with pytest.raises(RolloutChanged):  # refused: neither the policy nor the alias moves
        rollouts.state.write(stale.changed(stable="1"), "someone", "promote", "stale")
    assert rollouts.get("digits").stable == "3" and production(store) == 3


# -- moving the alias is a promotion ----------------------------------------------------------------------


def test_tagging_production_changes_what_a_running_server_answers(three):
    config = ServeConfig(models=["digits@production"], rollout_poll=0.2, access_log=False)
    with RunningServer(create_app(config, three)) as server, httpx.Client(base_url=server.url) as client:
        assert answering(client) == "3"
        tagged = cli("models", "tag", "digits:2", "production")
        assert tagged.exit_code == 0, tagged.output
        assert "digits@production -> digits:2" in tagged.output
        wait_for(lambda: answering(client) == "2", what="the server to follow the production alias")
        assert cli("rollout", "rollback", "digits").exit_code == 0  # a promotion: it can be undone
        wait_for(lambda: answering(client) == "3", what="the server to roll back")
    assert production(three) == 3
    events = Rollouts(three).history("digits")
    assert [e.action for e in events] == ["promote", "rollback"]
    assert events[0].reason == "digits@production moved to digits:2"


def test_saving_with_the_production_alias_promotes_while_a_rollout_serves_the_name(three, digits_model, digits):
    rollouts = Rollouts(three)
    rollouts.promote("digits", "digits:2")
    pallet.save(digits_model, "digits", sample=digits[0][:5], aliases=["production"], store=three)
    assert [r.version for r, _ in three.list("digits")] == [1, 2, 3, 4] and production(three) == 4
    assert rollouts.get("digits").stable == "4" and rollouts.history("digits")[-1].action == "promote"
    with pytest.raises(RolloutConflict, match="pallet models tag digits:1 production"):
        three.tag("digits:1", "production")  # the store alone cannot move it: promoting does
    assert production(three) == 4


# -- traffic shares in models list and show ---------------------------------------------------------------


def test_models_list_and_show_give_each_versions_share_of_the_traffic(three):
    table = cli("models", "list", "digits")
    assert "traffic" in table.output and "no rollout" in table.output
    assert {v: t for v, (_, t) in listed().items()} == {1: None, 2: None, 3: None}

    Rollouts(three).split("digits", {"digits:2": 90, "digits:3": 10})
    assert listed() == {1: ([], "0%"), 2: ([], "90%"), 3: (["production"], "10% (stable)")}
    shown = json.loads(cli("models", "show", "digits:2", "--json").stdout)
    assert shown["traffic"] == "90%"
    table = cli("models", "list", "digits").output
    assert "10% (stable)" in table and "no rollout" not in table

    Rollouts(three).shadow("digits", "digits:1", fraction=0.25)
    assert listed()[1] == ([], "0% (shadow copies of 25%)")


# -- safe removal -----------------------------------------------------------------------------------------


def test_removing_a_staging_tag_that_is_also_production_is_refused_naming_both(home, digits_model, digits):
    pallet.save(digits_model, "digits", sample=digits[0][:5], aliases=["production"])
    assert cli("models", "tag", "digits:1", "staging").exit_code == 0
    refused = cli("models", "rm", "digits@staging")
    assert refused.exit_code == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: digits@staging is digits:1, which carries aliases production, staging")
    assert "--force" in line
    assert [r.version for r, _ in default_store().list("digits")] == [1]

    asked = cli("models", "rm", "digits@staging", "--force", stdin="n\n")
    assert "remove digits:1 (carries aliases production, staging)?" in asked.output and asked.exit_code != 0
    removed = cli("models", "rm", "digits@staging", "--force", "--yes")
    assert removed.exit_code == 0 and "removed digits:1" in removed.output
    assert default_store().list("digits") == []


def test_a_version_that_gets_traffic_is_kept_unless_forced(three):
    Rollouts(three).start("digits", "digits:1", steps=[10, 100])
    refused = cli("models", "rm", "digits:1", "--yes")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == ("error: digits:1 gets 10% of the traffic of 'digits' (candidate); roll the canary "
                                      "back (pallet rollout rollback digits) or promote another version first, or "
                                      "pass --force to remove it anyway")
    assert cli("models", "rm", "digits", "--all", "--yes").exit_code == 1  # 1 and 3 are in use
    assert [r.version for r, _ in three.list("digits")] == [1, 2, 3]
    assert cli("models", "rm", "digits:2", "--yes").exit_code == 0  # nothing uses it
    assert cli("models", "rm", "digits:1", "--yes", "--force").exit_code == 0
    assert [r.version for r, _ in three.list("digits")] == [3]


def test_the_advice_for_a_version_in_use_fits_what_holds_it(three):
    production = cli("models", "rm", "digits:3", "--yes")
    assert production.exit_code == 1
    assert production.stderr.strip() == ("error: digits:3 carries alias production; promote another version (pallet "
                                         "models tag digits:N production) first, or pass --force to remove it anyway")
    assert cli("models", "tag", "digits:2", "staging").exit_code == 0
    aliased = cli("models", "rm", "digits@staging", "--yes")
    assert aliased.exit_code == 1
    assert aliased.stderr.strip() == ("error: digits@staging is digits:2, which carries alias staging; untag it "
                                      "(pallet models untag digits@staging) first, or pass --force to remove it anyway")
    Rollouts(three).split("digits", {"digits:3": 80, "digits:2": 20})
    both = cli("models", "rm", "digits:2", "--yes")
    assert both.exit_code == 1
    assert ("; roll the split back (pallet rollout rollback digits) or promote another version and untag it "
            "(pallet models untag digits@staging) first") in both.stderr
    assert [r.version for r, _ in three.list("digits")] == [1, 2, 3]


def status_of(name="digits"):
    result = cli("rollout", "status", name, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_forced_removal_of_a_canary_candidate_rolls_back_to_the_stable_version(three):
    Rollouts(three).start("digits", "digits:1", steps=[10, 100])
    assert cli("models", "rm", "digits:1", "--force", "--yes").exit_code == 0
    status = status_of()
    assert status["mode"] == "single" and status["stable"] == "3" and status["canary"] is None
    assert [v["version"] for v in status["versions"]] == ["3"] and production(three) == 3
    last = Rollouts(three).history("digits")[-1]
    assert last.action == "rollback" and last.reason == "digits:1 was removed (pallet models rm --force); back to digits:3"


def test_forced_removal_of_the_serving_version_ends_its_rollout_with_clear_messages(three):
    assert cli("rollout", "promote", "digits", "--to", "digits:2").exit_code == 0
    removed = cli("models", "rm", "digits:2", "--force", "--yes")
    assert removed.exit_code == 0 and "removed digits:2" in removed.output
    assert production(three) is None and Rollouts(three).get("digits") is None

    status = cli("rollout", "status", "digits")
    assert status.exit_code == 1
    assert status.stderr.strip() == ("error: 'digits' has no rollout: it ended when digits:2, the version serving it, "
                                     "was removed; promote one with pallet models tag digits:N production")
    served = cli("serve", "digits@production")
    assert served.exit_code == 1
    assert served.stderr.strip().splitlines() == [
        "error: 'digits' has no @production: its version 2 was removed; promote one with pallet models tag digits:N "
        "production"]
    history = cli("rollout", "history", "digits", "--json")
    assert [e["action"] for e in json.loads(history.stdout)] == ["promote", "end"]

    env = {**os.environ, "PALLET_HOME": str(three.home)}
    port = free_port()
    server = subprocess.Popen([PALLET, "serve", "digits", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # the bare name serves its newest version, as for any name without a rollout
        banner = [server.stdout.readline() for _ in range(2)]
        assert banner[1].split() == ["models", "digits", "(version", "3)"], banner
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert cli("models", "tag", "digits:1", "production").exit_code == 0
    assert production(three) == 1 and three.resolve("digits@production").ref.version == 1
    assert cli("rollout", "promote", "digits", "--to", "digits:3").exit_code == 0
    assert status_of()["stable"] == "3" and production(three) == 3
    revisions = [e.revision for e in Rollouts(three).history("digits")]
    assert revisions == sorted(set(revisions))  # numbered on: servers never mistake a new rollout for an old one


def test_untag_removes_an_alias_but_not_the_production_of_a_rollout(three):
    assert cli("models", "tag", "digits:1", "staging").exit_code == 0
    removed = cli("models", "untag", "digits@staging")
    assert removed.exit_code == 0 and "removed alias staging from digits" in removed.output
    assert three.index.alias("digits", "staging") is None and [r.version for r, _ in three.list("digits")] == [1, 2, 3]

    missing = cli("models", "untag", "digits@staging")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: model 'digits' has no alias 'staging'; its aliases are production"
    unknown = cli("models", "untag", "x@staging")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == f"error: no model named 'x' in {three.location} (it has: digits)"
    assert "say which alias to remove" in cli("models", "untag", "digits").stderr

    Rollouts(three).promote("digits", "digits:2")
    kept = cli("models", "untag", "digits@production")
    assert kept.exit_code == 1 and "has a rollout" in kept.stderr and production(three) == 2
    assert len(kept.stderr.strip().splitlines()) == 1


# -- serve, batch run and pipeline save name the version that answers -------------------------------------


def test_serve_banner_batch_run_and_pipeline_save_use_the_promoted_version(three, digits, tmp_path):
    assert cli("rollout", "promote", "digits", "--to", "digits:2").exit_code == 0
    env = {**os.environ, "PALLET_HOME": str(three.home)}
    port = free_port()
    server = subprocess.Popen([PALLET, "serve", "digits@production", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = [server.stdout.readline() for _ in range(2)]
        assert banner[1].split() == ["models", "digits", "(version", "2)"], banner
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_for(lambda: _ready(client), what="pallet serve")
            assert answering(client) == "2"
    finally:
        server.terminate()
        server.wait(timeout=30)

    rows = tmp_path / "rows.csv"
    np.savetxt(rows, digits[0][:3], delimiter=",", header=",".join(f"p{i}" for i in range(64)), comments="")
    batch = cli("batch", "run", "digits@production", "--input", str(rows), "--output", str(tmp_path / "out"))
    assert batch.exit_code == 0, batch.output
    assert "model digits:2," in batch.output

    steps = tmp_path / "steps.py"
    steps.write_text("def scale(inputs):\n    return inputs\n")
    config = tmp_path / "pallet.yaml"
    config.write_text(textwrap.dedent("""\
        pipelines:
          digits-app:
            steps:
              - function: steps:scale
              - model: digits@production
        """))
    saved = cli("pipeline", "save", str(config))
    assert saved.exit_code == 0, saved.output
    assert "-> digits:2" in saved.output


def _ready(client) -> bool:
    try:
        return client.get("/v2/health/ready").status_code == 200
    except httpx.HTTPError:
        return False
