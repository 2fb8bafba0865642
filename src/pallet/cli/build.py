"""`pallet build`: a deployable bundle from model references."""

from __future__ import annotations

from pathlib import Path

import typer

from pallet.cli import app
from pallet.units import format_size
from pallet.deploy.bundle import IMAGE, Scale, bundle_settings, build as build_bundle, cold_start
from pallet.settings import ServeConfig
from pallet.store import default_store


def _serve_help(name: str) -> str:
    """The serve setting's own help and default: the bundle's pallet.yaml records it."""
    field = ServeConfig.model_fields[name]
    return f"{field.description} [default: {field.default}]"


@app.command()
def build(
    models: list[str] = typer.Argument(..., help="Models to bundle: name, name:VERSION or name@ALIAS."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the bundle to."),
    port: int = typer.Option(None, min=1, max=65535, help=_serve_help("port")),
    workers: int = typer.Option(None, min=1, help=_serve_help("workers")),
    max_batch_size: int = typer.Option(None, min=1, help=_serve_help("max_batch_size")),
    image: str = typer.Option(IMAGE, help="Image name the Kubernetes manifests use."),
    replicas: int = typer.Option(2, min=1, help="Replicas in the Kubernetes Deployment (and the autoscaler's minimum)."),
    target: list[str] = typer.Option([], "--target", "-t", help="Also: lambda, lambda-image, sagemaker."),
) -> None:
    """Write a bundle: models (sha256-checked), a lock file, pallet.yaml, a Dockerfile and Kubernetes manifests."""
    given = {"port": port, "workers": workers, "max_batch_size": max_batch_size}
    report = build_bundle(models, out, store=default_store(),
                          serve=bundle_settings(**{name: value for name, value in given.items() if value is not None}),
                          scale=Scale(image=image, replicas=replicas, max_replicas=max(replicas, 10)),
                          targets=tuple(target))
    typer.echo(f"bundle {report.path}: {format_size(report.size_bytes)} in {len(report.files)} files")
    for ref, size in report.models:
        typer.echo(f"  model {ref}: {format_size(size)}")
    for name, size in report.largest:
        typer.echo(f"  {format_size(size):>10}  {name}")
    typer.echo(f"serve it:  pallet serve --bundle {report.path}")
    typer.echo(f"container: docker build -t {image} {report.path}")
    typer.echo(f"kubernetes: kubectl apply -k {report.path / 'kubernetes'}")
    if {"lambda", "lambda-image"} & set(target):
        seconds = cold_start(report.path)
        typer.echo(f"lambda:    cold start {seconds:.2f} s (import and model load, measured in a fresh process)")
    if "sagemaker" in target:
        typer.echo(f"sagemaker: upload {report.path / 'model.tar.gz'}; the image's 'serve' starts pallet on 8080")
