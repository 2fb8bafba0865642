"""Prometheus metrics. With several workers, PROMETHEUS_MULTIPROC_DIR makes them add up."""

from __future__ import annotations

import os
import time

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
# Triton's statistics extension reads these (`statistics`): one source for both.
EXECUTIONS = Counter("pallet_executions", "Predict calls (a batch of requests is one)", ["model", "version"])
INFERENCES = Counter("pallet_inferences", "Rows given to predict calls", ["model", "version"])
STAGES = Histogram("pallet_inference_stage_seconds",
                   "Time each request spent in a stage: success and fail (the whole request, by outcome); "
                   "compute_input, queue, compute_infer and compute_output (requests that reached predict)",
                   ["model", "version", "stage"], buckets=LATENCY_BUCKETS)
LAST_INFERENCE = Gauge("pallet_last_inference_timestamp_seconds", "When the last inference request came in",
                       ["model", "version"], multiprocess_mode="max")
STAGE_NAMES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def observe(model: str, version: str, protocol: str, status: int, seconds: float) -> None:
    """Count one inference request; a server counts through `DataPlane.observe`, which feeds a
    rollout's figures the same `seconds`."""
    REQUESTS.labels(model, version, protocol, str(status)).inc()
    LATENCY.labels(model, version, protocol).observe(seconds)
    if model:
        STAGES.labels(model, version, "success" if 200 <= status < 300 else "fail").observe(seconds)
        LAST_INFERENCE.labels(model, version).set(time.time())


def executed(model: str, version: str, rows: int) -> None:
    """Count one predict call of `rows` rows."""
    EXECUTIONS.labels(model, version).inc()
    INFERENCES.labels(model, version).inc(rows)


def staged(model: str, version: str, **seconds: float) -> None:
    """Time a request spent in each stage it went through (`STAGE_NAMES`)."""
    for stage, spent in seconds.items():
        STAGES.labels(model, version, stage).observe(max(spent, 0.0))


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


def statistics() -> dict[tuple[str, str], dict]:
    """Per (model, version), what Triton's statistics extension reports, read from the metrics above
    (every worker's in multiprocess mode): rows and predict calls, the last request (seconds since the
    epoch), count and seconds per stage, and cache hits and misses."""
    figures: dict[tuple[str, str], dict] = {}
    for family in _registry().collect():
        for sample in family.samples:
            labels = sample.labels
            if not labels.get("model") or "version" not in labels:
                continue
            entry = figures.setdefault((labels["model"], labels["version"]), {
                "inference_count": 0.0, "execution_count": 0.0, "last_inference": 0.0, "cache_hit": 0.0,
                "cache_miss": 0.0, **{stage: {"count": 0.0, "seconds": 0.0} for stage in STAGE_NAMES}})
            name, value = sample.name, sample.value
            if name == "pallet_inferences_total":
                entry["inference_count"] += value
            elif name == "pallet_executions_total":
                entry["execution_count"] += value
            elif name == "pallet_last_inference_timestamp_seconds":
                entry["last_inference"] = max(entry["last_inference"], value)
            elif name == "pallet_cache_lookups_total":
                entry["cache_" + labels["result"]] += value
            elif name == "pallet_inference_stage_seconds_count":
                entry[labels["stage"]]["count"] += value
            elif name == "pallet_inference_stage_seconds_sum":
                entry[labels["stage"]]["seconds"] += value
    return figures
