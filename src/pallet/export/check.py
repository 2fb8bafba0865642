"""How closely a child answers like its parent, and what a version weighs and costs to run."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from pallet.export.data import Data
from pallet.export.report import Figures

Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
REL_TOL = 0.01      # a prediction (a number or a few) agrees when its relative difference is at most this
MIN_COSINE = 0.99   # an embedding (a wide vector) agrees when its cosine similarity is at least this
WIDE = 16           # outputs at least this wide per row are embeddings


def answers(predict: Predict, data: Data, batch: int = 256) -> dict[str, np.ndarray]:
    """Every output for every row of `data`, `batch` rows per call."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(data), batch):
        out = predict({k: v[start:start + batch] for k, v in data.inputs.items()})
        for name, value in out.items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(values) for name, values in parts.items()}


def accuracy(outputs: dict[str, np.ndarray], data: Data) -> float | None:
    """The share of rows whose `label` is the data's true label, when both exist."""
    if data.labels is None or "label" not in outputs:
        return None
    return float(np.mean(outputs["label"].ravel() == np.asarray(data.labels).ravel()))


def compare(parent: dict[str, np.ndarray], child: dict[str, np.ndarray]) -> tuple[float | None, float | None]:
    """(max absolute difference over the float outputs both have, agreement).

    Agreement is label agreement when there is a `label` output; otherwise the share of
    rows whose embedding keeps a cosine similarity of `MIN_COSINE` with the parent's, or,
    for narrower outputs, whose numbers differ by at most `REL_TOL` relative to the parent's (L2).
    """
    shared = [n for n in parent if n in child]
    floats = [n for n in shared if parent[n].dtype.kind == "f" and child[n].dtype.kind == "f"
              and parent[n].size == child[n].size]
    max_diff = None
    if floats:
        max_diff = max(float(np.max(np.abs(parent[n].astype(np.float64).ravel() - child[n].astype(np.float64).ravel()),
                                    initial=0.0)) for n in floats)
    if "label" in parent and "label" in child:
        return max_diff, float(np.mean(parent["label"].ravel() == child["label"].ravel()))
    if not floats:
        return max_diff, None
    rows = len(parent[floats[0]])
    p = np.column_stack([parent[n].astype(np.float64).reshape(rows, -1) for n in floats])
    c = np.column_stack([child[n].astype(np.float64).reshape(rows, -1) for n in floats])
    norms = np.maximum(np.linalg.norm(p, axis=1), 1e-12)
    if p.shape[1] >= WIDE:
        cosine = np.sum(p * c, axis=1) / norms / np.maximum(np.linalg.norm(c, axis=1), 1e-12)
        return max_diff, float(np.mean(cosine >= MIN_COSINE))
    return max_diff, float(np.mean(np.linalg.norm(p - c, axis=1) / norms <= REL_TOL))


def measure(label: str, ref: str, size_bytes: int, predict: Predict, data: Data,
            parent_answers: dict[str, np.ndarray] | None = None, seconds: float = 1.0) -> Figures:
    """Size, p50 latency at one row per call, throughput at 64 rows per call, and how well it answers."""
    one = data.head(1).inputs
    predict(one)  # warm
    latencies = []
    deadline = time.perf_counter() + seconds
    while len(latencies) < 2000 and (time.perf_counter() < deadline or len(latencies) < 20):
        start = time.perf_counter()
        predict(one)
        latencies.append(time.perf_counter() - start)
    batch = data.rows(np.arange(64) % len(data)).inputs
    predict(batch)
    calls, start = 0, time.perf_counter()
    while calls < 2000 and (time.perf_counter() - start < seconds or calls < 5):
        predict(batch)
        calls += 1
    rows_per_s = 64 * calls / (time.perf_counter() - start)
    out = answers(predict, data)
    agreement = compare(parent_answers, out)[1] if parent_answers is not None else None
    return Figures(label, ref, size_bytes, float(np.median(latencies) * 1000), rows_per_s, accuracy(out, data),
                   agreement)
