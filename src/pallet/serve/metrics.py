"""Prometheus metrics. With several workers, PROMETHEUS_MULTIPROC_DIR makes them add up."""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest, multiprocess)

from pallet.quantiles import LATENCY_BUCKETS

disable_created_metrics()

REQUESTS = Counter("pallet_requests", "Inference requests", ["model", "version", "protocol", "status"])
LATENCY = Histogram("pallet_request_duration_seconds", "Inference request latency, from first byte to response",
                    ["model", "version", "protocol"], buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("pallet_requests_in_flight", "HTTP requests being handled", multiprocess_mode="livesum")
BATCH_SIZE = Histogram("pallet_batch_rows", "Rows in each predict call the batcher made", ["model", "version"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
BATCH_WAIT = Histogram("pallet_batch_queue_seconds", "How long a batch's oldest request waited in the queue",
                       ["model", "version"],
                       buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
CACHE = Counter("pallet_cache_lookups", "Output cache lookups", ["model", "version", "result"])
CACHE_BYPASS = Counter("pallet_cache_bypass", "Requests served without the output cache, and why",
                       ["model", "version", "reason"])
PIPELINE_STEP = Histogram("pallet_pipeline_step_seconds", "Time in each step of a pipeline's predict call",
                          ["model", "version", "step"],
                          buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
FEEDBACK = Counter("pallet_feedback", "Feedback records from the prototype page or the API",
                   ["model", "version", "rating"])
MODEL_SIZE = Gauge("pallet_model_size_bytes", "Bytes on disk of a loaded model version (every file of it)",
                   ["model", "version"], multiprocess_mode="max")
MODEL_LOAD_SECONDS = Gauge("pallet_model_load_seconds", "Time to load a model version",
                           ["model", "version"], multiprocess_mode="max")


def observe(model: str, version: str, protocol: str, status: int, seconds: float) -> None:
    """Count one inference request; a server counts through `DataPlane.observe`, which feeds a
    rollout's figures the same `seconds`."""
    REQUESTS.labels(model, version, protocol, str(status)).inc()
    LATENCY.labels(model, version, protocol).observe(seconds)


def shared() -> bool:
    """Whether the metrics are every worker's (multiprocess mode) rather than this process's."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _registry() -> CollectorRegistry:
    """This process's metrics, or every worker's in multiprocess mode."""
    if shared():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def outcome(status: str) -> str | None:
    """What a request's status counts as, everywhere figures are shown: "client_errors" for 4xx (the
    request was refused: the caller's to fix), "server_errors" for 5xx (the model or the server failed
    to answer a request it accepted), None for an answer."""
    return "client_errors" if status.startswith("4") else "server_errors" if status.startswith("5") else None


def totals() -> dict[str, dict]:
    """Per model, everything counted so far: requests, client errors and server errors (see `outcome`),
    latency and batch-size histograms (cumulative bucket counts by upper bound), cache hits and misses,
    and requests, both kinds of error and latency per version (`versions`). Requests that named no
    loaded model count under the model "". The dashboard's raw data."""
    models: dict[str, dict] = {}

    def entry(model: str) -> dict:
        return models.setdefault(model, {"requests": 0, "client_errors": 0, "server_errors": 0,
                                         "latency": {}, "batch_rows": {}, "batches": 0, "batch_rows_sum": 0.0,
                                         "cache_hit": 0, "cache_miss": 0, "versions": {}})

    def version(model: str, number: str) -> dict:
        return entry(model)["versions"].setdefault(number, {"requests": 0, "client_errors": 0, "server_errors": 0,
                                                            "latency": {}})

    for family in _registry().collect():
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:  # a figure of the whole server, not of a model
                continue
            name, value = sample.name, sample.value
            if name == "pallet_requests_total":
                e, v = entry(model), version(model, sample.labels["version"])
                kind = outcome(sample.labels["status"])
                for counts in (e, v):
                    counts["requests"] += value
                    if kind:
                        counts[kind] += value
            elif name == "pallet_request_duration_seconds_bucket":
                for buckets in (entry(model)["latency"], version(model, sample.labels["version"])["latency"]):
                    buckets[sample.labels["le"]] = buckets.get(sample.labels["le"], 0) + value
            elif name == "pallet_batch_rows_bucket":
                buckets = entry(model)["batch_rows"]
                buckets[sample.labels["le"]] = buckets.get(sample.labels["le"], 0) + value
            elif name == "pallet_batch_rows_count":
                entry(model)["batches"] += value
            elif name == "pallet_batch_rows_sum":
                entry(model)["batch_rows_sum"] += value
            elif name == "pallet_cache_lookups_total":
                entry(model)["cache_" + sample.labels["result"]] += value
    return models
