"""One latency arithmetic: the dashboard, `pallet rollout status` and `pallet bench` print the same p95."""

import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pallet.bench import LevelResult, server_counts
from pallet.quantiles import (LATENCY_BUCKETS, counts_of, histogram_quantile, quantile_of_buckets,
                              quantile_of_counts)
from pallet.rollout.figures import VersionTraffic
from pallet.serve import metrics
from pallet.ui.stats import Stats

# Latencies of 400 requests: most fast, a slow tail, a few past the last bound.
LATENCIES = [0.0004] * 150 + [0.0011] * 120 + [0.0042] * 80 + [0.03] * 40 + [0.7] * 7 + [75.0] * 3


def test_interpolates_inside_the_bucket_like_prometheus():
    pairs = [(0.01, 50), (0.1, 90), (1.0, 100), (math.inf, 100)]
    assert histogram_quantile(0.5, pairs) == pytest.approx(0.01)
    assert histogram_quantile(0.7, pairs) == pytest.approx(0.01 + 0.09 * (20 / 40))
    assert histogram_quantile(0.99, pairs) == pytest.approx(0.1 + 0.9 * (9 / 10))
    assert histogram_quantile(0.2, pairs) == pytest.approx(0.01 * 20 / 50)  # the first bucket starts at 0
    assert histogram_quantile(0.5, [(0.01, 0), (math.inf, 4)]) == 0.01  # past every bound: the last bound
    assert histogram_quantile(0.5, [(0.01, 0), (math.inf, 0)]) is None
    assert histogram_quantile(0.5, []) is None
    with pytest.raises(ValueError):
        histogram_quantile(95, pairs)


def test_the_three_forms_of_a_histogram_agree():
    counts = counts_of(LATENCIES)
    assert sum(counts) == len(LATENCIES) and counts[-1] == 3  # 75 s is past the last bound
    running, buckets = 0, {}
    for bound, count in zip([*map(str, LATENCY_BUCKETS), "+Inf"], counts):
        running += count
        buckets[bound] = running
    for q in (0.5, 0.9, 0.95, 0.99, 1.0):
        assert quantile_of_counts(counts, q) == quantile_of_buckets(buckets, q)


def test_the_server_histogram_uses_the_shared_buckets():
    assert tuple(metrics.LATENCY._upper_bounds[:-1]) == LATENCY_BUCKETS


def _metrics_server(text: bytes):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_dashboard_rollout_status_and_bench_print_the_same_p95_for_the_same_requests():
    registry = CollectorRegistry()
    histogram = Histogram("pallet_request_duration_seconds", "latency", ["model", "version", "protocol"],
                          buckets=LATENCY_BUCKETS, registry=registry)
    traffic = VersionTraffic()
    for seconds in LATENCIES:
        histogram.labels("m", "1", "v2").observe(seconds)  # what the server's middleware counts
        traffic.observe(seconds, ok=True)                   # what the rollout's figures count
    le = {s.labels["le"]: s.value for family in registry.collect() for s in family.samples if s.name.endswith("_bucket")}
    totals = {"m": {"requests": len(LATENCIES), "client_errors": 0, "server_errors": 0, "latency": le,
                    "batch_rows": {}, "batches": 0, "batch_rows_sum": 0.0, "cache_hit": 0, "cache_miss": 0,
                    "versions": {"1": {"requests": len(LATENCIES), "errors": 0, "latency": le}}}}
    dashboard = Stats(lambda: totals).summary()["m"]["versions"]["1"]["p95_ms"]
    rollout_status = traffic.summary()["p95_ms"]
    httpd = _metrics_server(generate_latest(registry))
    try:
        counted = server_counts(f"http://127.0.0.1:{httpd.server_port}", "m")
    finally:
        httpd.shutdown()
    bench = round(LevelResult(1, len(LATENCIES), 0, 1.0, server_latency=counted["latency"]).percentile(95) * 1000, 3)
    assert dashboard == rollout_status == bench
    assert dashboard == 32.5  # rank 380 of 400: 30 of the 40 in the (25, 35] ms bucket


def test_bench_without_a_server_histogram_reads_its_own_timings_the_same_way():
    level = LevelResult(1, len(LATENCIES), 0, 1.0, latencies=LATENCIES)
    assert level.percentile(95) == quantile_of_counts(counts_of(LATENCIES), 0.95)
    assert math.isnan(LevelResult(1, 0, 0, 1.0).percentile(95))


def test_rollout_figures_from_an_older_release_drop_latency_counted_in_other_buckets():
    old = {"requests": 5, "errors": 0, "latency": [1] * 63, "compared": 2, "agreed": 2}
    traffic = VersionTraffic.from_dict(old)
    assert (traffic.requests, traffic.agreed, traffic.p95()) == (5, 2, None)
