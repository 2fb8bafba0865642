"""Latency quantiles from histograms: the one arithmetic behind every p50, p95 and p99 pallet prints.

The server's Prometheus histogram, the dashboard, `pallet rollout status` and `pallet bench` count
latencies into the same buckets (`LATENCY_BUCKETS`) and read quantiles from them the way
Prometheus's `histogram_quantile` does: find the bucket that holds the rank, then interpolate
linearly inside it. The same requests therefore give the same p95 wherever it is printed, and a
Grafana panel built on `histogram_quantile` over `/metrics` agrees with them too.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

# Upper bounds in seconds: fine where model latencies live (0.5 ms to 150 ms, at most 1.5x apart),
# coarse past a second. Every bound of the server's earlier histogram is kept, so queries on them hold.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


def histogram_quantile(q: float, cumulative: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile (0 <= q <= 1) of a histogram given as (upper bound, cumulative count) pairs.

    Prometheus's rule: the rank q * total falls in the first bucket whose cumulative count reaches
    it; the answer is interpolated linearly between that bucket's lower and upper bound (the first
    bucket starts at 0). A rank past every finite bound answers the largest finite bound. None when
    the histogram holds no observation.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, got {q}")
    pairs = sorted(cumulative)
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in pairs:
        count = max(count, below)  # counts summed from several processes may be read mid-update
        if count >= rank:
            if math.isinf(upper):
                return lower
            inside = count - below
            if inside <= 0 or rank - below >= inside:
                return upper
            return lower + (upper - lower) * (rank - below) / inside
        lower, below = upper, count
    return lower


def quantile_of_buckets(buckets: Mapping[str, float], q: float) -> float | None:
    """The q-quantile of a Prometheus histogram's `_bucket` samples, {"le" label: cumulative count}."""
    return histogram_quantile(q, ((math.inf if le == "+Inf" else float(le), count) for le, count in buckets.items()))


def quantile_of_counts(counts: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BUCKETS) -> float | None:
    """The q-quantile of per-bucket counts: `counts[i]` observations at most `bounds[i]`, the last
    one (`counts[len(bounds)]`) past every bound."""
    running, pairs = 0, []
    for upper, count in zip([*bounds, math.inf], counts):
        running += count
        pairs.append((upper, running))
    return histogram_quantile(q, pairs)


def bucket_of(seconds: float, bounds: Sequence[float] = LATENCY_BUCKETS) -> int:
    """The index of the first bucket whose upper bound holds `seconds` (len(bounds): past every bound)."""
    return bisect.bisect_left(bounds, seconds)


def counts_of(values: Iterable[float], bounds: Sequence[float] = LATENCY_BUCKETS) -> list[int]:
    """Per-bucket counts of `values`, as `quantile_of_counts` reads them."""
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bucket_of(value, bounds)] += 1
    return counts
