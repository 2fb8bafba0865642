"""Canary analysis: compare a candidate with its baseline over one step and decide. Pure.

Model failures (5xx, not the caller's 4xx) and disagreement roll back as soon as there is enough evidence; latency is judged at the
end of a step; advancing needs the step's time to be over and enough traffic on the candidate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pallet.errors import RolloutError
from pallet.rollout.figures import VersionTraffic
from pallet.units import format_ms

Action = Literal["advance", "hold", "rollback"]


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01       # model failures (5xx) of the candidate's requests (served and shadowed)
    max_latency_ratio: float = 1.5     # candidate p95 / baseline p95 ...
    min_latency_delta_ms: float = 5.0  # ... and only when the candidate is slower by more than this
    min_agreement: float = 0.95        # rows whose prediction matches the baseline's, 0 turns it off
    tolerance: float = 0.01            # relative difference two regression outputs may have and agree
    min_requests: int = 20             # candidate requests a step needs before it can advance
    min_compared: int = 20             # rows compared before agreement is judged

    def __post_init__(self) -> None:
        checks = [("max_error_rate", 0 <= self.max_error_rate <= 1, "within 0..1"),
                  ("max_latency_ratio", self.max_latency_ratio >= 1, "1 or more"),
                  ("min_latency_delta_ms", self.min_latency_delta_ms >= 0, "0 or more"),
                  ("min_agreement", 0 <= self.min_agreement <= 1, "within 0..1"),
                  ("tolerance", self.tolerance >= 0, "0 or more"),
                  ("min_requests", self.min_requests >= 1 and self.min_requests == int(self.min_requests), "a whole number, 1 or more"),
                  ("min_compared", self.min_compared >= 1 and self.min_compared == int(self.min_compared), "a whole number, 1 or more")]
        for name, ok, expected in checks:
            if not ok:
                raise RolloutError(f"{name.replace('_', '-')} must be {expected}, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(baseline: VersionTraffic, candidate: VersionTraffic, thresholds: Thresholds, step_over: bool) -> Decision:
    t = thresholds
    answered, failed = candidate.answered, candidate.failed
    if answered >= t.min_requests and candidate.error_rate > t.max_error_rate:
        return Decision("rollback", f"candidate error rate {candidate.error_rate:.1%} ({failed} of {answered} "
                                    f"requests) is above --max-error-rate {t.max_error_rate:.1%}")
    if t.min_agreement > 0 and candidate.compared >= t.min_compared and candidate.agreement < t.min_agreement:
        return Decision("rollback", f"candidate agrees with the baseline on {candidate.agreement:.1%} of "
                                    f"{candidate.compared} rows, below --min-agreement {t.min_agreement:.1%}")
    if not step_over:
        return Decision("hold", "step in progress")
    if candidate.served < t.min_requests:
        return Decision("hold", f"candidate served {candidate.served} of the {t.min_requests} requests "
                                "a step needs (--min-requests)")
    if t.min_agreement > 0 and candidate.compared < t.min_compared:
        return Decision("hold", f"{candidate.compared} of the {t.min_compared} rows needed to judge agreement "
                                "were compared so far")
    base_p95, cand_p95 = baseline.p95(), candidate.p95()
    latency = "p95 not compared (no baseline traffic)"
    if base_p95 is not None and baseline.served >= t.min_requests:
        ratio = cand_p95 / base_p95
        latency = f"p95 {format_ms(cand_p95 * 1000)} vs {format_ms(base_p95 * 1000)} (x{ratio:.2f})"
        if ratio > t.max_latency_ratio and (cand_p95 - base_p95) * 1000 > t.min_latency_delta_ms:
            return Decision("rollback", f"candidate {latency}, above --max-latency-ratio {t.max_latency_ratio}")
    agreement = (f", agreement {candidate.agreement:.1%} over {candidate.compared} rows"
                 if candidate.agreement is not None else "")
    return Decision("advance", f"error rate {candidate.error_rate or 0.0:.1%} over {candidate.served} requests and {candidate.shadowed} "
                               f"shadow copies, {latency}{agreement}")
