"""`pallet demo`: train and register the demo models."""

from __future__ import annotations

import typer

from pallet.cli import app
from pallet.cli.output import console, print_versions
from pallet.demo import train_demo_models
from pallet.store import default_store


@app.command()
def demo(alias: str = typer.Option("production", help="Alias to point at the new versions.")) -> None:
    """Train the demo models (digits, iris, digits-onnx; digits-torch and minilm with pallet[torch]) and
    register them in the store."""
    store = default_store()
    with console(stderr=True).status("training demo models") as status:
        refs = train_demo_models(store, alias=alias, progress=lambda step: status.update(step))
    console(stderr=True).print(f"stored {len(refs)} models in {store.home}")
    print_versions(store, [store.resolve(ref) for ref in refs])
