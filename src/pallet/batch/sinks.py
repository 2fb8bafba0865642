"""Where predictions go: a SQL table or a Parquet folder, written in committed chunks.

A run writes to a staging place beside the output, chunk by chunk; each chunk and the
checkpoint that counts it commit together, so a killed run resumes from the last commit with
no row twice and none lost. A finished run swaps its staging in for the output at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from pallet.batch.sources import quote, split_url
from pallet.errors import PalletError
from pallet.store.database import make_engine, retrying
from pallet.store.migrate import CHECKPOINTS as CHECKPOINT_HISTORY
from pallet.store.migrate import upgrade
from pallet.store.schema import batch_checkpoints
from pallet.urls import redact

CHECKPOINTS = batch_checkpoints.name
MARKER = "_pallet_output"  # in a Parquet output folder: pallet wrote it, so a run may replace it


@dataclass
class Checkpoint:
    chunks: int = 0          # chunks committed
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0


class Sink:
    description: str

    def checkpoint(self, run_id: str) -> Checkpoint: ...
    def write(self, run_id: str, predictions: pa.Table, rejects: pa.Table | None, checkpoint: Checkpoint) -> None: ...
    def finish(self, run_id: str) -> None: ...


class SqlSink(Sink):
    def __init__(self, spec: str):
        url, params = split_url(spec, ("table",))
        self.table = params.get("table")
        if not self.table:
            raise PalletError(f"output {redact(spec)}: add ?table=NAME to the database URL")
        self.description = redact(spec)
        self.engine = make_engine(url, "output database", wal=False)
        self.sqlite = self.engine.dialect.name == "sqlite"
        try:  # fail before any work when the database cannot be reached or written
            upgrade(self.engine, CHECKPOINT_HISTORY, "checkpoint table")
        except PalletError as e:
            raise PalletError(f"cannot write output {self.description}: {e}") from None

    def staging(self, run_id: str) -> str:
        digest = hashlib.sha256(f"{self.table}\0{run_id}".encode()).hexdigest()[:16]
        return f"pallet_staging_{digest}"  # short: PostgreSQL cuts names at 63 bytes

    def checkpoint(self, run_id: str) -> Checkpoint:
        return retrying(lambda attempt: self._checkpoint(run_id), f"cannot read output {self.description}")

    def _checkpoint(self, run_id: str) -> Checkpoint:
        with self.engine.connect() as conn:
            state = conn.execute(sa.text(f"SELECT state FROM {CHECKPOINTS} WHERE run_id = :r"), {"r": run_id}).scalar()
        return Checkpoint(**json.loads(state)) if state else Checkpoint()

    def write(self, run_id, predictions, rejects, checkpoint) -> None:
        """Commit one chunk with the checkpoint that counts it; a lost connection is tried again, and a
        commit that went through before the connection dropped is not made twice."""
        def attempt(number: int) -> None:
            if number and self._checkpoint(run_id).chunks >= checkpoint.chunks:
                return  # the lost attempt committed
            self._write(run_id, predictions, rejects, checkpoint)

        retrying(attempt, f"cannot write output {self.description}")

    def _write(self, run_id, predictions, rejects, checkpoint) -> None:
        with self.engine.begin() as conn:
            if predictions.num_rows:  # a chunk whose rows were all rejected adds rejects only
                if not self._exists(conn, self.staging(run_id)):
                    self._create(conn, self.staging(run_id), predictions.schema)
                self._insert(conn, self.staging(run_id), predictions)
            if rejects is not None and rejects.num_rows:
                rejects_table = f"{self.table}_rejects"
                if not self._exists(conn, rejects_table):
                    self._create(conn, rejects_table, rejects.schema)
                self._insert(conn, rejects_table, rejects)
            state = json.dumps(asdict(checkpoint))
            updated = conn.execute(sa.text(f"UPDATE {CHECKPOINTS} SET state = :s WHERE run_id = :r"),
                                   {"s": state, "r": run_id}).rowcount
            if not updated:
                conn.execute(sa.text(f"INSERT INTO {CHECKPOINTS} (run_id, state) VALUES (:r, :s)"),
                             {"r": run_id, "s": state})

    def finish(self, run_id: str) -> None:
        """The staging table becomes the output in one transaction: readers see the old rows or the new."""
        def attempt(number: int) -> None:
            if number and not self._checkpoint_exists(run_id):
                return  # the lost attempt committed: the checkpoint goes in the same transaction
            self._finish(run_id)

        retrying(attempt, f"cannot write output {self.description}")

    def _checkpoint_exists(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.text(f"SELECT 1 FROM {CHECKPOINTS} WHERE run_id = :r"), {"r": run_id}).first()
        return found is not None

    def _finish(self, run_id: str) -> None:
        staging = self.staging(run_id)
        with self.engine.connect() as conn:
            if not self._exists(conn, staging):
                raise PalletError("no row could be predicted; the output keeps its previous rows")
        statements = [f"DROP TABLE IF EXISTS {quote(self.table)}",
                      f"ALTER TABLE {quote(staging)} RENAME TO {quote(self.table)}"]
        forget = f"DELETE FROM {CHECKPOINTS} WHERE run_id = "
        if not self.sqlite:
            with self.engine.begin() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement))
                conn.execute(sa.text(forget + ":r"), {"r": run_id})
            return
        # Python's sqlite3 runs DDL outside transactions unless one is opened by hand.
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            raw.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    raw.execute(statement)
                raw.execute(forget + "?", (run_id,))
            except BaseException:
                raw.rollback()
                raise
            raw.commit()

    def _exists(self, conn, name: str) -> bool:
        return sa.inspect(conn).has_table(name)

    def _create(self, conn, name: str, schema: pa.Schema) -> None:
        columns = ", ".join(f"{quote(f.name)} {_sql_type(f.type, self.sqlite)}" for f in schema)
        conn.execute(sa.text(f"CREATE TABLE {quote(name)} ({columns})"))

    def _insert(self, conn, name: str, table: pa.Table) -> None:
        if not table.num_rows:
            return
        names = ", ".join(quote(n) for n in table.column_names)
        raw = conn.connection.driver_connection
        if self.sqlite:
            rows = list(zip(*(c.to_pylist() for c in table.columns)))
            marks = ", ".join("?" for _ in table.column_names)
            raw.executemany(f"INSERT INTO {quote(name)} ({names}) VALUES ({marks})", rows)
        else:  # COPY in CSV, written by pyarrow: no Python work per row
            import pyarrow.csv as pcsv

            text = pa.BufferOutputStream()
            pcsv.write_csv(table, text, pcsv.WriteOptions(include_header=False))
            with raw.cursor() as cursor, cursor.copy(f"COPY {quote(name)} ({names}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(text.getvalue().to_pybytes())


class ParquetSink(Sink):
    """A folder of part files; rejects go to its `_rejects/` folder (readers skip `_` names)."""

    def __init__(self, spec: str):
        self.path = Path(spec)
        self.description = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            probe = self.path.parent / f".pallet-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise PalletError(f"cannot write output {self.path}: {e.strerror or e}") from None
        if self.path.exists() and not self.path.is_dir():
            raise PalletError(f"output {self.path} is a file; a Parquet output is a folder")
        if self.path.is_dir() and any(self.path.iterdir()) and not (self.path / MARKER).exists():
            raise PalletError(f"output {self.path} holds files pallet did not write; a run replaces its whole "
                              "output folder, so name a new or empty folder")

    def staging(self, run_id: str) -> Path:
        return self.path.parent / f".{self.path.name}.staging-{run_id}"

    def checkpoint(self, run_id: str) -> Checkpoint:
        marker = self.staging(run_id) / "_checkpoint.json"
        return Checkpoint(**json.loads(marker.read_text())) if marker.exists() else Checkpoint()

    def write(self, run_id, predictions, rejects, checkpoint) -> None:
        import pyarrow.parquet as pq

        folder = self.staging(run_id)
        (folder / "_rejects").mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text("written by pallet batch run; the next run replaces this folder\n")
        name = f"part-{checkpoint.chunks:06d}.parquet"  # the same name when a resumed run redoes a chunk
        if predictions.num_rows:
            _replace(folder / name, lambda tmp: pq.write_table(predictions, tmp, use_dictionary=_text(predictions)))
        if rejects is not None and rejects.num_rows:
            _replace(folder / "_rejects" / name, lambda tmp: pq.write_table(rejects, tmp, use_dictionary=_text(rejects)))
        _replace(folder / "_checkpoint.json", lambda tmp: Path(tmp).write_text(json.dumps(asdict(checkpoint))))

    def finish(self, run_id: str) -> None:
        folder = self.staging(run_id)
        if not any(folder.glob("part-*.parquet")):
            raise PalletError("no row could be predicted; the output keeps its previous rows")
        (folder / "_checkpoint.json").unlink(missing_ok=True)
        old = self.path.parent / f".{self.path.name}.old-{run_id}"
        if self.path.exists():
            self.path.rename(old)
        folder.rename(self.path)
        shutil.rmtree(old, ignore_errors=True)


def open_sink(spec: str) -> Sink:
    return SqlSink(spec) if "://" in spec else ParquetSink(spec)


def _text(table: pa.Table) -> list[str]:
    """Columns worth dictionary encoding: text (model, run id, labels); numbers only pay for trying."""
    return [f.name for f in table.schema if pa.types.is_string(f.type)]


def _replace(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    os.replace(tmp, path)


def _sql_type(arrow: pa.DataType, sqlite: bool) -> str:
    if pa.types.is_boolean(arrow):
        return "BOOLEAN"
    if pa.types.is_integer(arrow):
        return "BIGINT"
    if pa.types.is_floating(arrow):
        return "REAL" if sqlite else "DOUBLE PRECISION"
    return "TEXT"
