"""Connecting to SQL databases: one engine factory for every database URL pallet opens (the index
and its records, batch inputs and outputs) and retries for lost connections."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from pallet.errors import PalletError, first_line
from pallet.urls import redact

T = TypeVar("T")
log = logging.getLogger("pallet.store")

SQLITE_BUSY_SECONDS = 30    # SQLite waits this long for another writer instead of failing at once
RETRIES = 3                 # a lost database connection is tried again this many times
RETRY_BACKOFF_SECONDS = 0.5  # before the first retry; doubled before each next one


def make_engine(url: str | sa.URL, what: str = "PALLET_DB_URL", *, wal: bool = True) -> sa.Engine:
    """An engine for `url`, named `what` in errors ("PALLET_DB_URL", "output database").

    `postgresql://` and `postgres://` mean the psycopg 3 driver pallet installs. SQLite waits for
    other writers instead of failing at once; with `wal` (pallet's own databases, not a user's
    file) it also lets readers go on while one process writes. Other servers' connections are
    checked before use, so one the server dropped while idle is replaced instead of failing."""
    try:
        url = _with_driver(sa.make_url(url))
        if url.get_backend_name() == "sqlite":
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
            if wal:
                sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ModuleNotFoundError) as e:
        shown = redact(url) if isinstance(url, str) else url.render_as_string(hide_password=True)
        raise PalletError(f"{what} '{shown}' is not a database URL SQLAlchemy can use: {first_line(e)}") from None


def _with_driver(url: sa.URL) -> sa.URL:
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


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
