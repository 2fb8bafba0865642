"""What one version did during one step of a rollout: requests, errors, latency, agreement.

Requests are counted as the dashboard counts them: every request routed to the version, with its
client errors (4xx: refused, the caller's to fix) and failures (5xx) apart. The canary judges the
version on the requests it was asked to answer: its model failures, not the caller's 4xx, nor load
shed before the model ran (503). Each server process counts its own; the counts go to the SQL store
and add up across processes and replicas, so a decision sees all the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from pallet.quantiles import LATENCY_BUCKETS, bucket_of, quantile_of_counts

BUCKETS = len(LATENCY_BUCKETS) + 1  # the server's latency buckets, and one past every bound


@dataclass
class VersionTraffic:
    requests: int = 0            # requests routed to this version, as the dashboard counts them
    client_errors: int = 0       # of those, refused as the caller's mistake (4xx)
    server_errors: int = 0       # of those, failures (5xx): the model's, and load shed (503)
    shed: int = 0                # of the failures, load shed before the model ran (503): not judged
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)  # of the requests the model was asked
    shadowed: int = 0            # copies of another version's requests it answered off the request path
    shadow_errors: int = 0
    shadow_latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    compared: int = 0            # rows compared with the version that served them
    agreed: int = 0

    def observe(self, seconds: float, ok: bool) -> None:
        """One request the model was asked to answer: answered (`ok`) or failed in the model; `seconds`
        is the time the server's latency histogram counted for it (one measurement per request)."""
        self.requests += 1
        self.server_errors += not ok
        self.latency[bucket_of(seconds)] += 1

    def refused(self, client_error: bool) -> None:
        """One request counted but not judged: refused as the caller's (4xx, `client_error`) or shed
        before the model ran (503, a failure)."""
        self.requests += 1
        if client_error:
            self.client_errors += 1
        else:
            self.server_errors += 1
            self.shed += 1

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
    def served(self) -> int:
        """Requests the model was asked to answer: without the refused (4xx) and the shed (503)."""
        return self.requests - self.client_errors - self.shed

    @property
    def errors(self) -> int:
        """Of the served requests, those that failed in the model."""
        return self.server_errors - self.shed

    @property
    def answered(self) -> int:
        """Everything the model was asked to answer, served and shadowed: what the canary judges."""
        return self.served + self.shadowed

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
        if "errors" in data and "server_errors" not in data:  # an older release: model failures only
            data = {**data, "server_errors": data["errors"]}
        kept = {k: v for k, v in data.items() if k in known}
        for name in ("latency", "shadow_latency"):
            if name in kept and len(kept[name]) != BUCKETS:
                del kept[name]
        return cls(**kept)

    def summary(self) -> dict[str, Any]:
        """The figures a person reads: counts (named as the dashboard names them), the error rate the
        canary judges (model failures), and p95s (milliseconds, of the requests the model was asked)."""
        p95, shadow_p95 = self.p95(), self.p95(shadow=True)
        return {"requests": self.requests, "client_errors": self.client_errors, "server_errors": self.server_errors,
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
