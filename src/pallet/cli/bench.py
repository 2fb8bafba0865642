"""`pallet bench`: throughput and latency of one model behind the server, beside in-process predict."""

from __future__ import annotations

import typer

import pallet
from pallet.bench import run_bench
from pallet.cli import app
from pallet.cli.output import console
from pallet.errors import PalletError
from pallet.units import format_duration, format_ms, parse_duration


@app.command()
def bench(
    ref: str = typer.Argument(..., help="The model: name, name:VERSION or name@ALIAS."),
    concurrency: str = typer.Option("1,8,32", help="Comma-separated numbers of concurrent connections."),
    duration: str = typer.Option("10s", help="How long each level runs (e.g. 10s, 500ms)."),
    rows: int = typer.Option(1, min=1, help="Rows in each request."),
    url: str = typer.Option(None, help="Target a running server instead of starting one."),
    max_batch_size: int = typer.Option(32, min=1, help="Batching of the server this command starts (1: off)."),
    max_latency_ms: float = typer.Option(5.0, min=0, help="Batching window of the server this command starts."),
) -> None:
    """Load-test a model over HTTP (req/s, p50/p95/p99, errors, batch size) against in-process predict."""
    try:
        levels = [int(part) for part in concurrency.split(",") if part.strip()]
    except ValueError:
        raise PalletError(f"--concurrency takes numbers separated by commas, got '{concurrency}'") from None
    seconds = parse_duration(duration, positive=True)
    model = pallet.load(ref)
    out = console()
    serve_args = ["--max-batch-size", str(max_batch_size), "--max-latency-ms", str(max_latency_ms)]
    with console(stderr=True).status("benchmarking") as status:
        floor, results = run_bench(model, levels, seconds, rows, url, serve_args,
                                   progress=lambda step: status.update(step))
    from rich.table import Table

    table = Table("concurrency", "req/s", "p50", "p95", "p99", "errors", "mean batch rows",
                  title=f"{model.ref} over HTTP (V2 infer, {rows} row(s) per request, "
                        f"{format_duration(seconds)} per level)",
                  caption="latency from the server's own histogram, read as the dashboard and rollout status read it")
    for r in results:
        table.add_row(str(r.concurrency), f"{r.rate:,.0f}", *(format_ms(r.percentile(p) * 1000) for p in (50, 95, 99)),
                      str(r.errors), f"{r.mean_batch_rows:.1f}" if r.mean_batch_rows else "-")
    out.print(table)
    out.print(f"in-process predict on the same rows: {floor:,.0f} calls/s "
              "(one caller, no HTTP: what per-request serving cannot beat)")
