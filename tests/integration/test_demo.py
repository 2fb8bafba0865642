"""`pallet demo` on a store that has the demo models already: reused as they are, not trained again;
`--retrain` stores new versions on purpose."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pallet
from pallet.demo import RECIPE_TAG, demo_models, fingerprint
from pallet.store import ModelRef, Store

PALLET = str(Path(sys.executable).parent / "pallet")
DEMOS = {"digits", "digits-onnx", "iris", "digits-torch", "minilm"}


def pallet_cli(home, *args):
    env = {k: v for k, v in os.environ.items() if k != "PALLET_DB_URL"}
    return subprocess.run([PALLET, *args], env={**env, "PALLET_HOME": str(home)}, capture_output=True, text=True,
                          timeout=300)


def listing(home) -> dict[tuple[str, int], list[str]]:
    """Every stored version and its aliases, as `pallet models list --json` reports them."""
    done = pallet_cli(home, "models", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {(row["name"], row["version"]): row["aliases"] for row in json.loads(done.stdout)}


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """A store made by one `pallet demo`."""
    home = tmp_path_factory.mktemp("demo") / "home"
    first = pallet_cli(home, "demo")
    assert first.returncode == 0, first.stderr
    assert set(listing(home)) == {(name, 1) for name in DEMOS}
    return home


def test_a_second_demo_reuses_every_model_and_leaves_the_aliases_as_they_were(demo_home, digits_model, digits):
    # Between the two runs production moves to a digits of the user's own: the demo must not move it back.
    x, _ = digits
    pallet.save(digits_model, "digits", sample=x[:5], aliases=["production"], store=Store(demo_home))
    before = listing(demo_home)
    assert before[("digits", 2)] == ["production"] and before[("digits", 1)] == []

    again = pallet_cli(demo_home, "demo")
    assert again.returncode == 0, again.stderr
    assert listing(demo_home) == before
    for name in DEMOS:
        assert f"reused {name}:1: stored already, made the same way" in again.stderr
    assert f"stored 0 models and reused 5 in the store at {demo_home}" in again.stderr
    assert sorted(p.name for p in (demo_home / "models" / "minilm").iterdir()) == ["1"]  # 87 MiB, once


def test_retrain_stores_a_new_version_of_each_model_and_a_later_demo_reuses_those(demo_home):
    before = listing(demo_home)
    retrained = pallet_cli(demo_home, "demo", "--retrain")
    assert retrained.returncode == 0, retrained.stderr
    after = listing(demo_home)
    new = sorted(set(after) - set(before))
    assert sorted(name for name, _ in new) == sorted(DEMOS)
    for name, version in new:
        assert version == max(v for n, v in before if n == name) + 1
        assert after[(name, version)] == ["production"]
        assert f"stored {name}:{version} as {name}@production" in retrained.stderr

    again = pallet_cli(demo_home, "demo")
    assert again.returncode == 0, again.stderr
    assert listing(demo_home) == after
    assert "stored 0 models and reused 5" in again.stderr


def test_a_model_saved_by_hand_under_a_demo_name_is_not_taken_for_the_demos(tmp_path, digits_model, digits):
    store = Store(tmp_path / "home")
    x, _ = digits
    pallet.save(digits_model, "digits", sample=x[:5], aliases=["production"], store=store)

    made = demo_models(store, torch_models=())
    assert [(m.ref, m.reused) for m in made] == [(ModelRef("digits", 2), False), (ModelRef("digits-onnx", 1), False),
                                                (ModelRef("iris", 1), False)]
    assert store.resolve("digits@production").ref == ModelRef("digits", 2)
    assert store.resolve("digits:2").manifest.tags[RECIPE_TAG] == fingerprint("digits")

    # Reused again, under an alias no version has yet: the alias is set, nothing else moves.
    again = demo_models(store, alias="candidate", torch_models=())
    assert [(m.ref, m.reused) for m in again] == [(m.ref, True) for m in made]
    assert {(row.name, row.version): aliases for row, aliases in store.list()} == {
        ("digits", 1): [], ("digits", 2): ["candidate", "production"],
        ("digits-onnx", 1): ["candidate", "production"], ("iris", 1): ["candidate", "production"]}


def test_retraining_a_model_with_a_rollout_promotes_the_new_version(tmp_path):
    from pallet.rollout import Rollouts

    store = Store(tmp_path / "home")
    first = {m.ref.name: m.ref for m in demo_models(store, torch_models=())}
    rollouts = Rollouts(store)
    rollouts.promote("digits", str(first["digits"]))  # digits now has a rollout: production moves with its traffic

    made = {m.ref.name: m.ref for m in demo_models(store, retrain=True, torch_models=())}
    assert made["digits"] == ModelRef("digits", 2)
    assert store.resolve("digits@production").ref == ModelRef("digits", 2)
    assert rollouts.get("digits").stable == "2"
    assert rollouts.history("digits")[-1].action == "promote"
    # A name without a rollout whose production moves gets one, so running servers follow the alias.
    assert rollouts.get("iris").stable == "2" and store.resolve("iris@production").ref == ModelRef("iris", 2)
