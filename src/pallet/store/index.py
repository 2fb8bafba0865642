"""The index of models, versions and aliases, in SQL (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as RowExists
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from pallet.errors import ModelNotFound, PalletError, first_line

T = TypeVar("T")
log = logging.getLogger("pallet.store")

metadata = sa.MetaData()

versions = sa.Table(
    "pallet_versions", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("framework", sa.String(64), nullable=False),
    sa.Column("runtime", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("tags", sa.Text, nullable=False, default="{}"),
)

# Removed versions keep their number taken, so `name:3` never names two different models.
removed = sa.Table(
    "pallet_removed_versions", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
)

aliases = sa.Table(
    "pallet_aliases", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
)


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


def redact(spec: str) -> str:
    """A URL (a database's, Redis') as it may be printed or logged: no password."""
    try:
        url = sa.make_url(spec)
    except sa.exc.ArgumentError:
        return spec
    return url.render_as_string(hide_password=True) if url.password else spec


def make_engine(url: str) -> sa.Engine:
    """An engine for `url`; SQLite waits for other writers instead of failing at once."""
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ModuleNotFoundError) as e:
        raise PalletError(f"PALLET_DB_URL '{url}' is not a database URL SQLAlchemy can use: {e}") from None


RETRIES = 3                 # a lost database connection is tried again this many times
RETRY_BACKOFF_SECONDS = 0.5  # before the first retry; doubled before each next one


def connection_lost(error: DBAPIError) -> bool:
    """Whether `error` is the connection dropping (server restarted, connection terminated, network),
    which a fresh connection may not meet, rather than a statement the database refuses."""
    if error.connection_invalidated:
        return True
    return isinstance(error, OperationalError) and not isinstance(error.orig, sqlite3.OperationalError)


def retrying(action: Callable[[int], T], what: str) -> T:
    """`action(attempt)`, tried again with backoff while the connection is lost, `RETRIES` times at
    most; then (or at once, for any other database error) a `PalletError` saying `what` failed and why
    in one line. `action` must be safe to repeat: it learns the attempt number to check what the
    previous attempt left done."""
    for attempt in range(RETRIES + 1):
        try:
            return action(attempt)
        except (DBAPIError, psycopg.OperationalError) as e:  # the driver's own: COPY runs on its connection
            reason = first_line(e.orig if isinstance(e, DBAPIError) else e)
            if isinstance(e, DBAPIError) and not connection_lost(e):
                raise PalletError(f"{what}: {reason}") from None
            if attempt == RETRIES:
                raise PalletError(f"{what}: the database could not be reached in {RETRIES + 1} tries; last: "
                                  f"{reason}") from None
            log.warning("%s: database connection lost (%s); trying again", what, reason)
            time.sleep(RETRY_BACKOFF_SECONDS * 2 ** attempt)
    raise AssertionError("unreachable")


def create_tables(engine: sa.Engine, tables: sa.MetaData, what: str = "model index") -> None:
    """Create `tables` where missing; several processes may race to do it at once."""
    where = engine.url.render_as_string(hide_password=True)
    for attempt in range(3):
        try:
            tables.create_all(engine)
            return
        except (RowExists, ProgrammingError, OperationalError) as e:
            # Another process created the tables at the same moment: look again.
            if "already exists" in str(e.orig) or isinstance(e, (RowExists, ProgrammingError)):
                if attempt < 2:
                    continue
            raise PalletError(f"cannot reach the {what} at {where}: {e.orig}") from None
        except DBAPIError as e:
            raise PalletError(f"the {what} at {where} cannot be used: {e.orig}") from None


class Index:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        create_tables(engine, metadata)

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
        """Point `alias` at a version that exists when the change commits (`ModelNotFound` otherwise)."""
        now = datetime.now().astimezone().isoformat(timespec="seconds")
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    exists = conn.execute(sa.select(versions.c.version).where(
                        versions.c.name == name, versions.c.version == version)).scalar()
                    if exists is None:
                        raise ModelNotFound(f"model '{name}' has no version {version} (it was removed)")
                    changed = conn.execute(aliases.update().where(aliases.c.name == name, aliases.c.alias == alias)
                                           .values(version=version, updated=now)).rowcount
                    if not changed:
                        conn.execute(aliases.insert().values(name=name, alias=alias, version=version, updated=now))
                return
            except RowExists:  # another process inserted the same alias first: update it instead
                if attempt:
                    raise

    def remove_alias(self, name: str, alias: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(aliases.delete().where(aliases.c.name == name, aliases.c.alias == alias)).rowcount > 0

    def alias(self, name: str, alias: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(aliases.c.version)
                                .where(aliases.c.name == name, aliases.c.alias == alias)).scalar()

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
