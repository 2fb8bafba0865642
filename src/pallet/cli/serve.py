"""`pallet serve`: the online inference server."""

from __future__ import annotations

import os
import secrets

from pathlib import Path

import typer

from pallet.cli import app
from pallet.deploy.bundle import bundle_store, load_config, serve_config
from pallet.serve.config import ServeConfig
from pallet.serve.server import serve as run_server


@app.command()
def serve(
    models: list[str] = typer.Argument(None, help="Models to serve: name, name:VERSION or name@ALIAS."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 for every interface)."),
    port: int = typer.Option(None, min=1, max=65535,
                             help="Port (default 8000, or SAGEMAKER_BIND_TO_PORT when set)."),
    grpc_port: int = typer.Option(None, "--grpc-port", min=0, max=65535,
                                  help="Also answer the Open Inference Protocol over gRPC on this port "
                                       "(0: no gRPC, e.g. for a bundle whose pallet.yaml has a port)."),
    workers: int = typer.Option(1, min=1, help="Worker processes sharing the port."),
    threads: int = typer.Option(None, min=1, help="Native threads per worker (default: cores / workers)."),
    max_body_mb: float = typer.Option(16, min=0.001, help="Largest request body, in MiB (bigger gets 413)."),
    max_rows: int = typer.Option(100_000, min=1, help="Most rows in one request."),
    max_elements: int = typer.Option(10_000_000, min=1, help="Most values in one request's input tensors (413)."),
    large_requests: int = typer.Option(4, min=1, help="Requests with bodies over 256 KiB answered at once, "
                                                      "per worker; others wait (bounds memory)."),
    max_header_kb: float = typer.Option(64, min=1, help="Largest request line and headers, in KiB (431)."),
    read_timeout: float = typer.Option(30, min=0.1, help="Seconds a client has to send a request's headers, "
                                                          "and then its body (408)."),
    drain_seconds: float = typer.Option(0, min=0, help="On SIGTERM, report not ready but keep answering this "
                                                       "long, while load balancers notice."),
    grace_seconds: float = typer.Option(30, min=0, help="Then, how long in-flight requests have to finish."),
    max_batch_size: int = typer.Option(32, min=1, help="Rows per predict call when batching (1: off)."),
    max_latency_ms: float = typer.Option(5.0, min=0, help="Longest a request waits to share a batch."),
    max_queue: int = typer.Option(1024, min=1, help="Requests waiting per model before 503 + Retry-After."),
    cache: str = typer.Option(None, help="Cache outputs: memory, memory:N (entries) or redis://host:6379/0."),
    cache_ttl: float = typer.Option(3600, min=1, help="Seconds a Redis cache entry lives."),
    auth: bool = typer.Option(False, "--auth", help="Require PALLET_API_KEY on every endpoint, not only admin ones."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="One JSON line per request."),
    skip_unloadable: bool = typer.Option(False, "--skip-unloadable",
                                         help="Serve the models that load; report the others not ready (503)."),
    share_token: str = typer.Option(None, envvar="PALLET_SHARE_TOKEN",
                                    help="Require this token in the URL (?token=) for the pages and the API; "
                                         "'new' makes one."),
    cors_origin: list[str] = typer.Option([], "--cors-origin",
                                          help="Let browser pages from this origin (https://host[:port]) call "
                                               "the API; repeat for more. Off unless given."),
    ui: str = typer.Option(None, "--ui", help="Serve your own static page from this folder at / instead of the index."),
    bundle: Path = typer.Option(None, "--bundle", help="Serve what a bundle from 'pallet build' holds, as its pallet.yaml says."),
) -> None:
    """Serve models over KServe V2 (REST, and gRPC with --grpc-port), KServe V1, SageMaker and MLflow protocols."""
    if auth and not os.environ.get("PALLET_API_KEY"):
        raise typer.BadParameter("--auth needs the key in the PALLET_API_KEY environment variable")
    options = dict(host=host, auth=auth, access_log=access_log, skip_unloadable=skip_unloadable,
                   cache=cache, cache_ttl_seconds=cache_ttl,
                   threads=threads, share_token=secrets.token_urlsafe(16) if share_token == "new" else share_token,
                   ui_dir=ui, cors_origins=list(cors_origin),
                   **({"grpc_port": grpc_port or None} if grpc_port is not None else {}))
    if bundle is not None:
        if models:
            raise typer.BadParameter("a bundle names its own models; drop the model arguments or --bundle")
        config = serve_config(load_config(bundle), **options, **({"port": port} if port else {}))
        run_server(config, store=bundle_store(bundle), echo=typer.echo, reveal_token=share_token == "new")
        return
    run_server(ServeConfig(models=models or [], port=port or _sagemaker_port(), workers=workers,
                           max_body_bytes=int(max_body_mb * 1024 * 1024), max_rows=max_rows,
                           max_elements=max_elements, max_header_bytes=int(max_header_kb * 1024),
                           large_requests=large_requests,
                           read_timeout_seconds=read_timeout, drain_seconds=drain_seconds,
                           grace_seconds=grace_seconds,
                           max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, max_queue=max_queue,
                           **options), echo=typer.echo, reveal_token=share_token == "new")


def _sagemaker_port() -> int:
    value = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8000")
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 65535:
        raise typer.BadParameter(f"SAGEMAKER_BIND_TO_PORT must be a port number, got {value!r}")
    return int(value)
