"""The ASGI app: every protocol on one port, over one data plane."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pallet.errors import PalletError
from pallet.rollout.sync import RolloutSync
from pallet import threads
from pallet.serve import metrics
from pallet.serve.dataplane import DataPlane
from pallet.serve.errors import Overloaded, RequestTimeout, status_of
from pallet.serve.http import json_response
from pallet.serve.middleware import APIKey, LargeBodies, RequestContext, ShareToken
from pallet.serve.openapi import routes as openapi_routes
from pallet.serve.protocols import azureml, sagemaker, v1, v2
from pallet.serve.routes import pages, rollouts as rollout_routes
from pallet.serve.server import StartupRefused, configure_access_log, configure_server_log, drain_on_sigterm
from pallet.settings import ServeConfig
from pallet.store import ModelRef, Store, default_store
from pallet.ui.stats import Stats


def create_app(config: ServeConfig, store: Store | None = None) -> Starlette:
    """The server for `config.models`, loaded from `store` (the default store if none)."""
    plane = DataPlane(store or default_store(), config)
    stats = Stats(metrics.totals, from_start=not metrics.shared())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        configure_access_log(config.access_log)
        configure_server_log()
        drain_on_sigterm(plane, config.drain_seconds)
        with threads.limited(plane.threads):  # the plan holds for the life of this app, however it ends
            tasks: list[asyncio.Task] = []
            grpc_server = None
            try:
                _load_models(plane, config)
                rollouts = RolloutSync.open(plane, config.rollout_poll)
                if rollouts is not None:
                    await rollouts.sync_once()  # start on the stored traffic policies, not only the models named
                tasks.append(asyncio.create_task(stats.run()))  # the dashboard's history
                if rollouts is not None:
                    tasks.append(asyncio.create_task(rollouts.run()))
                if config.grpc_port is not None:
                    from pallet.serve.grpc_server import GrpcServer

                    grpc_server = app.state.grpc = GrpcServer(plane)
                    await grpc_server.start()
                yield
            finally:
                if grpc_server is not None:
                    await grpc_server.stop()
                for task in tasks:
                    task.cancel()
                plane.close()

    async def serve_metrics(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    app = Starlette(
        routes=[*v2.routes(plane), *v1.routes(plane), *sagemaker.routes(plane), *azureml.routes(plane), *openapi_routes(plane),
                Route("/metrics", serve_metrics), *rollout_routes.routes(plane),
                *pages.routes(plane, stats, config.ui)],
        middleware=[Middleware(RequestContext, config=config, observe=plane.observe), *_cors(config),
                    Middleware(ShareToken, config=config), Middleware(APIKey, config=config),
                    Middleware(LargeBodies, config=config)],
        exception_handlers={PalletError: _pallet_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.plane = plane
    return app


def _load_models(plane: DataPlane, config: ServeConfig) -> None:
    """The models the server was started with; one that cannot be loaded refuses the start, unless
    --skip-unloadable, which reports it not ready instead."""
    for ref in config.models:
        try:
            plane.load(ref)
        except PalletError as error:
            if not config.skip_unloadable:
                raise StartupRefused(f"cannot serve {ref}: {error} (pallet serve --skip-unloadable serves "
                                     "the others)") from None
            name = ModelRef.parse(ref).name
            plane.failed[name] = str(error)
            logging.getLogger("pallet.serve").warning("model %s is not served: %s", ref, error)


def app_from_env() -> Starlette:
    """The factory worker processes import: the config comes in PALLET_SERVE_CONFIG."""
    return create_app(ServeConfig.from_env())


def _cors(config: ServeConfig) -> list[Middleware]:
    """Browsers on other origins may call only when origins are configured; preflights are answered
    before the key and token checks (they never carry credentials)."""
    if not config.cors_origins:
        return []
    return [Middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "X-API-Key", "X-Share-Token", "Content-Type", "X-Request-ID",
                                      "Inference-Header-Content-Length"],
                       expose_headers=["X-Request-ID", "X-Model-Version"], max_age=600)]


async def _pallet_error(request: Request, error: Exception) -> Response:
    headers = {"Retry-After": str(error.retry_after_seconds)} if isinstance(error, Overloaded) else None
    if isinstance(error, RequestTimeout):  # what is left of the body may still come: not on this connection
        headers = {"Connection": "close"}
    return json_response({"error": str(error)}, status_of(error), headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = error.detail
    if error.status_code == 404:
        message = f"no endpoint {request.method} {request.url.path}; see /docs for the API"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return json_response({"error": message}, error.status_code, dict(error.headers or {}))
