"""What one version did during one step of a rollout: requests, errors, latency, agreement.

Each server process counts its own; the counts go to the SQL store and add up across
processes and replicas, so a decision sees all the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from pallet.quantiles import LATENCY_BUCKETS, bucket_of, quantile_of_counts

BUCKETS = len(LATENCY_BUCKETS) + 1  # the server's latency buckets, and one past every bound


@dataclass
class VersionTraffic:
    requests: int = 0            # requests this version answered
    errors: int = 0              # of those, failed in the model (not bad input)
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    shadowed: int = 0            # copies of another version's requests it answered off the request path
    shadow_errors: int = 0
    shadow_latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    compared: int = 0            # rows compared with the version that served them
    agreed: int = 0

    def observe(self, seconds: float, ok: bool) -> None:
        """One request this version answered; `seconds` is the time the server's latency histogram
        counted for it (one measurement per request, so both give the same p95)."""
        self.requests += 1
        self.errors += not ok
        self.latency[bucket_of(seconds)] += 1

    def observe_shadow(self, seconds: float, ok: bool, compared: int = 0, agreed: int = 0) -> None:
        self.shadowed += 1
        self.shadow_errors += not ok
        self.shadow_latency[bucket_of(seconds)] += 1
        self.compared += compared
        self.agreed += agreed

    def add(self, other: VersionTraffic) -> VersionTraffic:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, [a + b for a, b in zip(mine, theirs)] if isinstance(mine, list) else mine + theirs)
        return self

    @property
    def answered(self) -> int:
        """Everything the version answered, served and shadowed."""
        return self.requests + self.shadowed

    @property
    def failed(self) -> int:
        return self.errors + self.shadow_errors

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.answered if self.answered else None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def p95(self, shadow: bool = False) -> float | None:
        """Seconds, read from the latency buckets as the dashboard and `pallet bench` read them."""
        return quantile_of_counts(self.shadow_latency if shadow else self.latency, 0.95)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionTraffic:
        """Counts another process stored; latency counted in other buckets (an older release) is left out."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        for name in ("latency", "shadow_latency"):
            if name in kept and len(kept[name]) != BUCKETS:
                del kept[name]
        return cls(**kept)

    def summary(self) -> dict[str, Any]:
        """The figures a person reads: counts, rates and p95s (milliseconds)."""
        p95, shadow_p95 = self.p95(), self.p95(shadow=True)
        return {"requests": self.requests, "errors": self.errors,
                "error_rate": self.error_rate, "p95_ms": None if p95 is None else round(p95 * 1000, 3),
                "shadowed": self.shadowed, "shadow_errors": self.shadow_errors,
                "shadow_p95_ms": None if shadow_p95 is None else round(shadow_p95 * 1000, 3),
                "compared": self.compared, "agreement": self.agreement}


def compare(served: dict[str, np.ndarray], candidate: dict[str, np.ndarray], tolerance: float) -> tuple[int, int]:
    """(rows compared, rows that agree) between two versions' outputs for the same inputs.

    Where the outputs include labels (integers, strings, booleans), a row agrees when every label
    is equal: label agreement for classifiers. Otherwise (regressors) a row agrees when every value
    is within `tolerance` relative difference. Outputs only one of them gives are not compared.
    """
    common = [name for name in served if name in candidate]
    rows = min((len(served[n]) for n in common), default=0)
    if not common or rows == 0:
        return 0, 0
    labels = [n for n in common if served[n].dtype.kind in "biuSUO"]
    agree = np.ones(rows, dtype=bool)
    for name in labels or common:
        a, b = served[name][:rows], candidate[name][:rows]
        if a.shape != b.shape:
            return rows, 0
        if labels:
            same = (a == b).reshape(rows, -1).all(axis=1)
        else:
            a64, b64 = a.astype(np.float64).reshape(rows, -1), b.astype(np.float64).reshape(rows, -1)
            scale = np.maximum(np.maximum(np.abs(a64), np.abs(b64)), 1e-12)
            same = (np.abs(a64 - b64) / scale <= tolerance).all(axis=1)
        agree &= same
    return rows, int(agree.sum())
