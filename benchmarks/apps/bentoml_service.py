"""The digits model behind BentoML (a @bentoml.service), for the peer benchmark."""

import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1)
class Digits:
    def __init__(self):
        self.model = joblib.load(os.environ["DIGITS_MODEL"])

    @bentoml.api
    def predict(self, rows: list[list[float]]) -> dict:
        x = np.asarray(rows, dtype=np.float64)
        return {"label": self.model.predict(x).tolist(), "probabilities": self.model.predict_proba(x).tolist()}
