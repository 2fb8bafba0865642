"""`pallet doctor`: check the installation and the store, one line per finding."""

from __future__ import annotations

import contextlib
import json
import sys

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pallet.cli import app
from pallet.cli.output import console
from pallet.doctor import PROBLEM, diagnose, healthy

LABELS = {"ok": "ok", "info": "info", PROBLEM: "PROBLEM"}


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON.")) -> None:
    """Check Python, pallet's packages, the store in PALLET_HOME and its index (PALLET_DB_URL): every
    version's files against their sha256, orphans, aliases, permissions, symlinks. Exit 1 when
    anything is wrong."""
    with _progress() as progress:
        findings = diagnose(progress=progress)
    if as_json:
        typer.echo(json.dumps({"healthy": healthy(findings), "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        for f in findings:
            typer.echo(f"{LABELS[f.level]:<8}{f.check:<12}{f.message}")
        problems = sum(f.level == PROBLEM for f in findings)
        typer.echo(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "healthy", err=True)
    if not healthy(findings):
        sys.exit(1)


@contextlib.contextmanager
def _progress():
    """A progress bar over the versions being verified, on a terminal only."""
    out = console(stderr=True)
    if not out.is_terminal:
        yield None
        return
    with Progress(TextColumn("[bold]verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as bar:
        task = bar.add_task("versions", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
