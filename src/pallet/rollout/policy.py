"""Traffic policy: which version answers a request for a served name. Pure: no I/O, no clock.

A policy holds weights per version, an optional sticky key (a request header whose value pins a
caller to one version) and an optional shadow (a version that gets copies of a fraction of the
requests, off the request path). Sticky keys use weighted rendezvous hashing: each version scores
`-weight / ln(h)` with `h` a stable hash of (key, version) in (0, 1) and the best score wins. So
the choice is the same in every process and after restarts; when a version leaves the policy only
its keys move; and when weights change, keys move only to versions whose weight grew.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import RolloutError as InvalidPolicy


@dataclass(frozen=True)
class Shadow:
    version: str
    fraction: float = 1.0   # of the requests, sent as copies


@dataclass(frozen=True)
class Policy:
    weights: dict[str, float]              # version -> weight (any positive scale; usually percent)
    sticky_key: str | None = None          # header name, e.g. X-User-ID
    shadow: Shadow | None = None
    _cumulative: tuple[list[float], list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.weights:
            raise InvalidPolicy("a traffic policy needs at least one version")
        for version, weight in self.weights.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise InvalidPolicy(f"version {version}: weight must be a number >= 0, got {weight!r}")
        if sum(self.weights.values()) <= 0:
            raise InvalidPolicy("at least one version needs a weight above 0")
        if self.shadow is not None and not 0 < self.shadow.fraction <= 1:
            raise InvalidPolicy(f"shadow fraction must be in (0, 1], got {self.shadow.fraction}")
        bounds, versions, total = [], [], 0.0
        for version, weight in self.weights.items():
            if weight > 0:
                total += weight
                bounds.append(total)
                versions.append(version)
        object.__setattr__(self, "_cumulative", ([b / total for b in bounds], versions))

    @classmethod
    def single(cls, version: str) -> Policy:
        return cls({version: 100.0})

    @property
    def versions(self) -> list[str]:
        """Every version the policy needs loaded: weighted ones and the shadow."""
        named = [v for v, w in self.weights.items() if w > 0]
        if self.shadow is not None and self.shadow.version not in named:
            named.append(self.shadow.version)
        return named

    def shares(self) -> dict[str, float]:
        """Each weighted version's share of the traffic, in percent."""
        total = sum(self.weights.values())
        return {v: 100.0 * w / total for v, w in self.weights.items() if w > 0}

    def choose(self, key: str | None = None, draw: float | None = None) -> str:
        """The version for one request: by its sticky key when the policy has one and the request
        carries it, otherwise at random by weight (`draw` in [0, 1) or a fresh random number)."""
        bounds, versions = self._cumulative
        if len(versions) == 1:
            return versions[0]
        if key is not None and self.sticky_key is not None:
            return max(versions, key=lambda v: _score(key, v, self.weights[v]))
        index = bisect.bisect_right(bounds, random.random() if draw is None else draw)
        return versions[min(index, len(versions) - 1)]

    def shadows(self, served: str, draw: float | None = None) -> str | None:
        """The version that gets a copy of a request `served` answered, or None."""
        shadow = self.shadow
        if shadow is None or shadow.version == served:
            return None
        return shadow.version if (random.random() if draw is None else draw) < shadow.fraction else None

    def to_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "sticky_key": self.sticky_key,
                "shadow": None if self.shadow is None else {"version": self.shadow.version,
                                                            "fraction": self.shadow.fraction}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        shadow = data.get("shadow")
        return cls({str(v): float(w) for v, w in data["weights"].items()}, data.get("sticky_key"),
                   Shadow(str(shadow["version"]), float(shadow["fraction"])) if shadow else None)


def _score(key: str, version: str, weight: float) -> float:
    digest = hashlib.blake2b(f"{key}\x00{version}".encode(), digest_size=8).digest()
    unit = (int.from_bytes(digest, "big") + 0.5) / 2.0 ** 64   # in (0, 1), never 0 or 1
    return -weight / math.log(unit)
