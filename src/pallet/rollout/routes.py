"""The admin HTTP API for rollouts (behind PALLET_API_KEY when set): the same operations as
`pallet rollout` and `pallet.rollout.Rollouts`, as JSON."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import asdict, fields
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pallet.rollout.canary import Thresholds
from pallet.rollout.operations import Rollouts
from pallet.rollout.state import RolloutState
from pallet.serve.dataplane import DataPlane
from pallet.errors import PalletError
from pallet.serve.errors import BadRequest, Unavailable
from pallet.serve.http import json_response, parse_json, read_body

MAX_BODY = 64 * 1024
ACTIONS = ("promote", "rollback", "start", "split", "shadow")
THRESHOLDS = [f.name for f in fields(Thresholds)]


def routes(plane: DataPlane) -> list[Route]:
    state: list[RolloutState] = []

    def rollouts(request: Request) -> Rollouts:
        if not state:
            try:
                state.append(RolloutState(plane.store.index.engine))
            except PalletError as e:  # the database is away: the tables could not even be checked
                raise Unavailable(str(e)) from None
        client = request.client.host if request.client else "unknown"
        return Rollouts(plane.store, actor=f"http from {client}", state=state[0])

    async def call(request: Request, operation: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(rollouts(request), operation)
        try:  # database work: off the event loop
            return await asyncio.get_running_loop().run_in_executor(None, lambda: method(*args, **kwargs))
        except (OperationalError, InterfaceError) as e:
            raise Unavailable(f"the rollout state cannot be read or written now ({e.orig}); retry shortly") from None

    async def status(request: Request) -> Response:
        return json_response(served(await call(request, "status", request.path_params["name"])))

    def served(doc: dict) -> dict:
        """The status, with the revision this server routes by (it follows the store within a poll)."""
        applied = plane.rollouts.get(doc["name"])
        return {**doc, "served_revision": applied.revision if applied else None}

    async def history(request: Request) -> Response:
        events = await call(request, "history", request.path_params["name"])
        return json_response([asdict(e) for e in events])

    async def change(request: Request, action: str) -> Response:
        name = request.path_params["name"]
        body = await read_body(request, MAX_BODY, plane.config.read_timeout_seconds)
        doc = parse_json(body) if body.strip() else {}
        if not isinstance(doc, dict):
            raise BadRequest("request body must be a JSON object")
        if action == "promote":
            await call(request, "promote", name, _text(doc, "to"), reason=_text(doc, "reason", ""),
                       baseline=_text(doc, "from", None))
        elif action == "rollback":
            await call(request, "rollback", name, reason=_text(doc, "reason", ""))
        elif action == "start":
            thresholds = Thresholds(**{key: _number(doc, key) for key in THRESHOLDS if key in doc})
            await call(request, "start", name, _text(doc, "to"), steps=_numbers(doc, "steps", [5, 25, 50, 100]),
                       step_seconds=_number(doc, "step_seconds", 300), thresholds=thresholds,
                       shadow_fraction=_number(doc, "shadow_fraction", 0.2),
                       sticky_key=_text(doc, "sticky_key", None), baseline=_text(doc, "from", None))
        elif action == "split":
            weights = doc.get("weights")
            if not isinstance(weights, dict) or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                                                        for w in weights.values()):
                raise BadRequest('"weights" must be an object of version reference to number, '
                                 'e.g. {"digits:3": 90, "digits:4": 10}')
            await call(request, "split", name, weights, sticky_key=_text(doc, "sticky_key", None))
        else:
            await call(request, "shadow", name, _text(doc, "to"), fraction=_number(doc, "fraction", 1.0))
        return json_response(served(await call(request, "status", name)))

    return [
        Route("/admin/rollouts/{name}", status),
        Route("/admin/rollouts/{name}/history", history),
        *[Route(f"/admin/rollouts/{{name}}/{action}", functools.partial(change, action=action), methods=["POST"])
          for action in ACTIONS],
    ]


_MISSING = object()


def _text(doc: dict, key: str, default: Any = _MISSING) -> Any:
    value = doc.get(key, default)
    if value is _MISSING or (value is None and default is _MISSING):
        raise BadRequest(f'"{key}" is required')
    if value is not None and value is not default and not isinstance(value, str):
        raise BadRequest(f'"{key}" must be a string')
    return value


def _number(doc: dict, key: str, default: Any = _MISSING) -> Any:
    value = doc.get(key, default)
    if value is _MISSING:
        raise BadRequest(f'"{key}" is required')
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f'"{key}" must be a number')
    return value


def _numbers(doc: dict, key: str, default: list) -> list:
    value = doc.get(key, default)
    if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                       for v in value):
        raise BadRequest(f'"{key}" must be a non-empty list of numbers')
    return value
