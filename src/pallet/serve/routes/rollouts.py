"""The admin HTTP API for rollouts (behind PALLET_API_KEY when set): the same operations as
`pallet rollout` and `pallet.rollout.Rollouts`, as JSON."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import asdict, fields
from typing import Any

from msgspec import UNSET
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pallet.decoding import Decoder
from pallet.rollout.canary import Thresholds
from pallet.rollout.operations import Rollouts
from pallet.rollout.state import RolloutState
from pallet.serve.dataplane import DataPlane
from pallet.errors import PalletError
from pallet.serve.errors import Unavailable
from pallet.serve.http import json_response, read_body
from pallet.serve.schemas import admin

MAX_BODY = 64 * 1024
BODIES = {action: Decoder(kind, expected="a JSON object", quote='"') for action, kind in [
    ("promote", admin.Promote), ("rollback", admin.Rollback), ("start", admin.Canary), ("split", admin.Split),
    ("shadow", admin.ShadowTo)]}
ACTIONS = tuple(BODIES)
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
        body = await read_body(request, MAX_BODY, plane.config.read_timeout)
        decoder = BODIES[action]
        doc = decoder.json(body) if body.strip() else decoder.convert({})
        if action == "promote":
            await call(request, "promote", name, doc.to, reason=doc.reason, baseline=doc.baseline)
        elif action == "rollback":
            await call(request, "rollback", name, reason=doc.reason)
        elif action == "start":
            thresholds = Thresholds(**{key: getattr(doc, key) for key in THRESHOLDS
                                       if getattr(doc, key) is not UNSET})
            await call(request, "start", name, doc.to, steps=doc.steps, step_seconds=doc.step_seconds,
                       thresholds=thresholds, shadow_fraction=doc.shadow_fraction, sticky_key=doc.sticky_key,
                       baseline=doc.baseline)
        elif action == "split":
            await call(request, "split", name, doc.weights, sticky_key=doc.sticky_key)
        else:
            await call(request, "shadow", name, doc.to, fraction=doc.fraction)
        return json_response(served(await call(request, "status", name)))

    return [
        Route("/admin/rollouts/{name}", status),
        Route("/admin/rollouts/{name}/history", history),
        *[Route(f"/admin/rollouts/{{name}}/{action}", functools.partial(change, action=action), methods=["POST"])
          for action in ACTIONS],
    ]
