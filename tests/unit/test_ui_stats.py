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


def _figures(requests, latency, errors=0, hits=0, misses=0, rows=0.0, batches=0):
    return {"requests": requests, "client_errors": errors, "server_errors": 0, "latency": latency,
            "batch_rows": {}, "batches": batches, "batch_rows_sum": rows, "cache_hit": hits, "cache_miss": misses}


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
    assert point["rps"] == 2.0 and point["errors"] == 2 and point["p50_ms"] == pytest.approx(10.0)
    assert summary["last_minute"]["requests"] == 20
