"""A nearest-centroid classifier written as a `pallet.PythonModel`.

Its state (one centroid per class) goes into the version's artifacts folder; its feature code
lives in `features.py`, which `train.py` hands to `pallet.save(..., code_paths=[...])` so the
stored version carries its own copy.
"""

from pathlib import Path

import numpy as np
from features import unit_rows

import pallet


class CentroidClassifier(pallet.PythonModel):
    requirements = ["numpy>=1.24"]

    def __init__(self, centroids: np.ndarray | None = None):
        self.centroids = centroids

    def fit(self, pixels: np.ndarray, labels: np.ndarray) -> "CentroidClassifier":
        features = unit_rows(pixels)
        self.centroids = np.stack([features[labels == label].mean(axis=0) for label in np.unique(labels)])
        return self

    def save(self, path: Path) -> None:
        np.save(path / "centroids.npy", self.centroids)

    def load(self, path: Path) -> None:
        self.centroids = np.load(path / "centroids.npy")

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = unit_rows(inputs["pixels"])
        distances = ((features[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        return {"label": distances.argmin(axis=1)}
