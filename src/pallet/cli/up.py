"""`pallet up`: several replicas behind nginx on this machine."""

from __future__ import annotations

import signal
import threading

import typer

from pallet.cli import app
from pallet.deploy.local import LocalCluster


@app.command()
def up(
    models: list[str] = typer.Argument(..., help="Models each replica serves."),
    replicas: int = typer.Option(2, min=1, help="pallet serve processes behind nginx."),
    port: int = typer.Option(8080, min=1, max=65535, help="Port nginx listens on (127.0.0.1)."),
    grpc_port: int = typer.Option(None, "--grpc-port", min=1, max=65535,
                                  help="Also balance the replicas' gRPC (Open Inference Protocol) on this port."),
) -> None:
    """Start N replicas of `pallet serve` and nginx in front of them on 127.0.0.1, until Ctrl-C."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with LocalCluster(models, replicas=replicas, port=port, grpc_port=grpc_port) as cluster:
        typer.echo(f"nginx on {cluster.url} in front of {replicas} replicas: "
                   + ", ".join(f"127.0.0.1:{p}" for p in cluster.ports))
        if grpc_port is not None:
            typer.echo(f"gRPC on 127.0.0.1:{grpc_port} in front of their gRPC ports: "
                       + ", ".join(f"127.0.0.1:{p}" for p in cluster.grpc_ports))
        typer.echo("Ctrl-C stops them all")
        stop.wait()
    typer.echo("stopped")
