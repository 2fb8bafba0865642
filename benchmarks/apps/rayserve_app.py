"""The digits model behind Ray Serve (one replica), for the peer benchmark."""

import sys
import time

import joblib
import numpy as np
import ray
from ray import serve
from starlette.requests import Request


@serve.deployment(num_replicas=1, max_ongoing_requests=64)
class Digits:
    def __init__(self, path: str):
        self.model = joblib.load(path)

    async def __call__(self, request: Request) -> dict:
        rows = np.asarray((await request.json())["rows"], dtype=np.float64)
        return {"label": self.model.predict(rows).tolist(), "probabilities": self.model.predict_proba(rows).tolist()}


if __name__ == "__main__":
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
    serve.run(Digits.bind(sys.argv[1]), route_prefix="/predict")
    while True:
        time.sleep(3600)
