"""`pallet batch check`: is the output fresh, whole and like the last one? For cron and CI alerts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pallet.batch.records import RunLog, RunRecord
from pallet.batch.summary import psi
from pallet.errors import PalletError
from pallet.units import format_duration
from pallet.urls import redact

@dataclass
class CheckResult:
    output: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    latest: dict[str, Any] | None = None
    latest_success: dict[str, Any] | None = None
    age_seconds: float | None = None
    row_change: float | None = None
    psi: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check(runs: RunLog, output: str, *, max_age_seconds: float | None = None, max_row_change: float | None = 0.5,
          max_psi: float | None = 0.25, now: datetime | None = None) -> CheckResult:
    """What is wrong with `output`'s latest runs: stale, failed, shrunk or grown, or drifted."""
    history = runs.list(output=output)
    result = CheckResult(redact(output), True)  # what it says goes to logs, webhooks and metrics: no password
    if not history:
        result.ok = False
        result.problems.append(f"no batch run has written {result.output}")
        return result
    latest = history[0]
    result.latest = _brief(latest)
    successes = [r for r in history if r.status == "succeeded"]
    if latest.status == "failed":
        result.problems.append(f"the latest run {latest.id} failed at {latest.finished}: {latest.error}")
    if not successes:
        result.problems.append(f"no run of {result.output} has succeeded")
    else:
        last = successes[0]
        result.latest_success = _brief(last)
        moment = now or datetime.now(timezone.utc)
        result.age_seconds = (moment - datetime.fromisoformat(last.finished)).total_seconds()
        if max_age_seconds is not None and result.age_seconds > max_age_seconds:
            ago = format_duration(result.age_seconds, rounded=True)
            result.problems.append(f"the latest successful run {last.id} finished {ago} ago, "
                                   f"over the limit of {format_duration(max_age_seconds)}")
        if len(successes) > 1:
            before = successes[1]
            if before.rows_written:
                result.row_change = (last.rows_written - before.rows_written) / before.rows_written
                if max_row_change is not None and abs(result.row_change) > max_row_change:
                    result.problems.append(f"run {last.id} wrote {last.rows_written} rows, {result.row_change:+.0%} "
                                           f"from {before.rows_written} in run {before.id} (limit ±{max_row_change:.0%})")
            for name, now_summary in last.summary.get("outputs", {}).items():
                then = before.summary.get("outputs", {}).get(name)
                index = psi(then, now_summary) if then else None
                if index is None:
                    continue
                result.psi[name] = round(index, 4)
                if max_psi is not None and index > max_psi:
                    result.problems.append(f"output '{name}' drifted: population stability index {index:.3f} "
                                           f"against run {before.id} (limit {max_psi:g})")
    result.ok = not result.problems
    return result


def prometheus_text(result: CheckResult) -> str:
    """The check as Prometheus text, for node-exporter's textfile collector."""
    label = result.output.replace("\\", "\\\\").replace('"', '\\"')
    lines = []

    def metric(name: str, help_text: str, value: float, extra: str = "") -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.append(f'{name}{{output="{label}"{extra}}} {value}')

    metric("pallet_batch_check_ok", "1 when the latest check found no problem", int(result.ok))
    if result.latest:
        metric("pallet_batch_last_run_failed", "1 when the latest run failed", int(result.latest["status"] == "failed"))
    if result.latest_success:
        finished = datetime.fromisoformat(result.latest_success["finished"]).timestamp()
        metric("pallet_batch_last_success_timestamp_seconds", "When the latest successful run finished", finished)
        metric("pallet_batch_rows_written", "Rows the latest successful run wrote", result.latest_success["rows_written"])
        metric("pallet_batch_rows_rejected", "Rows the latest successful run rejected",
               result.latest_success["rows_rejected"])
    for name, index in result.psi.items():
        metric("pallet_batch_output_psi", "Population stability index against the run before", index,
               f',prediction="{name}"')
    return "\n".join(lines) + "\n"


def write_metrics(result: CheckResult, path: str) -> None:
    """Written whole, then renamed, so the collector never reads half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(prometheus_text(result))
    os.replace(tmp, path)


def _brief(record: RunRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in ("id", "model", "version", "status", "started", "finished",
                                             "rows_read", "rows_written", "rows_rejected", "error")}
