import numpy as np
import pytest

from pallet.rollout.canary import Thresholds, decide
from pallet.quantiles import quantile_of_counts
from pallet.rollout.figures import BUCKETS, VersionTraffic, compare

T = Thresholds(max_error_rate=0.05, max_latency_ratio=1.5, min_latency_delta_ms=5, min_agreement=0.9,
               min_requests=20, min_compared=20)


def served(n: int, seconds: float = 0.002, errors: int = 0, compared: int = 0, agreed: int = 0) -> VersionTraffic:
    figures = VersionTraffic()
    for i in range(n):
        figures.observe(seconds, ok=i >= errors)
    if compared:
        figures.observe_shadow(seconds, True, compared, agreed)
    return figures


def test_a_good_candidate_advances_when_the_step_is_over():
    decision = decide(served(100), served(50, compared=40, agreed=40), T, step_over=True)
    assert decision.action == "advance"
    assert "agreement 100.0% over 40 rows" in decision.reason


def test_nothing_advances_before_the_step_is_over():
    assert decide(served(100), served(50, compared=40, agreed=40), T, step_over=False).action == "hold"


def test_errors_roll_back_at_once_even_mid_step():
    decision = decide(served(100), served(40, errors=10), T, step_over=False)
    assert decision.action == "rollback"
    assert "error rate 25.0% (10 of 40 requests)" in decision.reason


def test_errors_below_the_evidence_bar_wait():
    assert decide(served(100), served(5, errors=2), T, step_over=False).action == "hold"


def test_shadow_failures_count_as_the_candidates_errors():
    candidate = served(10)
    for _ in range(20):
        candidate.observe_shadow(0.002, ok=False)
    assert decide(served(100), candidate, T, step_over=False).action == "rollback"


def test_disagreement_rolls_back():
    decision = decide(served(100), served(30, compared=50, agreed=20), T, step_over=False)
    assert decision.action == "rollback"
    assert "40.0% of 50 rows" in decision.reason


def test_too_little_traffic_holds_with_the_reason():
    decision = decide(served(100), served(3, compared=30, agreed=30), T, step_over=True)
    assert decision.action == "hold"
    assert "3 of the 20 requests" in decision.reason


def test_too_few_comparisons_hold_unless_agreement_is_off():
    assert decide(served(100), served(30, compared=5, agreed=5), T, step_over=True).action == "hold"
    off = Thresholds(min_agreement=0, min_requests=20)
    assert decide(served(100), served(30), off, step_over=True).action == "advance"


def test_a_slow_candidate_rolls_back_at_the_end_of_a_step():
    decision = decide(served(100, seconds=0.010), served(50, seconds=0.050, compared=30, agreed=30), T, True)
    assert decision.action == "rollback"
    assert "max-latency-ratio" in decision.reason


def test_a_slower_but_still_fast_candidate_passes_the_latency_slack():
    # 3x slower, but by less than min_latency_delta_ms: noise at these speeds, not a regression
    decision = decide(served(100, seconds=0.0005), served(50, seconds=0.0015, compared=30, agreed=30), T, True)
    assert decision.action == "advance"


def test_quantiles_come_from_the_histogram():
    figures = VersionTraffic()
    for _ in range(95):
        figures.observe(0.001, True)
    for _ in range(5):
        figures.observe(1.0, True)
    assert 0.001 <= figures.p95() < 0.00126
    assert quantile_of_counts([0] * BUCKETS, 0.95) is None


def test_figures_add_up_across_processes_and_round_trip():
    a, b = served(10, errors=1, compared=4, agreed=3), served(5, errors=2)
    total = VersionTraffic.from_dict(a.to_dict()).add(VersionTraffic.from_dict(b.to_dict()))
    assert (total.requests, total.errors, total.compared, total.agreed) == (15, 3, 4, 3)
    assert sum(total.latency) == 15


def test_classifiers_are_compared_by_label():
    base = {"label": np.array([1, 2, 3, 4]), "probabilities": np.random.rand(4, 10)}
    cand = {"label": np.array([1, 2, 0, 4]), "probabilities": np.random.rand(4, 10)}
    assert compare(base, cand, 0.01) == (4, 3)


def test_regressors_are_compared_by_relative_difference():
    base = {"value": np.array([[1.0], [100.0], [-5.0]])}
    cand = {"value": np.array([[1.005], [103.0], [-5.0]])}
    assert compare(base, cand, 0.01) == (3, 2)
    assert compare(base, cand, 0.05) == (3, 3)


@pytest.mark.parametrize("cand", [{"other": np.array([1, 2])}, {}])
def test_outputs_without_a_common_name_are_not_compared(cand):
    assert compare({"label": np.array([1, 2])}, cand, 0.01) == (0, 0)


def test_outputs_of_different_shapes_disagree():
    assert compare({"p": np.zeros((2, 3))}, {"p": np.zeros((2, 4))}, 0.01) == (2, 0)
