"""`pallet demo`: train and register the demo models, or reuse the ones the store has."""

from __future__ import annotations

import typer

from pallet.cli import app
from pallet.cli.output import console, print_versions
from pallet.demo import demo_models
from pallet.store import default_store


@app.command()
def demo(alias: str = typer.Option("production", help="Alias to point at the versions it stores (and at a "
                                                      "reused one where the model has no such alias)."),
         retrain: bool = typer.Option(False, "--retrain", help="Train and store new versions even where the "
                                                               "store has the same demo models already.")) -> None:
    """Train the demo models (digits, iris, digits-onnx; digits-torch and minilm with pallet[torch]) and
    register them in the store. Models the store already has, made the same way, are reused as they
    are: no new version, aliases untouched."""
    store = default_store()
    with console(stderr=True).status("preparing the demo models") as status:
        models = demo_models(store, alias=alias, retrain=retrain, progress=lambda step: status.update(step))
    for model in models:
        typer.echo(f"reused {model.ref}: stored already, made the same way" if model.reused else
                   f"stored {model.ref} as {model.ref.name}@{alias}", err=True)
    stored = sum(not model.reused for model in models)
    typer.echo(f"stored {stored} models and reused {len(models) - stored} in {store.location}", err=True)
    print_versions(store, [store.resolve(model.ref) for model in models])
