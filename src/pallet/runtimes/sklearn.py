"""scikit-learn estimators and pipelines, stored with joblib."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from pallet.checksums import read_verified
from pallet.runtimes.base import Runtime

if TYPE_CHECKING:
    import pyarrow as pa

FILE = "model.joblib"
# Classifiers whose predict() is, by construction, the class of highest predict_proba():
# for them one predict_proba call gives both outputs, halving the work per request.
ARGMAX_CLASSIFIERS = {
    "LogisticRegression", "MLPClassifier", "RandomForestClassifier", "ExtraTreesClassifier",
    "DecisionTreeClassifier", "GaussianNB", "MultinomialNB", "BernoulliNB", "KNeighborsClassifier",
    "HistGradientBoostingClassifier", "GradientBoostingClassifier",
}


class SklearnRuntime(Runtime):
    name = "sklearn"
    framework = "scikit-learn"
    packages = ("scikit-learn", "numpy", "scipy", "joblib")
    reads_verified = (FILE,)

    def __init__(self, estimator: Any):
        self.estimator = estimator
        classes = getattr(estimator, "classes_", None)
        self.probabilistic = hasattr(estimator, "predict_proba") and classes is not None
        if self.probabilistic:
            self.classes = np.asarray(classes)
            self.output_labels = {"probabilities": self.classes.tolist()}
        self.feature_names = [str(n) for n in getattr(estimator, "feature_names_in_", [])]
        final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        self.label_from_proba = self.probabilistic and type(final).__name__ in ARGMAX_CLASSIFIERS

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
        # Unpickling runs code: only the bytes whose sha256 matches the manifest are unpickled.
        return cls(joblib.load(io.BytesIO(read_verified(folder, FILE))))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # One input is the feature matrix; several 1-D inputs are its named columns, put in the order
        # the estimator was fitted on when it knows its feature names (fitted on a DataFrame).
        if len(inputs) == 1:
            x = next(iter(inputs.values()))
        elif self.feature_names and set(self.feature_names) == set(inputs):
            x = np.column_stack([inputs[name] for name in self.feature_names])
        else:
            x = np.column_stack(list(inputs.values()))
        return self._predict(_named(x, self.feature_names) if self.feature_names else x)

    def _predict(self, x: np.ndarray | pa.Table) -> dict[str, np.ndarray]:
        if not self.probabilistic:
            return {"prediction": np.asarray(self.estimator.predict(x))}
        probabilities = np.asarray(self.estimator.predict_proba(x))
        if self.label_from_proba:
            return {"label": self.classes[probabilities.argmax(axis=1)], "probabilities": probabilities}
        return {"label": np.asarray(self.estimator.predict(x)), "probabilities": probabilities}


def _named(x: np.ndarray, names: list[str]) -> np.ndarray | pa.Table:
    """The columns of `x` under the names the estimator was fitted on (a table: scikit-learn reads its
    column names), so it finds what it expects and has nothing to warn about. As given when they
    cannot be named: not one column per name, or values arrow cannot hold."""
    import pyarrow as pa

    if x.ndim != 2 or x.shape[1] != len(names):
        return x
    try:
        return pa.Table.from_arrays([pa.array(column) for column in x.T], names=names)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return x
