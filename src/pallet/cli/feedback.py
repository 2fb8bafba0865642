"""`pallet feedback ...`: what users said about predictions, written out as training data."""

from __future__ import annotations

from pathlib import Path

import typer

from pallet.store import ModelRef, default_store
from pallet.ui.feedback import FORMATS, FeedbackLog, export

app = typer.Typer(help="Export the feedback users gave on the prototype pages.", no_args_is_help=True)


@app.command("export")
def export_(
    ref: str = typer.Argument(..., help="Model: name (every version), name:VERSION or name@ALIAS."),
    format: str = typer.Option("csv", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    output: Path = typer.Option(None, "--output", "-o", help="File to write (default feedback-NAME.FORMAT)."),
) -> None:
    """Write every feedback record of a model (one row each: inputs, outputs, rating, answer, comment)."""
    if format not in FORMATS:
        raise typer.BadParameter(f"'{format}' is not one of: {', '.join(FORMATS)}", param_hint="--format")
    store = default_store()
    parsed = ModelRef.parse(ref)
    version = store.resolve(parsed).ref.version if parsed.version or parsed.alias else None
    records = FeedbackLog(store.index.engine).records(parsed.name, version)
    if not records and version is None:
        store.resolve(parsed.name)  # a mistyped name is an error, not an empty file
    path = export(records, output or Path(f"feedback-{parsed.name}.{format}"), format)
    which = f"{parsed.name}:{version}" if version else f"{parsed.name} (every version)"
    typer.echo(f"wrote {len(records)} feedback records of {which} to {path}")
