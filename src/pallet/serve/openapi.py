"""The OpenAPI description of every endpoint, assembled from the routes and the body types in
`serve/schemas/`, and `/docs` (Swagger UI, served from the package)."""

from __future__ import annotations

import copy
from typing import Any, get_origin

import msgspec
from swagger_ui_bundle import swagger_ui_path
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import pallet
from pallet.serve.dataplane import DataPlane
from pallet.serve.http import json_response
from pallet.serve.middleware import is_admin, is_probe_path
from pallet.serve.schemas import Error, admin, v1, v2


OPENAPI = "3.0.3"  # what the bundled Swagger UI reads


def _json(schema: Any, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {str(code): _json(Error, text) for code, text in [
    ("400", "Malformed request or input that does not match the signature"),
    ("404", "Unknown model or version"),
    ("408", "Request not sent within the read timeout"),
    ("413", "Body or values over the limits"),
    ("415", "Unsupported content type"),
    ("503", "Model not ready, overloaded (Retry-After), or server stopping"),
]}
UNAUTHORIZED = {"401": _json({"$ref": "#/components/schemas/Error"}, "Missing or wrong API key")}
SECURITY = {"bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
KEYED = [{"bearer": []}, {"apiKey": []}]
V2, V1, SM = "Open Inference Protocol (V2)", "KServe V1 / Vertex AI", "SageMaker / MLflow / Azure ML"
UI = "Pages, dashboard and feedback"
ROLLOUTS = "Rollouts (API key when set)"
TEXT = {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}


def _param(name: str, where: str = "path") -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}


NAME, VERSION = _param("name"), _param("version")
LIMIT = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}


def _get(summary: str, answer: Any, *params: dict, tag: str) -> dict:
    return {"get": {"summary": summary, "tags": [tag], "parameters": copy.deepcopy(list(params)),
                    "responses": {"200": _json(answer), **copy.deepcopy(ERRORS)}}}


def _post(summary: str, body: Any, answer: Any, *params: dict, tag: str, content: dict | None = None) -> dict:
    operation = {"summary": summary, "tags": [tag], "parameters": copy.deepcopy(list(params)),
                 "responses": {"200": _json(answer), **copy.deepcopy(ERRORS)}}
    if body is not None or content:
        operation["requestBody"] = {"required": True, "content": content or {"application/json": {"schema": body}}}
    return {"post": operation}


def _infer(*params: dict) -> dict:
    return _post("Run inference (JSON, or the binary tensor data extension)", v2.InferenceRequest,
                 v2.InferenceResponse, *params, tag=V2)


def _feedback(*params: dict) -> dict:
    return {**_post("Record feedback on a prediction", admin.Feedback, admin.FeedbackSaved, *params, tag=UI),
            **_get("List feedback, oldest first (API key when set)", admin.FeedbackList, *params, LIMIT, tag=UI)}


def _page(summary: str, *params: dict) -> dict:
    return {"get": {"summary": summary, "tags": [UI], "parameters": list(params),
                    "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}},
                                  "404": {"description": "No such page", "content": {"text/html": {}}}}}}


def _one_of(*kinds: Any) -> dict:
    return {"oneOf": list(kinds)}


def _paths() -> dict:
    """Every operation, with the types of its bodies (turned into schemas by `_schemas`)."""
    return {**_v2_paths(), **_other_protocol_paths(), **_page_and_admin_paths()}


def _v2_paths() -> dict:
    """The Open Inference Protocol and Triton's extensions."""
    return {
        "/v2/health/live": _get("Server liveness", v2.Live, tag=V2),
        "/v2/health/ready": _get("Server readiness", v2.Ready, tag=V2),
        "/v2": _get("Server metadata", v2.ServerMetadata, tag=V2),
        "/v2/models/{name}": _get("Model metadata", v2.ModelMetadata, NAME, tag=V2),
        "/v2/models/{name}/versions/{version}": _get("Model version metadata", v2.ModelMetadata, NAME, VERSION,
                                                     tag=V2),
        "/v2/models/{name}/ready": _get("Model readiness", v2.ModelReady, NAME, tag=V2),
        "/v2/models/{name}/versions/{version}/ready": _get("Model version readiness", v2.ModelReady, NAME,
                                                           VERSION, tag=V2),
        "/v2/models/stats": _get("Statistics of every loaded model version (Triton's statistics extension)",
                                 v2.ModelStatisticsResponse, tag=V2),
        "/v2/models/{name}/stats": _get("Statistics of each loaded version of a model", v2.ModelStatisticsResponse,
                                        NAME, tag=V2),
        "/v2/models/{name}/versions/{version}/stats": _get("Statistics of a model version",
                                                           v2.ModelStatisticsResponse, NAME, VERSION, tag=V2),
        "/v2/models/{name}/config": _get("Model configuration (Triton's model configuration extension)",
                                         v2.ModelConfig, NAME, tag=V2),
        "/v2/models/{name}/versions/{version}/config": _get("Model version configuration", v2.ModelConfig, NAME,
                                                            VERSION, tag=V2),
        "/v2/models/{name}/infer": _infer(NAME),
        "/v2/models/{name}/versions/{version}/infer": _infer(NAME, VERSION),
        "/v2/repository/index": _post("Models this server knows (API key when set)", None,
                                      list[v2.RepositoryModel], tag=V2),
        "/v2/repository/models/{name}/load": _post("Load a model from the store (API key when set)", None,
                                                   v2.ModelState, NAME, tag=V2),
        "/v2/repository/models/{name}/unload": _post("Unload a model (API key when set)", None, v2.ModelState,
                                                     NAME, tag=V2),
    }


def _other_protocol_paths() -> dict:
    """KServe V1 / Vertex AI, SageMaker, Azure ML and MLflow's scoring server."""
    return {
        "/v1/models": _get("Loaded models", v1.ModelList, tag=V1),
        "/v1/models/{name}": _get("Model readiness", v2.ModelReady, NAME, tag=V1),
        "/v1/models/{name}:predict": _post("Predict on instances", v1.Instances, v1.Predictions, NAME, tag=V1),
        "/ping": {"get": {"summary": "Health check", "tags": [SM], "responses": {"200": {"description": "ready"}}}},
        "/invocations": _post("Predict (JSON instances, rows, MLflow shapes, or CSV)", None, v1.Predictions,
                              _param("X-Amzn-SageMaker-Target-Model", "header"), tag=SM,
                              content={"application/json": {"schema": _one_of(*v1.SAGEMAKER_JSON)},
                                       "text/csv": {"schema": {"type": "string"}}}),
        "/score": _post("Azure ML scoring: a JSON list of predictions", None, list[Any],
                        _param("azureml-model-deployment", "header"), _param("model", "query"), tag=SM,
                        content={"application/json": {"schema": _one_of(*v1.AZURE_JSON)}}),
        "/health": {"get": {"summary": "MLflow scoring server health", "tags": [SM], "responses": TEXT}},
        "/version": {"get": {"summary": "MLflow scoring server version", "tags": [SM], "responses": TEXT}},
    }


def _page_and_admin_paths() -> dict:
    """Feedback, the pages and their API, rollouts and metrics."""
    return {
        "/v2/models/{name}/feedback": _feedback(NAME),
        "/v2/models/{name}/versions/{version}/feedback": _feedback(NAME, VERSION),
        "/ui/": _page("The loaded models, each with a link to its page"),
        "/ui/{name}": _page("The model's prototype page", NAME),
        "/dashboard": _page("The dashboard"),
        "/ui/api/models": _get("Loaded models with their description, metrics and feedback counts",
                               list[dict[str, Any]], tag=UI),
        "/ui/api/models/{name}": _get("What the prototype page shows: inputs and outputs from the signature",
                                      dict[str, Any], NAME, _param("version", "query"), tag=UI),
        "/ui/api/dashboard": _get("The dashboard's figures per model", dict[str, Any], tag=UI),
        "/admin/rollouts/{name}": _get("Rollout status: versions, shares, canary progress, live figures",
                                       admin.RolloutStatus, NAME, tag=ROLLOUTS),
        "/admin/rollouts/{name}/history": _get("Every change to the rollout: who, when, why",
                                               list[admin.RolloutEvent], NAME, tag=ROLLOUTS),
        **{f"/admin/rollouts/{{name}}/{action}": _post(summary, body, admin.RolloutStatus, NAME, tag=ROLLOUTS)
           for action, summary, body in [
               ("promote", "Send all traffic to one version, at once", admin.Promote),
               ("rollback", "Back to the stable version (or the one before the last promotion)", admin.Rollback),
               ("start", "Start a canary: traffic moves in steps while its figures hold up", admin.Canary),
               ("split", "A fixed traffic split, optionally sticky by a header", admin.Split),
               ("shadow", "Copy a fraction of the requests to a version, off the request path", admin.ShadowTo)]},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["Operations"],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }


def _schemas(paths: dict) -> dict:
    """Replaces every type in `paths` by its JSON schema (in place); the named ones, for components."""
    places, kinds = [], []

    def collect(node: Any) -> None:
        for key, value in list(node.items()) if isinstance(node, dict) else list(enumerate(node)):
            if _is_type(value):
                places.append((node, key))
                kinds.append(value)
            elif isinstance(value, (dict, list)):
                collect(value)

    collect(paths)
    found, components = msgspec.json.schema_components(kinds, ref_template="#/components/schemas/{name}")
    for (node, key), schema in zip(places, found, strict=True):
        node[key] = _openapi30(schema)
    components = {name: _openapi30(schema) for name, schema in components.items()}
    _inline_alternatives(paths, components)
    return components


def _inline_alternatives(node: Any, components: dict) -> None:
    """The shapes a body may take (`oneOf`) written out where they are offered, so each reads in place."""
    if isinstance(node, list):
        for item in node:
            _inline_alternatives(item, components)
    elif isinstance(node, dict):
        if "oneOf" in node:
            node["oneOf"] = [copy.deepcopy(components[option["$ref"].rsplit("/", 1)[1]]) if "$ref" in option
                             else option for option in node["oneOf"]]
        for value in node.values():
            _inline_alternatives(value, components)


def _is_type(value: Any) -> bool:
    return isinstance(value, msgspec.Struct.__class__) or get_origin(value) is not None or value is Any


def _openapi30(schema: Any) -> Any:
    """JSON Schema as msgspec writes it (2020-12), in the OpenAPI 3.0 dialect: `nullable` for null
    alternatives, no `const`, no empty `required`, `items` on every array."""
    if isinstance(schema, list):
        return [_openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _openapi30(value) for key, value in schema.items()}
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del schema["anyOf"]
        single = rest[0] if len(rest) == 1 else {"anyOf": rest}
        if "$ref" in single:
            single = {"allOf": [single]}
        schema = {**single, **schema, "nullable": True}
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if schema.get("required") == []:
        del schema["required"]
    if schema.get("type") == "array" and "items" not in schema:
        schema["items"] = {}
    return schema


SPEC = {
    "openapi": OPENAPI,
    "info": {"title": "pallet inference server", "version": pallet.__version__,
             "description": "Every protocol on one port: Open Inference Protocol (KServe V2 / Triton), "
                            "KServe V1 / Vertex AI, SageMaker, MLflow and Azure ML scoring."},
    "paths": (PATHS := _paths()),
    "components": {"schemas": _schemas(PATHS), "securitySchemes": SECURITY},
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
