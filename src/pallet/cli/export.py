"""`pallet export`, `pallet optimize`, `pallet fits`: derived versions for other formats and devices."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import typer

from pallet.cli import app
from pallet.cli.output import console
from pallet.errors import InvalidInput, PalletError
from pallet.export import TARGETS, Budget, ExportRefused, Report, export as export_version
from pallet.export.optimize import LOSSY, distill, quantize
from pallet.store import default_store
from pallet.units import format_size, parse_size


@contextmanager
def _showing(as_json: bool):
    """Progress on stderr while the work runs; the report (or why it was refused) when it ends."""
    try:
        with console(stderr=True).status("starting") as status:
            yield lambda step: status.update(step)
    except ExportRefused as e:
        _print(e.report, as_json, stderr=True)
        raise


def _print(report: Report, as_json: bool, stderr: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2), err=stderr)
    else:
        console(stderr=stderr).print(report.table())
        for note in report.notes:
            console(stderr=stderr).print(f"note: {note}")


@app.command("export")
def export(
    ref: str = typer.Argument(..., help="The version to export: name, name:VERSION or name@ALIAS."),
    format_: str = typer.Option(..., "--format", "-f", help=f"Target format: {', '.join(TARGETS)}."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the export (and its manifest.json) to this folder."),
    name: str = typer.Option(None, "--name", help="Store it under this name (default: NAME-TARGET)."),
    data: str = typer.Option(None, "--data", help="Held-out data for the parity check: sklearn:digits, a .npz, "
                                                  ".npy or .csv file (default: the data set the parent names)."),
    tolerance: float = typer.Option(1e-3, "--tolerance", help="Largest absolute difference from the parent."),
    min_agreement: float = typer.Option(0.99, "--min-agreement", help="Share of rows that must agree."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Convert a stored model to another format, check it answers like its parent, store it as a new version."""
    with _showing(as_json) as progress:
        child, report = export_version(default_store(), ref, format_, name=name, data=data, out=out,
                                       budget=Budget(tolerance, min_agreement), progress=progress)
    _print(report, as_json)
    console(stderr=True).print(f"stored {child}" + (f", written to {out}" if out else ""))


@app.command()
def optimize(
    ref: str = typer.Argument(..., help="The version to optimize: name, name:VERSION or name@ALIAS."),
    quantize_to: str = typer.Option(None, "--quantize", help="int8 (dynamic quantization) or fp16."),
    distill_: bool = typer.Option(False, "--distill", help="Train a smaller student on this model's answers."),
    student: str = typer.Option("mlp:32", "--student", help="The student: mlp:HIDDEN[,HIDDEN...]."),
    data: str = typer.Option(None, "--data", help="--distill: the data to learn from, e.g. sklearn:digits:train. "
                                                  "Otherwise: held-out data for the figures."),
    eval_data: str = typer.Option(None, "--eval-data", help="--distill: held-out data for the figures "
                                                            "(default: the data set the parent names)."),
    epochs: int = typer.Option(60, "--epochs", min=1, help="--distill: passes over the data."),
    name: str = typer.Option(None, "--name", help="Store it under this name (default: NAME-int8, NAME-student...)."),
    max_size: str = typer.Option(None, "--max-size", help="Fail when the child is bigger, e.g. 20KB or 2MiB."),
    min_accuracy: float = typer.Option(None, "--min-accuracy", help="Fail when the child scores less (0..1): "
                                                                    "accuracy, or agreement without labels."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Store a smaller or faster child (int8, fp16, distilled) and print parent and child side by side."""
    if (quantize_to is None) == (not distill_):
        raise InvalidInput("say what to do: --quantize int8|fp16, or --distill --student SPEC --data DATA")
    budget = Budget(LOSSY.atol, LOSSY.min_agreement, parse_size(max_size) if max_size else None, min_accuracy)
    with _showing(as_json) as progress:
        if distill_:
            if not data:
                raise InvalidInput("--distill needs --data: what the student learns from, e.g. sklearn:digits:train")
            child, report = distill(default_store(), ref, student, data, name=name, epochs=epochs,
                                    eval_data=eval_data, budget=budget, progress=progress)
        else:
            child, report = quantize(default_store(), ref, quantize_to, name=name, data=data, budget=budget,
                                     progress=progress)
    _print(report, as_json)
    console(stderr=True).print(f"stored {child}")


@app.command()
def fits(
    ref: str = typer.Argument(..., help="The version to judge: name, name:VERSION or name@ALIAS."),
    device: str = typer.Option(..., "--device", help="A device profile: browser, phone, microcontroller, or one "
                                                      "that --config declares under 'devices:'."),
    config: Path = typer.Option(None, "--config", help="A pallet.yaml with more device profiles."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Say which formats and which variants (float32, int8, fp16) of a model fit a device, and why not.
    Exits 1 when nothing fits."""
    from rich.table import Table

    from pallet.export.devices import fits as judge
    from pallet.export.devices import load_devices

    if config is None and Path("pallet.yaml").is_file():
        config = Path("pallet.yaml")
    devices = load_devices(config)
    if device not in devices:
        raise InvalidInput(f"no device profile '{device}'; there are: {', '.join(devices)}")
    profile = devices[device]
    with console(stderr=True).status(f"measuring {ref} for {device}"):
        fit = judge(default_store(), ref, profile)
    if as_json:
        typer.echo(json.dumps(fit.to_dict(), indent=2))
    else:
        out = console()
        out.print(f"[bold]{device}[/bold]: {profile.description}; budget {format_size(profile.max_size)}, "
                  f"{profile.max_latency_ms:g} ms a prediction (this machine x{profile.slowdown:g})")
        formats = Table("format", "carries it", title="formats", title_justify="left")
        for name, why in fit.formats.items():
            formats.add_row(name, "yes" if not why else f"no: {why}")
        out.print(formats)
        table = Table("variant", "size", "ms here", "ms on device", "fits", title="variants", title_justify="left")
        for c in fit.candidates:
            table.add_row(c.variant, format_size(c.size_bytes), f"{c.latency_ms:.3f}", f"{c.device_latency_ms:.2f}",
                          f"yes: {', '.join(c.formats)}" if c.fits else "no: " + "; ".join(c.reasons))
        out.print(table)
        for note in fit.notes:
            out.print(f"note: {note}")
    if not fit.fits:
        raise PalletError(fit.verdict())
    if not as_json:
        console().print(fit.verdict(), markup=False, highlight=False)
