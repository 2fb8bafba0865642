"""The dashboard's figures: snapshots of the server's own metrics, a few seconds apart, turned into
requests per second, latency percentiles, error counts, batch sizes and cache hit rates over time.

Errors are of two kinds, counted apart in every figure: `client_errors` (4xx: the request was refused)
and `server_errors` (5xx: the model or the server failed), as `metrics.outcome` sorts them. A series
interval without requests has no rate and no latency (None): a gap in a chart rather than a value."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from pallet.quantiles import quantile_of_buckets

INTERVAL_SECONDS = 2.0
HISTORY = 150  # snapshots kept: five minutes at the interval above
log = logging.getLogger("pallet.serve")


def _minus(now, then):
    """`now` less `then`, key by key: numbers, and dicts of them, nested."""
    if isinstance(now, dict):
        then = then if isinstance(then, dict) else {}
        return {key: _minus(value, then.get(key, {} if isinstance(value, dict) else 0)) for key, value in now.items()}
    return now - then


class Stats:
    """Figures since the server started, from `read`: per model, everything counted so far (the
    server's metric totals). One process's metrics may predate this app (an app made in a process
    that served before), so with `from_start` they count from the first reading; several workers
    share fresh metrics, which count from zero already."""

    def __init__(self, read: Callable[[], dict[str, dict]], from_start: bool = True, history: int = HISTORY):
        self._read = read
        self.from_start = from_start
        self.start: dict[str, dict] = {}
        self.snapshots: deque[tuple[float, dict[str, dict]]] = deque(maxlen=history)

    def read(self) -> dict[str, dict]:
        return _minus(self._read(), self.start)  # each model's totals since the start

    def sample(self) -> tuple[float, dict[str, dict]]:
        snapshot = (time.time(), self.read())
        self.snapshots.append(snapshot)
        return snapshot

    async def run(self, interval: float = INTERVAL_SECONDS) -> None:
        if self.from_start:
            self.start = self._read()
        while True:
            try:
                self.sample()
            except Exception:  # the dashboard loses a point; serving goes on
                log.exception("could not read the metrics for the dashboard")
            await asyncio.sleep(interval)

    def summary(self) -> dict[str, dict]:
        """Per model: totals now, figures over the last minute, and a series point per snapshot interval."""
        now_time, now = time.time(), self.read()
        history = [*self.snapshots, (now_time, now)]
        minute_ago = next(((t, s) for t, s in history if t >= now_time - 60), history[0])
        models = {}
        for model, current in now.items():
            models[model] = {
                **_counts(current),
                "last_minute": _window(minute_ago, (now_time, now), model),
                "series": [_point(a, b, model) for a, b in zip(history, history[1:]) if b[0] - a[0] > 0.5],
                "mean_batch_rows": current["batch_rows_sum"] / current["batches"] if current["batches"] else None,
                "cache_hit_rate": _rate(current["cache_hit"], current["cache_miss"]),
                "versions": {number: {**_counts(v), "p95_ms": _ms(quantile_of_buckets(v["latency"], 0.95))}
                             for number, v in current.get("versions", {}).items()},
            }
        return models


def _window(start: tuple[float, dict], end: tuple[float, dict], model: str) -> dict:
    (t0, before), (t1, after) = start, end
    zero = {"requests": 0, "client_errors": 0, "server_errors": 0, "latency": {}, "batch_rows_sum": 0.0,
            "batches": 0, "cache_hit": 0, "cache_miss": 0}
    a, b = before.get(model, zero), after.get(model, zero)
    seconds = max(t1 - t0, 1e-9)
    latency = _minus(b["latency"], a["latency"])
    batches = b["batches"] - a["batches"]

    def ms(q: float) -> float | None:
        return _ms(quantile_of_buckets(latency, q))

    return {
        "time": round(t1, 3),
        "seconds": round(seconds, 3),
        **_minus(_counts(b), _counts(a)),
        "rps": round((b["requests"] - a["requests"]) / seconds, 3) if t1 > t0 else 0.0,
        "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
        "mean_batch_rows": (b["batch_rows_sum"] - a["batch_rows_sum"]) / batches if batches else None,
        "cache_hit_rate": _rate(b["cache_hit"] - a["cache_hit"], b["cache_miss"] - a["cache_miss"]),
    }


def _point(start: tuple[float, dict], end: tuple[float, dict], model: str) -> dict:
    """A chart's point: an interval without requests is a gap (no rate, no latency), not a zero."""
    point = _window(start, end, model)
    if not point["requests"]:
        point["rps"] = None
    return point


def _counts(figures: dict) -> dict:
    """Requests and their two kinds of error, the same three numbers for a server, a model or a version."""
    return {key: figures.get(key, 0) for key in ("requests", "client_errors", "server_errors")}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _rate(hits: float, misses: float) -> float | None:
    return hits / (hits + misses) if hits + misses else None
