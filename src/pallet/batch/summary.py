"""What a run's predictions looked like, kept small: counts of labels, a sample of scores.

`pallet batch check` compares two runs' summaries with the population stability index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLE = 2000      # numbers kept per output
CATEGORIES = 100   # labels counted per output, the rest as "other"


class Summary:
    def __init__(self, rows: int = 0, outputs: dict[str, dict] | None = None):
        self.rows = rows
        self.outputs: dict[str, dict] = outputs or {}
        self.rng = np.random.default_rng(rows)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        return cls(int(data.get("rows", 0)), data.get("outputs"))

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "outputs": self.outputs}

    def add(self, outputs: dict[str, np.ndarray]) -> None:
        for name, values in outputs.items():
            values = np.asarray(values)
            if values.ndim == 2 and values.shape[1] > 1 and values.dtype.kind == "f":
                name, values = f"max_{name}", values.max(axis=1)  # a row of scores: its confidence
            elif values.ndim > 1:
                values = values.reshape(len(values), -1)[:, 0]
            if values.dtype.kind in "iubOSU":
                self._count(name, values)
            else:
                self._sample(name, values.astype(np.float64), len(values))
        self.rows += len(next(iter(outputs.values()))) if outputs else 0

    def _count(self, name: str, values: np.ndarray) -> None:
        counts = self.outputs.setdefault(name, {"kind": "labels", "counts": {}})["counts"]
        labels, numbers = np.unique(values, return_counts=True)
        for label, number in zip((str(v) for v in labels.tolist()), numbers.tolist()):
            if label not in counts and len(counts) >= CATEGORIES:
                label = "other"
            counts[label] = counts.get(label, 0) + number

    def _sample(self, name: str, values: np.ndarray, rows: int) -> None:
        entry = self.outputs.setdefault(name, {"kind": "numbers", "sample": [], "seen": 0})
        values = values[np.isfinite(values)]
        kept = np.concatenate([np.array(entry["sample"], dtype=np.float64), values])
        seen = entry["seen"] + len(values)
        if len(kept) > SAMPLE:  # each value seen so far has about the same chance to stay
            weights = np.concatenate([np.full(len(entry["sample"]), entry["seen"] / max(len(entry["sample"]), 1)),
                                      np.ones(len(values))])
            kept = self.rng.choice(kept, SAMPLE, replace=False, p=weights / weights.sum())
        entry["sample"], entry["seen"] = np.round(kept, 6).tolist(), seen


def psi(expected: dict, actual: dict) -> float | None:
    """Population stability index of `actual` against `expected` (two summaries of one output)."""
    if expected["kind"] != actual["kind"]:
        return None
    if expected["kind"] == "labels":
        labels = sorted(set(expected["counts"]) | set(actual["counts"]))
        p = np.array([expected["counts"].get(k, 0) for k in labels], dtype=np.float64)
        q = np.array([actual["counts"].get(k, 0) for k in labels], dtype=np.float64)
    else:
        before, after = np.array(expected["sample"]), np.array(actual["sample"])
        if not len(before) or not len(after):
            return None
        # Bins at the baseline's deciles; a value equal to an edge falls in the bin below it, so a
        # constant baseline still has two bins (at the constant, above it) and a few distinct values stay apart.
        edges = np.unique(np.quantile(before, np.linspace(0, 1, 11)))
        p = np.bincount(np.searchsorted(edges, before, side="left"), minlength=len(edges) + 1).astype(np.float64)
        q = np.bincount(np.searchsorted(edges, after, side="left"), minlength=len(edges) + 1).astype(np.float64)
    if not p.sum() or not q.sum():
        return None
    p, q = np.maximum(p / p.sum(), 1e-4), np.maximum(q / q.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))
