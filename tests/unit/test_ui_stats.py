"""The dashboard's arithmetic: percentiles from histogram buckets, rates between snapshots."""

import pytest

from pallet.quantiles import quantile_of_buckets as quantile
from pallet.ui.stats import Stats


def test_quantile_interpolates_within_the_bucket():
    buckets = {"0.01": 50, "0.1": 90, "1": 100, "+Inf": 100}
    assert quantile(buckets, 0.5) == pytest.approx(0.01)
    assert quantile(buckets, 0.7) == pytest.approx(0.01 + 0.09 * (20 / 40))
    assert quantile(buckets, 0.99) == pytest.approx(0.1 + 0.9 * (9 / 10))
    assert quantile({"0.01": 0, "+Inf": 0}, 0.5) is None
    assert quantile({"0.01": 0, "+Inf": 4}, 0.5) == 0.01  # past the last bound: the last bound


def _figures(requests, latency, errors=0, hits=0, misses=0, rows=0.0, batches=0, failures=0, versions=None):
    return {"requests": requests, "client_errors": errors, "server_errors": failures, "latency": latency,
            "batch_rows": {}, "batches": batches, "batch_rows_sum": rows, "cache_hit": hits, "cache_miss": misses,
            "versions": versions or {}}


def test_summary_counts_from_the_start_and_rates_between_snapshots(monkeypatch):
    readings = iter([
        {"m": _figures(5, {"0.01": 5, "+Inf": 5})},                                   # before the server started
        {"m": _figures(5, {"0.01": 5, "+Inf": 5})},                                   # first snapshot
        {"m": _figures(25, {"0.01": 15, "+Inf": 25}, errors=2, hits=3, misses=1, rows=40.0, batches=10)},
        {"m": _figures(25, {"0.01": 15, "+Inf": 25}, errors=2, hits=3, misses=1, rows=40.0, batches=10)},
    ])
    clock = iter([100.0, 110.0, 110.0])
    monkeypatch.setattr("pallet.ui.stats.time.time", lambda: next(clock))
    stats = Stats(read=lambda: next(readings))
    stats.start = stats._read()
    stats.sample()
    stats.sample()
    summary = stats.summary()["m"]
    assert summary["requests"] == 20 and summary["client_errors"] == 2
    assert summary["mean_batch_rows"] == 4.0 and summary["cache_hit_rate"] == 0.75
    (point,) = summary["series"]  # the last two readings are the same moment: no second point
    assert point["rps"] == 2.0 and point["client_errors"] == 2 and point["p50_ms"] == pytest.approx(10.0)
    assert summary["last_minute"]["requests"] == 20


def _stats_of(readings: list[dict], times: list[float], monkeypatch) -> Stats:
    """Stats that took a snapshot at each of `times` but the last, the moment `summary` is asked for."""
    clock, values = iter(times), iter(readings)
    monkeypatch.setattr("pallet.ui.stats.time.time", lambda: next(clock))
    stats = Stats(read=lambda: next(values), from_start=False)
    for _ in times[:-1]:
        stats.sample()
    return stats


def test_an_interval_without_requests_is_a_gap_in_the_series_not_a_value(monkeypatch):
    busy = {"0.01": 10, "+Inf": 10}
    readings = [{"m": _figures(0, {})}, {"m": _figures(10, busy)}, {"m": _figures(10, busy)},
                {"m": _figures(10, busy)}, {"m": _figures(20, {"0.01": 20, "+Inf": 20})}]
    series = _stats_of(readings, [0.0, 2.0, 4.0, 6.0, 8.0], monkeypatch).summary()["m"]["series"]
    assert [p["requests"] for p in series] == [10, 0, 0, 10]
    assert [p["p99_ms"] is None for p in series] == [False, True, True, False]  # no requests: no latency
    assert [p["rps"] for p in series] == [5.0, None, None, 5.0]


def test_client_errors_and_failures_are_counted_apart_for_the_model_its_versions_and_each_interval(monkeypatch):
    def version(requests, errors, failures):
        return {"requests": requests, "client_errors": errors, "server_errors": failures,
                "latency": {"0.01": requests, "+Inf": requests}}

    readings = [
        {"m": _figures(0, {})},
        {"m": _figures(9, {"0.01": 9, "+Inf": 9}, errors=3, failures=2,
                       versions={"1": version(5, 1, 2), "2": version(4, 2, 0)})},
        {"m": _figures(9, {"0.01": 9, "+Inf": 9}, errors=3, failures=2,
                       versions={"1": version(5, 1, 2), "2": version(4, 2, 0)})},
    ]
    summary = _stats_of(readings, [0.0, 2.0, 3.0], monkeypatch).summary()["m"]
    assert (summary["requests"], summary["client_errors"], summary["server_errors"]) == (9, 3, 2)
    assert {v: (f["requests"], f["client_errors"], f["server_errors"]) for v, f in summary["versions"].items()} == {
        "1": (5, 1, 2), "2": (4, 2, 0)}
    first = summary["series"][0]
    assert (first["requests"], first["client_errors"], first["server_errors"]) == (9, 3, 2)
    assert (summary["last_minute"]["client_errors"], summary["last_minute"]["server_errors"]) == (3, 2)
