"""The digits model behind LitServe (a LitAPI), for the peer benchmark."""

import sys

import joblib
import litserve as ls
import numpy as np


class Digits(ls.LitAPI):
    def setup(self, device):
        self.model = joblib.load(sys.argv[1])

    def decode_request(self, request):
        return np.asarray([request["input"]], dtype=np.float64)

    def predict(self, x):
        return {"label": self.model.predict(x).tolist(), "probabilities": self.model.predict_proba(x).tolist()}

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    ls.LitServer(Digits(), accelerator="cpu", workers_per_device=1).run(
        host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", generate_client_file=False)
