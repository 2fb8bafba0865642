"""`pallet models ...`: list, show, tag, untag and remove stored versions."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from pallet.cli.output import console, metrics_text
from pallet.units import format_size
from pallet.errors import InvalidReference
from pallet.export.report import Report
from pallet.rollout import Rollouts
from pallet.store import ModelRef, default_store, missing_store, store_to_read
from pallet.store.manifest import diff as manifest_diff

app = typer.Typer(help="List, inspect, compare, tag and remove stored models.", no_args_is_help=True)

EMPTY_HINT = "run 'pallet demo' or save a model with pallet.save(...)"


@app.command("list")
def list_(name: str = typer.Argument(None, help="Only this model's versions."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List stored models and their versions, newest last."""
    store = store_to_read(name)
    if store is None:  # there is no store yet: say where pallet looked, and make none
        if as_json:
            typer.echo("[]")
        else:
            typer.echo(f"{missing_store()} is empty: {EMPTY_HINT}", err=True)
        return
    rows = store.list(ModelRef.parse(name).name if name else None)
    if name and not rows:
        store.resolve(name)  # raises the "no model named ..." error with what the store has
    traffic = Rollouts(store).traffic(ModelRef.parse(name).name if name else None) if rows else {}
    if as_json:
        typer.echo(json.dumps([{"name": r.name, "version": r.version, "created": r.created,
                                "framework": r.framework, "size_bytes": r.size_bytes, "aliases": aliases,
                                "traffic": _share(traffic.get((r.name, r.version), "-")),
                                "metrics": r.metrics} for r, aliases in rows], indent=2))
        return
    if not rows:
        typer.echo(f"{store.location} is empty: {EMPTY_HINT}", err=True)
        return
    table = Table("model", "version", "created", "framework", "size", "aliases", "traffic", "metrics")
    for r, aliases in rows:
        table.add_row(r.name, str(r.version), r.created[:16].replace("T", " "), r.framework, format_size(r.size_bytes),
                      ", ".join(aliases), traffic.get((r.name, r.version), "-"), metrics_text(r.metrics))
    if any(share == "-" for share in traffic.values()):
        table.caption = "traffic -: no rollout; each server answers with the version it was started on"
        table.caption_justify = "left"
    console().print(table)


@app.command()
def show(ref: str = typer.Argument(..., help="name, name:VERSION or name@ALIAS"),
         as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON.")) -> None:
    """Show one version: manifest, signature, size, metrics and aliases."""
    store = store_to_read(ref)
    version = store.resolve(ref)
    m = version.manifest
    traffic = Rollouts(store).traffic(version.ref.name)[(version.ref.name, version.ref.version)]
    if as_json:
        typer.echo(json.dumps({**m.to_dict(), "aliases": list(version.aliases), "traffic": _share(traffic),
                               "path": str(version.path)}, indent=2))
        return
    out = console()
    out.print(f"[bold]{version.ref}[/bold]  {m.description}")
    facts = Table.grid(padding=(0, 2))
    if traffic == "-":
        traffic = f"- ('{version.ref.name}' has no rollout: each server answers with the version it was started on)"
    for key, value in [("aliases", ", ".join(version.aliases) or "-"), ("traffic", traffic), ("created", m.created),
                       ("framework", f"{m.framework} (runtime: {m.runtime})"),
                       ("size", f"{format_size(m.size_bytes)} ({m.size_bytes} bytes)"),
                       ("classes", ", ".join(m.signature.classes) if m.signature.classes else "-"),
                       ("metrics", metrics_text(m.metrics) or "-"), ("tags", metrics_text(m.tags) or "-"),
                       ("python", m.python), ("packages", ", ".join(f"{k}=={v}" for k, v in m.packages.items())),
                       ("path", str(version.path))]:
        facts.add_row(f"[dim]{key}[/dim]", value)
    out.print(facts)
    sig = Table("", "name", "dtype", "shape", "notes", title="signature", title_justify="left")
    for kind, specs in (("input", m.signature.inputs), ("output", m.signature.outputs)):
        for s in specs:
            notes = "NaN allowed" if s.allow_nan else ""
            if s.labels:
                named = m.signature.class_names() if kind == "output" else {}
                shown = [f"{v} {named[v]}" if v in named else str(v) for v in s.labels[:12]]
                notes = f"labels: {', '.join(shown)}" + (" ..." if len(s.labels) > 12 else "")
            sig.add_row(kind, s.name, s.dtype, str(list(s.shape)), notes)
    out.print(sig)
    files = Table("file", "size", "share", "sha256", title=f"files ({format_size(m.size_bytes)} in all)",
                  title_justify="left")
    for name, f in sorted(m.files.items(), key=lambda item: -item[1]["size"]):
        files.add_row(name, format_size(f["size"]), f"{f['size'] / max(m.size_bytes, 1):.1%}", f["sha256"])
    out.print(files)
    if m.lineage:
        out.print(f"[dim]derived from[/dim] {m.lineage['parent']} ({m.lineage.get('operation', '')})")
    if m.report:
        report = Report.from_dict(m.report)
        if report.child is not None:
            report.child.ref = str(version.ref)  # the report was written before the version had its number
        out.print(report.table())


@app.command()
def diff(a: str = typer.Argument(..., help="The first version: name:VERSION or name@ALIAS."),
         b: str = typer.Argument(..., help="The version to compare it with."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Compare two versions: size, metrics, signature, files and how each runs."""
    store = default_store()
    changes = manifest_diff(store.resolve(a).manifest, store.resolve(b).manifest)
    if as_json:
        typer.echo(json.dumps(changes, indent=2))
        return
    out = console()
    size = changes["size_bytes"]
    table = Table("", changes["a"], changes["b"], "change", title="size and metrics", title_justify="left")
    table.add_row("size", format_size(size["a"]), format_size(size["b"]),
                  f"{'+' if size['change'] >= 0 else '-'}{format_size(abs(size['change']))}"
                  + (f" (x{size['ratio']:.2f})" if size["ratio"] else ""))
    for key, values in changes["metrics"].items():
        va, vb = values["a"], values["b"]
        change = f"{vb - va:+.4g}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else ""
        table.add_row(key, _value(va), _value(vb), change)
    table.add_row("runtime", changes["runtime"]["a"], changes["runtime"]["b"], "")
    table.add_row("derived from", changes["lineage"]["a"] or "-", changes["lineage"]["b"] or "-", "")
    out.print(table)
    if changes["signature"]:
        sig = Table("", changes["a"], changes["b"], title="signature changes", title_justify="left")
        for key, values in changes["signature"].items():
            sig.add_row(key, values["a"] or "-", values["b"] or "-")
        out.print(sig)
    else:
        out.print("signature: the same")
    files = Table("file", changes["a"], changes["b"], title="files that differ", title_justify="left")
    for key, values in changes["files"].items():
        files.add_row(key, _size(values["a"]), _size(values["b"]))
    out.print(files)


def _value(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _size(value: int | None) -> str:
    return "-" if value is None else format_size(value)


@app.command()
def tag(ref: str = typer.Argument(..., help="The version to tag: name, name:VERSION or name@ALIAS."),
        alias: str = typer.Argument(..., help="Alias to set or move, e.g. staging; production also moves the "
                                              "traffic: that version then serves the name.")) -> None:
    """Point ALIAS (production, staging, any word) at a version, or move it there.

    The production alias is the version that serves the name: moving it is a promotion, which
    running servers follow and 'pallet rollout rollback' undoes."""
    version = Rollouts().tag(ref, alias)
    typer.echo(f"{version.ref.name}@{alias} -> {version.ref}")


@app.command()
def untag(ref: str = typer.Argument(..., help="The alias to remove: name@ALIAS.")) -> None:
    """Remove an alias (the version it points at stays)."""
    parsed = ModelRef.parse(ref)
    if parsed.alias is None:
        raise InvalidReference(f"say which alias to remove, as in {parsed.name}@staging")
    default_store().untag(parsed.name, parsed.alias)
    typer.echo(f"removed alias {parsed.alias} from {parsed.name}")


@app.command()
def rm(ref: str = typer.Argument(..., help="The version to remove: name:VERSION or name@ALIAS."),
       all_versions: bool = typer.Option(False, "--all", help="Remove every version of the model."),
       force: bool = typer.Option(False, "--force", help="Remove versions that carry an alias or get traffic too."),
       yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Remove a stored version (its folder, index row and aliases).

    A version that carries an alias or gets traffic is kept unless --force is given; then a canary,
    split or shadow it is part of rolls back to the stable version first, and removing the version
    that serves the name ends its rollout (the name has no production alias until one is promoted)."""
    rollouts = Rollouts()
    store = rollouts.store
    parsed = ModelRef.parse(ref)
    if all_versions:
        targets = [r for r, _ in store.list(parsed.name)]
        if not targets:
            store.resolve(parsed.name)  # raises the not-found error
        targets = [ModelRef(r.name, r.version) for r in targets]
    elif parsed.version is None and parsed.alias is None:
        raise InvalidReference(f"say which version to remove ({parsed.name}:3 or {parsed.name}@staging), "
                               "or pass --all to remove every version")
    else:
        targets = [store.resolve(parsed).ref]
    if not force:
        for target in targets:
            rollouts.check_unused(target if all_versions else ref)
    uses = {target: rollouts.uses(target) for target in targets}
    described = [f"{t} ({'; '.join(uses[t])})" if uses[t] else str(t) for t in targets]
    if not yes and not typer.confirm(f"remove {', '.join(described)}?"):
        raise typer.Abort()
    for target in targets:
        typer.echo(f"removed {rollouts.remove(target, force=force)}")


def _share(traffic: str) -> str | None:
    """A version's traffic share for --json: null where its name has no rollout."""
    return None if traffic == "-" else traffic
