"""Bringing a database's pallet tables up to the schema this code uses, with Alembic, run in code.

Two independent histories share one version table (`pallet_alembic_version`, so that a database
that also holds an application's own Alembic history keeps it apart): `store`, the tables in the
store's database, and `checkpoints`, the table pallet keeps in a batch run's SQL output. A
database from before migrations existed has no version table: its first revision creates only
the tables it lacks and keeps the rest, rows and all.

Whoever opens a database calls `upgrade` first. When the database is at the head already this
costs one query and loads no Alembic; an upgrade runs in one transaction, holding a lock (on
SQLite and PostgreSQL) that makes any other process opening the same database at once wait for
it and then find it done.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from pallet.errors import PalletError, first_line

log = logging.getLogger("pallet.store")

VERSION_TABLE = "pallet_alembic_version"
MIGRATIONS = Path(__file__).parent / "migrations"
STORE, CHECKPOINTS = "store", "checkpoints"
# The newest revision of each history; tests/integration/test_migrations.py checks these against
# the scripts, so that the common case (already current) needs no Alembic at all.
HEADS = {STORE: "store_0001", CHECKPOINTS: "checkpoints_0001"}

_current: weakref.WeakKeyDictionary[sa.Engine, set[str]] = weakref.WeakKeyDictionary()


def upgrade(engine: sa.Engine, history: str = STORE, what: str = "model index") -> None:
    """Bring `history`'s tables in the database of `engine` to the head revision; a `PalletError`
    naming `what` says in one line why it cannot (unreachable, read-only, newer than this pallet)."""
    done = _current.setdefault(engine, set())
    if history in done:
        return
    stored = stored_revisions(engine, what)
    if HEADS[history] not in stored:
        _run(engine, history, stored, described(engine, what))
    done.add(history)


def described(engine: sa.Engine, what: str = "model index") -> str:
    """How messages name the database of `engine`: 'the model index at sqlite:///…', password hidden."""
    return f"the {what} at {engine.url.render_as_string(hide_password=True)}"


def too_new(stored: set[str], database: str) -> str | None:
    """Why `database` cannot be opened when it records revisions this pallet has no scripts for (a
    newer pallet upgraded it), in one line; None when this pallet knows every one."""
    unknown = sorted(stored - known_revisions())
    if not unknown:
        return None
    return (f"{database} has schema revision {', '.join(unknown)}, which this pallet does not know: "
            "a newer pallet upgraded it; upgrade pallet to open it")


def stored_revisions(engine: sa.Engine, what: str = "model index") -> set[str]:
    """The revisions the database records (none for a new database or one from before migrations)."""
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(VERSION_TABLE):
                return set()
            return set(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    except OperationalError as e:
        raise PalletError(f"cannot reach {described(engine, what)}: {first_line(e.orig)}") from None
    except DBAPIError as e:
        raise PalletError(f"{described(engine, what)} cannot be used: {first_line(e.orig)}") from None


def _run(engine: sa.Engine, history: str, stored: set[str], database: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    config = _config()
    problem = too_new(stored, database)
    if problem:
        raise PalletError(problem)
    head = HEADS[history]
    try:
        with engine.connect() as conn:
            _lock(conn)
            config.attributes.update(connection=conn, metadata=_metadata(history))
            command.upgrade(config, f"{history}@head")
            conn.commit()
    except (DBAPIError, CommandError) as e:
        reason = first_line(e.orig if isinstance(e, DBAPIError) else e)
        raise PalletError(f"{database} needs its schema upgraded to revision {head}, which cannot run: "
                          f"{reason}") from None
    log.info("%s: schema upgraded to revision %s", database, head)


def _lock(conn: sa.Connection) -> None:
    """Begin the upgrade's transaction, holding the database's lock for schema changes until it ends."""
    dialect = conn.dialect.name
    if dialect == "sqlite":  # the write lock at once: a second process waits instead of racing
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":  # per schema: each search_path has tables of its own
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(coalesce(current_schema(), '') "
                             "|| '.pallet_schema'))"))
    else:
        conn.begin()


def _config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def known_revisions() -> set[str]:
    """Every revision of every history this pallet has scripts for."""
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def script_heads() -> dict[str, str]:
    """The head revision of each history, as the migration scripts say."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_config())
    return {label: scripts.get_revision(f"{label}@head").revision for label in HEADS}


def _metadata(history: str) -> sa.MetaData:
    from pallet.store import schema

    return schema.metadata if history == STORE else schema.checkpoint_metadata
