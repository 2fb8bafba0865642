"""Drift arithmetic and the small text rules of batch scheduling (durations: test_units.py)."""

import numpy as np
import pytest

from pallet.batch.schedule import check_cron, check_text, job_name
from pallet.batch.summary import Summary, psi
from pallet.errors import PalletError


def _numbers(values):
    return {"kind": "numbers", "sample": list(values)}


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    assert psi(_numbers(rng.random(2000)), _numbers(rng.random(2000))) < 0.05
    assert psi(_numbers(rng.random(2000)), _numbers(rng.random(2000) * 0.5)) > 0.25


def test_psi_separates_few_distinct_values():
    assert psi(_numbers([0.5] * 100), _numbers([0.9] * 100)) > 0.25  # a constant that moved
    assert psi(_numbers([1.0] * 95 + [0.3] * 5), _numbers([1.0] * 50 + [0.3] * 50)) > 0.25
    assert psi(_numbers([0.5] * 100), _numbers([0.5] * 100)) == pytest.approx(0.0)


def test_psi_of_label_counts_and_the_summary_that_feeds_it():
    before, after = Summary(), Summary()
    before.add({"label": np.array([0, 1, 2] * 100), "probabilities": np.tile([[0.2, 0.8]], (300, 1))})
    after.add({"label": np.array([0] * 300), "probabilities": np.tile([[0.2, 0.8]], (300, 1))})
    assert before.to_dict()["outputs"]["label"]["counts"] == {"0": 100, "1": 100, "2": 100}
    assert psi(before.outputs["label"], after.outputs["label"]) > 1
    assert psi(before.outputs["max_probabilities"], after.outputs["max_probabilities"]) == pytest.approx(0.0)
    assert psi(before.outputs["label"], after.outputs["max_probabilities"]) is None  # different kinds


def test_job_names_fit_kubernetes_and_cron_text_is_checked():
    long = job_name("x" * 80 + "@production")
    assert len(long + "-check") <= 52 and not long.endswith("-")
    assert job_name("Digits@Production") == "pallet-batch-digits-production"
    assert check_cron(" 0  2 * * * ") == "0 2 * * *"
    with pytest.raises(PalletError, match="five fields"):
        check_cron("0 2 * *")
    with pytest.raises(PalletError, match="--input holds a control character"):
        check_text(input="a.csv\n* * * * * rm -rf /")
