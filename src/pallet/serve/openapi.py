"""The OpenAPI description of every endpoint, and `/docs` (Swagger UI, served from the package)."""

from __future__ import annotations

import copy

from swagger_ui_bundle import swagger_ui_path
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import pallet
from pallet.serve.codecs import DATATYPES
from pallet.serve.dataplane import DataPlane
from pallet.serve.http import json_response
from pallet.serve.middleware import is_admin, is_probe_path


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {str(code): _json(_ref("Error"), text) for code, text in [
    ("400", "Malformed request or input that does not match the signature"),
    ("404", "Unknown model or version"),
    ("408", "Request not sent within the read timeout"),
    ("413", "Body or values over the limits"),
    ("415", "Unsupported content type"),
    ("503", "Model not ready, overloaded (Retry-After), or server stopping"),
]}
UNAUTHORIZED = {"401": _json(_ref("Error"), "Missing or wrong API key")}
SECURITY = {"bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
KEYED = [{"bearer": []}, {"apiKey": []}]
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string", "enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer"}}}},
    "RequestInput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
        "data": {"description": "values, flat or nested, row-major", "type": "array", "items": {}}}},
    "RequestOutput": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}},
    "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
        "outputs": {"type": "array", "items": _ref("RequestOutput")}}},
    "ResponseOutput": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}}, "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}}}},
    "InferenceResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": _ref("ResponseOutput")}}},
    "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
        "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _ref("TensorMetadata")},
        "outputs": {"type": "array", "items": _ref("TensorMetadata")}}},
    "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}}}},
    "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}, "name": {"type": "string"}}},
    "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "RepositoryIndex": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "version": {"type": "string"}, "state": {"type": "string"},
        "reason": {"type": "string"}}}},
    "ModelState": {"type": "object", "properties": {
        "name": {"type": "string"}, "version": {"type": "string"}, "state": {"type": "string"}}},
    "Instances": {"type": "object", "required": ["instances"], "properties": {
        "instances": {"type": "array", "minItems": 1,
                      "items": {"description": "a row of features, or an object keyed by input name"}}}},
    "Predictions": {"type": "object", "required": ["predictions"],
                    "properties": {"predictions": {"type": "array", "items": {}}}},
    "Feedback": {"type": "object", "required": ["request_id", "inputs", "outputs"], "properties": {
        "request_id": {"type": "string", "description": "X-Request-ID of the prediction"},
        "version": {"type": "string"},
        "inputs": {"description": "what was sent: rows, or rows by input name"},
        "outputs": {"type": "object", "description": "the prediction, by output name"},
        "rating": {"type": ["string", "null"], "enum": ["up", "down", None]},
        "correct": {"type": ["string", "null"]}, "comment": {"type": ["string", "null"]}}},
    "FeedbackSaved": {"type": "object", "properties": {
        "id": {"type": "integer"}, "model": {"type": "string"}, "version": {"type": "string"}}},
    "RolloutStatus": {"type": "object", "required": ["name", "mode", "revision", "stable", "versions"],
                      "properties": {
        "name": {"type": "string"}, "mode": {"type": "string", "enum": ["single", "canary", "split", "shadow"]},
        "revision": {"type": "integer"}, "stable": {"type": "string"}, "previous": {"type": ["string", "null"]},
        "sticky_key": {"type": ["string", "null"]}, "shadow": {"type": ["object", "null"]},
        "canary": {"type": ["object", "null"]}, "updated": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "object"}}}},
    "RolloutEvent": {"type": "object", "properties": {
        "name": {"type": "string"}, "revision": {"type": "integer"}, "time": {"type": "string"},
        "actor": {"type": "string"}, "action": {"type": "string"}, "reason": {"type": "string"},
        "weights": {"type": "object"}}},
    "Promote": {"type": "object", "required": ["to"], "properties": {
        "to": {"type": "string", "description": "version reference, e.g. digits:4"}, "reason": {"type": "string"},
        "from": {"type": "string", "description": "the version serving now, when the name has no rollout yet"}}},
    "Rollback": {"type": "object", "properties": {"reason": {"type": "string"}}},
    "Canary": {"type": "object", "required": ["to"], "properties": {
        "to": {"type": "string"}, "from": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "number"}}, "step_seconds": {"type": "number"},
        "shadow_fraction": {"type": "number"}, "sticky_key": {"type": "string"},
        **{key: {"type": "number"} for key in ("max_error_rate", "max_latency_ratio", "min_latency_delta_ms",
                                                 "min_agreement", "tolerance", "min_requests", "min_compared")}}},
    "Split": {"type": "object", "required": ["weights"], "properties": {
        "weights": {"type": "object", "additionalProperties": {"type": "number"}}, "sticky_key": {"type": "string"}}},
    "ShadowTo": {"type": "object", "required": ["to"], "properties": {
        "to": {"type": "string"}, "fraction": {"type": "number"}}},
    "FeedbackList": {"type": "object", "properties": {
        "model": {"type": "string"}, "feedback": {"type": "array", "items": {"type": "object"}}}},
}


def _get(summary: str, schema: dict, *params: dict, tag: str) -> dict:
    return {"get": {"summary": summary, "tags": [tag], "parameters": list(params),
                    "responses": {"200": _json(schema), **ERRORS}}}


def _post(summary: str, body: dict | None, schema: dict, *params: dict, tag: str, content=None) -> dict:
    operation = {"summary": summary, "tags": [tag], "parameters": list(params),
                 "responses": {"200": _json(schema), **ERRORS}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": content or {"application/json": {"schema": body}}}
    return {"post": operation}


def _feedback(*params: dict) -> dict:
    return {**_post("Record feedback on a prediction", _ref("Feedback"), _ref("FeedbackSaved"), *params, tag=UI),
            **_get("List feedback, oldest first (API key when set)", _ref("FeedbackList"), *params, LIMIT, tag=UI)}


def _page(summary: str, *params: dict) -> dict:
    return {"get": {"summary": summary, "tags": [UI], "parameters": list(params),
                    "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}},
                                  "404": {"description": "No such page", "content": {"text/html": {}}}}}}


def _infer(*params: dict) -> dict:
    return _post("Run inference (JSON, or the binary tensor data extension)", _ref("InferenceRequest"),
                 _ref("InferenceResponse"), *params, tag="Open Inference Protocol (V2)")


V2, V1, SM = "Open Inference Protocol (V2)", "KServe V1 / Vertex AI", "SageMaker / MLflow / Azure ML"
UI = "Pages, dashboard and feedback"
ROLLOUTS = "Rollouts (API key when set)"
LIMIT = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}
MODEL_VERSION = {"name": "version", "in": "query", "required": False, "schema": {"type": "string"}}
SPLIT = {"type": "object", "required": ["data"], "properties": {
    "columns": {"type": "array", "items": {"type": "string"}}, "index": {"type": "array"},
    "data": {"type": "array", "items": {"type": "array"}}}}
MLFLOW = [{"type": "object", "required": ["dataframe_split"], "properties": {"dataframe_split": SPLIT}},
          {"type": "object", "required": ["dataframe_records"],
           "properties": {"dataframe_records": {"type": "array", "items": {"type": "object"}}}},
          {"type": "object", "required": ["inputs"], "properties": {"inputs": {}}}]
SAGEMAKER_BODY = {"application/json": {"schema": {"oneOf": [_ref("Instances"), {"type": "array", "items": {}},
                                                            *MLFLOW]}},
                  "text/csv": {"schema": {"type": "string"}}}
AZURE_BODY = {"application/json": {"schema": {"oneOf": [
    {"type": "object", "required": ["input_data"], "properties": {"input_data": {"oneOf": [
        SPLIT, {"type": "array", "items": {}}]}}},
    {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": {}}}}]}}}
DEPLOYMENT = {"name": "azureml-model-deployment", "in": "header", "required": False, "schema": {"type": "string"}}
MODEL_QUERY = {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}}
TEXT = {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "pallet inference server", "version": pallet.__version__,
             "description": "Every protocol on one port: Open Inference Protocol (KServe V2 / Triton), "
                            "KServe V1 / Vertex AI, SageMaker, MLflow and Azure ML scoring."},
    "paths": {
        "/v2/health/live": _get("Server liveness", _ref("Live"), tag=V2),
        "/v2/health/ready": _get("Server readiness", _ref("Ready"), tag=V2),
        "/v2": _get("Server metadata", _ref("ServerMetadata"), tag=V2),
        "/v2/models/{name}": _get("Model metadata", _ref("ModelMetadata"), NAME, tag=V2),
        "/v2/models/{name}/versions/{version}": _get("Model version metadata", _ref("ModelMetadata"), NAME,
                                                     VERSION, tag=V2),
        "/v2/models/{name}/ready": _get("Model readiness", _ref("Ready"), NAME, tag=V2),
        "/v2/models/{name}/versions/{version}/ready": _get("Model version readiness", _ref("Ready"), NAME,
                                                           VERSION, tag=V2),
        "/v2/models/{name}/infer": _infer(NAME),
        "/v2/models/{name}/versions/{version}/infer": _infer(NAME, VERSION),
        "/v2/repository/index": _post("Models this server knows (API key when set)", None,
                                      _ref("RepositoryIndex"), tag=V2),
        "/v2/repository/models/{name}/load": _post("Load a model from the store (API key when set)", None,
                                                   _ref("ModelState"), NAME, tag=V2),
        "/v2/repository/models/{name}/unload": _post("Unload a model (API key when set)", None,
                                                     _ref("ModelState"), NAME, tag=V2),
        "/v1/models": _get("Loaded models", {"type": "object", "properties": {
            "models": {"type": "array", "items": {"type": "string"}}}}, tag=V1),
        "/v1/models/{name}": _get("Model readiness", _ref("Ready"), NAME, tag=V1),
        "/v1/models/{name}:predict": _post("Predict on instances", _ref("Instances"), _ref("Predictions"), NAME,
                                           tag=V1),
        "/ping": {"get": {"summary": "Health check", "tags": [SM], "responses": {"200": {"description": "ready"}}}},
        "/invocations": _post("Predict (JSON instances, rows, MLflow shapes, or CSV)", {}, _ref("Predictions"),
                              {"name": "X-Amzn-SageMaker-Target-Model", "in": "header", "required": False,
                               "schema": {"type": "string"}}, tag=SM, content=SAGEMAKER_BODY),
        "/score": _post("Azure ML scoring: a JSON list of predictions", {}, {"type": "array", "items": {}},
                        DEPLOYMENT, MODEL_QUERY, tag=SM, content=AZURE_BODY),
        "/health": {"get": {"summary": "MLflow scoring server health", "tags": [SM], "responses": TEXT}},
        "/version": {"get": {"summary": "MLflow scoring server version", "tags": [SM], "responses": TEXT}},
        "/v2/models/{name}/feedback": _feedback(NAME),
        "/v2/models/{name}/versions/{version}/feedback": _feedback(NAME, VERSION),
        "/ui/": _page("The loaded models, each with a link to its page"),
        "/ui/{name}": _page("The model's prototype page", NAME),
        "/dashboard": _page("The dashboard"),
        "/ui/api/models": _get("Loaded models with their description, metrics and feedback counts",
                               {"type": "array", "items": {"type": "object"}}, tag=UI),
        "/ui/api/models/{name}": _get("What the prototype page shows: inputs and outputs from the signature",
                                      {"type": "object"}, NAME, MODEL_VERSION, tag=UI),
        "/ui/api/dashboard": _get("The dashboard's figures per model", {"type": "object"}, tag=UI),
        "/admin/rollouts/{name}": _get("Rollout status: versions, shares, canary progress, live figures",
                                       _ref("RolloutStatus"), NAME, tag=ROLLOUTS),
        "/admin/rollouts/{name}/history": _get("Every change to the rollout: who, when, why",
                                               {"type": "array", "items": _ref("RolloutEvent")}, NAME, tag=ROLLOUTS),
        **{f"/admin/rollouts/{{name}}/{action}": _post(summary, _ref(body), _ref("RolloutStatus"), NAME, tag=ROLLOUTS)
           for action, summary, body in [
               ("promote", "Send all traffic to one version, at once", "Promote"),
               ("rollback", "Back to the stable version (or the one before the last promotion)", "Rollback"),
               ("start", "Start a canary: traffic moves in steps while its figures hold up", "Canary"),
               ("split", "A fixed traffic split, optionally sticky by a header", "Split"),
               ("shadow", "Copy a fraction of the requests to a version, off the request path", "ShadowTo")]},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["Operations"],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    },
    "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY},
}

DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pallet API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""


def spec_for(models: list[str], auth: bool = False) -> dict:
    """The spec, with the model name parameter of inference and metadata listing the loaded models,
    and the API key on the operations that need it (every one but the probes with --auth)."""
    spec = copy.deepcopy(SPEC)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if is_admin(method.upper(), path) or auth and not is_probe_path(path):
                operation["security"] = KEYED
                operation["responses"].update(UNAUTHORIZED)
        if path.startswith(("/v2/repository", "/admin/")):
            continue  # load takes any stored model
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "name" and models:
                    parameter["schema"] = {"type": "string", "enum": models}
    return spec


def routes(plane: DataPlane) -> list:
    async def openapi(request: Request) -> Response:
        return json_response(spec_for(plane.names(), plane.config.auth))

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    return [
        Route("/openapi.json", openapi),
        Route("/docs", docs),
        Mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui"),
    ]
