"""`pallet pipeline ...`: store the pipelines a pallet.yaml declares, as versions of their own."""

from __future__ import annotations

from pathlib import Path

import typer

from pallet.errors import PalletError
from pallet.pipeline import load_pipelines
from pallet.rollout import Rollouts
from pallet.store import default_store
from pallet.saving import save_model

app = typer.Typer(help="Pipelines: pre-processing, models and post-processing served as one model.",
                  no_args_is_help=True)


@app.command()
def save(config: Path = typer.Argument(Path("pallet.yaml"), help="The file declaring 'pipelines:'."),
         names: list[str] = typer.Option([], "--name", "-n", help="Only these pipelines (default: all)."),
         alias: list[str] = typer.Option([], "--alias", "-a", help="Point these aliases at the new versions.")) -> None:
    """Store each declared pipeline as a new version, its model steps pinned to the versions they name now."""
    store = default_store()
    declared = load_pipelines(config, store)
    unknown = set(names) - {d.name for d in declared}
    if unknown:
        raise PalletError(f"{config} declares no pipeline {', '.join(sorted(unknown))}; it has: "
                          f"{', '.join(d.name for d in declared)}")
    for item in declared:
        if names and item.name not in names:
            continue
        pipeline = item.pipeline
        ref = save_model(store, pipeline, item.name, sample=pipeline.sample(), description=pipeline.description)
        rollouts = Rollouts(store)
        for name in dict.fromkeys([*item.aliases, *alias]):
            rollouts.tag(ref, name)  # `production` of a name with a rollout moves by promotion
        typer.echo(f"stored {ref}: {pipeline.describe()}")
