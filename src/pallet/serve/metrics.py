"""Prometheus metrics. With several workers, PROMETHEUS_MULTIPROC_DIR makes them add up."""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest, multiprocess)

disable_created_metrics()

REQUESTS = Counter("pallet_requests", "Inference requests", ["model", "version", "protocol", "status"])
LATENCY = Histogram("pallet_request_duration_seconds", "Inference request latency, from first byte to response",
                    ["model", "version", "protocol"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
IN_FLIGHT = Gauge("pallet_requests_in_flight", "HTTP requests being handled", multiprocess_mode="livesum")
BATCH_SIZE = Histogram("pallet_batch_rows", "Rows in each predict call the batcher made", ["model", "version"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
BATCH_WAIT = Histogram("pallet_batch_queue_seconds", "How long a batch's oldest request waited in the queue",
                       ["model", "version"],
                       buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
CACHE = Counter("pallet_cache_lookups", "Output cache lookups", ["model", "version", "result"])
MODEL_LOAD_SECONDS = Gauge("pallet_model_load_seconds", "Time to load a model version",
                           ["model", "version"], multiprocess_mode="max")


def observe(model: str, version: str, protocol: str, status: int, seconds: float) -> None:
    REQUESTS.labels(model, version, protocol, str(status)).inc()
    LATENCY.labels(model, version, protocol).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics text of this process, or of every worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
