"""How the CLI shows stored versions: rich tables for people, JSON for machines."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pallet.store import ModelVersion, Store
from pallet.units import format_size


def console(stderr: bool = False) -> Console:
    """A console that does not squeeze tables into 80 columns when writing to a pipe or file."""
    out = Console(stderr=stderr)
    return out if out.is_terminal else Console(stderr=stderr, width=160)


def metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def print_versions(store: Store, versions: list[ModelVersion]) -> None:
    table = Table("model", "version", "framework", "size", "aliases", "metrics")
    for v in versions:
        table.add_row(v.ref.name, str(v.ref.version), v.manifest.framework, format_size(v.manifest.size_bytes),
                      ", ".join(v.aliases), metrics_text(v.manifest.metrics))
    console().print(table)
