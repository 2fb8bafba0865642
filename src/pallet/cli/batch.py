"""`pallet batch ...`: run a model over a data set into a table; list, resume and check runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from pallet.batch import check as checks
from pallet.batch import runner, schedule as schedules
from pallet.batch.records import INTERRUPTED, RunLog
from pallet.batch.sources import normalize
from pallet.cli.output import console
from pallet.deploy.bundle import IMAGE, IMAGE_STORE
from pallet.errors import PalletError
from pallet.store import default_store, missing_store, store_to_read
from pallet.urls import redact
from pallet.units import format_duration, parse_duration

app = typer.Typer(help="Batch prediction: data to a table, resumable, checked.", no_args_is_help=True)

INPUT_HELP = "CSV or Parquet file or folder, or sqlite:///f.db?table=t / postgresql://...?query=SELECT ..."
OUTPUT_HELP = "SQL table (sqlite:///preds.db?table=predictions, postgresql://...?table=t) or a Parquet folder."


@app.command()
def run(
    ref: str = typer.Argument(..., help="Model: name, name:VERSION or name@ALIAS."),
    input: str = typer.Option(..., "--input", "-i", help=INPUT_HELP),
    output: str = typer.Option(..., "--output", "-o", help=OUTPUT_HELP),
    key: list[str] = typer.Option([], "--key", "-k", help="Key column(s) copied to every output row."),
    batch_size: int = typer.Option(10_000, min=1, help="Rows per chunk: one predict call and one commit."),
    workers: int = typer.Option(1, min=1, help="Chunks predicted at once (threads)."),
    max_reject_rate: float = typer.Option(0.01, min=0, max=1, help="Fail the run above this share of bad rows."),
    engine: str = typer.Option("local", help="local, or ray: Ray Data on RAY_ADDRESS's cluster (or a local one)."),
    resume: bool = typer.Option(False, "--resume", help="Finish the last unfinished run of this job instead."),
) -> None:
    """Predict on every row of the input and write the predictions to the output."""
    if resume:
        unfinished = runner.latest_unfinished(input, output, ref)
        if unfinished:
            typer.echo(f"resuming run {unfinished.id} ({unfinished.rows_read} rows done)", err=True)
            _report(_with_progress(lambda p: runner.resume(unfinished.id, progress=p)))
            return
    _report(_with_progress(lambda p: runner.run(ref, input, output, key=key, batch_size=batch_size, workers=workers,
                                                 max_reject_rate=max_reject_rate, engine=engine, progress=p)))


@app.command("resume")
def resume_(run_id: str = typer.Argument(..., help="The run's id (see 'pallet batch runs').")) -> None:
    """Finish a failed or killed run from its last committed chunk."""
    _report(_with_progress(lambda p: runner.resume(run_id, progress=p)))


@app.command()
def runs(output: str = typer.Option(None, "--output", "-o", help="Only runs into this output."),
         limit: int = typer.Option(20, min=1, help="How many, newest first."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List batch runs, newest first."""
    store = store_to_read()  # None where there is no store yet: nothing is made
    records = RunLog(store.index.engine).list(output=normalize(output) if output else None, limit=limit) if store else []
    if as_json:
        typer.echo(json.dumps([{**{k: v for k, v in r.to_dict().items() if k != "summary"}, "status": r.status_now()}
                               for r in records], indent=2))
        return
    if not records:
        into = f" into {redact(normalize(output))}" if output else ""
        typer.echo(f"no batch runs{into} yet in {store.location if store else missing_store()}: "
                   "start one with 'pallet batch run'", err=True)
        return
    table = Table("run", "model", "status", "started", "read", "written", "rejected", "output")
    for r in records:
        table.add_row(r.id, f"{r.model}:{r.version}", r.status_now(), r.started[:19].replace("T", " "),
                      f"{r.rows_read:,}", f"{r.rows_written:,}", f"{r.rows_rejected:,}", redact(r.output))
    console().print(table)


@app.command()
def show(run_id: str = typer.Argument(..., help="The run's id."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Everything recorded about one run."""
    store = store_to_read()
    if store is None:
        raise PalletError(f"no batch run '{run_id}' in {missing_store()} (it is empty)")
    record = RunLog(store.index.engine).get(run_id)
    if as_json:
        typer.echo(json.dumps({**record.to_dict(), "status": record.status_now()}, indent=2))
        return
    shown = {"status": record.status_now()}
    if shown["status"] == INTERRUPTED:
        shown["error"] = f"its process ended without a word; resume it with 'pallet batch resume {record.id}'"
    for name in ("id", "model_ref", "model", "version", "status", "input", "output", "started", "finished",
                 "rows_read", "rows_written", "rows_rejected", "error"):
        value = shown.get(name, getattr(record, name))
        typer.echo(f"{name:<14}{'' if value is None else value}")
    typer.echo(f"{'options':<14}{json.dumps(record.options)}")
    for name, out in record.summary.get("outputs", {}).items():
        if out["kind"] == "labels":
            top = sorted(out["counts"].items(), key=lambda kv: -kv[1])[:10]
            typer.echo(f"{'output':<14}{name}: " + ", ".join(f"{k}={v}" for k, v in top))
        elif out["sample"]:
            typer.echo(f"{'output':<14}{name}: mean {sum(out['sample']) / len(out['sample']):.4g} "
                       f"over a sample of {len(out['sample'])}")


@app.command()
def check(
    output: str = typer.Option(..., "--output", "--table", "-o", help="The output the runs write (as given to run)."),
    max_age: str = typer.Option(None, help="Fail when the latest successful run is older, e.g. 24h, 30m, 7d."),
    max_row_change: float = typer.Option(0.5, min=0, help="Fail when rows written change more than this fraction."),
    max_psi: float = typer.Option(0.25, min=0, help="Fail when an output's population stability index passes this."),
    webhook: str = typer.Option(None, help="POST the result as JSON to this URL when the check fails."),
    metrics_file: Path = typer.Option(None, help="Write Prometheus text here (node-exporter textfile collector)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Exit non-zero when the output is stale, its latest run failed, or its rows or predictions changed too much."""
    seconds = parse_duration(max_age) if max_age else None
    output = normalize(output)
    result = checks.check(RunLog(default_store().index.engine), output, max_age_seconds=seconds,
                          max_row_change=max_row_change, max_psi=max_psi)
    if metrics_file:
        checks.write_metrics(result, str(metrics_file))
    if webhook and not result.ok:
        try:
            httpx.post(webhook, json=result.to_dict(), timeout=10).raise_for_status()
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            typer.echo(f"warning: the webhook {webhook} did not take the alert: {e}", err=True)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    if not result.ok:
        raise PalletError(f"batch check of {redact(output)} failed: " + "; ".join(result.problems))
    latest = result.latest_success
    if not as_json:
        typer.echo(f"ok: {redact(output)} written by run {latest['id']} ({latest['rows_written']:,} rows) "
                   f"{format_duration(result.age_seconds, rounded=True)} ago")


@app.command("schedule")
def schedule_(
    ref: str = typer.Argument(..., help="Model: name, name:VERSION or name@ALIAS (an alias follows promotions)."),
    input: str = typer.Option(..., "--input", "-i", help=INPUT_HELP),
    output: str = typer.Option(..., "--output", "-o", help=OUTPUT_HELP),
    cron: str = typer.Option("0 2 * * *", help="When to run (cron syntax, five fields)."),
    key: list[str] = typer.Option([], "--key", "-k", help="Key column(s)."),
    batch_size: int = typer.Option(10_000, min=1, help="Rows per chunk."),
    max_age: str = typer.Option("26h", help="What the hourly check allows before it fails."),
    image: str = typer.Option(IMAGE, help="Container image for the Kubernetes CronJob (what 'pallet build' makes)."),
    claim: str = typer.Option(schedules.CLAIM, help=f"PersistentVolumeClaim the CronJob mounts at {schedules.MOUNT}: "
                                                    "local inputs and outputs are read and written there."),
    out: Path = typer.Option(Path("schedule"), "--out", help="Folder to write crontab.txt and cronjob.yaml to."),
) -> None:
    """Write a crontab line (with an hourly check) for this machine and a Kubernetes CronJob for a cluster.

    The CronJob names no path of this machine: it uses the image's store, and local files move onto the
    volume (in.csv in this folder is /data/in.csv there, /elsewhere/x/in.csv is /data/x/in.csv); URLs such as
    s3:// or postgresql:// stay. A URL with a password is taken from a Kubernetes Secret, never written."""
    cron = schedules.check_cron(cron)
    schedules.check_text(input=input, output=output, key=",".join(key), ref=ref)
    parse_duration(max_age)
    store = store_to_read(ref)
    store.resolve(ref)  # a clear error now, not at two in the morning
    job = schedules.plan(ref, input, output, workdir=Path.cwd(), home=store.home, image_store=IMAGE_STORE,
                         db_url=os.environ.get("PALLET_DB_URL"))
    written = schedules.write(out, schedules.files(ref, job, cron=cron, key=key, batch_size=batch_size,
                                                   max_age=max_age, workdir=Path.cwd(), image=image, claim=claim))
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"install the cron lines with: (crontab -l; cat {written[0]}) | crontab -")
    if job.files:
        typer.echo(f"the CronJob mounts the volume claim '{claim}' at {schedules.MOUNT}; the local files go there:")
        for role, here, there, on_volume in job.files:
            typer.echo(f"  {role:<7} {here} -> {on_volume} on the volume ({there} in the CronJob)")
    if job.secrets:
        typer.echo("the passwords in the URLs stay out of these files; the jobs read the URLs when they run from")
        typer.echo(f"  the Secret {job.secret} on the cluster (put in each password):")
        typer.echo(f"    {job.create_secret()}")
        typer.echo(f"  and, for the crontab, the file {job.env_file} (chmod 600) with the lines:")
        for line in job.env_lines():
            typer.echo(f"    {line}")
    if "PALLET_DB_URL" not in job.cluster_env:
        typer.echo("note: without PALLET_DB_URL the CronJob's run records stay in its pod; set it to a shared "
                   "database (postgresql://...) so --resume and the hourly check see them")


def _with_progress(start):
    """Run `start(progress)` under a rich progress bar: rows done, rows/s and time left."""
    with Progress(TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(), TextColumn("left"),
                  TimeRemainingColumn(), console=console(stderr=True), transient=False) as bar:
        task = bar.add_task("rows", total=None, rate="-")

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        return start(progress)


def _report(record) -> None:
    typer.echo(f"run {record.id} {record.status}: {record.rows_read:,} rows read, {record.rows_written:,} written, "
               f"{record.rows_rejected:,} rejected, model {record.model}:{record.version}, output {redact(record.output)}")
