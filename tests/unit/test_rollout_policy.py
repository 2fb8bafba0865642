import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pallet.errors import RolloutError
from pallet.rollout.policy import Policy, Shadow

versions = st.lists(st.integers(1, 50).map(str), min_size=1, max_size=5, unique=True)
keys = st.lists(st.text(min_size=1, max_size=12), min_size=50, max_size=200, unique=True)


@st.composite
def weighted(draw, min_versions=1):
    names = draw(st.lists(st.integers(1, 50).map(str), min_size=min_versions, max_size=5, unique=True))
    weights = draw(st.lists(st.integers(1, 100), min_size=len(names), max_size=len(names)))
    return dict(zip(names, map(float, weights)))


def test_a_single_version_takes_everything():
    policy = Policy.single("3")
    assert {policy.choose() for _ in range(100)} == {"3"}
    assert policy.choose("user-1") == "3"
    assert policy.shares() == {"3": 100.0}


def test_draws_map_to_versions_by_cumulative_weight():
    policy = Policy({"3": 90, "4": 10})
    assert policy.choose(draw=0.0) == "3"
    assert policy.choose(draw=0.899) == "3"
    assert policy.choose(draw=0.9) == "4"
    assert policy.choose(draw=0.999999) == "4"


@settings(max_examples=40, deadline=None)
@given(weights=weighted(), seed=st.integers(0, 2**32 - 1))
def test_random_choices_respect_the_weights(weights, seed):
    policy = Policy(weights)
    rng = random.Random(seed)
    n = 4000
    counts = Counter(policy.choose(draw=rng.random()) for _ in range(n))
    total = sum(weights.values())
    for version, weight in weights.items():
        p = weight / total
        tolerance = 5 * math.sqrt(p * (1 - p) / n) + 1e-9   # five standard deviations
        assert abs(counts[version] / n - p) <= tolerance, (version, counts, weights)


@settings(max_examples=25, deadline=None)
@given(weights=weighted(min_versions=2))
def test_sticky_keys_spread_by_weight(weights):
    policy = Policy(weights, sticky_key="X-User-ID")
    n = 3000
    counts = Counter(policy.choose(f"user-{i}") for i in range(n))
    total = sum(weights.values())
    for version, weight in weights.items():
        p = weight / total
        assert abs(counts[version] / n - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9


@settings(max_examples=60, deadline=None)
@given(weights=weighted(min_versions=2), keys=keys, data=st.data())
def test_sticky_keys_move_only_when_their_version_leaves(weights, keys, data):
    policy = Policy(weights, sticky_key="X-User-ID")
    before = {k: policy.choose(k) for k in keys}
    assert before == {k: Policy(dict(weights), sticky_key="X-User-ID").choose(k) for k in keys}  # stable
    leaving = data.draw(st.sampled_from(sorted(weights)))
    remaining = {v: w for v, w in weights.items() if v != leaving}
    after = Policy(remaining, sticky_key="X-User-ID")
    for key, version in before.items():
        if version != leaving:
            assert after.choose(key) == version


@settings(max_examples=60, deadline=None)
@given(weights=weighted(min_versions=2), keys=keys, data=st.data())
def test_sticky_keys_move_only_towards_a_version_whose_weight_grew(weights, keys, data):
    grown = data.draw(st.sampled_from(sorted(weights)))
    bigger = {**weights, grown: weights[grown] * data.draw(st.floats(1.0, 10.0))}
    before, after = Policy(weights, "k"), Policy(bigger, "k")
    for key in keys:
        if after.choose(key) != before.choose(key):
            assert after.choose(key) == grown


@settings(max_examples=30, deadline=None)
@given(weights=weighted(min_versions=1), keys=keys, new=st.integers(51, 99).map(str))
def test_a_new_version_takes_keys_only_for_itself(weights, keys, new):
    before, after = Policy(weights, "k"), Policy({**weights, new: 10.0}, "k")
    for key in keys:
        assert after.choose(key) in (before.choose(key), new)


def test_without_the_header_a_sticky_policy_draws_by_weight():
    policy = Policy({"3": 50, "4": 50}, sticky_key="X-User-ID")
    assert policy.choose(None, draw=0.1) == "3"
    assert policy.choose(None, draw=0.9) == "4"


def test_shadow_copies_a_fraction_and_never_to_the_version_that_served():
    policy = Policy({"3": 100}, shadow=Shadow("4", 0.25))
    assert policy.versions == ["3", "4"]
    assert policy.shadows("3", draw=0.1) == "4"
    assert policy.shadows("3", draw=0.3) is None
    assert policy.shadows("4", draw=0.0) is None
    rng = random.Random(7)
    share = sum(policy.shadows("3", rng.random()) == "4" for _ in range(4000)) / 4000
    assert abs(share - 0.25) < 0.04


def test_policies_round_trip_through_json_shapes():
    policy = Policy({"3": 95, "4": 5}, "X-User-ID", Shadow("4", 0.2))
    assert Policy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize("weights, shadow, message", [
    ({}, None, "at least one version"),
    ({"3": -1}, None, "weight must be a number >= 0"),
    ({"3": float("nan")}, None, "weight must be a number >= 0"),
    ({"3": 0, "4": 0}, None, "above 0"),
    ({"3": 100}, Shadow("4", 0), "shadow fraction"),
    ({"3": 100}, Shadow("4", 1.5), "shadow fraction"),
])
def test_policies_that_make_no_sense_are_refused(weights, shadow, message):
    with pytest.raises(RolloutError, match=message):
        Policy(weights, shadow=shadow)


def test_zero_weight_versions_get_no_traffic():
    policy = Policy({"3": 100, "4": 0})
    assert {policy.choose(draw=d / 100) for d in range(100)} == {"3"}
    assert policy.versions == ["3"]
