"""Rollout state in the SQL store, shared by every worker and replica: the current rollout of each
served name (with a revision number that only grows), the history of changes, and the figures
each server process counted for the current revision."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pallet.errors import RolloutConflict
from pallet.rollout.canary import Thresholds
from pallet.rollout.figures import VersionTraffic
from pallet.rollout.policy import Policy
from pallet.store.index import ENDED, PRODUCTION, write_alias
from pallet.store.migrate import upgrade
from pallet.store.schema import rollout_events as events
from pallet.store.schema import rollout_figures as figures
from pallet.store.schema import rollouts, versions


class RolloutChanged(RolloutConflict):
    """Someone else changed the rollout between reading and writing it."""


@dataclass(frozen=True)
class Canary:
    to: str
    steps: list[float]            # traffic percent on the candidate at each step; the last is 100
    step: int                     # index into steps
    step_seconds: float
    step_started: float           # epoch seconds
    thresholds: Thresholds = field(default_factory=Thresholds)
    shadow_fraction: float = 0.2  # of the baseline's requests copied to the candidate to compare answers
    held: str = ""                # the last hold reason recorded, so a hold is written to history once

    def to_dict(self) -> dict[str, Any]:
        return {"to": self.to, "steps": self.steps, "step": self.step, "step_seconds": self.step_seconds,
                "step_started": self.step_started, "thresholds": self.thresholds.to_dict(),
                "shadow_fraction": self.shadow_fraction, "held": self.held}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Canary:
        return cls(**{**data, "thresholds": Thresholds(**data["thresholds"])})


@dataclass(frozen=True)
class Rollout:
    name: str
    policy: Policy
    stable: str                   # the version traffic returns to on rollback
    previous: str | None = None   # the stable version before the last promotion
    canary: Canary | None = None
    mode: str = "single"          # single | canary | split | shadow
    revision: int = 0
    updated: str = ""

    def to_json(self) -> str:
        return json.dumps({"policy": self.policy.to_dict(), "stable": self.stable, "previous": self.previous,
                           "canary": self.canary.to_dict() if self.canary else None, "mode": self.mode})

    @classmethod
    def from_row(cls, row) -> Rollout:
        data = json.loads(row.record)
        return cls(row.name, Policy.from_dict(data["policy"]), data["stable"], data.get("previous"),
                   Canary.from_dict(data["canary"]) if data.get("canary") else None, data.get("mode", "single"),
                   row.revision, row.updated)

    def changed(self, **changes: Any) -> Rollout:
        return replace(self, **changes)


@dataclass(frozen=True)
class Event:
    """One change to a rollout: who made it, when and why, and the traffic weights after it."""
    name: str
    revision: int
    time: str
    actor: str
    action: str
    reason: str
    weights: dict[str, float]


class RolloutState:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        upgrade(engine, what="rollout tables")

    def get(self, name: str) -> Rollout | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rollouts).where(rollouts.c.name == name)).first()
        return Rollout.from_row(row) if row else None

    def current(self, name: str | None = None) -> dict[str, Rollout]:
        """The rollout of `name`, or of every name that has one, by name: one query."""
        query = sa.select(rollouts) if name is None else sa.select(rollouts).where(rollouts.c.name == name)
        with self.engine.connect() as conn:
            return {row.name: Rollout.from_row(row) for row in conn.execute(query)}

    def revisions(self, names: list[str]) -> dict[str, int]:
        """The current revision of each name that has a rollout: one cheap query for polling."""
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(rollouts.c.name, rollouts.c.revision)
                                     .where(rollouts.c.name.in_(names))).all())

    def write(self, rollout: Rollout, actor: str, action: str, reason: str) -> Rollout:
        """Store `rollout` as the next revision after `rollout.revision` (0: the first), with its event
        and the name's production alias moved to its stable version, in one transaction. Raises
        `RolloutChanged` when that revision is no longer the current one."""
        now = _now()
        new = rollout.changed(revision=rollout.revision + 1, updated=now)
        try:
            with self.engine.begin() as conn:
                if rollout.revision == 0:  # numbered on from a rollout that ended, so servers see a new revision
                    new = new.changed(revision=_last_revision(conn, new.name) + 1)
                    conn.execute(rollouts.insert().values(name=new.name, revision=new.revision,
                                                          record=new.to_json(), updated=now))
                else:
                    changed = conn.execute(rollouts.update().where(rollouts.c.name == new.name,
                                                                   rollouts.c.revision == rollout.revision)
                                           .values(revision=new.revision, record=new.to_json(), updated=now))
                    if changed.rowcount != 1:
                        raise RolloutChanged(f"the rollout of '{new.name}' changed meanwhile; look again")
                _add_event(conn, new, now, actor, action, reason)
                _production_follows(conn, new)
                conn.execute(figures.delete().where(figures.c.name == new.name,
                                                    figures.c.revision < new.revision))
        except IntegrityError:
            raise RolloutChanged(f"the rollout of '{new.name}' was started meanwhile; look again") from None
        return new

    def end(self, rollout: Rollout, actor: str, removed: str, reason: str) -> None:
        """End `rollout` because its stable version `removed` is being removed: its record and figures go,
        and an event (action `ENDED`, the removed version at 0%) says why, in one transaction; the
        production alias goes with the version. `RolloutChanged` when the revision moved meanwhile."""
        now = _now()
        with self.engine.begin() as conn:
            gone = conn.execute(rollouts.delete().where(rollouts.c.name == rollout.name,
                                                        rollouts.c.revision == rollout.revision))
            if gone.rowcount != 1:
                raise RolloutChanged(f"the rollout of '{rollout.name}' changed meanwhile; look again")
            conn.execute(figures.delete().where(figures.c.name == rollout.name))
            conn.execute(events.insert().values(name=rollout.name, revision=rollout.revision + 1, time=now,
                                                actor=actor[:200], action=ENDED, reason=reason,
                                                weights=json.dumps({removed: 0.0})))

    def note(self, rollout: Rollout, actor: str, action: str, reason: str) -> Rollout:
        """Store a change that moves no traffic (a canary's hold) at the same revision, so the step's
        figures keep counting; `RolloutChanged` when the revision moved meanwhile."""
        now = _now()
        with self.engine.begin() as conn:
            changed = conn.execute(rollouts.update().where(rollouts.c.name == rollout.name,
                                                           rollouts.c.revision == rollout.revision)
                                   .values(record=rollout.to_json(), updated=now))
            if changed.rowcount != 1:
                raise RolloutChanged(f"the rollout of '{rollout.name}' changed meanwhile; look again")
            _add_event(conn, rollout, now, actor, action, reason)
        return rollout.changed(updated=now)

    def history(self, name: str, limit: int | None = None) -> list[Event]:
        """Every change to `name`'s rollout, oldest first (`limit`: the newest ones)."""
        query = sa.select(events).where(events.c.name == name).order_by(events.c.id.desc())
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Event(r.name, r.revision, r.time, r.actor, r.action, r.reason, json.loads(r.weights))
                for r in reversed(rows)]

    # -- figures ------------------------------------------------------------------------------

    def put_figures(self, name: str, revision: int, process: str, counted: dict[str, VersionTraffic]) -> None:
        """Replace this process's figures for `name` at `revision`."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(figures.delete().where(figures.c.name == name, figures.c.revision == revision,
                                                figures.c.process == process))
            if counted:
                conn.execute(figures.insert(), [dict(name=name, revision=revision, process=process, version=v,
                                                     data=json.dumps(f.to_dict()), updated=now)
                                                for v, f in counted.items()])

    def figures(self, name: str, revision: int) -> dict[str, VersionTraffic]:
        """Every process's figures for `name` at `revision`, added up per version."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(figures.c.version, figures.c.data)
                                .where(figures.c.name == name, figures.c.revision == revision)).all()
        total: dict[str, VersionTraffic] = {}
        for version, data in rows:
            total.setdefault(version, VersionTraffic()).add(VersionTraffic.from_dict(json.loads(data)))
        return total


def _add_event(conn: sa.Connection, rollout: Rollout, now: str, actor: str, action: str, reason: str) -> None:
    conn.execute(events.insert().values(name=rollout.name, revision=rollout.revision, time=now, actor=actor[:200],
                                        action=action, reason=reason, weights=json.dumps(rollout.policy.shares())))


def _last_revision(conn: sa.Connection, name: str) -> int:
    """The highest revision `name`'s history holds (0: none), so a new rollout never reuses one."""
    return conn.execute(sa.select(sa.func.max(events.c.revision)).where(events.c.name == name)).scalar() or 0


def _production_follows(conn: sa.Connection, rollout: Rollout) -> None:
    """Point the name's production alias at the rollout's stable version: the two are one fact. A stable
    version removed from the store (with --force) leaves the name without a production alias."""
    stable = int(rollout.stable)
    exists = conn.execute(sa.select(versions.c.version).where(versions.c.name == rollout.name,
                                                              versions.c.version == stable)).first()
    write_alias(conn, rollout.name, PRODUCTION, stable if exists else None)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
