"""The index of models, versions and aliases, in SQL (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as RowExists

from pallet.errors import ModelNotFound, RolloutConflict
from pallet.store.migrate import upgrade
from pallet.store.schema import aliases, removed, rollout_events, rollouts, versions

PRODUCTION = "production"  # the alias of the version that serves a name: its rollout's stable version
ENDED = "end"  # the rollout event of a rollout ended because its stable version was removed (models rm --force)


@dataclass(frozen=True)
class VersionRow:
    name: str
    version: int
    created: str
    framework: str
    runtime: str
    size_bytes: int
    metrics: dict
    tags: dict


class Index:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        upgrade(engine)

    def add(self, row: VersionRow) -> bool:
        """Insert a version row; False when that version number is already taken."""
        values = dict(row.__dict__, metrics=json.dumps(row.metrics), tags=json.dumps(row.tags))
        try:
            with self.engine.begin() as conn:
                conn.execute(versions.insert().values(**values))
        except RowExists:
            return False
        return True

    def get(self, name: str, version: int) -> VersionRow | None:
        rows = self._select(versions.c.name == name, versions.c.version == version)
        return rows[0] if rows else None

    def latest(self, name: str) -> VersionRow | None:
        rows = self._select(versions.c.name == name, order=versions.c.version.desc(), limit=1)
        return rows[0] if rows else None

    def versions(self, name: str | None = None) -> list[VersionRow]:
        where = [versions.c.name == name] if name else []
        return self._select(*where, order=(versions.c.name, versions.c.version))

    def max_version(self, name: str) -> int:
        """The highest number `name` ever had, removed versions included."""
        with self.engine.connect() as conn:
            return max(conn.execute(sa.select(sa.func.max(table.c.version)).where(table.c.name == name)).scalar() or 0
                       for table in (versions, removed))

    def remove(self, name: str, version: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(aliases.delete().where(aliases.c.name == name, aliases.c.version == version))
            conn.execute(versions.delete().where(versions.c.name == name, versions.c.version == version))
            conn.execute(removed.insert().values(name=name, version=version))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `alias` at a version that exists when the change commits (`ModelNotFound` otherwise).
        `production` of a name with a rollout moves only with its traffic (`RolloutConflict` here)."""
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if alias == PRODUCTION and has_rollout(conn, name) and _alias(conn, name, alias) != version:
                        raise RolloutConflict(f"'{name}' has a rollout, so {name}@{PRODUCTION} is the version that "
                                              f"serves it and moves only with its traffic: promote {name}:{version} "
                                              f"instead (pallet models tag {name}:{version} {PRODUCTION})")
                    write_alias(conn, name, alias, version)
                return
            except RowExists:  # another process inserted the same alias first: update it instead
                if attempt:
                    raise

    def remove_alias(self, name: str, alias: str) -> bool:
        """Remove `alias`; False when `name` has no such alias. `production` of a name with a rollout is
        the version that serves it, so it stays (`RolloutConflict`)."""
        with self.engine.begin() as conn:
            if alias == PRODUCTION and has_rollout(conn, name) and _alias(conn, name, alias) is not None:
                raise RolloutConflict(f"'{name}' has a rollout, so {name}@{PRODUCTION} is the version that serves "
                                      f"it and cannot be removed; promote another version to move it")
            return write_alias(conn, name, alias, None)

    def has_rollout(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return has_rollout(conn, name)

    def removed_production(self, name: str) -> int | None:
        """The version whose removal ended `name`'s rollout (and took its production alias), when that is
        the last change its rollout history holds and no rollout has started since; else None."""
        with self.engine.connect() as conn:
            if has_rollout(conn, name):
                return None
            last = conn.execute(sa.select(rollout_events.c.action, rollout_events.c.weights)
                                .where(rollout_events.c.name == name)
                                .order_by(rollout_events.c.id.desc()).limit(1)).first()
        if last is None or last.action != ENDED:
            return None
        return int(next(iter(json.loads(last.weights)), 0)) or None

    def alias(self, name: str, alias: str) -> int | None:
        with self.engine.connect() as conn:
            return _alias(conn, name, alias)

    def aliases(self, name: str | None = None) -> dict[tuple[str, int], list[str]]:
        """Aliases by (name, version)."""
        query = sa.select(aliases.c.name, aliases.c.version, aliases.c.alias).order_by(aliases.c.alias)
        if name:
            query = query.where(aliases.c.name == name)
        found: dict[tuple[str, int], list[str]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found.setdefault((row.name, row.version), []).append(row.alias)
        return found

    def _select(self, *where, order=None, limit=None) -> list[VersionRow]:
        query = sa.select(versions).where(*where)
        if order is not None:
            query = query.order_by(*(order if isinstance(order, tuple) else (order,)))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [VersionRow(**dict(r._mapping, metrics=json.loads(r.metrics), tags=json.loads(r.tags)))
                    for r in conn.execute(query)]


def write_alias(conn: sa.Connection, name: str, alias: str, version: int | None) -> bool:
    """Within the caller's transaction: point `alias` at `version` (which must exist: `ModelNotFound`
    otherwise), or remove it (`version` None). Whether an alias was there before."""
    before = _alias(conn, name, alias)
    if version is None:
        conn.execute(aliases.delete().where(aliases.c.name == name, aliases.c.alias == alias))
        return before is not None
    exists = conn.execute(sa.select(versions.c.version).where(versions.c.name == name,
                                                              versions.c.version == version)).scalar()
    if exists is None:
        raise ModelNotFound(f"model '{name}' has no version {version} (it was removed)")
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    if before is None:
        conn.execute(aliases.insert().values(name=name, alias=alias, version=version, updated=now))
    elif before != version:
        conn.execute(aliases.update().where(aliases.c.name == name, aliases.c.alias == alias)
                     .values(version=version, updated=now))
    return before is not None


def has_rollout(conn: sa.Connection, name: str) -> bool:
    """Whether `name` has a rollout (a traffic policy), whose stable version its production alias names."""
    return conn.execute(sa.select(rollouts.c.name).where(rollouts.c.name == name)).first() is not None


def _alias(conn: sa.Connection, name: str, alias: str) -> int | None:
    return conn.execute(sa.select(aliases.c.version).where(aliases.c.name == name, aliases.c.alias == alias)).scalar()
