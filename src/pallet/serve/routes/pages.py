"""The prototype pages, the dashboard and feedback capture, on the inference server's port.

The pages are static files (shipped inside `pallet.ui`) that read `/ui/api/...` and call the
same V2 endpoints as any client.
"""

from __future__ import annotations

import asyncio
import html
import time
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

import pallet
from pallet.decoding import Decoder
from pallet.errors import ModelNotFound
from pallet.serve import metrics
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import BadRequest
from pallet.serve.http import json_response, parse_json, read_body, require_json, to_list
from pallet.serve.protocols import azureml
from pallet.serve.schemas.admin import Feedback
from pallet.ui import STATIC
from pallet.ui.describe import describe
from pallet.ui.feedback import FeedbackLog
from pallet.ui.stats import INTERVAL_SECONDS, Stats

MAX_TEXT = 4000  # characters in a correct answer or a comment
MAX_LIMIT = 100_000  # feedback records in one answer
FEEDBACK = Decoder(Feedback, what="feedback", needs=True, expected="a JSON object with request_id, inputs, outputs "
                                                                  "and a rating, correct answer or comment")


def routes(plane: DataPlane, stats: Stats, ui_dir: str | None = None) -> list[BaseRoute]:
    feedback = FeedbackLog(plane.store.index.engine)
    started = time.time()

    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def index(request: Request) -> Response:
        return page("index.html")

    async def root(request: Request) -> Response:
        """The index for browsers; KServe's and Azure ML's liveness answer for probes and API clients."""
        if "text/html" in request.headers.get("accept", ""):
            return page("index.html")
        return azureml.liveness()

    async def model_page(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            plane.get(name)
        except ModelNotFound as e:
            return HTMLResponse(f'<!doctype html><title>pallet: not found</title><link rel="stylesheet" '
                                f'href="/ui/static/pallet.css"><main><h1>Not found</h1><p>{html.escape(str(e))}</p>'
                                '<p><a href="/">All models</a></p></main>', 404)
        return page("model.html")

    async def dashboard(request: Request) -> Response:
        return page("dashboard.html")

    async def models(request: Request) -> Response:
        counts = await _off_loop(feedback.counts)
        return json_response([_summary(plane, name, counts.get(name)) for name in plane.names()])

    async def model_description(request: Request) -> Response:
        name = request.path_params["name"]
        model = plane.get(name, request.query_params.get("version"))
        return json_response(await _off_loop(describe, model, plane.versions(name)))

    async def dashboard_data(request: Request) -> Response:
        counts = await _off_loop(feedback.counts)
        figures = stats.summary()
        rows = []
        for name in plane.names():
            row = _summary(plane, name, counts.get(name))
            row["figures"] = figures.get(name)
            row["traffic"] = _traffic(plane, name)
            rows.append(row)
        return json_response({"server": {"version": pallet.__version__, "started": started,
                                          "uptime_seconds": round(time.time() - started, 1),
                                          "workers": plane.config.workers,
                                          "interval_seconds": INTERVAL_SECONDS},
                              "models": rows, "no_model": figures.get("")})  # requests naming no loaded model

    async def add_feedback(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        require_json(request)
        body = parse_json(await read_body(request, plane.config.max_body_bytes, plane.config.read_timeout))
        model = plane.get(name, version if version is not None else _version_field(body))
        record = _feedback_record(model, body)
        record_id = await _off_loop(lambda: feedback.add(model=model.ref.name, version=model.ref.version, **record))
        metrics.FEEDBACK.labels(model.ref.name, str(model.ref.version), record["rating"] or "none").inc()
        return json_response({"id": record_id, "model": model.ref.name, "version": str(model.ref.version)}, 201)

    async def list_feedback(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        limit = request.query_params.get("limit", "1000")
        if not limit.isascii() or not limit.isdecimal() or not 1 <= int(limit) <= MAX_LIMIT:
            raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit[:20]!r}")
        if version is not None and (not version.isascii() or not version.isdecimal() or len(version) > 9):
            raise BadRequest(f"version must be a version number, got {version[:20]!r}")
        if name not in plane.names():
            plane.get(name)  # a clear 404 naming what is loaded
        records = await _off_loop(feedback.records, name, int(version) if version else None, int(limit))
        return json_response({"model": name, "feedback": records})

    routes: list[BaseRoute] = [
        Route("/ui/", index),
        Route("/ui/{name}", model_page),
        Route("/dashboard", dashboard),
        Route("/ui/api/models", models),
        Route("/ui/api/models/{name}", model_description),
        Route("/ui/api/dashboard", dashboard_data),
        Route("/v2/models/{name}/feedback", add_feedback, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/feedback", add_feedback, methods=["POST"]),
        Route("/v2/models/{name}/feedback", list_feedback, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/feedback", list_feedback, methods=["GET"]),
        Mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static"),
    ]
    # A team's own page replaces the index; it calls the same API.
    routes.append(Mount("/", TeamPage(directory=ui_dir, html=True)) if ui_dir else Route("/", root))
    return routes


class TeamPage(StaticFiles):
    """A team's own static folder (`--ui`), without its hidden files (.env, .git)."""

    def get_path(self, scope) -> str:
        path = super().get_path(scope)
        if any(part.startswith(".") for part in Path(path).parts):
            raise HTTPException(404)
        return path


def _summary(plane: DataPlane, name: str, counts: dict | None) -> dict[str, Any]:
    model = plane.get(name)
    manifest = model.version.manifest
    return {"name": name, "version": str(model.ref.version), "versions": plane.versions(name),
            "description": manifest.description, "framework": manifest.framework, "metrics": manifest.metrics,
            "size_bytes": manifest.size_bytes,
            "feedback": counts or {"total": 0, "up": 0, "down": 0}}


def _traffic(plane: DataPlane, name: str) -> dict[str, Any]:
    """How the name's requests are shared among its versions right now."""
    rollout = plane.rollouts.get(name)
    if rollout is None:
        return {"mode": "single", "shares": {plane.default[name]: 100.0}}
    return {"mode": rollout.mode, "shares": rollout.policy.shares(), "revision": rollout.revision,
            "shadow": rollout.policy.shadow.version if rollout.policy.shadow else None}


def _version_field(body: Any) -> str | None:
    version = body.get("version") if isinstance(body, dict) else None
    return None if version is None else str(version)


def _feedback_record(model, body: Any) -> dict[str, Any]:
    """The fields of a feedback body, checked: what the caller sent, what the model answered, the rating."""
    sent = FEEDBACK.convert(body)
    texts = {}
    for field in ("correct", "comment"):
        value = getattr(sent, field)
        value = None if value is None else str(value).strip()
        if value and len(value) > MAX_TEXT:
            raise BadRequest(f"'{field}' is {len(value)} characters; at most {MAX_TEXT}")
        if value and "\x00" in value:
            raise BadRequest(f"'{field}' contains a NUL character")
        texts[field] = value or None
    if sent.rating is None and not texts["correct"] and not texts["comment"]:
        raise BadRequest("feedback needs a 'rating' ('up' or 'down'), a 'correct' answer or a 'comment'")
    arrays = model.signature.validate(sent.inputs)  # 400 naming the input when it does not fit
    known = {spec.name for spec in model.signature.outputs}
    if not set(sent.outputs) <= known:
        raise BadRequest(f"feedback needs 'outputs': the prediction, by output name ({', '.join(sorted(known))})")
    return {"request_id": sent.request_id, "rating": sent.rating, **texts,
            "inputs": {name: to_list(array) for name, array in arrays.items()}, "outputs": sent.outputs}


async def _off_loop(function, *args):
    """Database reads and writes run on a thread, never on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)
