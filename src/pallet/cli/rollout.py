"""`pallet rollout ...`: promote, roll back, canary, split and shadow a served model's versions."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import typer
from rich.table import Table

from pallet.cli.output import console
from pallet.errors import RolloutError
from pallet.rollout import Rollouts, Thresholds
from pallet.units import format_duration, format_ms, parse_duration

app = typer.Typer(help="Move traffic between versions: promote, rollback, canary, split, shadow.",
                  no_args_is_help=True)

NAME = typer.Argument(..., help="The served model name, e.g. digits.")
TO = typer.Option(..., "--to", help="The version to move to: name:VERSION or name@ALIAS.")
STICKY = typer.Option(None, "--sticky-key", help="Request header whose value always reaches the same version, "
                                                 "e.g. X-User-ID.")


@app.command()
def status(name: str = NAME, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Versions, their traffic shares and live figures, and a canary's progress.

    Requests, client errors (4xx) and failures (5xx) are counted as the dashboard counts them,
    since the rollout's last change."""
    _show(Rollouts().status(name), as_json)


@app.command()
def history(name: str = NAME, limit: int = typer.Option(None, min=1, help="Only the newest N changes."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every change to the rollout: when, who or what made it, and why."""
    events = Rollouts().history(name, limit)
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in events], indent=2))
        return
    table = Table("rev", "time", "action", "by", "traffic", "why")
    for e in events:
        traffic = ", ".join(f"{v}={share:g}%" for v, share in e.weights.items())
        table.add_row(str(e.revision), e.time[:19].replace("T", " "), e.action, e.actor, traffic, e.reason)
    console().print(table)


@app.command()
def promote(name: str = NAME, to: str = TO,
            reason: str = typer.Option("", help="Why, for the history."),
            baseline: str = typer.Option(None, "--from", help="The version serving now, for a later rollback, when "
                                                              "the name has no rollout yet (default: name@production).")
            ) -> None:
    """Send all traffic to one version at once (servers load and warm it first)."""
    rollouts = Rollouts()
    rollouts.promote(name, to, reason=reason, baseline=baseline)
    _show(rollouts.status(name), False)


@app.command()
def rollback(name: str = NAME, reason: str = typer.Option("", help="Why, for the history.")) -> None:
    """End a canary, split or shadow; or go back to the version before the last promotion."""
    rollouts = Rollouts()
    rollouts.rollback(name, reason=reason)
    _show(rollouts.status(name), False)


@app.command()
def start(
    name: str = NAME, to: str = TO,
    baseline: str = typer.Option(None, "--from", help="The version serving now, when the name has no rollout "
                                                      "yet (default: name@production)."),
    steps: str = typer.Option("5,25,50,100", help="Percent of traffic on the candidate at each step."),
    step_duration: str = typer.Option("5m", help="How long each step lasts before it is judged: 90s, 5m, 1h."),
    max_error_rate: float = typer.Option(0.01, min=0, max=1, help="Roll back above this share of the candidate's "
                                                                  "requests failing in the model (5xx; a caller's "
                                                                  "4xx is not the candidate's failure)."),
    max_latency_ratio: float = typer.Option(1.5, min=1, help="Roll back when candidate p95 / baseline p95 is above."),
    min_latency_delta_ms: float = typer.Option(5.0, min=0, help="... and the candidate is slower by more than this."),
    min_agreement: float = typer.Option(0.95, min=0, max=1, help="Roll back when fewer rows agree with the "
                                                                 "baseline (0: off)."),
    tolerance: float = typer.Option(0.01, min=0, help="Relative difference two regression outputs may have."),
    min_requests: int = typer.Option(20, min=1, help="Candidate requests a step needs before it advances."),
    shadow_fraction: float = typer.Option(0.2, min=0, max=1, help="Share of baseline requests copied to the "
                                                                   "candidate to compare answers."),
    sticky_key: str = STICKY,
    wait: bool = typer.Option(False, "--wait", help="Follow the canary to its end; exit 1 if it rolled back."),
) -> None:
    """Start a canary: the candidate's share grows step by step while its figures hold up."""
    try:
        percents = [float(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise RolloutError(f"--steps must be percentages separated by commas, e.g. 5,25,50,100; got '{steps}'") from None
    thresholds = Thresholds(max_error_rate=max_error_rate, max_latency_ratio=max_latency_ratio,
                            min_latency_delta_ms=min_latency_delta_ms, min_agreement=min_agreement,
                            tolerance=tolerance, min_requests=min_requests, min_compared=min_requests)
    rollouts = Rollouts()
    started = rollouts.start(name, to, steps=percents, step_seconds=parse_duration(step_duration),
                             thresholds=thresholds, shadow_fraction=shadow_fraction, sticky_key=sticky_key,
                             baseline=baseline)
    _show(rollouts.status(name), False)
    if wait:
        _follow(rollouts, name, started.revision, started.canary.to)


@app.command()
def split(name: str = NAME,
          weights: list[str] = typer.Argument(..., help="name:VERSION=WEIGHT for each version, e.g. digits:3=90 "
                                                        "digits:4=10."),
          sticky_key: str = STICKY) -> None:
    """Serve a fixed split, for an A/B test."""
    parsed = {}
    for item in weights:
        ref, _, weight = item.rpartition("=")
        try:
            parsed[ref] = float(weight)
        except ValueError:
            raise RolloutError(f"'{item}' is not VERSION=WEIGHT, e.g. {name}:4=10") from None
        if not ref:
            raise RolloutError(f"'{item}' is not VERSION=WEIGHT, e.g. {name}:4=10")
    rollouts = Rollouts()
    rollouts.split(name, parsed, sticky_key=sticky_key)
    _show(rollouts.status(name), False)


@app.command()
def shadow(name: str = NAME, to: str = TO,
           fraction: float = typer.Option(1.0, min=0.001, max=1, help="Share of live requests copied.")) -> None:
    """Copy live requests to a version off the request path; callers get the stable version's answers."""
    rollouts = Rollouts()
    rollouts.shadow(name, to, fraction=fraction)
    _show(rollouts.status(name), False)


def _follow(rollouts: Rollouts, name: str, revision: int, candidate: str) -> None:
    """Print each change as it happens, until the canary is over."""
    seen = revision
    while True:
        rollouts.tick(name)  # servers judge the canary too; one write per revision wins
        for event in rollouts.history(name):
            if event.revision > seen:
                typer.echo(f"{event.time[11:19]} {event.action}: {event.reason}", err=True)
                seen = event.revision
        current = rollouts.get(name)
        if current.canary is None:
            if current.stable == candidate and current.mode == "single":
                typer.echo(f"{name}:{candidate} serves 100% of '{name}'")
                return
            raise typer.Exit(1)
        time.sleep(1)


def _show(doc: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    out = console()
    name = doc["name"]
    line = f"[bold]{name}[/]: {doc['mode']}, stable {name}:{doc['stable']} (revision {doc['revision']})"
    if doc["sticky_key"]:
        line += f", sticky by {doc['sticky_key']}"
    out.print(line)
    canary = doc["canary"]
    if canary:
        left = format_duration(canary["step_left_seconds"], rounded=True)
        out.print(f"canary to {name}:{canary['to']}: step {canary['step']} of {len(canary['steps'])} "
                  f"({canary['share']:g}%), {left} left in the step"
                  + (f"; holding: {canary['held']}" if canary["held"] else ""))
    table = Table("version", "role", "traffic", "requests", "client errors", "failures", "p95", "shadowed",
                  "agreement", caption="client errors: refused (4xx); failures: 5xx. Counted since revision "
                                       f"{doc['revision']}; a canary judges model failures only", caption_justify="left")
    for v in doc["versions"]:
        agreement = v.get("agreement")
        table.add_row(f"{name}:{v['version']}", v["role"], f"{v['share']:g}%", str(v.get("requests", 0)),
                      str(v.get("client_errors", 0)), str(v.get("server_errors", 0)), _ms(v.get("p95_ms")),
                      str(v.get("shadowed", 0)), "" if agreement is None else f"{agreement:.1%} of {v['compared']}")
    out.print(table)


def _ms(value) -> str:
    return "" if value is None else format_ms(value)
