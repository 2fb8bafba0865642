"""Batch runs as records: one row per run in `batch_runs`, in the store's database."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pallet.errors import PalletError
from pallet.store.database import retrying
from pallet.store.migrate import upgrade
from pallet.store.schema import batch_runs

STATUSES = ("running", "succeeded", "failed")
INTERRUPTED = "interrupted"  # shown, never stored: "running", but the process running it is gone


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class RunRecord:
    id: str
    model_ref: str
    model: str
    version: int
    input: str
    output: str
    started: str
    status: str = "running"
    finished: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}  # no deep copy

    def claim(self) -> None:
        """Mark the run as executed by this process, so that its end without a word can be told."""
        self.options["host"], self.options["pid"] = socket.gethostname(), os.getpid()

    def status_now(self) -> str:
        """The status, except that a run recorded as running whose process on this machine is gone
        (killed, or the machine restarted) is `interrupted`. A run on another machine stays `running`."""
        if self.status != "running" or self.options.get("host") != socket.gethostname():
            return self.status
        pid = self.options.get("pid")
        return self.status if isinstance(pid, int) and _alive(pid) else INTERRUPTED


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: gone all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLog:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        upgrade(engine, what="batch run records")

    @staticmethod
    def new_id() -> str:
        return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def start(self, record: RunRecord) -> RunRecord:
        with self.engine.begin() as conn:
            conn.execute(batch_runs.insert().values(**self._row(record)))
        return record

    def update(self, record: RunRecord) -> None:
        values = self._row(record)
        values.pop("id")

        def attempt(number: int) -> None:  # the same values again: safe to repeat
            with self.engine.begin() as conn:
                conn.execute(batch_runs.update().where(batch_runs.c.id == record.id).values(**values))

        retrying(attempt, f"cannot update the record of batch run {record.id}")

    def get(self, run_id: str) -> RunRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(batch_runs).where(batch_runs.c.id == run_id)).first()
        if row is None:
            raise PalletError(f"no batch run '{run_id}'; 'pallet batch runs' lists them")
        return self._record(row)

    def list(self, output: str | None = None, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        query = sa.select(batch_runs).order_by(batch_runs.c.started.desc(), batch_runs.c.id.desc())
        if output is not None:
            query = query.where(batch_runs.c.output == output)
        if status is not None:
            query = query.where(batch_runs.c.status == status)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    @staticmethod
    def _row(record: RunRecord) -> dict[str, Any]:
        return {**record.to_dict(), "options": json.dumps(record.options), "summary": json.dumps(record.summary)}

    @staticmethod
    def _record(row) -> RunRecord:
        values = {str(k): v for k, v in row._mapping.items()}
        values["options"], values["summary"] = json.loads(values["options"]), json.loads(values["summary"])
        return RunRecord(**values)
