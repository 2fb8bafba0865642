"""The framework floor: a bare Starlette + uvicorn endpoint that parses the same V2 JSON with orjson
and calls the same scikit-learn model once per request. No validation, metrics, batching or logs."""

import argparse

import joblib
import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True, help="a model.joblib file")
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
model = joblib.load(args.model)


async def infer(request):
    doc = orjson.loads(await request.body())
    tensor = doc["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    label = model.predict(x)
    proba = model.predict_proba(x)
    out = {"model_name": "digits", "outputs": [
        {"name": "label", "datatype": "INT64", "shape": list(label.shape), "data": label},
        {"name": "probabilities", "datatype": "FP64", "shape": list(proba.shape), "data": proba.reshape(-1)}]}
    return Response(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


async def ready(request):
    return Response(b'{"ready":true}', media_type="application/json")


app = Starlette(routes=[Route("/v2/models/digits/infer", infer, methods=["POST"]), Route("/v2/health/ready", ready)])
uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
