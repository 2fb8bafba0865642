"""The data plane's own request and response: named numpy tensors, no wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class InferenceRequest:
    model: str
    inputs: dict[str, np.ndarray]
    version: str | None = None
    id: str | None = None
    outputs: list[str] | None = None          # names to return; None means all
    parameters: dict[str, Any] = field(default_factory=dict)
    classification: dict[str, int] = field(default_factory=dict)  # output -> top k classes (serve/classification.py)


@dataclass
class InferenceResponse:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None
