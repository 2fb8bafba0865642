"""The serve banner names what answers: a reference to a version its name's rollout does not serve says so."""

import pallet
from pallet.rollout import Rollouts
from pallet.serve import server
from pallet.settings import ServeConfig
from pallet.store import Store
from pallet import threads


def _banner(store: Store, *refs: str) -> list[str]:
    config = ServeConfig(models=list(refs))
    versions, skipped, followed = server._servable(config, store)
    lines: list[str] = []
    server._banner(config, versions, skipped, threads.plan_threads(1, None), False, lines.append,
                   server._rollouts(store, versions), followed)
    return lines


def test_a_version_its_rollout_does_not_serve_is_named_with_what_answers(home, digits_model, digits):
    store = Store(home)
    x, _ = digits
    for _ in range(2):
        pallet.save(digits_model, "digits", sample=x[:5], aliases=["production"], store=store)
    Rollouts(store).promote("digits", "digits:1")

    asked = _banner(store, "digits:2")
    assert asked[1].split() == ["models", "digits", "(version", "1)"]
    assert ("  note      digits:2 was asked, but 'digits' has a rollout, which serves digits:1 "
            "(pallet rollout status digits)") in asked

    newest = _banner(store, "digits")
    assert "  note      digits is digits:2, but 'digits' has a rollout, which serves digits:1" in newest[2]

    plain = _banner(store, "digits@production")
    assert plain[1].split() == ["models", "digits", "(version", "1)"]
    assert not [line for line in plain if "note" in line]


def test_saving_a_new_production_moves_what_a_name_serves(home, digits_model, digits):
    store = Store(home)
    x, _ = digits
    pallet.save(digits_model, "iris-like", sample=x[:5], aliases=["production"], store=store)
    assert Rollouts(store).get("iris-like") is None  # the first production: nothing served by it yet

    pallet.save(digits_model, "iris-like", sample=x[:5], aliases=["production", "latest-good"], store=store)
    assert store.resolve("iris-like@production").ref.version == 2
    assert Rollouts(store).get("iris-like").stable == "2"  # a promotion: servers of the name switch to it
    assert _banner(store, "iris-like@production")[1].split() == ["models", "iris-like", "(version", "2)"]
