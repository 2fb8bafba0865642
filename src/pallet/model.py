"""A loaded model: one stored version, verified and ready to predict on batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from pallet.errors import PalletError, PredictionError
from pallet.signature import Signature
from pallet.store import ModelRef, ModelVersion


class Model:
    def __init__(self, version: ModelVersion, **runtime_options: Any):
        self.version = version
        self.runtime = version.load_runtime(**runtime_options)

    @property
    def ref(self) -> ModelRef:
        return self.version.ref

    @property
    def signature(self) -> Signature:
        return self.version.signature

    def __repr__(self) -> str:
        return f"<Model {self.ref} ({self.version.manifest.framework})>"

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Outputs by name for a batch: an array or nested lists (one-input models) or a dict by input name."""
        return self.run(self.signature.validate(inputs))

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for inputs that `signature.validate` already returned."""
        try:
            return self.runtime.predict(arrays)
        except PalletError:
            raise
        except Exception as e:
            raise PredictionError(f"model {self.ref} failed to predict: {type(e).__name__}: {e}") from e
