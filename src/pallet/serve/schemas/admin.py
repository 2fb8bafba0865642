"""Feedback on predictions, and the rollout admin API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType, field

from pallet.rollout.state import Event
from pallet.serve.middleware import REQUEST_ID
from pallet.serve.schemas import expects
from pallet.ui.feedback import RATINGS

Text = Annotated[str | int | float, expects("text")]
Reference = Annotated[str, msgspec.Meta(description="a version reference, e.g. digits:4")]


class Feedback(msgspec.Struct):
    """Feedback on one prediction: a rating, a correct answer or a comment (at least one)."""
    request_id: Annotated[str, expects("the X-Request-ID of the prediction it is about",
                                       pattern=f"^{REQUEST_ID.pattern}$")]
    inputs: Annotated[Any, expects("what was sent for the prediction", "what was sent: rows, or rows by input name")]
    outputs: Annotated[dict[str, Any], expects("the prediction, by output name", min_length=1)]
    version: str | int | None = None
    rating: Annotated[Literal[RATINGS], expects("'up', 'down' or null")] | None = None
    correct: Text | None = None
    comment: Text | None = None


class FeedbackSaved(msgspec.Struct):
    id: int
    model: str
    version: str


class FeedbackList(msgspec.Struct):
    model: str
    feedback: list[dict[str, Any]]


class Promote(msgspec.Struct):
    to: Reference
    reason: str = ""
    baseline: Annotated[str, msgspec.Meta(description="the version serving now, when the name has no rollout yet")] \
        | None = field(default=None, name="from")


class Rollback(msgspec.Struct):
    reason: str = ""


Number = Annotated[int | float, expects("a number")]


class Canary(msgspec.Struct):
    """A canary: traffic moves through `steps` (percent) every `step_seconds` while its figures hold up."""
    to: Reference
    baseline: Reference | None = field(default=None, name="from")
    steps: Annotated[list[int | float], expects("a non-empty list of numbers", min_length=1)] = field(
        default_factory=lambda: [5, 25, 50, 100])
    step_seconds: Number = 300
    shadow_fraction: Number = 0.2
    sticky_key: str | None = None
    max_error_rate: Number | UnsetType = UNSET
    max_latency_ratio: Number | UnsetType = UNSET
    min_latency_delta_ms: Number | UnsetType = UNSET
    min_agreement: Number | UnsetType = UNSET
    tolerance: Number | UnsetType = UNSET
    min_requests: Number | UnsetType = UNSET
    min_compared: Number | UnsetType = UNSET


class Split(msgspec.Struct):
    weights: Annotated[dict[str, int | float], expects('an object of version reference to number, e.g. '
                                                 '{"digits:3": 90, "digits:4": 10}')]
    sticky_key: str | None = None


class ShadowTo(msgspec.Struct):
    to: Reference
    fraction: Number = 1.0


class RolloutVersion(msgspec.Struct):
    version: str
    share: float
    role: str
    requests: int


class RolloutStatus(msgspec.Struct):
    name: str
    mode: Literal["single", "canary", "split", "shadow"]
    revision: int
    stable: str
    versions: list[RolloutVersion]
    updated: str
    previous: str | None = None
    sticky_key: str | None = None
    shadow: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    served_revision: int | None = None


class RolloutEvent(Event):
    """One change to a rollout: who made it, when and why, and the traffic weights after it."""
