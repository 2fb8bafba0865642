"""scikit-learn estimators and pipelines, stored with joblib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np

from pallet.runtimes.base import Runtime

FILE = "model.joblib"


class SklearnRuntime(Runtime):
    name = "sklearn"
    framework = "scikit-learn"
    packages = ("scikit-learn", "numpy", "scipy", "joblib")

    def __init__(self, estimator: Any):
        self.estimator = estimator
        classes = getattr(estimator, "classes_", None)
        self.probabilistic = hasattr(estimator, "predict_proba") and classes is not None
        if self.probabilistic:
            self.output_labels = {"probabilities": np.asarray(classes).tolist()}

    @classmethod
    def accepts(cls, model: Any) -> bool:
        from sklearn.base import BaseEstimator

        return isinstance(model, BaseEstimator) and hasattr(model, "predict")

    @classmethod
    def save(cls, model: Any, folder: Path) -> dict[str, Any]:
        joblib.dump(model, folder / FILE)
        return {}

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> SklearnRuntime:
        return cls(joblib.load(folder / FILE))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # One input is the feature matrix; several 1-D inputs are its named columns.
        x = next(iter(inputs.values())) if len(inputs) == 1 else np.column_stack(list(inputs.values()))
        if not self.probabilistic:
            return {"prediction": np.asarray(self.estimator.predict(x))}
        return {"label": np.asarray(self.estimator.predict(x)),
                "probabilities": np.asarray(self.estimator.predict_proba(x))}
