"""Rollout operations and their shared state, on SQLite and PostgreSQL."""

import pytest

import pallet
from pallet.errors import ModelNotFound, NoRollout, RolloutConflict, RolloutError
from pallet.rollout import Rollouts, Thresholds
from pallet.rollout.figures import VersionTraffic
from pallet.rollout.state import RolloutChanged


@pytest.fixture
def versions(store, digits_model, digits):
    x, _ = digits
    for alias in (["production"], [], []):
        pallet.save(digits_model, "digits", sample=x[:5], aliases=alias, store=store)
    pallet.save(digits_model, "iris", sample=x[:5], store=store)
    return store


def test_promote_and_rollback_are_recorded_with_who_and_why(versions):
    rollouts = Rollouts(versions, actor="alice@laptop")
    first = rollouts.promote("digits", "digits:2", reason="better on the new scans")
    assert first.policy.shares() == {"2": 100.0} and first.previous == "1" and first.revision == 1
    assert versions.index.alias("digits", "production") == 2  # the alias is the stable version
    back = rollouts.rollback("digits", reason="complaints")
    assert back.policy.shares() == {"1": 100.0} and back.stable == "1" and back.previous == "2"
    assert versions.index.alias("digits", "production") == 1
    events = rollouts.history("digits")
    assert [(e.revision, e.action, e.actor) for e in events] == [(1, "promote", "alice@laptop"),
                                                               (2, "rollback", "alice@laptop")]
    assert events[0].reason == "better on the new scans"
    assert events[1].reason == "complaints; back to digits:1 from digits:2"
    assert events[1].weights == {"1": 100.0}


def test_a_write_based_on_an_old_revision_is_refused(versions):
    a, b = Rollouts(versions), Rollouts(versions)
    a.promote("digits", "digits:2")
    seen = b.get("digits")
    a.promote("digits", "digits:3")
    with pytest.raises(RolloutChanged, match="changed meanwhile"):
        b.state.write(seen.changed(stable="1"), "b", "promote", "stale")
    assert Rollouts(versions).get("digits").stable == "3"


def test_canary_advances_on_good_figures_and_promotes_at_the_end(versions):
    rollouts = Rollouts(versions)
    thresholds = Thresholds(min_requests=5, min_compared=5)
    rollout = rollouts.start("digits", "digits:2", steps=[10, 50, 100], step_seconds=60, thresholds=thresholds)
    assert rollout.policy.shares() == {"1": 90.0, "2": 10.0}
    assert rollout.policy.shadow.version == "2"
    assert rollouts.tick("digits", now=rollout.canary.step_started + 1) is None  # step in progress

    good = VersionTraffic()
    for _ in range(10):
        good.observe(0.001, True)
        good.observe_shadow(0.001, True, 1, 1)
    rollouts.state.put_figures("digits", rollout.revision, "p1", {"1": _requests(50), "2": good})
    advanced = rollouts.tick("digits", now=rollout.canary.step_started + 61)
    assert advanced.policy.shares() == {"1": 50.0, "2": 50.0} and advanced.canary.step == 1
    assert rollouts.state.figures("digits", advanced.revision) == {}  # a new step starts counting afresh

    rollouts.state.put_figures("digits", advanced.revision, "p1", {"1": _requests(50), "2": good})
    done = rollouts.tick("digits", now=advanced.canary.step_started + 61)
    assert done.mode == "single" and done.stable == "2" and done.previous == "1" and done.canary is None
    actions = [(e.action, e.actor) for e in rollouts.history("digits")]
    judge = f"canary on {rollouts.actor}"
    assert actions == [("start", rollouts.actor), ("advance", judge), ("promote", judge)]
    assert "canary complete" in rollouts.history("digits")[-1].reason


def test_canary_rolls_back_on_errors_from_any_process(versions):
    rollouts = Rollouts(versions)
    rollout = rollouts.start("digits", "digits:2", steps=[50, 100], step_seconds=600,
                             thresholds=Thresholds(min_requests=10, max_error_rate=0.1))
    half = VersionTraffic()
    for i in range(10):
        half.observe(0.001, ok=i % 2 == 0)
    rollouts.state.put_figures("digits", rollout.revision, "p1", {"2": half})
    rollouts.state.put_figures("digits", rollout.revision, "p2", {"2": half})
    assert rollouts.state.figures("digits", rollout.revision)["2"].requests == 20
    back = rollouts.tick("digits")
    assert back.policy.shares() == {"1": 100.0} and back.mode == "single" and back.canary is None
    last = rollouts.history("digits")[-1]
    assert last.action == "rollback" and last.actor == f"canary on {rollouts.actor}"
    assert "step 1/2 (50%): candidate error rate 50.0% (10 of 20 requests)" in last.reason


def test_a_hold_is_recorded_once_and_the_step_keeps_its_figures(versions):
    rollouts = Rollouts(versions)
    rollout = rollouts.start("digits", "digits:2", steps=[50, 100], step_seconds=1,
                             thresholds=Thresholds(min_agreement=0), shadow_fraction=0)
    later = rollout.canary.step_started + 5
    rollouts.state.put_figures("digits", rollout.revision, "p1", {"2": _requests(5)})
    held = rollouts.tick("digits", now=later)
    assert held.canary.held == "candidate served 5 of the 20 requests a step needs (--min-requests)"
    assert held.revision == rollout.revision  # no traffic moved: the servers keep counting the same step
    rollouts.state.put_figures("digits", rollout.revision, "p1", {"2": _requests(12)})
    assert rollouts.tick("digits", now=later + 1) is None  # still short: the hold is not written again
    rollouts.state.put_figures("digits", rollout.revision, "p2", {"1": _requests(30), "2": _requests(10)})
    done = rollouts.tick("digits", now=later + 2)
    assert done.stable == "2" and done.mode == "single"
    assert [(e.action, e.revision) for e in rollouts.history("digits")] == [("start", 1), ("hold", 1), ("promote", 2)]


def test_many_judges_of_one_failing_step_roll_back_once(versions):
    import threading

    rollouts = Rollouts(versions)
    rollouts.promote("digits", "digits:2")
    rollout = rollouts.start("digits", "digits:3", steps=[50, 100], thresholds=Thresholds(min_requests=5))
    failing = VersionTraffic()
    for _ in range(10):
        failing.observe(0.001, ok=False)
    rollouts.state.put_figures("digits", rollout.revision, "p1", {"3": failing})
    judges = [Rollouts(versions, actor=f"judge-{i}") for i in range(6)]
    threads = [threading.Thread(target=j.tick, args=("digits",)) for j in judges]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = rollouts.get("digits")
    assert final.stable == "2" and final.policy.shares() == {"2": 100.0} and final.previous == "1"
    assert [e.action for e in rollouts.history("digits")] == ["promote", "start", "rollback"]


def test_split_and_shadow_then_rollback_to_stable(versions):
    rollouts = Rollouts(versions)
    split = rollouts.split("digits", {"digits:1": 90, "digits:3": 10}, sticky_key="X-User-ID")
    assert split.mode == "split" and split.policy.sticky_key == "X-User-ID" and split.stable == "1"
    shadow = rollouts.shadow("digits", "digits:2", fraction=0.5)
    assert shadow.policy.shares() == {"1": 100.0} and shadow.policy.shadow.fraction == 0.5
    status = rollouts.status("digits")
    assert [(v["version"], v["role"], v["share"]) for v in status["versions"]] == [("1", "stable", 100.0),
                                                                                ("2", "shadow", 0.0)]
    assert rollouts.rollback("digits").mode == "single"


@pytest.mark.parametrize("call, error, message", [
    (lambda r: r.promote("digits", "iris:1"), RolloutError, "a version of 'iris', not of 'digits'"),
    (lambda r: r.promote("digits", "digits:9"), ModelNotFound, "9"),
    (lambda r: r.rollback("digits"), NoRollout, "has no rollout yet"),
    (lambda r: r.start("digits", "digits:2", steps=[50, 20]), RolloutError, "increasing percentages"),
    (lambda r: r.start("digits", "digits:1"), RolloutConflict, "already the stable version"),
    (lambda r: r.split("digits", {"digits:2": -5}), RolloutError, "weight must be a number"),
    (lambda r: r.shadow("digits", "digits:1"), RolloutConflict, "is the version serving"),
    (lambda r: r.status("iris"), NoRollout, "has no rollout yet"),
    (lambda r: r.start("digits", "digits:2", shadow_fraction=0), RolloutError, "agreement cannot be judged"),
    (lambda r: r.start("digits", "digits:2", thresholds=Thresholds(min_requests=0)), RolloutError,
     "min-requests must be a whole number, 1 or more"),
    (lambda r: r.start("digits", "digits:2", thresholds=Thresholds(max_error_rate=2)), RolloutError,
     "max-error-rate must be within 0..1"),
])
def test_mistakes_get_clear_errors(versions, call, error, message):
    with pytest.raises(error, match=message):
        call(Rollouts(versions))


def test_a_second_canary_and_a_rollback_past_the_first_version_are_refused(versions):
    rollouts = Rollouts(versions)
    rollouts.start("digits", "digits:2")
    with pytest.raises(RolloutConflict, match="is running"):
        rollouts.start("digits", "digits:3")
    rollouts.rollback("digits")
    with pytest.raises(RolloutConflict, match="nothing to roll back to"):
        rollouts.rollback("digits")


def test_without_production_alias_the_baseline_must_be_named(versions):
    versions.untag("digits", "production")
    with pytest.raises(RolloutError, match="--from digits:N"):
        Rollouts(versions).start("digits", "digits:2")
    assert Rollouts(versions).start("digits", "digits:2", baseline="digits:3").stable == "3"
    assert versions.index.alias("digits", "production") == 3  # the baseline named is what serves now


def _requests(n: int) -> VersionTraffic:
    figures = VersionTraffic()
    for _ in range(n):
        figures.observe(0.001, True)
    return figures
